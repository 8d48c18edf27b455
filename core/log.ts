/**
 * Structured logs: one JSON object per line with Cloud Logging's `severity` and `message`, plus
 * `event` (a stable name to query on). Both `gcloud functions logs read` and journald read these.
 * Every line passes through a redactor: registered secret strings and secret-named fields never
 * leave the process (I5).
 */
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

export interface LoggerOptions {
  format?: 'json' | 'pretty';
  write?: (line: string) => void;
  minSeverity?: Severity;
  component?: string;
}

const ORDER: Record<Severity, number> = { DEBUG: 0, INFO: 1, NOTICE: 2, WARNING: 3, ERROR: 4, ALERT: 5 };
const SECRET_FIELD = /token|secret|password|authorization|code_verifier/i;
const MAX_SECRETS = 64;

export function createLogger(opts: LoggerOptions = {}): Logger {
  const secrets: string[] = [];
  const write = opts.write ?? ((line: string) => process.stdout.write(line + '\n'));
  const format = opts.format ?? 'json';
  const min = ORDER[opts.minSeverity ?? 'INFO'];

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
    };
    for (const [k, v] of Object.entries(fields ?? {})) {
      rec[k] = SECRET_FIELD.test(k) && typeof v === 'string' ? '[REDACTED]' : v instanceof Error ? v.message : v;
    }
    let line: string;
    if (format === 'pretty') {
      const extra = Object.entries(rec)
        .filter(([k]) => !['severity', 'message', 'event', 'time'].includes(k))
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
