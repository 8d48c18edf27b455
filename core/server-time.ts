/**
 * Server time, not local time, for expiries (docs/DESIGN.md "Server time"). Pure arithmetic over
 * Saxo's HTTP `Date` header and the local clock: the instant a pair's lifetimes count from, and
 * how far the local clock is from the server's. No IO, no clock reads: callers pass the instants.
 */

/** A skew beyond this is worth a WARNING (`clock_skew`), `status` and `doctor` say so, and the agent's decisions correct for it. */
export const SKEW_WARN_MS = 30_000;
/** The Date header has whole seconds: the server's clock read somewhere in [date, date + 1 s). */
const DATE_RESOLUTION_MS = 1000;
// A Date outside these years is not a clock, it is a broken header (HTTP dates before 2000 or far
// in the future would turn every expiry into nonsense).
const MIN_PLAUSIBLE = Date.UTC(2000, 0, 1);
const MAX_PLAUSIBLE = Date.UTC(2200, 0, 1);

export interface ExchangeTiming {
  /** The local clock when the request went out and when the answer was in. */
  sentAt: number;
  receivedAt: number;
  /** Saxo's `Date` header as sent (null or undefined when there was none). */
  serverDate?: string | null | undefined;
  /**
   * The latest instant the new pair can have been issued whatever the clocks say: the presented
   * refresh token's death (Saxo accepted it, so it was alive). Undefined when unknown (a bot's pair).
   */
  notAfter?: number | undefined;
  /**
   * How far the machine's wall clock is from the clock `sentAt`/`receivedAt` were read on (a clock
   * already corrected by a known skew, core/clock.ts `localSkewMs`): the skew reported is the
   * machine's own.
   */
  appliedSkewMs?: number | undefined;
}

export interface IssueTime {
  /** The instant the pair's lifetimes count from: never later than the server issued it (as far as the inputs tell). */
  issuedAt: number;
  /** Local minus server time in ms (positive: this host is ahead); undefined without a usable Date header. */
  skewMs?: number | undefined;
  /** The least skew consistent with the Date header's 1 s resolution and the request's duration. */
  minAbsSkewMs?: number | undefined;
  /** Where `issuedAt` came from. */
  basis: 'server' | 'local';
  /** Why the server's time could not be used (no header, unparseable or implausible header). */
  problem?: string | undefined;
}

/** The Date header as epoch ms (whole seconds), or a reason it cannot be used. */
export function parseServerDate(v: string | null | undefined): { ok: true; ms: number } | { ok: false; reason: string } {
  if (v === null || v === undefined || v.trim() === '') return { ok: false, reason: 'no Date header' };
  const t = v.trim();
  // RFC 9110 IMF-fixdate is what servers send; Date.parse also takes the obsolete forms. A bare
  // number or an ISO string is not an HTTP date (Date.parse would take "7" as the year 2007).
  if (!/^[A-Za-z]{3},? /.test(t) && !/^[A-Za-z]+, /.test(t)) return { ok: false, reason: 'Date header is not an HTTP date' };
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) return { ok: false, reason: 'Date header is not an HTTP date' };
  if (ms < MIN_PLAUSIBLE || ms > MAX_PLAUSIBLE) return { ok: false, reason: 'Date header is implausible' };
  return { ok: true, ms };
}

/**
 * Local minus server time from a Date header read between `sentAt` and `receivedAt`: the server's
 * clock read somewhere in [dateMs, dateMs + 1 s) while ours read somewhere in [sentAt, receivedAt].
 * `estimateMs` is the middle of what is consistent with both, `minAbsMs` the least skew that is.
 */
export function skewOf(p: { dateMs: number; sentAt: number; receivedAt: number }): { estimateMs: number; minAbsMs: number } {
  const lo = p.sentAt - (p.dateMs + DATE_RESOLUTION_MS);
  const hi = p.receivedAt - p.dateMs;
  return { estimateMs: Math.round((lo + hi) / 2), minAbsMs: lo > 0 ? lo : hi < 0 ? -hi : 0 };
}

/**
 * The instant a new pair's lifetimes count from.
 * - With a usable Date header: the server's time less its 1 s resolution (`date − 1 s`): whatever
 *   the local clock says, the stored expiry is never later than the server granted.
 * - Without one: the local clock (the caller's, corrected by a known skew) when the request went
 *   out, but never later than `notAfter` (the presented refresh token was alive when Saxo took it),
 *   which bounds a local clock that is ahead by an unknown amount. With a Date header the server's
 *   word wins over that bound: it accepted the token, so our record of its death was the wrong one.
 */
export function issueTime(t: ExchangeTiming): IssueTime {
  const bound = (at: number) => (t.notAfter !== undefined && Number.isFinite(t.notAfter) ? Math.min(at, t.notAfter) : at);
  const date = parseServerDate(t.serverDate);
  if (!date.ok) return { issuedAt: bound(t.sentAt), basis: 'local', problem: date.reason };
  const applied = t.appliedSkewMs ?? 0;
  const { estimateMs, minAbsMs } = skewOf({ dateMs: date.ms, sentAt: t.sentAt + applied, receivedAt: t.receivedAt + applied });
  return { issuedAt: date.ms - DATE_RESOLUTION_MS, skewMs: estimateMs, minAbsSkewMs: minAbsMs, basis: 'server' };
}

/** A skew worth a WARNING: even its least possible value is beyond SKEW_WARN_MS. */
export function skewMatters(t: Pick<IssueTime, 'skewMs' | 'minAbsSkewMs'>): boolean {
  return t.skewMs !== undefined && (t.minAbsSkewMs ?? Math.abs(t.skewMs)) > SKEW_WARN_MS;
}

/** "this host is 7200 s ahead of Saxo" — for WARNINGs, `status` and `doctor`. */
export function describeSkew(skewMs: number, other = 'Saxo'): string {
  const s = Math.round(Math.abs(skewMs) / 1000);
  return `this host's clock is ${s} s ${skewMs >= 0 ? 'ahead of' : 'behind'} ${other}`;
}

/** A skew measured at an exchange, as the agent records it (state file) and shows it. */
export interface ClockSkew {
  /** Local minus server time, ms (positive: this host is ahead). */
  ms: number;
  /** When it was measured (or last adjusted by a clock jump), on the corrected clock. */
  at: number;
  /** 'saxo': a Date header at an exchange; 'jump': adjusted for a wall-clock jump since. */
  by: 'saxo' | 'jump';
}

/**
 * What an exchange's timing is worth saying: the skew to record, a WARNING when it matters (the
 * bots read `token_expiry` by this host's clock, which the agent cannot correct for them), or a
 * note that the server's time was not available.
 */
export function serverTimeNote(t: IssueTime, at: number): { skew?: ClockSkew | undefined; warning?: string | undefined; info?: string | undefined } {
  if (t.skewMs === undefined) return { info: `Saxo's time unknown (${t.problem ?? 'no Date header'}): expiries computed from this host's clock` };
  const skew: ClockSkew = { ms: t.skewMs, at, by: 'saxo' };
  if (!skewMatters(t)) return { skew };
  return {
    skew,
    warning:
      `Clock skew: ${describeSkew(t.skewMs)}; token expiries are computed from Saxo's time, ` +
      "but the bots read token_expiry by this host's clock and may misjudge it until the clock is fixed (sudo timedatectl set-ntp true)",
  };
}
