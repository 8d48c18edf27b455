/**
 * The one decision function (Vault-Agent's reconciler, made pure): given what each source holds
 * right now, say what must happen. No IO, no clock reads: callers pass `now`.
 * Used by the VM agent (all sources), the cloud function (secret only) and `status`.
 */
import type { CacheRead, Room, SecretRead } from './ports.js';
import { compareFreshness, pairId, type TokenSet } from './token.js';

export type SecretView =
  | { kind: 'absent' } // standalone: no Secret Manager configured
  | { kind: 'unknown' } // configured, not consulted this round
  | { kind: 'unavailable' } // configured, did not answer
  | { kind: 'read'; read: SecretRead | undefined }; // answered (undefined: no enabled version)

export interface View {
  now: number;
  cache: CacheRead;
  /** The newest pair this process has seen (agent state file, or memory). */
  known?: TokenSet | undefined;
  secret: SecretView;
  /**
   * pairId()s of refresh tokens another refresher announced as spent (TOKEN_CONSUMED): the fence.
   * Such a pair is never presented, never written to the bots' cache, never pushed.
   */
  consumed?: ReadonlySet<string> | undefined;
  /** Room for a successor (the agent's journal and data dir); absent = not this caller's concern. */
  room?: Room | undefined;
}

export interface Policy {
  /** Refresh when no more than this remains of the newest access token. */
  refreshThresholdMs: number;
  /** Warn when the refresh token itself has no more than this left. */
  refreshTokenAlertMs: number;
}

export type Health = 'fresh' | 'due' | 'expired' | 'login_required';
export type Origin = 'cache' | 'known' | 'secret';

export interface Plan {
  /** The newest usable pair across all sources, and where it came from. */
  best?: TokenSet | undefined;
  origin?: Origin | undefined;
  /** The cache is missing, corrupt, or older than `best`: rewrite it (undo a stale writer, I2/I6). */
  writeCache: boolean;
  /** The agent's own record is behind `best`. */
  updateKnown: boolean;
  /** Secret Manager answered and holds something older than `best` (or nothing): push `best` up. */
  pushSecret: boolean;
  /** `best` is within the threshold and its refresh token may still be alive (and the successor has room). */
  refresh: boolean;
  /** Nothing may be presented (due or forced): a successor would have nowhere to go (why: the path and free space). */
  noRoom?: string | undefined;
  health: Health;
  /** Milliseconds left on `best`'s access / refresh token (negative when past). */
  accessLeftMs?: number | undefined;
  refreshLeftMs?: number | undefined;
  /** The refresh token is close to dying and nobody has refreshed: page someone early. */
  refreshTokenExpiring: boolean;
  /** Problems worth a log line (corrupt inputs, stale writers). Never contain token text. */
  notes: string[];
  /**
   * Sources holding the known pair with a later expiry than recorded (a hand edit, a writer with a
   * wrong clock): not believed, the earlier expiry stands and those sources are put right
   * (WARNING `expiry_moved`; docs/DESIGN.md "Server time").
   */
  expiryMoved?: Origin[] | undefined;
  /** `best`'s refresh token was announced as spent elsewhere (the fence): wait for its successor. */
  consumed?: boolean | undefined;
}

interface Candidate {
  token: TokenSet;
  origin: Origin;
}

export function decide(view: View, policy: Policy): Plan {
  const notes: string[] = [];
  const candidates: Candidate[] = [];
  const expiryMoved: Origin[] = [];
  const believed = (t: TokenSet, origin: Origin): TokenSet => {
    const b = believedExpiry(t, view.known);
    if (b.moved) expiryMoved.push(origin);
    return b.token;
  };
  const cacheOk = view.cache.kind === 'ok' ? believed(view.cache.token, 'cache') : undefined;
  if (cacheOk) candidates.push({ token: cacheOk, origin: 'cache' });
  else if (view.cache.kind === 'corrupt') notes.push(`cache ${view.cache.unusable ? 'unusable' : 'corrupt'}: ${view.cache.reason}`);
  else if (view.cache.kind === 'unreadable') notes.push(`cache unreadable: ${view.cache.reason}`);
  if (view.known) candidates.push({ token: view.known, origin: 'known' });
  const secretToken = view.secret.kind === 'read' ? view.secret.read?.token : undefined;
  if (view.secret.kind === 'read' && view.secret.read && !view.secret.read.token) {
    notes.push(`secret version ${view.secret.read.version} unusable: ${view.secret.read.error ?? 'corrupt'}`);
  }
  const secretOk = secretToken ? believed(secretToken, 'secret') : undefined;
  if (secretOk) candidates.push({ token: secretOk, origin: 'secret' });

  // Newest wins; on a tie prefer the source earlier in this order (no needless writes).
  let best: Candidate | undefined;
  for (const c of candidates) if (!best || compareFreshness(c.token, best.token) > 0) best = c;

  if (!best) {
    return {
      writeCache: false,
      updateKnown: false,
      pushSecret: false,
      refresh: false,
      health: 'login_required',
      refreshTokenExpiring: false,
      notes: [...notes, 'no token in any source'],
    };
  }

  const b = best.token;
  const cacheToken = cacheOk;
  const writeCache = !cacheToken || compareFreshness(b, cacheToken) > 0 || expiryMoved.includes('cache');
  // Stale writer: the cache went behind what this process already knew. (Behind a newer secret
  // version is the normal hand-off from the cloud, not worth a warning.)
  if (cacheToken && writeCache && view.known && compareFreshness(view.known, cacheToken) > 0) {
    notes.push('cache holds an older pair than the newest known (stale writer undone)');
  }
  const updateKnown = !view.known || compareFreshness(b, view.known) > 0;
  const pushSecret = view.secret.kind === 'read' && (secretBehind(b, secretOk) || expiryMoved.includes('secret'));

  // The consumed fence: what another refresher spent is no one's to present, hand out or push;
  // its successor arrives with the secret or a push.
  const consumed = view.consumed !== undefined && view.consumed.size > 0 && view.consumed.has(pairId(b.refreshToken));

  const accessLeftMs = b.accessExpiresAt - view.now;
  const refreshLeftMs = b.refreshExpiresAt !== undefined ? b.refreshExpiresAt - view.now : undefined;
  const refreshDead = refreshLeftMs !== undefined && refreshLeftMs <= 0;
  // Due when the access token is inside the threshold — or when the refresh token itself would die
  // first (a server answering a refresh life shorter than the access life): the chain is what counts.
  const due = accessLeftMs <= policy.refreshThresholdMs || (refreshLeftMs !== undefined && refreshLeftMs <= policy.refreshThresholdMs);

  let health: Health;
  if (refreshDead) health = 'login_required';
  else if (accessLeftMs <= 0) health = 'expired';
  else if (due) health = 'due';
  else health = 'fresh';

  // A refresh token about to die matters only if nothing will refresh it in time: flag it when the
  // access token is not yet due (a due token gets refreshed this round anyway).
  const refreshTokenExpiring =
    !refreshDead && refreshLeftMs !== undefined && refreshLeftMs <= policy.refreshTokenAlertMs && !due;

  // Durable before interpreted (docs/DESIGN.md): never present without a place for the answer.
  const noRoom = view.room && !view.room.ok ? view.room.reason : undefined;
  return {
    best: b,
    origin: best.origin,
    writeCache: writeCache && !consumed,
    updateKnown,
    pushSecret: pushSecret && !consumed,
    refresh: due && !refreshDead && !consumed && noRoom === undefined,
    noRoom,
    health,
    accessLeftMs,
    refreshLeftMs,
    refreshTokenExpiring,
    notes,
    ...(expiryMoved.length ? { expiryMoved } : {}),
    ...(consumed ? { consumed } : {}),
  };
}

/** Slack for a rewrite of the same pair (a bot's naive local time keeps whole seconds). */
const EXPIRY_MOVE_SLACK_MS = 1000;

/**
 * docs/DESIGN.md "Server time": an expiry only moves later with a new refresh token. `t` holding the
 * `known` pair's refresh token with a later access or refresh expiry is not believed: the earlier
 * (recorded) expiries stand. A hand edit to 2099 or a writer with a clock hours ahead otherwise
 * stops every refresh while the real token dies.
 */
export function believedExpiry(t: TokenSet, known: TokenSet | undefined): { token: TokenSet; moved: boolean } {
  if (!known || known.refreshToken !== t.refreshToken) return { token: t, moved: false };
  const accessMoved = t.accessExpiresAt > known.accessExpiresAt + EXPIRY_MOVE_SLACK_MS;
  const refreshMoved =
    known.refreshExpiresAt !== undefined && t.refreshExpiresAt !== undefined && t.refreshExpiresAt > known.refreshExpiresAt + EXPIRY_MOVE_SLACK_MS;
  if (!accessMoved && !refreshMoved) return { token: t, moved: false };
  return {
    token: {
      ...t,
      accessExpiresAt: Math.min(t.accessExpiresAt, known.accessExpiresAt),
      refreshExpiresAt: refreshMoved ? known.refreshExpiresAt : t.refreshExpiresAt,
    },
    moved: true,
  };
}

/**
 * The secret must be given `best`: it holds nothing, an older pair, or `best` under another
 * number. The last case follows a bot's own save (its copy carries no number of ours) or a pair
 * this host numbered while Secret Manager was behind: storing our number keeps every host
 * numbering on from the same generation, so announcements stay comparable.
 */
export function secretBehind(best: TokenSet, secret: TokenSet | undefined): boolean {
  if (!secret) return true;
  const c = compareFreshness(best, secret);
  if (c !== 0) return c > 0;
  return best.generation !== undefined && secret.generation !== best.generation;
}

/** The cloud function's view: only the secret matters. */
export function decideCloud(now: number, read: SecretRead | undefined, cloudThresholdMs: number): Plan {
  return decide(
    { now, cache: { kind: 'missing' }, known: undefined, secret: { kind: 'read', read } },
    { refreshThresholdMs: cloudThresholdMs, refreshTokenAlertMs: 0 },
  );
}

/** The WARNING for `expiryMoved` (agent and `status` say the same). */
export function expiryMovedText(where: Origin[]): string {
  return `The ${where.join(' and ')} holds the known pair with a later expiry than it was issued with (no new refresh token): not believed, the earlier expiry stands and is written back`;
}
