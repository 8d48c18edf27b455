/**
 * The TOKEN_ROTATED message: its schema and parser, shared by the event bus, the agent's state
 * file (a pending announcement) and the memory double. Carries no token material (I5).
 */
import { z } from 'zod/v3';
import { describeIssues } from '../codec.js';
import type { TokenRotatedEvent } from '../ports.js';

const isoInstant = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'not an ISO 8601 instant');

export const tokenRotatedEventSchema = z.object({
  type: z.literal('TOKEN_ROTATED'),
  version: z.string().regex(/^projects\/[^/]+\/secrets\/[^/]+\/versions\/\d+$/),
  generation: z.number().int().nonnegative(),
  accessExpiresAt: isoInstant,
  source: z.string().max(200),
  publishedAt: isoInstant,
});

/** Parse a message body; the reason never echoes the body. */
export function parseTokenRotated(data: Buffer): { ok: true; event: TokenRotatedEvent } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch {
    return { ok: false, reason: `not valid JSON (${data.length} bytes)` };
  }
  const r = tokenRotatedEventSchema.safeParse(value);
  if (!r.success) return { ok: false, reason: `invalid fields: ${describeIssues(r.error)}` };
  return { ok: true, event: r.data };
}
