/**
 * `token-keeper login`: authorization code + PKCE (S256) + state on a loopback redirect, then the
 * new pair is stored where the system reads it: the secret (and announced, so every agent picks
 * it up) and/or the local cache under the bots' flock. Only 127.0.0.1 is ever bound.
 */
import { createServer, type Server } from 'node:http';
import { spawn } from 'node:child_process';
import { loadConfig } from '../core/config.js';
import { commandLogFormat, createLogger, type Logger } from '../core/log.js';
import type { TokenEndpoint } from '../core/ports.js';
import { buildAuthorizationUrl, createPkce, randomState } from '../core/saxo/authorize.js';
import { createSaxoClient } from '../core/saxo/client.js';
import { fromResponse, type TokenSet } from '../core/token.js';
import { connectCloud } from './wiring.js';
import { errorText } from '../core/errors.js';
import { importRescued, LoginError, preflight, rescue, storeLogin, type LoginTarget } from './login-store.js';

export { LoginError };

export interface LoginFlowOptions {
  authBaseUrl: string;
  appKey: string;
  appSecret?: string | undefined;
  redirectUri: string;
  timeoutMs: number;
  saxo: TokenEndpoint;
  /** Receives the authorize URL (open a browser, print it, or follow it in a test). */
  onUrl: (url: string) => void;
  logger: Logger;
  now?: () => number;
  expiryMarginMs?: number;
}

/** Runs the browser half and the code exchange. Resolves with the new pair (generation unset). */
export async function performLogin(o: LoginFlowOptions): Promise<TokenSet> {
  const redirect = new URL(o.redirectUri);
  if (redirect.protocol !== 'http:' || !['localhost', '127.0.0.1'].includes(redirect.hostname)) {
    throw new LoginError(`SAXO_REDIRECT_URI must be an http://localhost or http://127.0.0.1 URL, got ${redirect.origin}`);
  }
  const pkce = createPkce();
  const state = randomState();
  let server: Server | undefined;
  const code = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new LoginError(`No browser callback within ${Math.round(o.timeoutMs / 1000)} s`)), o.timeoutMs);
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', o.redirectUri);
      if (url.pathname !== redirect.pathname) {
        res.writeHead(404).end('not found');
        return;
      }
      const page = (status: number, text: string) =>
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html><title>token-keeper</title><p>${text}</p>`);
      if (url.searchParams.get('state') !== state) {
        o.logger.warn('login_state_mismatch', 'Rejected a callback with a wrong state parameter');
        page(400, 'State mismatch: this callback does not belong to the running login. Close this tab.');
        return;
      }
      const error = url.searchParams.get('error');
      const got = url.searchParams.get('code');
      clearTimeout(timer);
      if (error || !got) {
        page(400, 'Saxo did not return an authorization code.');
        reject(new LoginError(`Authorization failed: ${(error ?? 'no code').slice(0, 60)}`));
        return;
      }
      page(200, 'Signed in. token-keeper is storing the new token; you can close this tab.');
      resolve(got);
    });
    server.on('error', (err) => {
      clearTimeout(timer);
      reject(new LoginError(`Cannot listen on ${redirect.host}: ${err.message}`));
    });
    server.listen(Number(redirect.port || 80), '127.0.0.1', () => {
      o.onUrl(
        buildAuthorizationUrl({ authBaseUrl: o.authBaseUrl, appKey: o.appKey, redirectUri: o.redirectUri, state, codeChallenge: pkce.challenge }),
      );
    });
  }).finally(() => {
    server?.closeAllConnections?.();
    server?.close();
  });
  o.logger.addSecret(code);
  const now = o.now ?? Date.now;
  const start = now();
  const res = await o.saxo.exchangeCode(code, pkce.verifier, {
    appKey: o.appKey,
    appSecret: o.appSecret,
    redirectUri: o.redirectUri,
    deadline: start + 60_000,
  });
  const t = fromResponse(res, now(), undefined, 'login', o.expiryMarginMs);
  return { ...t, generation: undefined, appKey: o.appKey, appSecret: o.appSecret };
}

function openBrowser(url: string): boolean {
  const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'cmd' : 'xdg-open';
  if (process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) return false;
  try {
    const args = process.platform === 'win32' ? ['/c', 'start', '', url] : [url];
    spawn(cmd, args, { stdio: 'ignore', detached: true }).on('error', () => undefined).unref();
    return true;
  } catch {
    return false;
  }
}

export { storeLogin, type LoginTarget };

export async function runLogin(o: { force?: boolean; open: boolean; timeout: string; target: string; import?: string }): Promise<number> {
  const config = loadConfig();
  const logger = createLogger({ format: commandLogFormat(config.logFormat), component: 'login' });
  logger.addSecret(config.appSecret);
  if (!['auto', 'secret', 'cache', 'both'].includes(o.target)) {
    process.stderr.write(`token-keeper login: --target must be auto, secret, cache or both\n`);
    return 2;
  }
  if (o.import) return importRescued(config, o.import, o.target as LoginTarget, o.force === true, logger);
  let appKey = config.appKey;
  let appSecret = config.appSecret;
  if (!appKey && config.gcp) {
    // As the bots do: the app credentials travel with the token in the secret payload.
    try {
      const cloud = await connectCloud(config, logger);
      try {
        const latest = await cloud?.store.latest();
        appKey = latest?.token?.appKey;
        appSecret ??= latest?.token?.appSecret;
      } finally {
        await cloud?.close();
      }
    } catch (err) {
      logger.warn('login_app_key_lookup_failed', `Could not read the app key from the secret: ${errorText(err)}`);
    }
  }
  if (!appKey) {
    process.stderr.write('token-keeper login: set SAXO_APP_KEY (and SAXO_APP_SECRET for a confidential app)\n');
    return 2;
  }
  // Number('abc') is NaN and setTimeout(NaN) fires at once: reject it instead of "timing out" instantly.
  const timeoutSec = Number(o.timeout);
  if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) {
    process.stderr.write('token-keeper login: --timeout must be a positive number of seconds\n');
    return 2;
  }
  try {
    await preflight(config, o.target as LoginTarget, logger);
  } catch (err) {
    process.stderr.write(`token-keeper login: ${err instanceof LoginError ? err.message : errorText(err)}\n`);
    return 2;
  }
  let token: TokenSet;
  try {
    token = await performLogin({
      authBaseUrl: config.authBaseUrl,
      appKey,
      appSecret,
      redirectUri: config.redirectUri,
      timeoutMs: timeoutSec * 1000,
      saxo: createSaxoClient({ authBaseUrl: config.authBaseUrl, httpTimeoutMs: config.httpTimeoutMs, logger }),
      logger,
      expiryMarginMs: config.expiryMarginMs,
      onUrl: (url) => {
        const opened = o.open && openBrowser(url);
        process.stderr.write(`${opened ? 'Opened your browser. If it did not open, visit' : 'Open this URL in a browser'}:\n\n  ${url}\n\nWaiting for the redirect to ${config.redirectUri} …\n`);
      },
    });
  } catch (err) {
    logger.error('login_failed', `Login failed: ${errorText(err)}`);
    return 1;
  }
  try {
    await storeLogin(config, token, o.target as LoginTarget, o.force === true, logger);
    if (process.stdout.isTTY) process.stdout.write('\n' + (await import('./cli-human.js')).tokenSummary('Login complete: new token stored.', token));
    return 0;
  } catch (err) {
    const file = await rescue(config, token);
    logger.error('login_store_failed', `Login succeeded but storing failed: ${errorText(err)}. The new pair is saved in ${file} (0600)`, { file });
    process.stderr.write(`\nThe new token could not be stored (${errorText(err)}).\nIt is saved in ${file} (mode 0600). Once the problem is fixed, import it:\n\n  npx token-keeper login --import ${file}\n\n`);
    return 1;
  }
}
