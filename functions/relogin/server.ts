/**
 * The relogin service: the only public endpoint (Cloud Run, invoker IAM check off; the refresher
 * stays IAM-protected). A node:http server so tests serve it locally. Every answer carries the
 * security headers; every request passes the rate limits; every refusal is a WARNING with its reason.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorText } from '../../core/errors.js';
import type { SaxoEnvironment } from '../../core/identity.js';
import { callback, done } from './callback.js';
import { clientAddress, DEFAULT_RATE_LIMITS, RateLimiter, readForm, securityHeaders, sendHtml } from './http.js';
import { confirm, resend, showLink } from './link-pages.js';
import { messagePage } from './pages.js';
import type { ReloginDeps, RequestContext } from './types.js';

export function reloginHandler(deps: ReloginDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const now = deps.now ?? Date.now;
  const limiter = new RateLimiter(deps.rateLimits ?? DEFAULT_RATE_LIMITS, now);
  const origins = Object.values(deps.chains).map((c) => new URL(c.authBaseUrl).origin);
  const headers = securityHeaders([...new Set(origins)]);

  return (req, res) => {
    const address = clientAddress(req, deps.trustForwarded === true);
    // Only the path is read from the request line; the host part is never used to build anything.
    const url = new URL(req.url ?? '/', 'http://relogin.invalid');
    const route = `${req.method ?? 'GET'} ${url.pathname.replace(/\/l\/[^/]+/, '/l/…')}`;
    const ctx: RequestContext = {
      deps,
      now: now(),
      address,
      refuse(status, reason, page, fields = {}) {
        deps.logger.warn('relogin_refused', `Re-login request refused: ${reason}`, { reason, route, address, status, ...fields });
        sendHtml(res, status, page, headers);
      },
    };
    const limited = limiter.take(address);
    if (limited) {
      ctx.refuse(429, `rate_limited_${limited}`, messagePage({ title: 'Too many requests', lines: ['Wait a minute and try again.'] }));
      return;
    }
    handle(ctx, req, res, url, headers).catch((err: unknown) => {
      deps.logger.error('relogin_failed', `Re-login request failed: ${errorText(err)}`, { route });
      if (!res.headersSent) sendHtml(res, 500, messagePage({ title: 'Something went wrong', lines: ['Nothing was stored. Try again in a minute.'] }), headers);
      else res.end();
    });
  };
}

async function handle(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, url: URL, headers: Record<string, string>): Promise<void> {
  const p = url.pathname;
  const get = req.method === 'GET' || req.method === 'HEAD';
  const post = req.method === 'POST';
  let m: RegExpExecArray | null;
  if (get && (m = /^\/l\/([^/]+)$/.exec(p))) return showLink(ctx, res, m[1]!, headers);
  if (post && (m = /^\/l\/([^/]+)\/resend$/.exec(p))) return resend(ctx, res, m[1]!, headers);
  if (post && p === '/confirm') return confirm(ctx, res, (await readForm(req)).get('id') ?? '', headers);
  if (get && (m = /^\/callback\/(sim|live)$/.exec(p))) return callback(ctx, req, res, m[1]!.toUpperCase() as SaxoEnvironment, url, headers);
  if (get && p === '/done') {
    const page = await done(ctx, req);
    return sendHtml(res, page.status, page.html, headers);
  }
  if (get && p === '/healthz') return sendHtml(res, 200, 'ok', headers);
  ctx.refuse(404, 'not_found', messagePage({ title: 'Not found', lines: ['There is nothing here.'] }));
}

export interface ReloginServer {
  readonly server: Server;
  /** http://host:port as bound (tests); the service's own URLs come from deps.baseUrl. */
  readonly url: string;
  close(): Promise<void>;
}

export async function createReloginServer(deps: ReloginDeps, o: { port?: number; host?: string } = {}): Promise<ReloginServer> {
  const server = createServer(reloginHandler(deps));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${o.host ?? '127.0.0.1'}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
