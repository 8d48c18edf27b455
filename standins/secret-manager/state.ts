/**
 * The in-memory model behind the Secret Manager stand-in: resources, etags, version states and the
 * error codes the real v1 API answers with. Messages are proto-loader objects with snake_case keys.
 */
import { status } from '@grpc/grpc-js';
import { checksumValue, crc32c } from '../../core/gcp/crc32c.js';
import { RpcError } from './errors.js';
import { MAX_PAYLOAD, newEtag, page, SECRET_ID, str, strMap, validateAnnotations, type Msg } from './fields.js';
import { parseStateFilter } from './filter.js';
import { ProjectRegistry, type ProjectNumbers } from './projects.js';
import { renderSecret, renderVersion, type StoredSecret, type StoredVersion } from './stored.js';

export { RpcError } from './errors.js';
export { parseStateFilter } from './filter.js';

export type { VersionState } from './filter.js';
import type { VersionState } from './filter.js';

export class SecretManagerState {
  /** Keyed by `projects/<number>/secrets/<id>`; requests may name the project by id or number. */
  private readonly secrets = new Map<string, StoredSecret>();
  private readonly projects: ProjectRegistry;

  constructor(o: ProjectNumbers = {}) {
    this.projects = new ProjectRegistry(o);
  }

  /** The number the stand-in gives this project id (what its answers carry). */
  projectNumber(projectId: string): string {
    return this.projects.numberOf(projectId);
  }
  /** Monotonic clock so create times strictly increase even within one millisecond. */
  private lastTime = 0;

  private now(): number {
    this.lastTime = Math.max(Date.now(), this.lastTime + 1);
    return this.lastTime;
  }

  // ---- name parsing -------------------------------------------------------------------------

  private secretKey(name: string): string {
    const m = /^projects\/([^/]+)\/secrets\/([^/]+)$/.exec(name);
    if (!m) throw new RpcError(status.INVALID_ARGUMENT, `Invalid resource field value in the request: name "${name}"`);
    return this.projects.canonical(name);
  }

  private getSecretByName(name: string): StoredSecret {
    const s = this.secrets.get(this.secretKey(name));
    if (!s) throw new RpcError(status.NOT_FOUND, `Secret [${name}] not found or has no versions.`);
    return s;
  }

  private getVersionByName(name: string): { secret: StoredSecret; version: StoredVersion } {
    const m = /^(projects\/[^/]+\/secrets\/[^/]+)\/versions\/([^/]+)$/.exec(name);
    if (!m) throw new RpcError(status.INVALID_ARGUMENT, `Invalid resource field value in the request: name "${name}"`);
    const secret = this.getSecretByName(m[1]!);
    const ref = m[2]!;
    let version: StoredVersion | undefined;
    if (ref === 'latest') {
      version = [...secret.versions].reverse().find((v) => v.state === 'ENABLED');
    } else if (/^[1-9][0-9]*$/.test(ref)) {
      version = secret.versions.find((v) => v.number === Number(ref));
    } else if (ref in secret.versionAliases) {
      version = secret.versions.find((v) => v.number === secret.versionAliases[ref]);
    } else {
      throw new RpcError(status.INVALID_ARGUMENT, `Invalid secret version "${ref}"`);
    }
    if (!version) throw new RpcError(status.NOT_FOUND, `Secret Version [${name}] not found.`);
    return { secret, version };
  }

  private checkEtag(given: string, current: string, what: string): void {
    if (given && given !== current) {
      throw new RpcError(status.FAILED_PRECONDITION, `The etag provided for ${what} does not match the current etag.`);
    }
  }

  // ---- RPCs ---------------------------------------------------------------------------------

  CreateSecret(req: Msg): Msg {
    const parent = str(req, 'parent');
    const pm = /^projects\/([^/]+)$/.exec(parent);
    if (!pm) throw new RpcError(status.INVALID_ARGUMENT, `Invalid parent "${parent}"`);
    const id = str(req, 'secret_id');
    if (!SECRET_ID.test(id)) throw new RpcError(status.INVALID_ARGUMENT, `Invalid secret_id "${id}"`);
    const body = (req.secret ?? {}) as Msg;
    if (!body.replication) throw new RpcError(status.INVALID_ARGUMENT, 'Secret.replication is required.');
    const key = `${this.projects.canonical(parent)}/secrets/${id}`;
    if (this.secrets.has(key)) throw new RpcError(status.ALREADY_EXISTS, `Secret [${key}] already exists.`);
    const annotations = strMap(body.annotations);
    validateAnnotations(annotations);
    const s: StoredSecret = {
      project: this.projects.numberOf(pm[1]!),
      id,
      createTime: this.now(),
      replication: body.replication,
      labels: strMap(body.labels),
      annotations,
      versionAliases: {},
      topics: Array.isArray(body.topics) ? body.topics : [],
      etag: newEtag(),
      versions: [],
      nextVersion: 1,
    };
    this.secrets.set(key, s);
    return renderSecret(s);
  }

  GetSecret(req: Msg): Msg {
    return renderSecret(this.getSecretByName(str(req, 'name')));
  }

  ListSecrets(req: Msg): Msg {
    const parent = this.projects.canonical(str(req, 'parent'));
    const all = [...this.secrets.entries()].filter(([k]) => k.startsWith(parent + '/secrets/')).map(([, s]) => s);
    const { items, next_page_token, total_size } = page(all, req);
    return { secrets: items.map((s) => renderSecret(s)), next_page_token, total_size };
  }

  UpdateSecret(req: Msg): Msg {
    const body = (req.secret ?? {}) as Msg;
    const s = this.getSecretByName(str(body, 'name'));
    const paths = ((req.update_mask as Msg | undefined)?.paths as string[] | undefined) ?? [];
    if (paths.length === 0) throw new RpcError(status.INVALID_ARGUMENT, 'update_mask is required.');
    this.checkEtag(str(body, 'etag'), s.etag, 'the secret');
    const next: Partial<StoredSecret> = {};
    for (const p of paths) {
      switch (p) {
        case 'annotations':
          next.annotations = strMap(body.annotations);
          validateAnnotations(next.annotations);
          break;
        case 'labels':
          next.labels = strMap(body.labels);
          break;
        case 'version_aliases': {
          const aliases: Record<string, number> = {};
          for (const [k, v] of Object.entries(strMap(body.version_aliases))) aliases[k] = Number(v);
          next.versionAliases = aliases;
          break;
        }
        case 'topics':
          next.topics = Array.isArray(body.topics) ? body.topics : [];
          break;
        default:
          throw new RpcError(status.INVALID_ARGUMENT, `update_mask path "${p}" is not supported.`);
      }
    }
    Object.assign(s, next);
    s.etag = newEtag();
    return renderSecret(s);
  }

  DeleteSecret(req: Msg): Msg {
    const name = str(req, 'name');
    const s = this.getSecretByName(name);
    this.checkEtag(str(req, 'etag'), s.etag, 'the secret');
    this.secrets.delete(this.secretKey(name));
    return {};
  }

  AddSecretVersion(req: Msg): Msg {
    const s = this.getSecretByName(str(req, 'parent'));
    const payload = (req.payload ?? {}) as Msg;
    const data = Buffer.isBuffer(payload.data) ? payload.data : Buffer.from((payload.data as Uint8Array | undefined) ?? []);
    if (data.length > MAX_PAYLOAD) throw new RpcError(status.INVALID_ARGUMENT, 'Secret payload exceeds 64 KiB.');
    const actual = crc32c(data);
    const given = payload._data_crc32c === 'data_crc32c' || payload.data_crc32c !== undefined ? checksumValue(payload.data_crc32c) : undefined;
    if (given !== undefined && given !== actual) {
      throw new RpcError(status.INVALID_ARGUMENT, 'Checksum mismatch: the data_crc32c does not match the payload.');
    }
    const v: StoredVersion = {
      number: s.nextVersion++,
      state: 'ENABLED',
      createTime: this.now(),
      data: Buffer.from(data),
      crc: actual,
      clientChecksum: given !== undefined,
      etag: newEtag(),
    };
    s.versions.push(v);
    return renderVersion(s, v);
  }

  GetSecretVersion(req: Msg): Msg {
    const { secret, version } = this.getVersionByName(str(req, 'name'));
    return renderVersion(secret, version);
  }

  AccessSecretVersion(req: Msg): Msg {
    const name = str(req, 'name');
    const { secret, version } = this.getVersionByName(name);
    if (version.state !== 'ENABLED') {
      throw new RpcError(status.FAILED_PRECONDITION, `Secret Version [${name}] is in ${version.state} state.`);
    }
    return {
      name: `projects/${secret.project}/secrets/${secret.id}/versions/${version.number}`,
      payload: { data: version.data, data_crc32c: String(version.crc) },
    };
  }

  ListSecretVersions(req: Msg): Msg {
    const s = this.getSecretByName(str(req, 'parent'));
    const match = parseStateFilter(str(req, 'filter'));
    const all = [...s.versions].reverse().filter((v) => match(v.state));
    const { items, next_page_token, total_size } = page(all, req);
    return { versions: items.map((v) => renderVersion(s, v)), next_page_token, total_size };
  }

  DestroySecretVersion(req: Msg): Msg {
    return this.transition(req, 'DESTROYED');
  }

  DisableSecretVersion(req: Msg): Msg {
    return this.transition(req, 'DISABLED');
  }

  EnableSecretVersion(req: Msg): Msg {
    return this.transition(req, 'ENABLED');
  }

  private transition(req: Msg, to: VersionState): Msg {
    const name = str(req, 'name');
    const { secret, version } = this.getVersionByName(name);
    this.checkEtag(str(req, 'etag'), version.etag, 'the secret version');
    if (version.state === 'DESTROYED') {
      throw new RpcError(status.FAILED_PRECONDITION, `Secret Version [${name}] is in DESTROYED state.`);
    }
    version.state = to;
    version.etag = newEtag();
    if (to === 'DESTROYED') {
      version.data = undefined;
      version.destroyTime = this.now();
    }
    return renderVersion(secret, version);
  }

  // ---- introspection for tests --------------------------------------------------------------

  hasSecret(name: string): boolean {
    try {
      return this.secrets.has(this.projects.canonical(name));
    } catch {
      return false; // an unknown project number
    }
  }

  /** By full name (project id or number) or by secret id (in `project`, id or number, when given). */
  versionStates(secret: string, project?: string): { version: number; state: VersionState }[] {
    const key = secret.includes('/') ? this.projects.canonical(secret) : this.findKey(secret, project);
    const s = key ? this.secrets.get(key) : undefined;
    return s ? s.versions.map((v) => ({ version: v.number, state: v.state })) : [];
  }

  private findKey(id: string, project?: string): string | undefined {
    const number = project === undefined ? undefined : this.projects.numberOf(project);
    for (const [k, s] of this.secrets) if (s.id === id && (number === undefined || s.project === number)) return k;
    return undefined;
  }
}
