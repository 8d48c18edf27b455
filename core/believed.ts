/**
 * What decide() believes of its sources (docs/DESIGN.md "Server time"): an expiry that moved later
 * without a new refresh token is not believed, and when the secret is behind the newest pair.
 */
import { compareFreshness, type TokenSet } from './token.js';

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

/** The WARNING for `expiryMoved` (agent and `status` say the same). */
export function expiryMovedText(where: readonly ('cache' | 'known' | 'secret')[]): string {
  return `The ${where.join(' and ')} holds the known pair with a later expiry than it was issued with (no new refresh token): not believed, the earlier expiry stands and is written back`;
}
