/** The version-list filter of the Secret Manager stand-in, as the real API parses it. */
import { status } from '@grpc/grpc-js';
import { RpcError } from './errors.js';

export type VersionState = 'ENABLED' | 'DISABLED' | 'DESTROYED';

/** Supports the state filters of the real API: `state:X`, `NOT state:X` / `-state:X`, joined by OR. */
export function parseStateFilter(filter: string): (s: VersionState) => boolean {
  const f = filter.trim();
  if (!f) return () => true;
  const terms = f.split(/\s+OR\s+/).map((t) => {
    const m = /^(NOT\s+|-)?state\s*[:=]\s*(ENABLED|DISABLED|DESTROYED)$/i.exec(t.trim().replace(/^\((.*)\)$/, '$1'));
    if (!m) throw new RpcError(status.INVALID_ARGUMENT, `Unsupported filter "${filter}"`);
    const neg = Boolean(m[1]);
    const want = m[2]!.toUpperCase();
    return (s: VersionState) => (s === want) !== neg;
  });
  return (s) => terms.some((t) => t(s));
}
