/**
 * `status`'s one "next:" line: the single command that moves the state on (docs/DESIGN.md "status
 * tells the truth and the next step"). A pure function of what status found, so every state has
 * exactly one answer and a test can walk them all.
 */

/** What status found wrong besides the token's own health, by kind (the text lives in status.ts). */
export type StatusIssue =
  | 'agent_not_running'
  | 'agent_never_seen'
  | 'agent_stale'
  | 'agent_unknown'
  | 'cache_unreadable'
  | 'cache_behind'
  | 'failures'
  | 'holding_back'
  | 'secret_behind'
  | 'secret_unavailable'
  | 'refresh_token_expiring'
  | 'watch_failed'
  | 'subscription_broken'
  | 'expiry_moved'
  | 'clock_skew'
  | 'journal_pending';

export interface NextStepInput {
  health: 'healthy' | 'degraded' | 'refresh_overdue' | 'expired' | 'missing' | 'login_required';
  issues: readonly StatusIssue[];
  /** Seconds of refresh token left, when known. */
  refreshLeftSeconds?: number | undefined;
}

export interface Where {
  /** systemd unit: token-keeper or token-keeper@<chain>. */
  unit: string;
  /** ` --chain NAME` or ''. */
  cliFlags: string;
  cachePath: string;
}

export function nextStep(s: NextStepInput, w: Where): string {
  const cli = (cmd: string) => `npx token-keeper ${cmd}${w.cliFlags}`;
  const has = (i: StatusIssue) => s.issues.includes(i);
  const down = has('agent_not_running') || has('agent_never_seen');
  const start = `sudo systemctl start ${w.unit} (then: journalctl -u ${w.unit} -n 20)`;
  switch (s.health) {
    case 'missing':
    case 'login_required':
      return `${cli('login')} (on a VM without a browser: add --no-open; docs/OPERATIONS.md "Login required")`;
    case 'expired':
      // A live refresh token still renews the pair; past its expiry only a login helps (decide() says login_required then).
      return s.refreshLeftSeconds === undefined || s.refreshLeftSeconds > 0
        ? `${cli('refresh')} (the refresh token is still valid: this renews the pair now)`
        : cli('login');
    case 'refresh_overdue':
      return down ? start : `${cli('refresh')} (the agent should have refreshed by now: see journalctl -u ${w.unit})`;
    case 'degraded':
      if (down) return start;
      if (has('agent_stale')) return `sudo systemctl restart ${w.unit} (its loop has not stamped the state file; journalctl -u ${w.unit} first)`;
      if (has('cache_unreadable')) return `sudo chown <bots-user> ${w.cachePath} (or run status as the bots' user)`;
      if (has('journal_pending')) return `${cli('refresh')} (stores the unfinished refresh from the journal now; the agent does so at its next check)`;
      if (has('clock_skew')) return 'sudo timedatectl set-ntp true (this clock is off from Saxo\'s; then check timedatectl status)';
      if (has('subscription_broken')) return `terraform apply (re-creates the subscription and its roles), then sudo systemctl restart ${w.unit}`;
      if (has('refresh_token_expiring')) return `${cli('refresh')} now, or ${cli('login')} if refreshing fails`;
      if (has('cache_behind') || has('secret_behind')) return `${cli('refresh')} (writes the newest pair everywhere; the agent does so at its next check)`;
      return `${cli('doctor')} (names the failing piece and its fix)`;
    case 'healthy':
      return has('agent_unknown') ? `${cli('doctor')} (whether the agent runs could not be read)` : 'nothing to do';
  }
}
