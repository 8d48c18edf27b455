/** Message helpers and limits of the Secret Manager stand-in's model (state.ts), as the real v1 API has them. */
import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { RpcError } from './errors.js';

export type Msg = Record<string, unknown>;

export const MAX_PAYLOAD = 64 * 1024;
const MAX_ANNOTATIONS_BYTES = 16 * 1024;
export const SECRET_ID = /^[a-zA-Z0-9_-]{1,255}$/;
const ANNOTATION_KEY = /^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,61}[a-zA-Z0-9])?$/;
const MAX_PAGE = 25_000;

export const newEtag = (): string => `"${randomBytes(8).toString('hex')}"`;
export const ts = (ms: number) => ({ seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });

export function str(m: Msg, key: string): string {
  const v = m[key];
  return typeof v === 'string' ? v : '';
}

export function strMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out[k] = String(x);
  return out;
}

export function validateAnnotations(a: Record<string, string>): void {
  let bytes = 0;
  for (const [k, v] of Object.entries(a)) {
    if (!ANNOTATION_KEY.test(k)) throw new RpcError(status.INVALID_ARGUMENT, `Invalid annotation key "${k}"`);
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (bytes > MAX_ANNOTATIONS_BYTES) throw new RpcError(status.INVALID_ARGUMENT, 'Annotations exceed 16 KiB.');
}

export function page<T>(all: T[], req: Msg): { items: T[]; next_page_token: string; total_size: number } {
  const size = Number(req.page_size ?? 0) || MAX_PAGE;
  if (size < 0 || size > MAX_PAGE) throw new RpcError(status.INVALID_ARGUMENT, `page_size must be ≤ ${MAX_PAGE}`);
  const token = str(req, 'page_token');
  const start = token ? Number(token) : 0;
  if (!Number.isInteger(start) || start < 0) throw new RpcError(status.INVALID_ARGUMENT, 'Invalid page_token');
  const items = all.slice(start, start + size);
  const next = start + size < all.length ? String(start + size) : '';
  return { items, next_page_token: next, total_size: all.length };
}
