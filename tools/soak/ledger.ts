/**
 * Ground truth kept outside the system under test: every pair Saxo issued (in issue order), who
 * received it, what was consumed, and every invariant violation seen.
 */
import type { TokenResponse } from '../../core/token.js';

export interface Issued {
  seq: number;
  accessToken: string;
  refreshToken: string;
  issuedAt: number;
  expiresIn: number;
  refreshExpiresAt: number;
  /** A component got the answer (not lost in flight / to a crash). */
  delivered: boolean;
  /** 'ok': presented and answered; 'lost': presented but its successor never reached anyone. */
  consumed?: 'ok' | 'lost' | undefined;
  /** Re-presented by the VM while cut off from the announcement of its successor. */
  partitioned?: boolean | undefined;
}

export interface Violation {
  at: number;
  kind: string;
  detail: string;
}

export class Ledger {
  readonly byRefresh = new Map<string, Issued>();
  readonly list: Issued[] = [];
  readonly violations: Violation[] = [];
  /** Pairs Saxo issued that nobody received (lost responses, crashes between answer and fsync). */
  lostToSaxo = 0;
  /** Re-presentations forced by such a loss (Saxo counts them as reuse; not our violation). */
  lostRepresentations = 0;
  /** Presentations by a bot of a pair a stale-writer script had just planted (the bots' own race). */
  botStaleRepresentations = 0;
  /** Re-presentations by a VM cut off from Secret Manager after the cloud refreshed (see world.present). */
  partitionRepresentations = 0;
  constructor(private readonly now: () => number) {}

  record(res: TokenResponse): void {
    const e: Issued = {
      seq: this.list.length + 1,
      accessToken: res.accessToken,
      refreshToken: res.refreshToken,
      issuedAt: this.now(),
      expiresIn: res.expiresIn,
      refreshExpiresAt: this.now() + (res.refreshExpiresIn ?? 3600) * 1000,
      delivered: false,
    };
    this.list.push(e);
    this.byRefresh.set(e.refreshToken, e);
  }

  seqOf(refreshToken: string | undefined): number | undefined {
    return refreshToken === undefined ? undefined : this.byRefresh.get(refreshToken)?.seq;
  }

  /** The predecessor's successor never reached anyone: the chain ends at `presented`. */
  lose(presented: string | undefined, successor: string | undefined): void {
    this.lostToSaxo++;
    const p = presented ? this.byRefresh.get(presented) : undefined;
    if (p) p.consumed = 'lost';
    const s = successor ? this.byRefresh.get(successor) : undefined;
    if (s) s.delivered = false;
  }

  /** Some component holds a pair Saxo will still refresh. */
  chainAlive(now: number): boolean {
    for (let i = this.list.length - 1; i >= 0 && i >= this.list.length - 50; i--) {
      const e = this.list[i]!;
      if (e.delivered && !e.consumed && e.refreshExpiresAt > now) return true;
    }
    return false;
  }

  violate(at: number, kind: string, detail: string): void {
    this.violations.push({ at, kind, detail });
  }
}
