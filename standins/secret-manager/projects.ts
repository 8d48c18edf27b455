/**
 * Project id ↔ number, as Google keeps it: a request may name a project by id or by number, and
 * every resource name the service returns carries the number
 * (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access:
 * "projects/*\/secrets/*\/versions/*" answered with the project number). The stand-in answers the
 * same way so no test can pass on an echoed project id.
 */
import { status } from '@grpc/grpc-js';
import { RpcError } from './errors.js';

/** The number the first project id seen gets unless told otherwise; later ids count up from it. */
export const DEFAULT_PROJECT_NUMBER = '123456789012';

export interface ProjectNumbers {
  /** Fixed id → number pairs (numbers as decimal strings). */
  numbers?: Record<string, string> | undefined;
  /** Number for the first project id not in `numbers` (default 123456789012). */
  firstNumber?: string | undefined;
}

export class ProjectRegistry {
  private readonly byId = new Map<string, string>();
  private readonly ids = new Set<string>();
  private next: bigint;

  constructor(o: ProjectNumbers = {}) {
    for (const [id, n] of Object.entries(o.numbers ?? {})) this.bind(id, n);
    this.next = BigInt(o.firstNumber ?? DEFAULT_PROJECT_NUMBER);
  }

  private bind(id: string, number: string): void {
    if (!/^[0-9]+$/.test(number)) throw new Error(`project number must be digits: ${number}`);
    this.byId.set(id, number);
    this.ids.add(number);
  }

  /** The number of a project named by id or number. An unknown id gets the next number (Google knows every project). */
  numberOf(project: string): string {
    if (/^[0-9]+$/.test(project)) {
      if (!this.ids.has(project)) throw new RpcError(status.NOT_FOUND, `Project [${project}] not found.`);
      return project;
    }
    let n = this.byId.get(project);
    if (n === undefined) {
      while (this.ids.has(String(this.next))) this.next++;
      n = String(this.next++);
      this.bind(project, n);
    }
    return n;
  }

  /** `projects/<id or number>/…` → `projects/<number>/…` (the form keys and answers use). */
  canonical(name: string): string {
    const m = /^projects\/([^/]+)(\/.*)?$/.exec(name);
    return m ? `projects/${this.numberOf(m[1]!)}${m[2] ?? ''}` : name;
  }
}
