/**
 * What goes into and out of the agent's reconciler: its dependencies (ports), the triggers that
 * start a run, and the outcomes a run reports (the CLI's `refresh` maps them to exit codes).
 */
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { ClockSkew } from '../core/server-time.js';
import type { EventBus, Held, Journal, SecretStore, TokenCache, TokenConsumedEvent, TokenEndpoint, TokenRotatedEvent } from '../core/ports.js';
import type { AgentSettings } from '../core/settings.js';
import type { AgentState } from './state-file.js';

/** The agent's private record (agent/state-file.ts in production, memory in tests and the soak). */
export interface StateStore {
  read(): Promise<AgentState | undefined>;
  write(state: AgentState): Promise<void>;
}

export interface ReconcilerDeps {
  clock: Clock;
  cache: TokenCache;
  /** Takes the bots' flock (agent/flock.ts); throws LockTimeoutError after the bots' 30 s. */
  lock: (signal?: AbortSignal) => Promise<Held>;
  state: StateStore;
  saxo: TokenEndpoint;
  store?: SecretStore | undefined;
  bus?: EventBus | undefined;
  logger: Logger;
  settings: AgentSettings;
  /** The agent's clock watch (agent/clock-watch.ts): learns the skew each exchange measured. */
  clockWatch?: { readonly skew: ClockSkew | undefined; measured(s: ClockSkew): void } | undefined;
  /** Where Saxo's 2xx is kept before it is interpreted (agent/journal.ts); tests may leave it out. */
  journal?: Journal | undefined;
}

export type Trigger =
  | { kind: 'startup' }
  | { kind: 'tick' }
  | { kind: 'cache-changed' }
  | { kind: 'event'; event: TokenRotatedEvent }
  /** Another refresher spent a refresh token (docs/DESIGN.md "Consumed announcements"). */
  | { kind: 'consumed'; event: TokenConsumedEvent }
  | { kind: 'refresh'; force: boolean }
  /** Retry only what waits upstream (run every few seconds while something does). */
  | { kind: 'push' };

export type Outcome = 'idle' | 'refreshed' | 'adopted' | 'repaired' | 'ignored' | 'deferred' | 'failed' | 'login_required';
