/**
 * The agent's private record of the newest token it has seen, so that after a restart a stale or
 * corrupt cache is put right from here rather than refreshed with (I2, I3) — and so that a pair
 * Saxo issued survives a cache that cannot be written. Same crash-safe 0600 write as the cache.
 * Format: {version:1, token: <flat encoding>, failures, lastRefresh, agentSeenAt, loginRequired,
 * announce (a TOKEN_ROTATED not yet published), awaiting (why the agent is holding back)}.
 */
import { z } from 'zod/v3';
import { decodeFlat, describeIssues, encodeFlat } from '../core/codec.js';
import { tokenRotatedEventSchema } from '../core/gcp/event-schema.js';
import type { Logger } from '../core/log.js';
import type { SubscriptionProblem, TokenRotatedEvent } from '../core/ports.js';
import type { ClockSkew } from '../core/server-time.js';
import { secretsOf, type TokenSet } from '../core/token.js';
import { atomicWriteFile, type AtomicWriteOptions } from './atomic-write.js';
import { writeOrOverwrite } from './in-place-write.js';
import { readRegularNoFollow } from './safe-open.js';

export interface AgentState {
  token?: TokenSet | undefined;
  failures: number;
  lastRefresh?: { at: number; by: string; version?: string | undefined } | undefined;
  agentSeenAt?: number | undefined;
  /** Saxo rejected the newest refresh token and nothing newer exists: a person must log in. */
  loginRequired?: boolean | undefined;
  /** A version stored but not yet announced (Pub/Sub did not answer); the push retry publishes it. */
  announce?: TokenRotatedEvent | undefined;
  /** Why the agent is not refreshing although the token is due (e.g. not the primary VM). */
  awaiting?: { reason: string; since: number } | undefined;
  /** This host's clock against Saxo's (local − server, ms), when last measured (docs/DESIGN.md "Server time"). */
  clockSkew?: ClockSkew | undefined;
  /** pairId()s announced as spent elsewhere (TOKEN_CONSUMED): never presented, never put back in the cache. */
  consumed?: string[] | undefined;
  /** The cache watcher failed (a bot's writes are seen only by the periodic check). */
  watchFailed?: { reason: string; since: number } | undefined;
  /** The Pub/Sub subscription cannot be pulled (deleted, a role removed): no pushes arrive. */
  subscription?: SubscriptionProblem | undefined;
}

export interface StateFile {
  readonly path: string;
  /** Undefined when missing or corrupt (the reason is logged, never the content). */
  read(): Promise<AgentState | undefined>;
  write(state: AgentState): Promise<void>;
}

const stateSchema = z.object({
  version: z.literal(1),
  token: z.unknown().optional(),
  failures: z.number().int().nonnegative(),
  lastRefresh: z
    .object({ at: z.number().finite(), by: z.string(), version: z.string().optional() })
    .optional(),
  agentSeenAt: z.number().finite().optional(),
  loginRequired: z.boolean().optional(),
  announce: tokenRotatedEventSchema.optional(),
  awaiting: z.object({ reason: z.string().max(200), since: z.number().finite() }).optional(),
  clockSkew: z.object({ ms: z.number().finite(), at: z.number().finite(), by: z.enum(['saxo', 'jump']) }).optional(),
  consumed: z.array(z.string().regex(/^[0-9a-f]{16}$/)).max(64).optional(),
  watchFailed: z.object({ reason: z.string().max(200), since: z.number().finite() }).optional(),
  subscription: z.object({ subscription: z.string(), code: z.string(), problem: z.string().max(400), since: z.number().finite() }).optional(),
});

export interface StateFileOptions {
  logger?: Logger;
  write?: Pick<AtomicWriteOptions, 'onStage' | 'tmpSuffix'>;
}

export function createStateFile(path: string, opts: StateFileOptions = {}): StateFile {
  const corrupt = (reason: string): undefined => {
    opts.logger?.warn('state_file_corrupt', 'Agent state file unusable; ignoring it', { path, reason });
    return undefined;
  };

  const read = async (): Promise<AgentState | undefined> => {
    let raw;
    try {
      raw = await readRegularNoFollow(path, 1 << 20);
    } catch (e) {
      // A state file another user left (a root run of an older version): unreadable, yet the agent
      // must still start and refresh — the cache and the secret hold the pair, and the next state
      // write replaces this file (the rename needs only the directory).
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EACCES' && code !== 'EPERM') throw e;
      return corrupt(`cannot read it (${code}); it will be replaced`);
    }
    if (raw.kind === 'missing') return undefined;
    // A planted symlink (or FIFO, hard link…) is refused, never followed; the next write's rename
    // replaces the name, not the link's target.
    if (raw.kind === 'unusable') return corrupt(raw.unsafe === 'directory' ? raw.reason : `${raw.reason}; it will be replaced`);
    let json: unknown;
    try {
      json = JSON.parse(raw.text);
    } catch {
      return corrupt(`not valid JSON (${raw.text.length} bytes)`);
    }
    const parsed = stateSchema.safeParse(json);
    if (!parsed.success) return corrupt(describeIssues(parsed.error));
    const s = parsed.data;
    let token: TokenSet | undefined;
    if (s.token !== undefined) {
      const d = decodeFlat(s.token);
      if (!d.ok) return corrupt(`token: ${d.reason}`);
      token = d.token;
      opts.logger?.addSecret(...secretsOf(token));
    }
    const { failures, lastRefresh, agentSeenAt, loginRequired, announce, awaiting, clockSkew, consumed, watchFailed, subscription } = s;
    return { token, failures, lastRefresh, agentSeenAt, loginRequired, announce, awaiting, clockSkew, consumed, watchFailed, subscription };
  };

  const write = async (state: AgentState): Promise<void> => {
    const body = {
      version: 1,
      ...(state.token ? { token: encodeFlat(state.token) } : {}),
      failures: state.failures,
      ...(state.lastRefresh ? { lastRefresh: state.lastRefresh } : {}),
      ...(state.agentSeenAt !== undefined ? { agentSeenAt: state.agentSeenAt } : {}),
      ...(state.loginRequired ? { loginRequired: true } : {}),
      ...(state.announce ? { announce: state.announce } : {}),
      ...(state.awaiting ? { awaiting: state.awaiting } : {}),
      ...(state.clockSkew ? { clockSkew: state.clockSkew } : {}),
      ...(state.consumed?.length ? { consumed: state.consumed } : {}),
      ...(state.watchFailed ? { watchFailed: state.watchFailed } : {}),
      ...(state.subscription ? { subscription: state.subscription } : {}),
    };
    const text = JSON.stringify(body, null, 2) + '\n';
    await writeOrOverwrite(path, text, () => atomicWriteFile(path, text, { mode: 0o600, ...opts.write }));
  };

  return { path, read, write };
}
