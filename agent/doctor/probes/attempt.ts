/** Run one IO attempt under a deadline and turn any outcome into a Probe (never throws). */
import { errorText } from '../../../core/errors.js';
import { grpcCodeName } from '../../../core/gcp/grpc-errors.js';
import type { Probe } from '../facts.js';

class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
  readonly code = 'DEADLINE_EXCEEDED';
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

/** A gRPC status name (numeric codes named by core/gcp/grpc-errors.ts), else the errno string. */
function codeOf(e: unknown): string | undefined {
  const c = e && typeof e === 'object' && 'code' in e ? (e as { code: unknown }).code : undefined;
  if (typeof c === 'number') return grpcCodeName(c) ?? `grpc ${c}`;
  // SecretStoreError (core/gcp/grpc-errors.ts) keeps the gRPC status name in its message only.
  const named = e instanceof Error ? /failed: ([A-Z_]{5,})\b/.exec(e.message)?.[1] : undefined;
  return named ?? (typeof c === 'string' ? c : undefined);
}

/** Short message: gRPC details when present (they name resources, never payloads), else the error text. */
function messageOf(e: unknown): string {
  const details = e && typeof e === 'object' && 'details' in e ? (e as { details: unknown }).details : undefined;
  const code = codeOf(e);
  const text = typeof details === 'string' && details ? `${code ?? 'error'}: ${details}` : errorText(e);
  // grpc-js appends an empty "Resolution note:" and timing breakdowns; keep the cause only.
  return text.replace(/\s*Resolution note:\s*$/, '').replace(/,name resolution: .*$/, '').replace(/\s+/g, ' ').slice(0, 300);
}

export async function attempt<T>(fn: () => Promise<T>, timeoutMs: number): Promise<Probe<T>> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineError(timeoutMs)), timeoutMs);
    });
    const value = await Promise.race([fn(), deadline]);
    return { ok: true, value, ms: Date.now() - start };
  } catch (e) {
    return { ok: false, error: messageOf(e), code: codeOf(e), ms: Date.now() - start };
  } finally {
    clearTimeout(timer);
  }
}
