/**
 * The demo's eyes: every component's JSON log line, the bot's reports, the audit copy of each
 * TOKEN_ROTATED event and periodic reads of the cache pass through here. It keeps the counters the
 * summary needs (refreshes by path, propagations, violations) and prints the human view: one line per
 * notable event, never JSON, never token material.
 */
import { readFileSync, type WriteStream } from 'node:fs';
import { parseFlat } from '../../core/codec.js';
import { createLogger, type Logger } from '../../core/log.js';
import { compareFreshness, type TokenSet } from '../../core/token.js';
import type { BotTick } from './bot.js';

/** The stand-in's token shapes (`sa_…`, `sr_…`): caught even if we never saw that token ourselves. */
const TOKEN_RE = /(?<![A-Za-z0-9])s[ar]_[A-Za-z0-9_-]{16,}/;

type Path = 'cloud' | 'agent' | 'bot';
const PATH_OF: Record<string, Path> = { function: 'cloud', agent: 'agent' };

interface LogRec {
  event?: string;
  component?: string;
  severity?: string;
  message?: string;
  generation?: number;
  version?: string;
  reason?: string;
  from?: string;
  error?: string;
}

export interface ObserverOptions {
  startedAt: number;
  out: (line: string) => void;
  logFile: WriteStream;
  cachePath: string;
  appSecret: string;
}

export class Observer {
  readonly refreshesBy: Record<Path, number> = { cloud: 0, agent: 0, bot: 0 };
  /** publish→cache latencies (ms), one per token refreshed elsewhere that reached the cache. */
  readonly propagations: number[] = [];
  readonly violations: string[] = [];
  linesScanned = 0;
  eventsScanned = 0;
  cacheChanges = 0;
  botTicks = 0;
  saxoRetries = 0;
  /** False when the demo runs without Pub/Sub: nothing is published, the agent polls. */
  hasPush = true;
  private readonly seen = new Set<string>();
  private readonly added = new Map<number, { at: number; by: string }>();
  private readonly published = new Map<number, number>();
  private readonly propagated = new Set<number>();
  private lastCache: TokenSet | undefined;
  private secretGen: number | undefined;
  private botWrote = false;

  constructor(private readonly o: ObserverOptions) {}

  /** A JSON logger for one component; its lines go to the log file and through the checks. */
  logger(component: string): Logger {
    return createLogger({ format: 'json', component, write: (line) => this.logLine(line) });
  }

  private elapsed(): string {
    return `[${((Date.now() - this.o.startedAt) / 1000).toFixed(1).padStart(5)}s]`;
  }

  private state(): string {
    const c = this.lastCache;
    const cache = c ? `cache gen ${c.generation ?? 'bot'} ${((c.accessExpiresAt - Date.now()) / 1000).toFixed(1)} s left` : 'cache empty';
    return `${cache} · secret gen ${this.secretGen ?? '–'}`;
  }

  /** One line of the live view. */
  say(who: string, text: string, withState = true): void {
    this.o.out(`${this.elapsed()} ${who.padEnd(8)} ${text}${withState ? `   (${this.state()})` : ''}`);
  }

  violation(text: string): void {
    this.violations.push(text);
    this.say('VIOLATE', text);
  }

  /** Secrets must not appear anywhere we can look (I5). */
  private scan(text: string, where: string): void {
    let leaked = TOKEN_RE.test(text) || (this.o.appSecret.length >= 8 && text.includes(this.o.appSecret));
    if (!leaked) for (const s of this.seen) if (text.includes(s)) { leaked = true; break; }
    if (leaked) this.violation(`token material found in ${where}`);
  }

  logLine(line: string): void {
    this.o.logFile.write(line + '\n');
    this.linesScanned++;
    this.scan(line, 'a log line');
    let r: LogRec;
    try {
      r = JSON.parse(line) as LogRec;
    } catch {
      return;
    }
    this.react(r);
  }

  private react(r: LogRec): void {
    const who = PATH_OF[r.component ?? ''] ?? r.component ?? '?';
    const now = Date.now();
    switch (r.event) {
      case 'token_refreshed':
        if (who === 'cloud' || who === 'agent') this.refreshesBy[who]++;
        if (who === 'agent') this.say('agent', `REFRESHED itself → gen ${r.generation} (the cloud path did not)`);
        return;
      case 'secret_version_added':
        if (r.generation !== undefined) {
          this.added.set(r.generation, { at: now, by: who });
          this.secretGen = Math.max(this.secretGen ?? 0, r.generation);
        }
        if (who === 'cloud') this.say('cloud', `REFRESHED → gen ${r.generation}, stored as ${shortVersion(r.version)}${this.published_()}`);
        else this.say(who, `stored gen ${r.generation} as ${shortVersion(r.version)} (${r.reason === 'push' ? 'pushed a token found in the cache' : r.reason})${this.published_()}`);
        return;
      case 'cache_written': {
        this.pollCache();
        const g = r.generation;
        const src = g !== undefined ? this.added.get(g) : undefined;
        if (g !== undefined && src && src.by !== 'agent' && !this.propagated.has(g)) {
          this.propagated.add(g);
          const ms = now - (this.published.get(g) ?? src.at);
          this.propagations.push(ms);
          this.say('agent', `cache ← gen ${g} from Secret Manager, ${this.hasPush ? 'publish→cache' : 'version→cache (no push: found on its own check)'} ${ms} ms`);
        } else this.say('agent', `cache rewritten with gen ${g ?? '?'} (${r.reason ?? 'repair'})`);
        return;
      }
      case 'token_adopted':
        if (r.from === 'cache' && this.botWrote) {
          this.botWrote = false;
          this.say('agent', `adopted the token the bot wrote to the cache → gen ${r.generation}`);
        } else if (r.from !== 'secret') this.say('agent', `adopted gen ${r.generation} from the ${r.from ?? 'cache'}`);
        return;
      case 'input_problem':
        // decide() notes every not-yet-propagated cache as a "stale writer"; in the view that is noise.
        if (r.message?.includes('older pair')) return;
        this.say(who, `WARNING: ${r.message ?? ''}`);
        return;
      case 'saxo_attempt_failed':
        this.saxoRetries++;
        this.say(who, `Saxo: ${r.message ?? 'attempt failed'}`);
        return;
      case 'versions_pruned':
        return;
      case 'agent_ready':
        this.say('agent', 'ready' + (r.message?.includes('events') ? ' (listening for TOKEN_ROTATED)' : ''));
        return;
      default:
        if (r.severity === 'WARNING' || r.severity === 'ERROR' || r.severity === 'ALERT') {
          if (r.event === 'lease_busy') return;
          this.say(who, `${r.severity}: ${r.message ?? r.event}${r.error ? ` (${r.error.slice(0, 100)})` : ''}`);
        }
    }
  }

  private published_(): string {
    return this.hasPush ? ', TOKEN_ROTATED published' : '';
  }

  /** A copy of every TOKEN_ROTATED message, from the demo's own subscription. */
  auditEvent(data: string): void {
    this.eventsScanned++;
    this.scan(data, 'a Pub/Sub event');
    try {
      const e = JSON.parse(data) as { generation?: number; publishedAt?: string };
      if (typeof e.generation === 'number' && e.publishedAt) this.published.set(e.generation, Date.parse(e.publishedAt));
    } catch {
      /* malformed events are the agent's problem, and it logs them */
    }
  }

  botLine(line: string): void {
    this.scan(line, "the bot's output");
    let t: BotTick & { ready?: boolean };
    try {
      t = JSON.parse(line) as BotTick & { ready?: boolean };
    } catch {
      return;
    }
    if (t.ready) return;
    this.botTicks++;
    if (t.refreshed) {
      this.refreshesBy.bot++;
      this.botWrote = true;
      this.pollCache();
      this.say('bot', 'REFRESHED itself under the flock and wrote the cache (cloud and agent silent)');
    }
    if (t.error) this.violation(`bot could not get a token (${t.error})`);
    else if (t.valid === false) this.violation('bot used an access token the Saxo stand-in rejected');
    else if (t.remaining !== undefined && t.remaining <= 0) this.violation('bot used an expired token');
  }

  botStderr(line: string): void {
    this.scan(line, "the bot's output");
    if (line.trim()) this.say('bot', `stderr: ${line.slice(0, 160)}`, false);
  }

  /** I2 as the bots see it: the cache never goes back to an older pair. */
  pollCache(): void {
    let text: string;
    try {
      text = readFileSync(this.o.cachePath, 'utf8');
    } catch {
      return;
    }
    const p = parseFlat(text);
    if (!p.ok) return;
    const t = p.token;
    this.seen.add(t.accessToken);
    this.seen.add(t.refreshToken);
    const last = this.lastCache;
    if (last && last.refreshToken === t.refreshToken && last.generation === t.generation) return;
    if (last && last.refreshToken !== t.refreshToken) {
      this.cacheChanges++;
      if (compareFreshness(t, last) < 0) this.violation('the cache went back to an older token');
    }
    this.lastCache = t;
  }

  /** Remember tokens we learnt elsewhere (the seed), so the leak scan looks for them exactly. */
  remember(t: TokenSet): void {
    this.seen.add(t.accessToken);
    this.seen.add(t.refreshToken);
  }

  propagationSummary(): string {
    if (this.propagations.length === 0) return 'none';
    const s = [...this.propagations].sort((a, b) => a - b);
    return `median ${s[Math.floor(s.length / 2)]} ms, max ${s[s.length - 1]} ms`;
  }
}

function shortVersion(v: string | undefined): string {
  const m = /versions\/(\d+)$/.exec(v ?? '');
  return m ? `version ${m[1]}` : 'a new version';
}
