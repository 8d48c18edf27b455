/**
 * The one decision function (Vault-Agent's reconciler, made pure): given what each source holds
 * right now and the gates (everything else that decides whether the single-use refresh token is
 * presented), say what must happen — the side effects as flags and one action. No IO, no clock
 * reads: callers pass `now`. The agent decides once per trigger (its first look at the local
 * sources is `assess()`, the same facts without an action: is the secret worth a read?), the refresh
 * session once per attempt under the lock, the function before its lease; `status` and `doctor` call
 * it read-only.
 */
import type { CacheRead, Room, SecretRead } from './ports.js';
import { cloudMove, type Patience } from './tiers.js';
import { compareFreshness, pairId, type TokenSet } from './token.js';
import { believedExpiry, secretBehind } from './believed.js';

export { believedExpiry, expiryMovedText, secretBehind } from './believed.js';

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
  /** Everything else that decides whether the refresh token is presented (absent: no such gate). */
  gates?: Gates | undefined;
}

/**
 * The rest of the decision's input: what the caller knows beyond the sources. Read-only callers
 * (`status`, `doctor`) pass none. docs/ARCHITECTURE.md "One refresh, as code walks it".
 */
export interface Gates {
  /**
   * 'trigger': may a refresh session start (the agent's check)? 'attempt': present now — under the
   * locks, or the function's look before its lease. Default 'trigger'.
   */
  stage?: 'trigger' | 'attempt' | undefined;
  /** An operator asked for a refresh whatever the expiry (`refresh --force`). */
  force?: boolean | undefined;
  /** This session presented this pair at an earlier attempt (it backed off since). */
  presented?: TokenSet | undefined;
  /**
   * Saxo just answered `presented` with invalid_grant (recover()'s looks): a newer pair is adopted;
   * else, announced superseded → wait for it; else login required. Never presented again.
   */
  refused?: boolean | undefined;
  /**
   * pairId()s Saxo refused (invalid_grant with nothing newer) or consumed without a successor:
   * never presented again.
   */
  rejected?: ReadonlySet<string> | undefined;
  /** I7: does the pair belong to the pinned account (agent/pin.ts; ALERTs once per refused pair)? */
  pinAccepts?: ((t: TokenSet) => boolean) | undefined;
  /** A newer version was announced but cannot be read yet: this pair is consumed (agent/upstream.ts). */
  superseded?: ((t: TokenSet) => boolean) | undefined;
  /** The cloud's patience with the lower tiers after it missed its own window (core/tiers.ts cloudMove). */
  cloud?: Patience | undefined;
  /**
   * Set on a VM that is not the primary: when Secret Manager last came back from an outage, and the
   * push grace. Within it the primary may still be pushing what it refreshed during the outage, and
   * presenting the secret's pair would reuse it (docs/DESIGN.md "Several VMs").
   */
  notPrimary?: { secretBackAt: number; pushGraceMs: number } | undefined;
}

/** Why nothing is presented now, though the pair is due (or forced). */
export type WaitReason = 'consumed_elsewhere' | 'superseded_unreadable' | 'awaiting_lower_tiers' | 'awaiting_primary' | 'no_room';
export type LoginReason = 'no_token' | 'refresh_token_expired' | 'invalid_grant';

/** The one thing to do about presenting the refresh token (the side effects ride on the Plan's flags). */
export type Action =
  /** Present `pair`'s refresh token (at 'trigger': open a session, which decides again under the lock). */
  | { kind: 'present'; pair: TokenSet; lastChance?: boolean | undefined }
  /** Someone else refreshed while this session backed off: take their pair, present nothing. */
  | { kind: 'adopt'; pair: TokenSet; origin: Origin | undefined }
  | { kind: 'fresh'; pair: TokenSet; origin: Origin | undefined }
  | { kind: 'wait'; reason: WaitReason; pair: TokenSet }
  /** Due (or forced, or retried) with nowhere for a successor: a failure, said loudly. */
  | { kind: 'no_room'; reason: string; pair: TokenSet }
  | { kind: 'login_required'; reason: LoginReason; pair?: TokenSet | undefined };

/** A present action: only the code holding one may call TokenEndpoint.refresh (test/unit/architecture.test.ts). */
export type PresentAction = Extract<Action, { kind: 'present' }>;

export interface Policy {
  /** Refresh when no more than this remains of the newest access token. */
  refreshThresholdMs: number;
  /** Warn when the refresh token itself has no more than this left. */
  refreshTokenAlertMs: number;
}

export type Health = 'fresh' | 'due' | 'expired' | 'login_required';
export type Origin = 'cache' | 'known' | 'secret';

/** What the sources hold, judged without the gates: decide()'s facts, and the agent's first look. */
export type Assessment = Omit<Plan, 'action'>;

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
  /** What to do about presenting, given the gates (docs/ARCHITECTURE.md "One refresh, as code walks it"). */
  action: Action;
}

interface Candidate {
  token: TokenSet;
  origin: Origin;
}

export function decide(view: View, policy: Policy): Plan {
  const a = assess(view, policy);
  return { ...a, action: a.best ? chooseAction({ ...a, best: a.best }, view) : { kind: 'login_required', reason: 'no_token' } };
}

/**
 * The facts of the decision: the newest pair and its origin, the flags, health and deadlines — no
 * action, no gates consulted. decide() is this plus chooseAction(); the agent's reconciler calls it
 * alone to ask whether the secret is worth a read before its one decide() of the trigger.
 */
export function assess(view: View, policy: Policy): Assessment {
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
  const refresh = due && !refreshDead && !consumed && noRoom === undefined;
  return {
    best: b,
    origin: best.origin,
    writeCache: writeCache && !consumed,
    updateKnown,
    pushSecret: pushSecret && !consumed,
    refresh,
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

/** Every rule about presenting the single-use refresh token, in the order they are weighed. */
function chooseAction(f: Assessment & { best: TokenSet }, view: View): Action {
  const g = view.gates ?? {};
  const { best: b, origin } = f;
  const due = f.health === 'due' || f.health === 'expired';
  if ((g.stage ?? 'trigger') === 'trigger') {
    // The agent's check: open a session (which weighs every gate under the lock) when due or forced.
    if (!f.refresh && !g.force) {
      if (f.health === 'login_required') return { kind: 'login_required', reason: 'refresh_token_expired', pair: b };
      if (f.consumed) return { kind: 'wait', reason: 'consumed_elsewhere', pair: b };
      // Due with nowhere for a successor: no session (the start-up WARNING and `status` say why).
      if (f.noRoom !== undefined && due) return { kind: 'wait', reason: 'no_room', pair: b };
      return { kind: 'fresh', pair: b, origin };
    }
    if (g.notPrimary && view.now - g.notPrimary.secretBackAt < g.notPrimary.pushGraceMs) return { kind: 'wait', reason: 'awaiting_primary', pair: b };
    return { kind: 'present', pair: b };
  }
  if (g.presented && compareFreshness(b, g.presented) > 0) return { kind: 'adopt', pair: b, origin };
  // Saxo refused `presented` and nothing newer is anywhere: the chain lives only if a newer version was announced.
  if (g.refused) {
    const refused = g.presented ?? b;
    return g.superseded?.(refused) ? { kind: 'wait', reason: 'superseded_unreadable', pair: refused } : { kind: 'login_required', reason: 'invalid_grant', pair: refused };
  }
  // Asked once, in this order (the pin ALERTs once per refused pair; an expired announcement says so once).
  const refusal = g.rejected?.has(pairId(b.refreshToken)) || (g.pinAccepts && !g.pinAccepts(b)) ? 'rejected' : g.superseded?.(b) ? 'superseded' : undefined;
  if (refusal === 'rejected') return { kind: 'login_required', reason: 'invalid_grant', pair: b };
  if (f.health === 'login_required' && !g.force) return { kind: 'login_required', reason: 'refresh_token_expired', pair: b };
  if (f.consumed) return { kind: 'wait', reason: 'consumed_elsewhere', pair: b };
  // decide() withholds `refresh` when there is no room; a due (or forced, or retried) pair then fails loudly.
  if (f.noRoom !== undefined && (due || g.force || g.presented)) return { kind: 'no_room', reason: f.noRoom, pair: b };
  if (!f.refresh && !g.force && !g.presented) return { kind: 'fresh', pair: b, origin };
  if (refusal === 'superseded') return { kind: 'wait', reason: 'superseded_unreadable', pair: b };
  if (g.cloud && !g.force && !g.presented) {
    const move = cloudMove(f.accessLeftMs ?? 0, f.refreshLeftMs, g.cloud);
    if (move === 'await_lower_tiers') return { kind: 'wait', reason: 'awaiting_lower_tiers', pair: b };
    if (move === 'last_chance') return { kind: 'present', pair: b, lastChance: true };
  }
  return { kind: 'present', pair: b };
}

/** The cloud function's view: only the secret matters. */
export function decideCloud(now: number, read: SecretRead | undefined, cloudThresholdMs: number, gates?: Gates): Plan {
  return decide(
    { now, cache: { kind: 'missing' }, known: undefined, secret: { kind: 'read', read }, gates },
    { refreshThresholdMs: cloudThresholdMs, refreshTokenAlertMs: 0 },
  );
}
