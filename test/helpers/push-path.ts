/**
 * Did a pair reach an agent's cache by the push path (TOKEN_ROTATED → read → cache), not by the
 * agent's own periodic check? Read from the agent's log: the `event_received` line for that
 * generation comes before the `cache_written` line for it, and no announcement for our secret was
 * called foreign.
 */
import { expect } from 'vitest';
import type { CliProcess, LogLine } from './agent-process.js';

/** Wait until `g` is in the agent's cache, then assert it came by the push path. Returns the cache line. */
export async function cachedByPush(agent: CliProcess, g: number, projectNumber: string, timeoutMs = 15_000): Promise<LogLine> {
  const written = await agent.waitFor((l) => l.event === 'cache_written' && l.generation === g, timeoutMs, `cache_written gen ${g}`);
  const at = agent.logs.indexOf(written);
  // Heard from Pub/Sub before the cache was written: its TOKEN_ROTATED, or the TOKEN_CONSUMED of its
  // parent (the spent-token announcement goes out first; the agent then reads the secret's latest).
  const heard = agent.logs.findIndex(
    (l) => (l.event === 'event_received' && l.generation === g) || (l.event === 'consumed_noted' && l.generation === g - 1),
  );
  expect(heard, `gen ${g} reached the cache without an announcement being read first (not the push path)`).toBeGreaterThanOrEqual(0);
  expect(heard).toBeLessThan(at);
  // The announced name is the one Secret Manager gave: the project NUMBER, not the configured id.
  // (When the TOKEN_CONSUMED path brought the pair first, its TOKEN_ROTATED is ignored at DEBUG as
  // not newer; it is never called foreign either way.)
  const rotated = agent.logs.find((l) => l.event === 'event_received' && l.generation === g);
  if (rotated) expect(rotated.version).toMatch(new RegExp(`^projects/${projectNumber}/secrets/[^/]+/versions/\\d+$`));
  expect(agent.logs.filter((l) => l.event === 'event_foreign')).toEqual([]);
  return written;
}
