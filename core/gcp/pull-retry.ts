/**
 * What a streaming pull does when its stream ends, as @google-cloud/pubsub's subscriber does it:
 * transient codes reconnect at once with jittered backoff; codes that mean "this subscription
 * cannot be pulled" (deleted, a role removed, detached, bad credentials) do not heal by retrying
 * fast — they need an operator. Those raise one ALERT naming the subscription and the fix, show in
 * `status`, and are retried slowly in case someone restores the subscription (docs/DESIGN.md
 * "Pub/Sub subscription").
 */
import type { Logger } from '../log.js';
import type { SubscriptionProblem } from '../ports.js';

export type { SubscriptionProblem } from '../ports.js';

const NOT_RETRYABLE: Readonly<Record<number, string>> = {
  3: 'INVALID_ARGUMENT',
  5: 'NOT_FOUND',
  7: 'PERMISSION_DENIED',
  9: 'FAILED_PRECONDITION',
  12: 'UNIMPLEMENTED',
  16: 'UNAUTHENTICATED',
};

/** The default pause between attempts while the subscription cannot be pulled. */
export const BROKEN_RETRY_MS = 5 * 60_000;

/** The status name when `code` ends the fast reconnect loop; undefined for a transient code. */
export function nonRetryableCode(code: number): string | undefined {
  return NOT_RETRYABLE[code];
}

/** The operator's line for a non-retryable end of the stream on `subscription` (of `topic`). */
export function subscriptionFix(code: string, subscription: string, topic: string): string {
  switch (code) {
    case 'NOT_FOUND':
      return `subscription ${subscription} does not exist (deleted?): recreate it on ${topic} — terraform apply in infra/terraform`;
    case 'PERMISSION_DENIED':
      return `this VM's service account may not pull ${subscription}: grant it roles/pubsub.subscriber on the subscription — terraform apply in infra/terraform`;
    case 'FAILED_PRECONDITION':
      return `subscription ${subscription} cannot be pulled (detached from ${topic}?): recreate it — terraform apply in infra/terraform`;
    case 'UNAUTHENTICATED':
      return `Pub/Sub rejected this VM's credentials for ${subscription}: check the VM's service account (token-keeper doctor)`;
    default:
      return `Pub/Sub refused the pull on ${subscription} (${code}): check TOKEN_SUBSCRIPTION_ID and the subscription (token-keeper doctor)`;
  }
}

/** One subscription's standing: ALERT once per episode (and per code), NOTICE when it is restored. */
export class SubscriptionHealth {
  private current: SubscriptionProblem | undefined;

  constructor(
    private readonly o: { subscription: string; topic: string; logger?: Logger | undefined; brokenRetryMs: number; now?: () => number },
  ) {}

  get problem(): SubscriptionProblem | undefined {
    return this.current;
  }

  /** The stream ended with a non-retryable `code`: say so (once) and return the pause before the next attempt. */
  broken(code: string, details: string | undefined): number {
    const { subscription, topic, logger, brokenRetryMs } = this.o;
    const delay = jittered(brokenRetryMs);
    if (this.current?.code === code) {
      logger?.warn('event_subscription_error', `Pub/Sub subscription still cannot be pulled (${code}); retrying slowly`, { subscription, code, retryInMs: delay });
      return delay;
    }
    const problem = subscriptionFix(code, subscription, topic);
    this.current = { subscription, code, problem, since: this.current?.since ?? (this.o.now ?? Date.now)() };
    logger?.alert('event_subscription_broken', `Pub/Sub subscription cannot be pulled: ${problem}. TOKEN_ROTATED events are not received; retrying every ${Math.round(brokenRetryMs / 1000)} s`, {
      subscription,
      code,
      error: details,
      retryInMs: delay,
    });
    return delay;
  }

  /** A stream stayed open (or delivered) again. */
  restored(): void {
    if (!this.current) return;
    this.o.logger?.notice('event_subscription_restored', 'Pub/Sub subscription can be pulled again; listening for TOKEN_ROTATED', {
      subscription: this.o.subscription,
      wasBroken: this.current.code,
    });
    this.current = undefined;
  }
}

/** Full-jitter-ish backoff: half the base, plus up to the other half at random. */
export function jittered(baseMs: number, random: () => number = Math.random): number {
  return Math.round(baseMs / 2 + (random() * baseMs) / 2);
}
