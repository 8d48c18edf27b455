/** Typed errors. Messages never contain token material or app secrets (I5). */

export type SaxoErrorKind = 'retryable' | 'fatal';

export class SaxoError extends Error {
  override readonly name = 'SaxoError';
  constructor(
    readonly kind: SaxoErrorKind,
    /** OAuth error code (`invalid_grant`, …) or a synthetic one (`http_503`, `network`, `timeout`, `malformed_response`). */
    readonly code: string,
    message: string,
    readonly status?: number,
    /** Seconds from a Retry-After header, when Saxo sent one. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
  get retryable(): boolean {
    return this.kind === 'retryable';
  }
}

export class LockTimeoutError extends Error {
  override readonly name = 'LockTimeoutError';
  constructor(readonly path: string, readonly waitedMs: number) {
    super(`Could not acquire token lock ${path} within ${waitedMs} ms`);
  }
}

export class SecretStoreError extends Error {
  override readonly name = 'SecretStoreError';
  constructor(readonly code: 'unavailable' | 'not_found' | 'conflict' | 'corrupt' | 'other', message: string) {
    super(message);
  }
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * One line about a caught value for logs and stderr: "Name: message", never a stack or a body.
 * (Messages of this project's errors are secret-free by construction; the logger redacts anyway.)
 */
export function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
