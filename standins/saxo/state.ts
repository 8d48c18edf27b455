/**
 * The stand-in's OAuth bookkeeping, free of HTTP: single-use rotating refresh tokens, access tokens,
 * authorization codes with PKCE, and the counters invariant tests assert on (I1: reusedPresentations
 * must stay 0). Tokens are never stored in stats — only short fingerprints.
 */
import { createHash, randomBytes } from 'node:crypto';

export interface IssuedPair {
  access_token: string;
  token_type: 'Bearer';
  refresh_token: string;
  expires_in: number;
  refresh_token_expires_in: number;
}

export interface StandinStats {
  refreshes: number;
  codeExchanges: number;
  /** Refresh tokens that reached grant processing (faults answered before it are not counted). */
  presentations: number;
  /** Presentations of an already-consumed refresh token. */
  reusedPresentations: number;
  invalidGrants: number;
  /** Fingerprints of the reused tokens, never the tokens. */
  reusedTokens: string[];
  faultsServed: number;
  authorizations: number;
}

export type GrantResult = { ok: true; pair: IssuedPair } | { ok: false; status: number; error: string; description: string };

/** A Saxo login the stand-in's sign-in page offers; its keys become the access token's claims. */
export interface StandinAccount {
  userId: string;
  userKey: string;
  clientKey: string;
  name: string;
}

export const DEFAULT_ACCOUNT: StandinAccount = { userId: 'standin-user', userKey: 'standin-user-key', clientKey: 'standin-client', name: 'Stand-in User' };

interface RefreshRecord {
  clientId: string | undefined;
  expiresAt: number;
  consumedAt?: number;
  account: StandinAccount;
}

interface CodeRecord {
  clientId: string;
  redirectUri: string;
  challenge: string;
  expiresAt: number;
  account: StandinAccount;
}

/** JWT-shaped (header.claims.signature) like Saxo's; the signature part keeps the `sa_` shape leak scans look for. */
function jwtAccessToken(account: StandinAccount, clientId: string | undefined, expSec: number): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = { uid: account.userKey, cid: account.clientKey, aid: clientId ?? 'standin-app', exp: expSec, jti: randomBytes(8).toString('hex') };
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.${randomToken('sa_')}`;
}

export const fingerprintToken = (t: string): string => createHash('sha256').update(t).digest('hex').slice(0, 12);
const randomToken = (prefix: string): string => `${prefix}${randomBytes(36).toString('base64url')}`;
const CODE_LIFETIME_MS = 120_000;

export class StandinState {
  accessLifetimeSec: number;
  refreshLifetimeSec: number;
  private readonly refreshTokens = new Map<string, RefreshRecord>();
  private readonly accessTokens = new Map<string, { expiresAt: number; clientId: string | undefined; account: StandinAccount }>();
  private readonly codes = new Map<string, CodeRecord>();
  readonly counters: StandinStats = {
    refreshes: 0,
    codeExchanges: 0,
    presentations: 0,
    reusedPresentations: 0,
    invalidGrants: 0,
    reusedTokens: [],
    faultsServed: 0,
    authorizations: 0,
  };

  constructor(
    private readonly now: () => number,
    lifetimes: { accessLifetimeSec: number; refreshLifetimeSec: number },
    private readonly hooks: {
      /** Token text (the soak draws it from its seeded RNG so a run replays exactly). */
      mint?: (prefix: 'sa_' | 'sr_') => string;
      /** Sees every pair issued, whoever asked (ground truth for the soak and the test rigs). */
      onIssue?: (pair: IssuedPair) => void;
    } = {},
  ) {
    this.accessLifetimeSec = lifetimes.accessLifetimeSec;
    this.refreshLifetimeSec = lifetimes.refreshLifetimeSec;
  }

  /** A fresh valid pair, as the token endpoint would issue it. */
  issue(clientId?: string, account: StandinAccount = DEFAULT_ACCOUNT): IssuedPair {
    const now = this.now();
    const mint = this.hooks.mint;
    const refresh = mint ? mint('sr_') : randomToken('sr_');
    const accessExpiresAt = now + this.accessLifetimeSec * 1000;
    const access = mint ? mint('sa_') : jwtAccessToken(account, clientId, Math.floor(accessExpiresAt / 1000));
    this.accessTokens.set(access, { expiresAt: accessExpiresAt, clientId, account });
    this.refreshTokens.set(refresh, { clientId, expiresAt: now + this.refreshLifetimeSec * 1000, account });
    const pair: IssuedPair = {
      access_token: access,
      token_type: 'Bearer',
      refresh_token: refresh,
      expires_in: this.accessLifetimeSec,
      refresh_token_expires_in: this.refreshLifetimeSec,
    };
    this.hooks.onIssue?.(pair);
    return pair;
  }

  /** Was this refresh token ever consumed (presented successfully)? */
  isConsumed(token: string): boolean {
    return this.refreshTokens.get(token)?.consumedAt !== undefined;
  }

  private invalid(description: string): GrantResult {
    this.counters.invalidGrants++;
    return { ok: false, status: 400, error: 'invalid_grant', description };
  }

  /** grant_type=refresh_token: consume once, rotate. */
  refresh(token: string, clientId: string): GrantResult {
    this.counters.presentations++;
    const rec = this.refreshTokens.get(token);
    if (!rec) return this.invalid('unknown refresh token');
    if (rec.consumedAt !== undefined) {
      this.counters.reusedPresentations++;
      this.counters.reusedTokens.push(fingerprintToken(token));
      return this.invalid('refresh token already used');
    }
    if (rec.clientId !== undefined && rec.clientId !== clientId) return this.invalid('refresh token issued to another client');
    if (this.now() >= rec.expiresAt) return this.invalid('refresh token expired');
    rec.consumedAt = this.now();
    this.counters.refreshes++;
    return { ok: true, pair: this.issue(rec.clientId ?? clientId, rec.account) };
  }

  /** GET /authorize: remember the PKCE challenge behind a single-use code. */
  authorize(clientId: string, redirectUri: string, challenge: string, account: StandinAccount = DEFAULT_ACCOUNT): string {
    const code = randomToken('sc_');
    this.codes.set(code, { clientId, redirectUri, challenge, expiresAt: this.now() + CODE_LIFETIME_MS, account });
    this.counters.authorizations++;
    return code;
  }

  /** grant_type=authorization_code. The code is spent whatever the outcome (RFC 6749 §4.1.2). */
  exchangeCode(code: string, clientId: string, redirectUri: string, verifier: string): GrantResult {
    const rec = this.codes.get(code);
    this.codes.delete(code);
    if (!rec) return this.invalid('unknown or used authorization code');
    if (this.now() >= rec.expiresAt) return this.invalid('authorization code expired');
    if (rec.clientId !== clientId) return this.invalid('code issued to another client');
    if (rec.redirectUri !== redirectUri) return this.invalid('redirect_uri mismatch');
    const challenge = createHash('sha256').update(verifier, 'ascii').digest('base64url');
    if (!verifier || challenge !== rec.challenge) return this.invalid('PKCE verification failed');
    this.counters.codeExchanges++;
    return { ok: true, pair: this.issue(clientId, rec.account) };
  }

  isValidAccessToken(token: string): boolean {
    return this.accountOf(token) !== undefined;
  }

  /** The account a live access token belongs to (what `users/me` answers). */
  accountOf(token: string): StandinAccount | undefined {
    const rec = this.accessTokens.get(token);
    return rec !== undefined && this.now() < rec.expiresAt ? rec.account : undefined;
  }

  stats(): StandinStats {
    return { ...this.counters, reusedTokens: [...this.counters.reusedTokens] };
  }
}
