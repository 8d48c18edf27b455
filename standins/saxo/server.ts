/**
 * A Saxo OAuth stand-in: a real node:http server on 127.0.0.1 that behaves like
 * {sim,live}.logonvalidation.net for our purposes (201 successes, single-use rotating refresh
 * tokens, PKCE code flow, a bearer-checked OpenAPI endpoint), plus fault injection and the
 * bookkeeping invariant tests need. Used by integration tests, the soak tools and `demo`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod/v3';
import { FaultQueue, faultSchema, HTML_503, type QueuedFault, type SaxoFault } from './faults.js';
import { clientCredentials, readBody, send } from './http.js';
import { oddBody } from './odd.js';
import { DEFAULT_ACCOUNT, StandinState, type GrantResult, type IssuedPair, type StandinAccount, type StandinStats } from './state.js';
import { signInPage } from './sign-in.js';

export type { IssuedPair, StandinAccount, StandinStats } from './state.js';
export { faultSchema, type SaxoFault } from './faults.js';

export interface SaxoStandinOptions {
  port?: number;
  accessLifetimeSec?: number;
  refreshLifetimeSec?: number;
  successStatus?: 200 | 201;
  /** client_id → secret; null = public/PKCE client. Omitted: any client_id, secret unchecked. */
  clients?: Record<string, string | null>;
  /** Seed one pair at start-up, exposed as `initial`. */
  initialRefreshToken?: boolean;
  /** Epoch ms; injectable so lifetimes are checkable with a fake clock. */
  now?: () => number;
  /** Logins the sign-in page offers (default: one stand-in user). */
  accounts?: StandinAccount[];
  /** 'auto' (default): /authorize signs the first account in at once; 'page': a form to pick one. */
  signIn?: 'auto' | 'page';
  /** Shown on the sign-in page ("SIM", "LIVE"); a stand-in is started per environment. */
  environment?: string;
}

export interface SaxoStandin {
  /** http://127.0.0.1:PORT — use as SAXO_AUTH_BASE_URL. */
  readonly url: string;
  readonly port: number;
  /** The pair seeded at start-up when `initialRefreshToken` was set. */
  readonly initial?: IssuedPair | undefined;
  /** Queue faults for the next /token requests (each applies `times` times, default 1). */
  inject(fault: SaxoFault | SaxoFault[]): void;
  clearFaults(): void;
  setLifetimes(l: { accessLifetimeSec?: number; refreshLifetimeSec?: number }): void;
  stats(): StandinStats;
  /** Seed a fresh valid pair directly (no HTTP, not counted as a refresh). */
  issue(clientId?: string, account?: StandinAccount): IssuedPair;
  isValidAccessToken(token: string): boolean;
  close(): Promise<void>;
}

export async function startSaxoStandin(opts: SaxoStandinOptions = {}): Promise<SaxoStandin> {
  const now = opts.now ?? Date.now;
  const state = new StandinState(now, {
    accessLifetimeSec: opts.accessLifetimeSec ?? 1200,
    refreshLifetimeSec: opts.refreshLifetimeSec ?? 3600,
  });
  const successStatus = opts.successStatus ?? 201;
  const clients = opts.clients;
  const faults = new FaultQueue();
  const timers = new Set<NodeJS.Timeout>();

  const inject = (f: SaxoFault | SaxoFault[]) => faults.inject(f);
  const nextFault = (): QueuedFault | undefined => {
    const f = faults.next();
    if (f) state.counters.faultsServed++;
    return f;
  };
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  /** The authenticated client, or undefined when client authentication fails. */
  function authenticate(req: IncomingMessage, form: URLSearchParams): { id: string } | undefined {
    const { id, secret } = clientCredentials(req, form);
    if (!id) return undefined;
    if (!clients) return { id };
    if (!(id in clients)) return undefined;
    const expected = clients[id];
    if (expected === null || expected === undefined) return { id };
    return secret === expected ? { id } : undefined;
  }

  async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = new URLSearchParams(await readBody(req));
    const fault = nextFault();
    if (fault) {
      switch (fault.kind) {
        case 'html503':
          return send(res, 503, HTML_503, { 'content-type': 'text/html; charset=utf-8' });
        case 'bare429':
          return send(res, 429, 'Too Many Requests');
        case 'json500':
          return send(res, 500, { error: 'server_error', error_description: 'Internal error' });
        case 'invalid_grant':
          state.counters.invalidGrants++;
          return send(res, 400, { error: 'invalid_grant' });
        case 'reset':
          req.socket.destroy();
          return;
        case 'delay':
          // Like a slow Saxo: the grant is processed (and the token consumed) even if the
          // client has given up meanwhile — exactly the case I1 must survive.
          await wait(fault.delayMs);
          break;
        case 'odd2xx':
          break; // answered below, after the grant
      }
    }
    const client = authenticate(req, form);
    if (!client) return send(res, 401, { error: 'invalid_client', error_description: 'Client authentication failed' });
    let result: GrantResult;
    switch (form.get('grant_type')) {
      case 'refresh_token': {
        const rt = form.get('refresh_token');
        if (!rt) return send(res, 400, { error: 'invalid_request', error_description: 'refresh_token missing' });
        result = state.refresh(rt, client.id);
        break;
      }
      case 'authorization_code': {
        const code = form.get('code');
        const redirectUri = form.get('redirect_uri');
        if (!code || !redirectUri) return send(res, 400, { error: 'invalid_request', error_description: 'code and redirect_uri required' });
        result = state.exchangeCode(code, client.id, redirectUri, form.get('code_verifier') ?? '');
        break;
      }
      default:
        return send(res, 400, { error: 'unsupported_grant_type' });
    }
    if (!result.ok) return send(res, result.status, { error: result.error, error_description: result.description });
    if (res.destroyed || req.socket.destroyed) return; // client gone: the pair is lost, as with Saxo
    if (fault?.kind === 'odd2xx') return send(res, successStatus, ...oddBody(result.pair, fault.odd ?? {}));
    send(res, successStatus, result.pair);
  }

  const accounts = opts.accounts?.length ? opts.accounts : [DEFAULT_ACCOUNT];

  /** GET shows the sign-in page (or signs in at once); POST is the page's form picking an account. */
  async function authorize(req: IncomingMessage, url: URL, res: ServerResponse): Promise<void> {
    const posted = req.method === 'POST' ? new URLSearchParams(await readBody(req)) : undefined;
    const q = posted ?? url.searchParams;
    const clientId = q.get('client_id');
    const redirectUri = q.get('redirect_uri');
    const challenge = q.get('code_challenge');
    let redirect: URL | undefined;
    try {
      redirect = redirectUri ? new URL(redirectUri) : undefined;
    } catch {
      redirect = undefined;
    }
    const problems = [
      q.get('response_type') !== 'code' && 'response_type must be code',
      (!clientId || (clients && !(clientId in clients))) && 'unknown client_id',
      !redirect && 'redirect_uri must be an absolute URL',
      !(challenge && /^[A-Za-z0-9_-]{43,128}$/.test(challenge)) && 'code_challenge missing or malformed',
      q.get('code_challenge_method') !== 'S256' && 'code_challenge_method must be S256',
    ].filter(Boolean);
    if (problems.length || !redirect || !clientId || !challenge || !redirectUri) {
      return send(res, 400, { error: 'invalid_request', error_description: problems.join('; ') });
    }
    if (!posted && opts.signIn === 'page') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(signInPage({ environment: opts.environment ?? 'SIM', accounts, params: q }));
      return;
    }
    const account = posted ? accounts.find((a) => a.userId === posted.get('user')) : accounts[0];
    if (!account) return send(res, 400, { error: 'access_denied', error_description: 'unknown user' });
    const code = state.authorize(clientId, redirectUri, challenge, account);
    redirect.searchParams.set('code', code);
    const st = q.get('state');
    if (st !== null) redirect.searchParams.set('state', st);
    res.writeHead(posted ? 303 : 302, { location: redirect.toString(), 'cache-control': 'no-store' });
    res.end();
  }

  async function admin(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const bodyText = req.method === 'POST' ? await readBody(req) : '';
    const json = (): unknown => JSON.parse(bodyText || 'null');
    if (path === '/_admin/stats' && req.method === 'GET') return send(res, 200, state.stats());
    if (path === '/_admin/faults' && req.method === 'DELETE') {
      faults.clear();
      return send(res, 200, { queued: 0 });
    }
    if (path === '/_admin/faults' && req.method === 'POST') {
      const parsed = z.union([faultSchema, z.array(faultSchema)]).safeParse(json());
      if (!parsed.success) return send(res, 400, { error: 'invalid_fault', error_description: parsed.error.message });
      inject(parsed.data);
      return send(res, 200, { queued: faults.queued() });
    }
    if (path === '/_admin/lifetimes' && req.method === 'POST') {
      const l = z.object({ accessLifetimeSec: z.number().positive().optional(), refreshLifetimeSec: z.number().positive().optional() }).safeParse(json());
      if (!l.success) return send(res, 400, { error: 'invalid_lifetimes' });
      setLifetimes(l.data);
      return send(res, 200, { accessLifetimeSec: state.accessLifetimeSec, refreshLifetimeSec: state.refreshLifetimeSec });
    }
    if (path === '/_admin/issue' && req.method === 'POST') {
      const b = json() as { client_id?: unknown } | null;
      return send(res, 200, state.issue(typeof b?.client_id === 'string' ? b.client_id : undefined));
    }
    send(res, 404, { error: 'not_found' });
  }

  function setLifetimes(l: { accessLifetimeSec?: number; refreshLifetimeSec?: number }): void {
    if (l.accessLifetimeSec !== undefined) state.accessLifetimeSec = l.accessLifetimeSec;
    if (l.refreshLifetimeSec !== undefined) state.refreshLifetimeSec = l.refreshLifetimeSec;
  }

  const server = createServer((req, res) => {
    // Every answer carries the stand-in's own clock, as Saxo's carry Saxo's: the client's expiries
    // count from it (docs/DESIGN.md "Server time"), whatever the client's clock says.
    res.setHeader('date', new Date(now()).toUTCString());
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const route = async (): Promise<void> => {
      if (url.pathname === '/token' && req.method === 'POST') return token(req, res);
      if (url.pathname === '/authorize' && (req.method === 'GET' || req.method === 'POST')) return authorize(req, url, res);
      if (url.pathname === '/openapi/port/v1/users/me' && req.method === 'GET') {
        const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
        const who = m?.[1] ? state.accountOf(m[1]) : undefined;
        if (who) return send(res, 200, { ClientKey: who.clientKey, UserKey: who.userKey, UserId: who.userId, Name: who.name });
        return send(res, 401, '', { 'www-authenticate': 'Bearer error="invalid_token"' });
      }
      if (url.pathname.startsWith('/_admin/')) return admin(req, res, url.pathname);
      send(res, 404, { error: 'not_found' });
    };
    route().catch((err: unknown) => {
      if (!res.headersSent && !res.destroyed) send(res, 400, { error: 'invalid_request', error_description: err instanceof Error ? err.message : 'bad request' });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const initial = opts.initialRefreshToken ? state.issue() : undefined;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    initial,
    inject,
    clearFaults: () => faults.clear(),
    setLifetimes,
    stats: () => state.stats(),
    issue: (clientId, account) => state.issue(clientId, account),
    isValidAccessToken: (t) => state.isValidAccessToken(t),
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
