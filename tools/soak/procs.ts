/**
 * Simulated processes and the ports they see. Every port call of a killed process throws
 * SimCrash (a kill -9 leaves no further side effects); a crash plan kills a process right after a
 * chosen step of its refresh; the `recovery` break makes its unsynced writes vanish on a kill.
 */
import type { EventBus, Held, Journal, SecretStore, TokenCache, TokenEndpoint, TokenRotatedEvent } from '../../core/ports.js';
import type { StateStore } from '../../agent/reconciler.js';
import type { TokenSet } from '../../core/token.js';
import type { MemoryCache, MemoryEventBus, MemoryJournal, MemoryLock, MemorySecretStore, MemoryState } from '../../standins/memory.js';
import type { CrashStep } from './faults.js';

export type BreakMode = 'lease' | 'generation' | 'recovery';

export class SimCrash extends Error {
  override readonly name = 'SimCrash';
}

export class Proc {
  dead = false;
  crashAt: CrashStep | undefined;
  /** Set when a refresh answer arrived while a crash plan was attached. */
  armed = false;
  /** Refresh token of the newest pair this process received from Saxo. */
  received: string | undefined;
  readonly helds = new Set<Held>();
  /** Writes since the last Saxo answer, undone on a kill when the build does not fsync. */
  undo: (() => void)[] = [];
  onKill: (() => void) | undefined;
  /** The `recovery` break: this build's writes are not durable until its next Saxo answer. */
  revertOnKill = false;
  /** This host's clock minus true time (the function's skew); deadlines are in host time. */
  skewMs = 0;
  constructor(readonly name: string, readonly kind: 'agent' | 'cloud' | 'bot') {}

  gate(): void {
    if (this.dead) throw new SimCrash(`${this.name} was killed`);
  }

  kill(): void {
    if (this.dead) return;
    this.dead = true;
    for (const h of this.helds) void h.release(); // the kernel drops a dead process's flock
    this.helds.clear();
    if (this.revertOnKill) for (const u of this.undo.reverse()) u();
    this.undo = [];
    this.onKill?.();
  }

  /** Kill at `step` when the armed crash plan says so. */
  step(step: CrashStep): void {
    if (this.armed && this.crashAt === step) {
      this.kill();
      throw new SimCrash(`${this.name} killed ${step}`);
    }
  }
}

export interface Shared {
  cache: MemoryCache;
  journal: MemoryJournal;
  lock: MemoryLock;
  state: MemoryState;
  store: MemorySecretStore;
  bus: MemoryEventBus;
  breakMode: BreakMode | undefined;
  setWriter(w: string): void;
  present(proc: Proc, refreshToken: string, opts: Parameters<TokenEndpoint['refresh']>[1]): ReturnType<TokenEndpoint['refresh']>;
  published(proc: Proc, e: TokenRotatedEvent): void;
  secretAdded(proc: Proc, token: TokenSet): void;
}

/** The agent's journal; a killed agent writes nothing more (what it recorded stays for the next one). */
export function journalPort(s: Shared, p: Proc): Journal {
  return {
    path: s.journal.path,
    room: async () => {
      p.gate();
      return s.journal.room();
    },
    record: async (e) => {
      p.gate();
      await s.journal.record(e);
    },
    pending: async () => {
      p.gate();
      return s.journal.pending();
    },
    wipe: async () => {
      p.gate();
      await s.journal.wipe();
    },
  };
}

export function saxoPort(s: Shared, p: Proc): TokenEndpoint {
  return {
    refresh: async (rt, opts) => {
      p.gate();
      return s.present(p, rt, opts);
    },
    exchangeCode: () => Promise.reject(new Error('not simulated')),
  };
}

export function lockPort(s: Shared, p: Proc): (signal?: AbortSignal) => Promise<Held> {
  return async (signal) => {
    p.gate();
    const h = await s.lock.acquire(signal);
    if (p.dead) {
      await h.release();
      throw new SimCrash(`${p.name} was killed`);
    }
    p.helds.add(h);
    return {
      release: async () => {
        p.helds.delete(h);
        await h.release();
      },
    };
  };
}

export function cachePort(s: Shared, p: Proc): TokenCache {
  return {
    path: s.cache.path,
    read: async () => {
      p.gate();
      return s.cache.read();
    },
    write: async (t) => {
      p.gate();
      const before = s.cache.raw;
      s.setWriter(p.name);
      await s.cache.write(t);
      const after = s.cache.raw;
      if (s.breakMode === 'recovery') {
        p.undo.push(() => {
          if (s.cache.raw !== after) return;
          s.setWriter(`${p.name} (unsynced write lost)`);
          s.cache.raw = before;
        });
      }
      p.step('after-cache');
    },
  };
}

export function statePort(s: Shared, p: Proc): StateStore {
  return {
    read: async () => {
      p.gate();
      return s.state.read();
    },
    write: async (st) => {
      p.gate();
      const before = s.state.value;
      await s.state.write(st);
      if (s.breakMode === 'recovery') p.undo.push(() => void (s.state.value = before));
      p.step('after-state');
    },
  };
}

export function storePort(s: Shared, p: Proc): SecretStore {
  const st = s.store;
  const g = <T>(f: () => Promise<T>) => async (): Promise<T> => {
    p.gate();
    return f();
  };
  return {
    name: st.name,
    latest: () => g(() => st.latest())(),
    version: (ref) => g(() => st.version(ref))(),
    add: async (t) => {
      p.gate();
      // The `generation` break: a build whose cloud path stores pairs without their order (generation
      // reset to 1, no parent link).
      const stored = s.breakMode === 'generation' && p.kind === 'cloud' ? { ...t, generation: 1, parentId: undefined } : t;
      const v = await st.add(stored);
      s.secretAdded(p, stored);
      p.step('after-add');
      return v;
    },
    prune: (keep) => g(() => st.prune(keep))(),
    countVersions: () => g(() => st.countVersions())(),
    meta: () => g(() => st.meta())(),
    acquireLease: async (holder, ttl, now) => {
      p.gate();
      // The `lease` break: every refresher believes it holds the lease.
      if (s.breakMode === 'lease') return true;
      return st.acquireLease(holder, ttl, now);
    },
    releaseLease: (holder, rec) => g(() => st.releaseLease(holder, rec))(),
    record: (rec) => g(() => st.record(rec))(),
  };
}

export function busPort(s: Shared, p: Proc): EventBus {
  return {
    publish: async (e) => {
      p.gate();
      const id = await s.bus.publish(e);
      s.bus.queue.length = 0; // delivery is the simulator's business (delay, duplicate, drop)
      s.published(p, e);
      p.step('after-publish');
      return id;
    },
    subscribe: () => Promise.reject(new Error('the simulator delivers events itself')),
  };
}
