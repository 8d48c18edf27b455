/**
 * Secret Manager resource names as the real service gives them. Whatever project form a request
 * used, the service answers with the project NUMBER (`projects/123456789012/secrets/s/versions/7`),
 * so a name we configured (`projects/my-project/secrets/s`) and a name the service or an
 * announcement carries differ in the project segment. Every comparison of secret or version names
 * goes through here (docs/DESIGN.md "Resource names").
 *
 * The rule: a name is our secret's when its secret id is ours and its project is our project id,
 * or a project number — the one the service has shown us when we have seen it, any number before
 * that. Project ids cannot be all digits (they start with a letter), so a numeric segment is
 * always a number. Accepting any number before the first answer is safe: the version is then read
 * from OUR secret by its number (never from the name as given), a pair is only adopted when newer
 * and of the pinned account (I2, I7), and the worst a stray announcement can do is hold back our
 * own refresh for a while (never present a token twice).
 */

export interface SecretRef {
  project: string;
  secretId: string;
}

export interface VersionRef extends SecretRef {
  /** A number ("7"), "latest" or an alias. */
  version: string;
}

const SECRET = /^projects\/([^/]+)\/secrets\/([^/]+)$/;
const VERSION = /^projects\/([^/]+)\/secrets\/([^/]+)\/versions\/([^/]+)$/;

export function parseSecretName(name: string): SecretRef | undefined {
  const m = SECRET.exec(name);
  return m ? { project: m[1]!, secretId: m[2]! } : undefined;
}

export function parseVersionName(name: string): VersionRef | undefined {
  const m = VERSION.exec(name);
  return m ? { project: m[1]!, secretId: m[2]!, version: m[3]! } : undefined;
}

/** A project segment that is a number (project ids always start with a letter). */
export function isProjectNumber(project: string): boolean {
  return /^[0-9]+$/.test(project);
}

/** The number of a version name (`…/versions/7` → 7); undefined for latest, aliases, bad names. */
export function versionNumberOf(name: string): number | undefined {
  const v = parseVersionName(name)?.version;
  return v !== undefined && /^[1-9][0-9]*$/.test(v) ? Number(v) : undefined;
}

/**
 * Our secret: the configured `projects/<id>/secrets/<secret>` and, once the service has answered,
 * the project number it answers with.
 */
export class SecretIdentity {
  readonly projectId: string;
  readonly secretId: string;
  private number: string | undefined;

  constructor(configuredName: string, projectNumber?: string) {
    const ref = parseSecretName(configuredName);
    if (!ref) throw new Error(`not a secret resource name: ${configuredName}`);
    this.projectId = ref.project;
    this.secretId = ref.secretId;
    if (projectNumber !== undefined && isProjectNumber(projectNumber)) this.number = projectNumber;
    else if (isProjectNumber(ref.project)) this.number = ref.project;
  }

  /** The configured name (by project id): what requests use. */
  get name(): string {
    return `projects/${this.projectId}/secrets/${this.secretId}`;
  }

  /** The project number the service answered with, once seen. */
  get projectNumber(): string | undefined {
    return this.number;
  }

  /** Is `project` ours, by id or by number? */
  private ownsProject(project: string): boolean {
    if (project === this.projectId) return true;
    if (!isProjectNumber(project)) return false;
    return this.number === undefined || project === this.number;
  }

  /** Remember the project number from a name the service returned for our secret. */
  learn(answered: string | null | undefined): void {
    if (this.number !== undefined || !answered) return;
    const ref = parseVersionName(answered) ?? parseSecretName(answered);
    if (ref && ref.secretId === this.secretId && isProjectNumber(ref.project)) this.number = ref.project;
  }

  /** Is this `projects/P/secrets/S/versions/N` (N a number) a version of our secret? */
  ownsVersion(name: string): boolean {
    const ref = parseVersionName(name);
    return ref !== undefined && ref.secretId === this.secretId && this.ownsProject(ref.project) && versionNumberOf(name) !== undefined;
  }

  /** Is this `projects/P/secrets/S` our secret? */
  ownsSecret(name: string): boolean {
    const ref = parseSecretName(name);
    return ref !== undefined && ref.secretId === this.secretId && this.ownsProject(ref.project);
  }

  /** The name to request for a version of ours: by our project id, whatever form it came in. */
  versionName(ref: number | string): string {
    return `${this.name}/versions/${ref}`;
  }
}

/**
 * Do two version names name the same version? Same secret id and version, and projects equal or
 * (one id, one number) not comparable without the service — so taken as equal: both came from
 * our own store or announcements already checked with `SecretIdentity.ownsVersion`.
 */
export function sameVersion(a: string, b: string): boolean {
  if (a === b) return true;
  const x = parseVersionName(a);
  const y = parseVersionName(b);
  if (!x || !y || x.secretId !== y.secretId || x.version !== y.version) return false;
  return x.project === y.project || isProjectNumber(x.project) !== isProjectNumber(y.project);
}
