/**
 * The identity pin (docs/DESIGN.md "Re-login from a phone", I7): the account a chain belongs to —
 * Saxo's user key (`uid`), client key (`cid`) and app (`aid`) from the access token's JWT claims,
 * plus the environment. Pure. Claims are decoded WITHOUT verifying the signature: we only compare
 * them with a pin taken from an earlier token of the same chain (and, at a phone login, with a
 * read-only `users/me` answered by Saxo itself for the new access token).
 */
export type SaxoEnvironment = 'SIM' | 'LIVE';

export interface IdentityPin {
  userKey: string;
  clientKey: string;
  appKey: string;
  environment: SaxoEnvironment;
}

export interface AccessClaims {
  uid?: string | undefined;
  cid?: string | undefined;
  aid?: string | undefined;
  /** Epoch seconds, when present. */
  exp?: number | undefined;
}

/** The claims of a JWT-shaped access token; undefined when it is not one (never throws). */
export function decodeClaims(accessToken: string): AccessClaims | undefined {
  const parts = accessToken.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const json: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (!json || typeof json !== 'object') return undefined;
    const o = json as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 200 ? v : undefined);
    return { uid: str(o.uid), cid: str(o.cid), aid: str(o.aid), exp: typeof o.exp === 'number' ? o.exp : undefined };
  } catch {
    return undefined;
  }
}

/** A pin from a token's claims, or why there is none. */
export function pinFromClaims(accessToken: string, environment: SaxoEnvironment): { pin: IdentityPin } | { reason: string } {
  const c = decodeClaims(accessToken);
  if (!c) return { reason: 'the access token is not a JWT with claims' };
  if (!c.uid || !c.cid || !c.aid) return { reason: 'the access token lacks uid, cid or aid claims' };
  return { pin: { userKey: c.uid, clientKey: c.cid, appKey: c.aid, environment } };
}

export type PinCheck = { ok: true } | { ok: false; reason: string };

/**
 * Does this access token belong to the pinned account? The reason names which part differs, never
 * a value (user keys are not secrets, but a refusal line need not carry them).
 */
export function checkPin(pin: IdentityPin, accessToken: string, environment: SaxoEnvironment): PinCheck {
  if (pin.environment !== environment) return { ok: false, reason: `environment ${environment} is not the pinned ${pin.environment}` };
  const c = decodeClaims(accessToken);
  if (!c) return { ok: false, reason: 'the access token carries no claims' };
  if (c.aid !== pin.appKey) return { ok: false, reason: 'the token was issued to another app (aid)' };
  if (c.uid !== pin.userKey) return { ok: false, reason: 'the token belongs to another user (uid)' };
  if (c.cid !== pin.clientKey) return { ok: false, reason: 'the token belongs to another client (cid)' };
  return { ok: true };
}

/** What `GET /port/v1/users/me` answered for the new access token (read-only identity call). */
export interface UsersMe {
  UserKey?: unknown;
  ClientKey?: unknown;
  UserId?: unknown;
  Name?: unknown;
}

export function checkUsersMe(pin: IdentityPin, me: UsersMe): PinCheck {
  if (me.UserKey !== pin.userKey) return { ok: false, reason: 'users/me names another user' };
  if (me.ClientKey !== pin.clientKey) return { ok: false, reason: 'users/me names another client' };
  return { ok: true };
}

/** The pin as the token secret's annotations (not secret: keys, not credentials). */
export const PIN_ANNOTATION = {
  userKey: 'tk-pin-user-key',
  clientKey: 'tk-pin-client-key',
  appKey: 'tk-pin-app-key',
  environment: 'tk-pin-environment',
} as const;

export function pinToAnnotations(pin: IdentityPin): Record<string, string> {
  return {
    [PIN_ANNOTATION.userKey]: pin.userKey,
    [PIN_ANNOTATION.clientKey]: pin.clientKey,
    [PIN_ANNOTATION.appKey]: pin.appKey,
    [PIN_ANNOTATION.environment]: pin.environment,
  };
}

export function pinFromAnnotations(a: Record<string, string> | undefined): IdentityPin | undefined {
  if (!a) return undefined;
  const userKey = a[PIN_ANNOTATION.userKey];
  const clientKey = a[PIN_ANNOTATION.clientKey];
  const appKey = a[PIN_ANNOTATION.appKey];
  const environment = a[PIN_ANNOTATION.environment];
  if (!userKey || !clientKey || !appKey || (environment !== 'SIM' && environment !== 'LIVE')) return undefined;
  return { userKey, clientKey, appKey, environment };
}

/** "ab…yz" — enough for a person to recognise their account, not enough to name it elsewhere. */
export function maskUser(name: string): string {
  if (name.length <= 4) return '•'.repeat(name.length);
  return `${name.slice(0, 2)}${'•'.repeat(Math.min(6, name.length - 4))}${name.slice(-2)}`;
}
