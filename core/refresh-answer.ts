/**
 * The step of a refresh session between Saxo's 2xx and the successor being stored
 * (docs/DESIGN.md "Durable before interpreted"): the raw answer goes to the journal first, then the
 * one interpreter (core/grant.ts) reads it, then the local side makes the successor durable. Any
 * 2xx consumed the presented token: with a refresh token it is the successor, whatever else is odd
 * about it; without one the chain has ended and nobody may present the old token again.
 */
import { journalEntry, successorFrom } from './grant.js';
import type { RawAnswer } from './ports.js';
import type { SessionPorts, SessionSettings } from './session.js';
import { secretsOf, withNextGeneration, type TokenSet } from './token.js';

export type Taken =
  | { kind: 'pair'; next: TokenSet; lifetimeSec: number; localError?: Error | undefined; cacheError?: Error | undefined }
  | { kind: 'ended'; why: string };

export async function takeAnswer(
  p: SessionPorts,
  s: SessionSettings,
  answer: { raw: RawAnswer; presented: TokenSet; others: (TokenSet | undefined)[]; issuedAt: number },
): Promise<Taken> {
  const { clock, logger, local } = p;
  const { raw, presented, others } = answer;
  const entry = journalEntry(raw, presented, clock.now(), answer.issuedAt);
  await local?.keep(entry);
  const succ = successorFrom(entry, presented, s.source, s.expiryMarginMs);
  if (succ.kind === 'ended') {
    logger.alert(
      'refresh_token_missing',
      `ALERT: ${succ.why}: the presented refresh token is consumed and nothing follows it; log in before the access token ends (run \`npx token-keeper login\`)`,
      { generation: presented.generation, status: raw.status },
    );
    await local?.ended(presented, succ.kept);
    return { kind: 'ended', why: succ.why };
  }
  if (succ.adjusted.length) {
    logger.warn('lifetime_clamped', `Saxo answered an unusable or implausible token lifetime; stored a bounded one instead (${succ.adjusted.join(', ')})`, {
      clamped: succ.adjusted,
    });
  }
  const next = withNextGeneration(succ.next, presented, ...others);
  logger.addSecret(...secretsOf(next));
  // I3: durable locally first (cache fsync + rename, then the private state), under the flock.
  const { cacheError, stateError } = (await local?.persist(next)) ?? {};
  return { kind: 'pair', next, lifetimeSec: succ.lifetimeSec, localError: stateError ?? cacheError, cacheError };
}
