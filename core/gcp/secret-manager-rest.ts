/**
 * Secret Manager's REST API (v1) behind the six client methods the SecretStore adapter calls, over
 * node:http(s). The function uses it instead of the gRPC client library: google-gax alone costs ~110 ms
 * and the client's construction ~40–90 ms of a cold start, for a run that usually reads one
 * version (docs/BENCHMARKS.md "Cold start"). The adapter (secret-store.ts) is unchanged; the same
 * contract suite runs it over this transport, gRPC and the in-process double.
 *
 * Auth: the metadata server's token on Google Cloud (no library), Application Default Credentials
 * elsewhere (google-auth-library, loaded only then), none towards a local stand-in.
 */
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { createRequire } from 'node:module';
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import { Status } from './grpc-errors.js';

// `require`, not `import`: on Node 24 an ESM import of node:http reads its lazy WebSocket exports,
// which load undici (≈ 25 ms of a cold start, ≈ 6 MB; core/saxo/http.ts, nodejs/node#59686).
const require = createRequire(import.meta.url);
const { Agent: HttpAgent, request: httpRequest } = require('node:http') as typeof Http;
const { Agent: HttpsAgent, request: httpsRequest } = require('node:https') as typeof Https;

// node:http, not fetch: the first fetch() initialises undici (~25 ms of a cold start), and the
// functions-framework has loaded node:http already. Kept alive across the invocations of an instance.
const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

interface HttpAnswer {
  status: number;
  text: string;
}

function send(url: string, method: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const secure = u.protocol === 'https:';
    const req = (secure ? httpsRequest : httpRequest)(u, { method, headers, agent: secure ? agents.https : agents.http, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })));
    req.on('error', reject);
    req.end(body);
  });
}

export interface RestOptions {
  /** `https://secretmanager.googleapis.com`, or `http://127.0.0.1:PORT` for the stand-in (no auth). */
  baseUrl: string;
  /** Bearer token source; undefined → none (the stand-in). */
  token?: (() => Promise<string>) | undefined;
}

const STATUS_CODES: Record<string, number> = {
  CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

/** An error shaped like a gRPC ServiceError, so grpc-errors.ts maps both transports alike. */
class RestError extends Error {
  constructor(readonly code: number, readonly details: string) {
    super(details);
  }
}

interface CallOptions {
  timeout?: number;
  retry?: { retryCodes?: number[] } | null;
}

type Json = Record<string, unknown>;

export function createRestSecretManagerClient(o: RestOptions): SecretManagerServiceClient {
  const base = o.baseUrl.replace(/\/+$/, '');

  async function once(method: string, path: string, body: Json | undefined, deadline: number): Promise<Json> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body) headers['content-type'] = 'application/json';
    if (o.token) headers.authorization = `Bearer ${await o.token()}`;
    let res: HttpAnswer;
    try {
      res = await send(`${base}/v1/${path}`, method, headers, body ? JSON.stringify(body) : undefined, Math.max(1, deadline - Date.now()));
    } catch (e) {
      const timedOut = e instanceof Error && e.name === 'TimeoutError';
      throw new RestError(timedOut ? Status.DEADLINE_EXCEEDED : Status.UNAVAILABLE, timedOut ? 'deadline exceeded' : 'connection failed');
    }
    const text = res.text;
    let json: Json = {};
    try {
      json = text ? (JSON.parse(text) as Json) : {};
    } catch {
      // A proxy's HTML page: the status code is all there is.
    }
    if (res.status >= 200 && res.status < 300) return json;
    const err = (json.error ?? {}) as { status?: string; message?: string };
    const code = STATUS_CODES[err.status ?? ''] ?? (res.status === 503 ? Status.UNAVAILABLE : res.status === 429 ? Status.RESOURCE_EXHAUSTED : 2);
    throw new RestError(code, (err.message ?? `HTTP ${res.status}`).slice(0, 200));
  }

  /** One request; idempotent reads retry the codes the caller names, with backoff, inside its deadline. */
  async function call(method: string, path: string, body: Json | undefined, opts: CallOptions | undefined): Promise<Json> {
    const deadline = Date.now() + (opts?.timeout ?? 10_000);
    const retryCodes = opts?.retry?.retryCodes ?? [];
    for (let delay = 200; ; delay = Math.min(2_000, delay * 2)) {
      try {
        return await once(method, path, body, deadline);
      } catch (e) {
        if (!(e instanceof RestError) || !retryCodes.includes(e.code) || Date.now() + delay >= deadline) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  const version = (v: Json) => ({ name: v.name, state: v.state, etag: v.etag });
  const client = {
    async accessSecretVersion(req: { name: string }, opts?: CallOptions) {
      const r = await call('GET', `${req.name}:access`, undefined, opts);
      const p = (r.payload ?? {}) as { data?: string; dataCrc32c?: string };
      const payload = { data: Buffer.from(p.data ?? '', 'base64'), ...(p.dataCrc32c !== undefined ? { dataCrc32c: p.dataCrc32c, _dataCrc32c: 'dataCrc32c' } : {}) };
      return [{ name: r.name, payload }];
    },
    async getSecret(req: { name: string }, opts?: CallOptions) {
      const s = await call('GET', req.name, undefined, opts);
      return [{ name: s.name, etag: s.etag, annotations: s.annotations ?? {} }];
    },
    async updateSecret(req: { secret: { name: string; etag?: string; annotations?: Record<string, string> }; updateMask: { paths: string[] } }, opts?: CallOptions) {
      const { name, ...body } = req.secret;
      const s = await call('PATCH', `${name}?updateMask=${encodeURIComponent(req.updateMask.paths.join(','))}`, body, opts);
      return [{ name: s.name, etag: s.etag, annotations: s.annotations ?? {} }];
    },
    async addSecretVersion(req: { parent: string; payload: { data: Buffer; dataCrc32c?: number } }, opts?: CallOptions) {
      const payload: Json = { data: Buffer.from(req.payload.data).toString('base64') };
      if (req.payload.dataCrc32c !== undefined) payload.dataCrc32c = String(req.payload.dataCrc32c);
      return [version(await call('POST', `${req.parent}:addVersion`, { payload }, opts))];
    },
    async listSecretVersions(req: { parent: string; filter?: string }, opts?: CallOptions) {
      const out: Json[] = [];
      let page = '';
      do {
        const q = new URLSearchParams({ pageSize: '25000', ...(req.filter ? { filter: req.filter } : {}), ...(page ? { pageToken: page } : {}) });
        const r = await call('GET', `${req.parent}/versions?${q.toString()}`, undefined, opts);
        out.push(...((r.versions ?? []) as Json[]).map(version));
        page = typeof r.nextPageToken === 'string' ? r.nextPageToken : '';
      } while (page);
      return [out, null, {}];
    },
    async destroySecretVersion(req: { name: string }, opts?: CallOptions) {
      return [version(await call('POST', `${req.name}:destroy`, {}, opts))];
    },
    close: async () => undefined,
  };
  return client as unknown as SecretManagerServiceClient;
}

const METADATA_TOKEN = 'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token';
const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

/**
 * Access tokens for the REST API, cached until a minute before they expire: from the metadata
 * server on Google Cloud (Cloud Run, GCE), else from Application Default Credentials.
 */
export function googleAccessToken(): () => Promise<string> {
  let cached: { token: string; until: number } | undefined;
  let adc: Promise<{ getAccessToken(): Promise<string | null | undefined> }> | undefined;
  return async () => {
    if (cached && Date.now() < cached.until) return cached.token;
    if (process.env.METADATA_SERVER_DETECTION !== 'none') {
      try {
        const res = await send(METADATA_TOKEN, 'GET', { 'Metadata-Flavor': 'Google' }, undefined, 1_000);
        if (res.status === 200) {
          const j = JSON.parse(res.text) as { access_token: string; expires_in: number };
          cached = { token: j.access_token, until: Date.now() + (j.expires_in - 60) * 1000 };
          return j.access_token;
        }
      } catch {
        // Not on Google Cloud: Application Default Credentials below.
      }
    }
    adc ??= import('google-auth-library').then((m) => new m.GoogleAuth({ scopes: [SCOPE] }));
    const t = await (await adc).getAccessToken();
    if (!t) throw new RestError(Status.UNAVAILABLE, 'no Google credentials (metadata server or Application Default Credentials)');
    cached = { token: t, until: Date.now() + 5 * 60_000 };
    return t;
  };
}
