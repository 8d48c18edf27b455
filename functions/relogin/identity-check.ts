/**
 * The callback's identity check (I7): the new pair must belong to the pinned account — by the
 * access token's claims (uid, cid, aid) and by a read-only `GET /port/v1/users/me` that Saxo's
 * OpenAPI gateway answers for that token. Either disagreeing is "the wrong account".
 */
import { checkPin, checkUsersMe, type IdentityPin, type SaxoEnvironment, type UsersMe } from '../../core/identity.js';

export type IdentityOutcome =
  | { ok: true; me: UsersMe; call: string }
  | { ok: false; wrongAccount: boolean; reason: string };

export async function verifyIdentity(o: {
  pin: IdentityPin;
  accessToken: string;
  environment: SaxoEnvironment;
  openapiBaseUrl: string;
  fetch?: typeof fetch;
  timeoutMs?: number;
}): Promise<IdentityOutcome> {
  const byClaims = checkPin(o.pin, o.accessToken, o.environment);
  if (!byClaims.ok) return { ok: false, wrongAccount: true, reason: byClaims.reason };
  const f = o.fetch ?? fetch;
  let res: Response;
  try {
    res = await f(`${o.openapiBaseUrl.replace(/\/+$/, '')}/port/v1/users/me`, {
      headers: { authorization: `Bearer ${o.accessToken}`, accept: 'application/json' },
      signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
    });
  } catch (err) {
    return { ok: false, wrongAccount: false, reason: `users/me did not answer (${err instanceof Error ? err.name : 'error'})` };
  }
  if (res.status !== 200) return { ok: false, wrongAccount: false, reason: `users/me answered HTTP ${res.status}` };
  let me: UsersMe;
  try {
    me = (await res.json()) as UsersMe;
  } catch {
    return { ok: false, wrongAccount: false, reason: 'users/me answered something that is not JSON' };
  }
  const byCall = checkUsersMe(o.pin, me);
  if (!byCall.ok) return { ok: false, wrongAccount: true, reason: byCall.reason };
  return { ok: true, me, call: `HTTP 200, ${typeof me.Name === 'string' ? 'user found' : 'answered'}` };
}
