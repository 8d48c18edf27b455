/**
 * The messages on the token topic: TOKEN_ROTATED (a new version; its schema is shared by the event
 * bus, the agent's state file and the memory double) and TOKEN_CONSUMED (a refresh token was
 * spent; carries its pairId() only — docs/DESIGN.md "Consumed announcements"). No token material (I5).
 * Agents built before TOKEN_CONSUMED existed parse it with parseTokenRotated: it fails on `type`,
 * so they log `event_malformed` and ack it — ignored, never acted on.
 */
import { z } from 'zod/v3';
import { describeIssues } from '../codec.js';
import type { TokenConsumedEvent, TokenRotatedEvent } from '../ports.js';

const isoInstant = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'not an ISO 8601 instant');

export const tokenRotatedEventSchema = z.object({
  type: z.literal('TOKEN_ROTATED'),
  version: z.string().regex(/^projects\/[^/]+\/secrets\/[^/]+\/versions\/\d+$/),
  generation: z.number().int().nonnegative(),
  accessExpiresAt: isoInstant,
  source: z.string().max(200),
  publishedAt: isoInstant,
});

export const tokenConsumedEventSchema = z
  .object({
    type: z.literal('TOKEN_CONSUMED'),
    pairId: z.string().regex(/^[0-9a-f]{16}$/),
    generation: z.number().int().nonnegative(),
    source: z.string().max(200),
    publishedAt: isoInstant,
  })
  // Exactly these keys: nothing else (a token, by mistake) may ride along.
  .strict();

function parseJson(data: Buffer): { ok: true; value: unknown } | { ok: false; reason: string } {
  try {
    return { ok: true, value: JSON.parse(data.toString('utf8')) };
  } catch {
    return { ok: false, reason: `not valid JSON (${data.length} bytes)` };
  }
}

/** Parse a message body; the reason never echoes the body. */
export function parseTokenRotated(data: Buffer): { ok: true; event: TokenRotatedEvent } | { ok: false; reason: string } {
  const j = parseJson(data);
  if (!j.ok) return j;
  const r = tokenRotatedEventSchema.safeParse(j.value);
  if (!r.success) return { ok: false, reason: `invalid fields: ${describeIssues(r.error)}` };
  return { ok: true, event: r.data };
}

export type ParsedTokenEvent =
  | { ok: true; event: TokenRotatedEvent }
  | { ok: true; consumed: TokenConsumedEvent }
  | { ok: false; reason: string };

/** Either message type; anything else (an unknown type included) is malformed. */
export function parseTokenEvent(data: Buffer): ParsedTokenEvent {
  const j = parseJson(data);
  if (!j.ok) return j;
  const type = (j.value as { type?: unknown } | null)?.type;
  if (type === 'TOKEN_CONSUMED') {
    const r = tokenConsumedEventSchema.safeParse(j.value);
    if (!r.success) return { ok: false, reason: `invalid fields: ${describeIssues(r.error)}` };
    return { ok: true, consumed: r.data };
  }
  const r = tokenRotatedEventSchema.safeParse(j.value);
  if (!r.success) return { ok: false, reason: `invalid fields: ${describeIssues(r.error)}` };
  return { ok: true, event: r.data };
}
