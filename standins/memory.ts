/**
 * In-memory doubles of every port, for unit tests and the virtual-time soak (thousands of hours in
 * seconds). None re-implements a rule of its real counterpart:
 * - MemorySecretStore IS the real adapter (core/gcp/secret-store.ts) over an in-process transport
 *   to the Secret Manager stand-in's model;
 * - SaxoModel is the HTTP stand-in's model (standins/saxo/state.ts) with answers classified by the
 *   real client's classifier (core/saxo/classify.ts);
 * - the cache and the bus keep their adapters' formats (codec.ts, event-schema.ts).
 * test/contracts/ runs one suite against each double and the adapter it stands for.
 */
import { SaxoError, LockTimeoutError } from '../core/errors.js';
import { parseFlat, serializeFlat } from '../core/codec.js';
import type { Clock } from '../core/clock.js';
import { classifyFailure } from '../core/saxo/classify.js';
import { createSecretStore } from '../core/gcp/secret-store.js';
import { tokenRotatedEventSchema } from '../core/gcp/event-schema.js';
import type { Logger } from '../core/log.js';
import type {
  CacheRead, EventBus, Held, RawAnswer, RefreshOptions, SecretStore, TokenCache, TokenEndpoint, TokenRotatedEvent,
} from '../core/ports.js';
import type { TokenResponse, TokenSet } from '../core/token.js';
import { oddBody, type OddAnswer } from './saxo/odd.js';
import { StandinState, type GrantResult, type IssuedPair } from './saxo/state.js';
import { inProcessSecretManager, type InProcessTransport } from './secret-manager/in-process.js';
import { SecretManagerState, type VersionState } from './secret-manager/state.js';
import type { StateStore } from '../agent/reconciler.js';
import type { AgentState } from '../agent/state-file.js';

export { VirtualClock, flush } from './virtual-clock.js';
export { MemoryJournal } from './memory-journal.js';

const toResponse = (p: IssuedPair): TokenResponse => ({
  accessToken: p.access_token,
  refreshToken: p.refresh_token,
  tokenType: p.token_type,
  expiresIn: p.expires_in,
  refreshExpiresIn: p.refresh_token_expires_in,
});

/**
 * An HTTP answer as the stand-in would send it (201, as Saxo does): a 2xx raw, as the real client
 * returns it; a refusal classified as the real client classifies it. `odd` alters a grant's body
 * (the pair is issued and the token consumed all the same).
 */
function answer(r: GrantResult, now: number, odd?: OddAnswer): RawAnswer {
  if (!r.ok) {
    const raw = { status: r.status, contentType: 'application/json', retryAfter: null, date: null, text: JSON.stringify({ error: r.error, error_description: r.description }) };
    throw classifyFailure(raw, now);
  }
  const [body, headers] = oddBody(r.pair, odd ?? {});
  const contentType = headers['content-type'] ?? 'application/json; charset=utf-8';
  return { status: 201, contentType, retryAfter: null, date: new Date(now).toUTCString(), text: typeof body === 'string' ? body : JSON.stringify(body) };
}

/** Saxo's token endpoint: single-use rotating refresh tokens, every presentation counted. */
export class SaxoModel implements TokenEndpoint {
  readonly state: StandinState;
  /**
   * Faults for the next calls, in order: a 503 before the grant, a rejection, an answer lost after
   * the grant, or any SaxoError thrown as is (a 429 with Retry-After, …) before the grant.
   */
  faults: ('retryable' | 'invalid_grant' | 'lost_response' | SaxoError)[] = [];
  /** Odd 2xx bodies for the next grants, in order (issued and consumed all the same). */
  odd: OddAnswer[] = [];
  delayMs = 0;
  /** Token text generator; the soak swaps in a seeded one so a run is reproducible. */
  mint: ((bytes: number) => string) | undefined;
  /** Sees every pair issued (refreshes and direct issues alike). */
  onIssue: ((r: TokenResponse) => void) | undefined;

  constructor(
    private readonly clock: Clock,
    accessLifetimeSec = 1200,
    refreshLifetimeSec = 3600,
  ) {
    this.state = new StandinState(() => clock.now(), { accessLifetimeSec, refreshLifetimeSec }, {
      mint: (prefix) => (this.mint ? this.mint(prefix === 'sa_' ? 48 : 32) : `${prefix}${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`),
      onIssue: (p) => this.onIssue?.(toResponse(p)),
    });
  }

  get accessLifetimeSec(): number {
    return this.state.accessLifetimeSec;
  }
  set accessLifetimeSec(v: number) {
    this.state.accessLifetimeSec = v;
  }
  get refreshLifetimeSec(): number {
    return this.state.refreshLifetimeSec;
  }
  set refreshLifetimeSec(v: number) {
    this.state.refreshLifetimeSec = v;
  }
  get stats() {
    return this.state.counters;
  }

  issue(): TokenResponse {
    return toResponse(this.state.issue());
  }
  isValidAccess(a: string): boolean {
    return this.state.isValidAccessToken(a);
  }

  async refresh(refreshToken: string, opts: RefreshOptions): Promise<RawAnswer> {
    if (this.clock.now() >= opts.deadline) throw new SaxoError('retryable', 'deadline', 'No time left before the deadline for a Saxo refresh attempt');
    if (this.delayMs) await this.clock.sleep(this.delayMs);
    const fault = this.faults.shift();
    if (fault instanceof SaxoError) throw fault;
    if (fault === 'retryable') throw new SaxoError('retryable', 'http_503', 'Saxo answered 503 (non-JSON body)', 503);
    if (fault === 'invalid_grant') {
      this.state.counters.presentations++;
      this.state.counters.invalidGrants++;
      throw new SaxoError('fatal', 'invalid_grant', 'Saxo token endpoint answered 400: invalid_grant (injected)', 400);
    }
    const granted = this.state.refresh(refreshToken, opts.appKey);
    const res = answer(granted, this.clock.now(), granted.ok ? this.odd.shift() : undefined);
    if (fault === 'lost_response') throw new SaxoError('retryable', 'timeout', 'Saxo did not answer in time');
    return res;
  }

  async exchangeCode(): Promise<TokenResponse> {
    return this.issue();
  }
}

/** The real SecretStore adapter over the stand-in's model, in-process; plus what tests inspect. */
export class MemorySecretStore implements SecretStore {
  readonly model = new SecretManagerState();
  private readonly transport: InProcessTransport;
  private readonly store: SecretStore;
  readonly name: string;

  constructor(name = 'projects/demo/secrets/saxo-token', logger?: Logger) {
    const m = /^projects\/([^/]+)\/secrets\/([^/]+)$/.exec(name);
    if (!m) throw new Error(`MemorySecretStore: bad secret name ${name}`);
    this.name = name;
    this.model.CreateSecret({ parent: `projects/${m[1]}`, secret_id: m[2], secret: { replication: { automatic: {} } } });
    this.transport = inProcessSecretManager(this.model);
    this.store = createSecretStore({ client: this.transport.client, projectId: m[1]!, secretId: m[2]!, logger });
  }

  /** While true every call fails with UNAVAILABLE. */
  get unavailable(): boolean {
    return this.transport.unavailable;
  }
  set unavailable(v: boolean) {
    this.transport.unavailable = v;
  }
  /** gRPC method names in call order. */
  get calls(): string[] {
    return this.transport.calls;
  }

  latest = () => this.store.latest();
  version = (ref: string | number) => this.store.version(ref);
  add = (t: TokenSet) => this.store.add(t);
  prune = (keep: number) => this.store.prune(keep);
  countVersions = () => this.store.countVersions();
  meta = () => this.store.meta();
  acquireLease = (holder: string, ttlMs: number, now: number) => this.store.acquireLease(holder, ttlMs, now);
  releaseLease: SecretStore['releaseLease'] = (holder, record) => this.store.releaseLease(holder, record);
  record: SecretStore['record'] = (record) => this.store.record(record);

  /** Add a version with an arbitrary payload (a bot's save, a corrupt write), bypassing the adapter. */
  addRaw(data: string): { name: string; version: number } {
    const v = this.model.AddSecretVersion({ parent: this.name, payload: { data: Buffer.from(data, 'utf8') } });
    const name = String(v.name);
    return { name, version: Number(name.slice(name.lastIndexOf('/') + 1)) };
  }
  /** Every version with its state and (unless destroyed) payload text. */
  versions(): { version: number; state: VersionState; data?: string | undefined }[] {
    return this.model.versionStates(this.name).map((v) => {
      let data: string | undefined;
      if (v.state === 'ENABLED') {
        const r = this.model.AccessSecretVersion({ name: `${this.name}/versions/${v.version}` });
        data = Buffer.from((r.payload as { data: Buffer }).data).toString('utf8');
      }
      return { ...v, data };
    });
  }
  destroy(version: number): void {
    this.model.DestroySecretVersion({ name: `${this.name}/versions/${version}` });
  }
  annotations(): Record<string, string> {
    return { ...(this.model.GetSecret({ name: this.name }).annotations as Record<string, string>) };
  }
}

/** At-least-once, possibly reordered delivery to every subscriber. */
export class MemoryEventBus implements EventBus {
  published: TokenRotatedEvent[] = [];
  private handlers: ((e: TokenRotatedEvent, m: { id: string }) => Promise<void>)[] = [];
  /** When set, publish() only queues; deliver() hands events over (lets tests reorder/duplicate). */
  manual = false;
  /** While true publish() fails (a Pub/Sub outage). */
  unavailable = false;
  queue: TokenRotatedEvent[] = [];
  async publish(e: TokenRotatedEvent) {
    if (this.unavailable) throw new Error('Pub/Sub UNAVAILABLE');
    const body = tokenRotatedEventSchema.parse(e);
    this.published.push(body);
    if (this.manual) this.queue.push(body);
    else {
      // Like Pub/Sub, publish does not wait for subscribers: an agent subscribed to the topic it
      // publishes to would otherwise wait on its own serialized run() and deadlock.
      const id = String(this.published.length);
      for (const h of this.handlers) setImmediate(() => void h(body, { id }).catch(() => undefined));
    }
    return String(this.published.length);
  }
  async deliver(e: TokenRotatedEvent) {
    for (const h of this.handlers) await h(e, { id: 'manual' }).catch(() => undefined);
  }
  async subscribe(h: (e: TokenRotatedEvent, m: { id: string }) => Promise<void>) {
    this.handlers.push(h);
    return async () => {
      this.handlers = this.handlers.filter((x) => x !== h);
    };
  }
}

/** The cache file in memory; `raw` lets tests plant stale or corrupt content. */
export class MemoryCache implements TokenCache {
  private rawText: string | undefined;
  /** Called on every change of `raw` (the soak's stand-in for the agent's file watcher). */
  onChange: ((raw: string | undefined) => void) | undefined;
  /** When set, reads report it and writes throw it (a root-owned file, a directory at the path). */
  broken: { code: string } | undefined;
  writes = 0;
  get raw(): string | undefined {
    return this.rawText;
  }
  set raw(v: string | undefined) {
    this.rawText = v;
    this.onChange?.(v);
  }
  constructor(readonly path = 'memory://saxo_token_cache.json') {}
  async read(): Promise<CacheRead> {
    if (this.broken) return { kind: 'unreadable', code: this.broken.code, reason: `${this.broken.code} reading ${this.path}` };
    if (this.raw === undefined) return { kind: 'missing' };
    const p = parseFlat(this.raw);
    return p.ok ? { kind: 'ok', token: p.token } : { kind: 'corrupt', reason: p.reason };
  }
  async write(t: TokenSet) {
    if (this.broken) throw Object.assign(new Error(`${this.broken.code}: cannot write ${this.path}`), { code: this.broken.code });
    this.writes++;
    this.raw = serializeFlat(t);
  }
}

/** A non-reentrant mutex with the flock's timeout semantics. */
export class MemoryLock {
  private holder: symbol | undefined;
  private waiters: (() => void)[] = [];
  constructor(private readonly clock: Clock, private readonly timeoutMs = 30_000) {}
  get held(): boolean {
    return this.holder !== undefined;
  }
  async acquire(signal?: AbortSignal, timeoutMs = this.timeoutMs): Promise<Held> {
    const start = this.clock.now();
    while (this.holder) {
      signal?.throwIfAborted();
      if (this.clock.now() - start >= timeoutMs) throw new LockTimeoutError('memory-lock', this.clock.now() - start);
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), this.clock.sleep(100)]);
    }
    const me = Symbol('holder');
    this.holder = me;
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        if (this.holder === me) this.holder = undefined;
        this.waiters.splice(0).forEach((w) => w());
      },
    };
  }
}

export class MemoryState implements StateStore {
  value: AgentState | undefined;
  async read() {
    return this.value;
  }
  async write(s: AgentState) {
    this.value = structuredClone(s);
  }
}
