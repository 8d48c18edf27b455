/**
 * One HTTP exchange on node:http / node:https, answered as it arrived: status, headers, body text.
 * No redirect is followed, nothing is decoded but UTF-8, no retry. Used instead of `fetch` by the
 * Saxo client and the agent's clock probe: the first `fetch` loads undici and its WebAssembly HTTP
 * parser, ~10 MB of the standalone agent's resident memory (docs/BENCHMARKS.md "Memory"); node:http
 * parses in the native llhttp already in the binary. node:https is loaded only for an https URL.
 *
 * Both are loaded with `require`, not `import`: on Node 24 an ESM import of node:http builds the
 * module's ESM facade, which reads every export — including the lazy `WebSocket`/`CloseEvent`/
 * `MessageEvent` getters that load undici (fetch, WebSocket, http2, tls, zlib, worker_threads):
 * ≈ 6 MB of the standalone agent for nothing (docs/BENCHMARKS.md "Agent memory on Node 24";
 * nodejs/node#59686).
 */
import { createRequire } from 'node:module';
import type { IncomingMessage, OutgoingHttpHeaders, RequestOptions } from 'node:http';

const require = createRequire(import.meta.url);
type HttpModule = Pick<typeof import('node:http'), 'request'>;

export interface HttpAnswer {
  status: number;
  /** A response header by (lower-case) name; several values are joined with ", ". */
  header(name: string): string | null;
  text: string;
}

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST';
  headers?: OutgoingHttpHeaders;
  body?: string;
  /** Aborts the exchange (connection, headers or body): the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export async function httpRequest(url: string | URL, r: HttpRequest): Promise<HttpAnswer> {
  const u = typeof url === 'string' ? new URL(url) : url;
  const { request } = require(u.protocol === 'https:' ? 'node:https' : 'node:http') as HttpModule;
  r.signal?.throwIfAborted();
  const body = r.body === undefined ? undefined : Buffer.from(r.body, 'utf8');
  const headers: OutgoingHttpHeaders = { ...r.headers, ...(body ? { 'content-length': String(body.length) } : {}) };
  return new Promise<HttpAnswer>((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      r.signal?.removeEventListener('abort', onAbort);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onAbort = () => {
      const reason: unknown = r.signal?.reason;
      fail(reason ?? new Error('aborted'));
      req.destroy();
    };
    const opts: RequestOptions = { method: r.method, headers };
    const req = request(u, opts, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', fail);
      res.on('close', () => {
        if (!res.complete) return fail(Object.assign(new Error('connection closed before the answer was complete'), { code: 'ECONNRESET' }));
        if (settled) return;
        settled = true;
        r.signal?.removeEventListener('abort', onAbort);
        const h = res.headers;
        resolve({
          status: res.statusCode ?? 0,
          header: (name) => {
            const v = h[name.toLowerCase()];
            return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
          },
          text: Buffer.concat(chunks).toString('utf8'),
        });
      });
    });
    req.on('error', fail);
    r.signal?.addEventListener('abort', onAbort, { once: true });
    req.end(body);
  });
}
