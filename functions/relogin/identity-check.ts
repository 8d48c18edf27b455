/**
 * The callback's identity check (I7): the new pair must belong to the pinned account — by the
 * access token's claims (uid, cid, aid) and by a read-only `GET /port/v1/users/me` that Saxo's
 * OpenAPI gateway answers for that token. Either disagreeing is "the wrong account".
 */
import { checkPin, checkUsersMe, type IdentityPin, type SaxoEnvironment, type UsersMe } from '../../core/identity.js';
import { fetchUsersMe } from '../../core/saxo/users-me.js';

export type IdentityOutcome =
  | { ok: true; me: UsersMe; call: string }
  | { ok: false; wrongAccount: boolean; reason: string };

export async function verifyIdentity(o: {
  pin: IdentityPin;
  accessToken: string;
  environment: SaxoEnvironment;
  openapiBaseUrl: string;
  fetch?: typeof fetch | undefined;
}): Promise<IdentityOutcome> {
  const byClaims = checkPin(o.pin, o.accessToken, o.environment);
  if (!byClaims.ok) return { ok: false, wrongAccount: true, reason: byClaims.reason };
  const r = await fetchUsersMe(o.openapiBaseUrl, o.accessToken, { fetch: o.fetch });
  if (!r.ok) return { ok: false, wrongAccount: false, reason: r.reason };
  const byCall = checkUsersMe(o.pin, r.me);
  if (!byCall.ok) return { ok: false, wrongAccount: true, reason: byCall.reason };
  return { ok: true, me: r.me, call: `HTTP 200, ${typeof r.me.Name === 'string' ? 'user found' : 'answered'}` };
}
