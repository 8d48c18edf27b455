/**
 * The read-only identity call: `GET {openapi}/port/v1/users/me` with the access token → UserKey,
 * ClientKey, UserId, Name. Used by `login` (to pin the account) and by the phone re-login (to
 * confirm the new pair's account with Saxo itself). Never throws; errors carry no token.
 */
import type { SaxoEnvironment, UsersMe } from '../identity.js';

/**
 * Saxo's OpenAPI gateway per environment; SAXO_OPENAPI_BASE_URL overrides it. A loopback auth base
 * (the stand-in, the demo) serves users/me under /openapi itself: never the real gateway from a test.
 */
export function openapiBaseUrl(environment: SaxoEnvironment, override?: string, authBaseUrl?: string): string {
  if (override) return override.replace(/\/+$/, '');
  if (authBaseUrl) {
    const u = new URL(authBaseUrl);
    if (u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) return `${authBaseUrl.replace(/\/+$/, '')}/openapi`;
  }
  return environment === 'LIVE' ? 'https://gateway.saxobank.com/openapi' : 'https://gateway.saxobank.com/sim/openapi';
}

export async function fetchUsersMe(
  baseUrl: string,
  accessToken: string,
  o: { fetch?: typeof fetch | undefined; timeoutMs?: number } = {},
): Promise<{ ok: true; me: UsersMe } | { ok: false; reason: string }> {
  const f = o.fetch ?? fetch;
  let res: Response;
  try {
    res = await f(`${baseUrl.replace(/\/+$/, '')}/port/v1/users/me`, {
      headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
      signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
    });
  } catch (err) {
    return { ok: false, reason: `users/me did not answer (${err instanceof Error ? err.name : 'error'})` };
  }
  if (res.status !== 200) return { ok: false, reason: `users/me answered HTTP ${res.status}` };
  try {
    return { ok: true, me: (await res.json()) as UsersMe };
  } catch {
    return { ok: false, reason: 'users/me answered something that is not JSON' };
  }
}
