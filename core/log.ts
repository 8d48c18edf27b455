/**
 * Structured logs: one JSON object per line with Cloud Logging's `severity` and `message`, plus
 * `event` (a stable name to query on). Both `gcloud functions logs read` and journald read these.
 * Every line passes through a redactor: registered secret strings and secret-named fields never
 * leave the process (I5).
 *
 * Cloud Logging's special keys (docs/DESIGN.md "Logs for people and for Cloud Logging"):
 * `logging.googleapis.com/labels` carries event/component/chain (also kept in the payload, where the
 * filters read them); an `httpRequest` field is written under the key its path reads (Cloud Run:
 * `httpRequest`; the Ops Agent: `logging.googleapis.com/httpRequest`); a request's trace/span come
 * from `withLogContext` (functions/handler.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export type Severity = 'DEBUG' | 'INFO' | 'NOTICE' | 'WARNING' | 'ERROR' | 'ALERT';

export interface Logger {
  debug(event: string, message: string, fields?: Record<string, unknown>): void;
  info(event: string, message: string, fields?: Record<string, unknown>): void;
  notice(event: string, message: string, fields?: Record<string, unknown>): void;
  warn(event: string, message: string, fields?: Record<string, unknown>): void;
  error(event: string, message: string, fields?: Record<string, unknown>): void;
  alert(event: string, message: string, fields?: Record<string, unknown>): void;
  /** Register values that must never be printed (tokens, app secret): `addSecret(...secretsOf(pair))`. */
  addSecret(...values: (string | undefined)[]): void;
}

/** Where an `httpRequest` field goes: Cloud Run reads `httpRequest`, the Ops Agent its prefixed key. */
export type HttpRequestKey = 'httpRequest' | 'logging.googleapis.com/httpRequest';

export interface LoggerOptions {
  format?: 'json' | 'pretty';
  write?: (line: string) => void;
  minSeverity?: Severity;
  component?: string;
  /** The chain this process keeps (payload field and LogEntry label). */
  chain?: string;
  /** Default: the Ops Agent's key (the VM agent); the function passes `httpRequest`. */
  httpRequestKey?: HttpRequestKey;
}

export const LABELS_KEY = 'logging.googleapis.com/labels';
export const TRACE_KEY = 'logging.googleapis.com/trace';
export const SPAN_KEY = 'logging.googleapis.com/spanId';

const ORDER: Record<Severity, number> = { DEBUG: 0, INFO: 1, NOTICE: 2, WARNING: 3, ERROR: 4, ALERT: 5 };
const SECRET_FIELD = /token|secret|password|authorization|code_verifier/i;
const MAX_SECRETS = 64;
/** Keys the pretty format leaves out (they are either on the line already or machine-only). */
const PRETTY_SKIP = new Set(['severity', 'message', 'event', 'time', LABELS_KEY, TRACE_KEY, SPAN_KEY]);

const context = new AsyncLocalStorage<Record<string, unknown>>();

/** Run `fn` with `fields` added to every line logged inside it (a request's trace and span). */
export function withLogContext<T>(fields: Record<string, unknown>, fn: () => T): T {
  return context.run({ ...(context.getStore() ?? {}), ...fields }, fn);
}

/**
 * A request's trace fields from W3C `traceparent` or Google's `X-Cloud-Trace-Context`
 * (TRACE_ID/SPAN_ID_DECIMAL;o=1), as Cloud Logging reads them: the trace as a resource name, the
 * span as 16 hex digits. Empty when neither header is usable.
 */
export function traceFields(headers: Record<string, string | string[] | undefined>, projectId: string | undefined): Record<string, string> {
  const header = (k: string) => {
    const v = headers[k] ?? headers[k.toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  };
  let traceId: string | undefined;
  let spanId: string | undefined;
  const w3c = /^[\da-f]{2}-([\da-f]{32})-([\da-f]{16})-[\da-f]{2}$/.exec(header('traceparent')?.trim() ?? '');
  if (w3c) [traceId, spanId] = [w3c[1], w3c[2]];
  else {
    const gcp = /^([\da-f]{32})(?:\/(\d{1,20}))?(?:;o=\d)?$/i.exec(header('x-cloud-trace-context')?.trim() ?? '');
    if (gcp) {
      traceId = gcp[1]!.toLowerCase();
      if (gcp[2]) spanId = BigInt(gcp[2]).toString(16).padStart(16, '0').slice(-16);
    }
  }
  if (!traceId || /^0+$/.test(traceId)) return {};
  return {
    [TRACE_KEY]: projectId ? `projects/${projectId}/traces/${traceId}` : traceId,
    ...(spanId && !/^0+$/.test(spanId) ? { [SPAN_KEY]: spanId } : {}),
  };
}

/** One HTTP exchange as LogEntry.httpRequest: method, status, latency — never the URL's query or a token. */
export function httpRequestRecord(r: { method?: string; status?: number | undefined; latencyMs: number }): Record<string, unknown> {
  return {
    requestMethod: r.method ?? 'POST',
    ...(r.status !== undefined ? { status: r.status } : {}),
    latency: `${(Math.max(0, r.latencyMs) / 1000).toFixed(3)}s`,
  };
}

/** The chain a process keeps, as logs and metric labels name it: its secret id, or the standalone environment. */
export function chainName(c: { environment: string; gcp?: { secretId: string } | undefined }): string {
  return c.gcp?.secretId ?? `standalone-${c.environment.toLowerCase()}`;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const secrets: string[] = [];
  const write = opts.write ?? ((line: string) => process.stdout.write(line + '\n'));
  const format = opts.format ?? 'json';
  const min = ORDER[opts.minSeverity ?? 'INFO'];
  const httpKey = opts.httpRequestKey ?? 'logging.googleapis.com/httpRequest';

  const scrub = (s: string): string => {
    let out = s;
    for (const v of secrets) if (out.includes(v)) out = out.split(v).join('[REDACTED]');
    return out;
  };

  const emit = (severity: Severity, event: string, message: string, fields?: Record<string, unknown>) => {
    if (ORDER[severity] < min) return;
    const rec: Record<string, unknown> = {
      severity,
      message,
      event,
      time: new Date().toISOString(),
      ...(opts.component ? { component: opts.component } : {}),
      ...(opts.chain ? { chain: opts.chain } : {}),
    };
    for (const [k, v] of Object.entries(fields ?? {})) {
      if (v === undefined) continue;
      const key = k === 'httpRequest' ? httpKey : k;
      rec[key] = SECRET_FIELD.test(k) && typeof v === 'string' ? '[REDACTED]' : v instanceof Error ? v.message : v;
    }
    Object.assign(rec, context.getStore());
    // Indexed copies of the names people filter on; the payload keeps them for the existing filters.
    rec[LABELS_KEY] = {
      event,
      ...(opts.component ? { component: opts.component } : {}),
      ...(opts.chain ? { chain: opts.chain } : {}),
    };
    let line: string;
    if (format === 'pretty') {
      const extra = Object.entries(rec)
        .filter(([k, v]) => !PRETTY_SKIP.has(k) && v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      line = `${rec.time as string} ${severity.padEnd(7)} ${message}${extra ? '  ' + extra : ''}  [${event}]`;
    } else {
      line = JSON.stringify(rec);
    }
    write(scrub(line));
  };
  return {
    debug: (e, m, f) => emit('DEBUG', e, m, f),
    info: (e, m, f) => emit('INFO', e, m, f),
    notice: (e, m, f) => emit('NOTICE', e, m, f),
    warn: (e, m, f) => emit('WARNING', e, m, f),
    error: (e, m, f) => emit('ERROR', e, m, f),
    alert: (e, m, f) => emit('ALERT', e, m, f),
    addSecret: (...values) => {
      for (const v of values) {
        // Short values would redact ordinary words; real tokens are long.
        if (!v || v.length < 8 || secrets.includes(v)) continue;
        secrets.push(v);
        if (secrets.length > MAX_SECRETS) secrets.shift();
      }
    },
  };
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = createLogger({ write: () => {} });

/**
 * The log format of a command a person runs (`refresh`, `login`): on a terminal, with LOG_FORMAT not
 * set, the human lines; piped or under journald, the configured JSON.
 */
export function commandLogFormat(configured: 'json' | 'pretty', env: NodeJS.ProcessEnv = process.env, tty = process.stdout.isTTY === true): 'json' | 'pretty' {
  return tty && !env.LOG_FORMAT ? 'pretty' : configured;
}
