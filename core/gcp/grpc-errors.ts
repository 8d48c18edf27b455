/** gRPC status → SecretStoreError. Messages carry the operation and status only (never payloads). */
import { SecretStoreError } from '../errors.js';

// Numeric gRPC codes (stable across grpc implementations); avoids loading grpc-js just for an enum.
const CODE_NAMES: Record<number, string> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
};

/** A numeric gRPC status's name (`14` → `UNAVAILABLE`); undefined for a code gRPC does not define. */
export function grpcCodeName(code: number): string | undefined {
  return CODE_NAMES[code];
}

export const Status = {
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNAVAILABLE: 14,
} as const;

export function grpcCode(e: unknown): number | undefined {
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'number') {
    return (e as { code: number }).code;
  }
  return undefined;
}

export function isConflict(e: unknown): boolean {
  const c = grpcCode(e);
  return c === Status.FAILED_PRECONDITION || c === Status.ABORTED;
}

export function toStoreError(e: unknown, op: string): SecretStoreError {
  if (e instanceof SecretStoreError) return e;
  const code = grpcCode(e);
  const name = code === undefined ? 'error' : (grpcCodeName(code) ?? `code ${code}`);
  // Status details from Secret Manager name resources and reasons, not payloads; still bounded.
  const details =
    e && typeof e === 'object' && 'details' in e && typeof (e as { details: unknown }).details === 'string'
      ? (e as { details: string }).details.slice(0, 200)
      : e instanceof Error
        ? e.message.slice(0, 200)
        : '';
  const msg = `Secret Manager ${op} failed: ${name}${details ? ` (${details})` : ''}`;
  switch (code) {
    case Status.UNAVAILABLE:
    case Status.DEADLINE_EXCEEDED:
    case Status.RESOURCE_EXHAUSTED:
      return new SecretStoreError('unavailable', msg);
    case Status.NOT_FOUND:
      return new SecretStoreError('not_found', msg);
    case Status.FAILED_PRECONDITION:
    case Status.ABORTED:
      return new SecretStoreError('conflict', msg);
    default:
      return new SecretStoreError('other', msg);
  }
}
