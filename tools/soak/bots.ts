/**
 * The trading bots, as the fleet's TokenCoordinator really behaves (docs/DESIGN.md "The bots"):
 * read the cache without the lock, trust it while more than 120 s remain, else take the flock,
 * re-read, refresh with Saxo and write back the five keys only (no generation; token_expiry naive
 * local time, now + expires_in − 60) as one atomic replace — then save to the shared secret by
 * replacing three keys of its latest payload (the rest, ours included, copied; even-numbered bots
 * run the newer release that also destroys the version they read). On an auth failure a bot
 * deletes the cache; at start-up it loads the secret's pair and writes it to the cache after
 * waiting at most 5 s for the lock — without the lock if it is still held. They use the token
 * about once a minute.
 */
import { parseTimestamp } from '../../core/codec.js';
import { SaxoError } from '../../core/errors.js';
import { pairOf } from '../../core/grant.js';
import type { Held } from '../../core/ports.js';
import { Proc, SimCrash } from './procs.js';
import type { World } from './world.js';

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;

interface BotCache {
  access_token: string;
  refresh_token: string;
  token_expiry: string;
  app_key?: string;
  app_secret?: string;
}

export class BotStats {
  secretSaves = 0;
  cacheClears = 0;
  startupWrites = 0;
  locklessStartupWrites = 0;
  uses = 0;
  rejectedUses = 0;
  refreshes = 0;
  errors = 0;
  lockTimeouts = 0;
}

export class Bot {
  running: boolean;
  proc: Proc;
  constructor(private readonly w: World, readonly id: number, readonly stats: BotStats) {
    this.running = w.rng.chance(0.7);
    this.proc = new Proc(`bot${id}`, 'bot');
  }

  /** Start the bot's own schedule: on/off periods and a step about once a minute. */
  start(): void {
    const { w } = this;
    if (this.running) w.fire(this.startup(), this.proc.name);
    const toggle = () => {
      this.running = !this.running;
      if (this.running && !w.vmDown) w.fire(this.startup(), this.proc.name);
      w.clock.at(w.now() + (this.running ? w.rng.logRange(HOUR, 12 * HOUR) : w.rng.logRange(10 * MIN, 6 * HOUR)), toggle);
    };
    w.clock.at(w.now() + w.rng.logRange(10 * MIN, 6 * HOUR), toggle);
    const loop = () => {
      if (this.running && !w.vmDown) w.fire(this.step(), this.proc.name);
      w.clock.at(w.now() + w.rng.range(45 * SEC, 75 * SEC), loop);
    };
    w.clock.at(w.now() + w.rng.range(0, 60 * SEC), loop);
  }

  /** A VM reboot kills the bot process; it comes back as a new one (and starts up again after the reboot). */
  reboot(): void {
    this.proc.kill();
    this.proc = new Proc(`bot${this.id}`, 'bot');
    this.pendingStartup = this.running;
  }

  /** The bot process is restarted (by its operator, a deploy): it starts up again at once. */
  restart(): void {
    this.proc.kill();
    this.proc = new Proc(`bot${this.id}`, 'bot');
    if (!this.w.vmDown) this.w.fire(this.startup(), this.proc.name);
  }

  /** Set by a reboot: the next step of a running bot is its start-up. */
  pendingStartup = false;

  /** Start-up: the pair from the secret into the cache, after ≤ 5 s on the lock, else without it. */
  async startup(): Promise<void> {
    const { w, proc } = this;
    if (w.smDown) return; // its secret load fails; it reads the cache like any step
    const latest = w.latestSecretPayload();
    if (!latest) return;
    let held: Held | undefined;
    try {
      held = await w.lock.acquire(undefined, 5 * SEC);
    } catch {
      held = undefined; // update_cache without the lock
    }
    if (proc.dead) return void (await held?.release());
    if (held) proc.helds.add(held);
    try {
      const next: BotCache = {
        access_token: String(latest.access_token),
        refresh_token: String(latest.refresh_token),
        token_expiry: String(latest.token_expiry),
        app_key: String(latest.app_key ?? ''),
        app_secret: String(latest.app_secret ?? ''),
      };
      w.setWriter('bot-startup');
      w.cache.raw = JSON.stringify(next);
      this.stats.startupWrites++;
      if (!held) this.stats.locklessStartupWrites++;
    } finally {
      if (held) {
        proc.helds.delete(held);
        await held.release();
      }
    }
  }

  /** The fleet's save after its own refresh: three keys of the latest payload replaced, a new version. */
  private saveToSecret(next: BotCache): void {
    const { w } = this;
    if (w.smDown) return;
    const read = w.latestSecretVersion();
    if (!read) return;
    const payload = { ...read.payload, access_token: next.access_token, refresh_token: next.refresh_token, token_expiry: next.token_expiry };
    w.botSavedToSecret(this.proc, JSON.stringify(payload), this.id % 2 === 0 ? read.version : undefined);
    this.stats.secretSaves++;
  }

  private read(): BotCache | undefined {
    const raw = this.w.cache.raw;
    if (raw === undefined) return undefined;
    try {
      const v = JSON.parse(raw) as Partial<BotCache> | null;
      return v && typeof v === 'object' && v.access_token && v.refresh_token && typeof v.token_expiry === 'string' ? (v as BotCache) : undefined;
    } catch {
      return undefined;
    }
  }

  private remainingMs(c: BotCache): number {
    const t = parseTimestamp(c.token_expiry); // naive = local time, as Python reads it
    return t === undefined ? -Infinity : t - this.w.now();
  }

  private use(c: BotCache): void {
    this.stats.uses++;
    if (!this.w.saxo.isValidAccess(c.access_token)) this.stats.rejectedUses++;
  }

  async step(): Promise<void> {
    const { w, proc } = this;
    if (this.pendingStartup) {
      this.pendingStartup = false;
      await this.startup();
    }
    const first = this.read();
    if (first && this.remainingMs(first) > 120 * SEC) return this.use(first);
    let held: Held;
    try {
      held = await w.lock.acquire();
    } catch {
      this.stats.lockTimeouts++;
      return;
    }
    if (proc.dead) return void (await held.release());
    proc.helds.add(held);
    try {
      const c = this.read();
      if (c && this.remainingMs(c) > 120 * SEC) return this.use(c);
      if (!c) {
        this.stats.errors++;
        return;
      }
      const res = pairOf(await w.present(proc, c.refresh_token, { deadline: Infinity, appKey: c.app_key ?? '', appSecret: c.app_secret }));
      const expiry = new Date(w.now() + (res.expiresIn - 60) * SEC);
      const next: BotCache = {
        access_token: res.accessToken,
        refresh_token: res.refreshToken,
        token_expiry: naiveLocalIso(expiry),
        app_key: c.app_key ?? '',
        app_secret: c.app_secret ?? '',
      };
      w.setWriter(proc.name);
      w.cache.raw = JSON.stringify(next, null, 1).replace(/\n ?/g, ' ');
      this.stats.refreshes++;
      this.use(next);
      this.saveToSecret(next);
    } catch (err) {
      if (err instanceof SimCrash) throw err;
      if (!(err instanceof SaxoError)) throw err;
      this.stats.errors++;
      if (err.code === 'invalid_grant') {
        // clear_cache: the fleet deletes the cache on an auth failure; the agent must restore it.
        w.setWriter('bot-clear');
        w.cache.raw = undefined;
        this.stats.cacheClears++;
      }
    } finally {
      proc.helds.delete(held);
      await held.release();
    }
  }
}

/** Python's `datetime.now().isoformat()` shape: local wall time, microseconds, no offset. */
function naiveLocalIso(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds() * 1000, 6)}`;
}
