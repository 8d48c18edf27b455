/**
 * HTTP plumbing of the relogin service: the headers every answer carries, cookies, form bodies,
 * the client address and the in-memory rate limits (per instance; the link's view counter and
 * single use in the link-state secret are the limits that hold across instances).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export const STATE_COOKIE = '__Host-tk-relogin';
export const RESULT_COOKIE = '__Host-tk-relogin-result';

/** Strict CSP: no script, no images, no framing; forms only to us and to Saxo's sign-in origins. */
export function securityHeaders(formOrigins: string[]): Record<string, string> {
  return {
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; form-action 'self' ${formOrigins.join(' ')}; frame-ancestors 'none'; base-uri 'none'`,
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
  };
}

export function sendHtml(res: ServerResponse, status: number, html: string, headers: Record<string, string>, extra: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { ...headers, 'content-type': 'text/html; charset=utf-8', ...extra });
  res.end(html);
}

export function redirect(res: ServerResponse, location: string, headers: Record<string, string>, extra: Record<string, string | string[]> = {}): void {
  res.writeHead(303, { ...headers, location, ...extra });
  res.end();
}

/** `__Host-` cookie: Secure, no Domain, Path=/ — only ever set by this origin over HTTPS (or localhost). */
export function setCookie(name: string, value: string, maxAgeSec: number): string {
  return `${name}=${value}; Max-Age=${maxAgeSec}; Path=/; Secure; HttpOnly; SameSite=Lax`;
}

export const clearCookie = (name: string): string => `${name}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax`;

export function readCookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim() || undefined;
  }
  return undefined;
}

export async function readForm(req: IncomingMessage, limit = 4096): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw new Error('form too large');
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * Behind Cloud Run's front end the peer is Google's proxy, which APPENDS the client's address to
 * X-Forwarded-For: the last entry is the one a client cannot forge (it can only prepend).
 * Elsewhere the socket's peer is the client.
 */
export function clientAddress(req: IncomingMessage, trustForwarded: boolean): string {
  const xff = req.headers['x-forwarded-for'];
  const last = (Array.isArray(xff) ? xff.join(',') : xff)?.split(',').pop()?.trim();
  return (trustForwarded && last) || req.socket.remoteAddress || 'unknown';
}

export interface RateLimits {
  perAddressPerMinute: number;
  globalPerMinute: number;
}

export const DEFAULT_RATE_LIMITS: RateLimits = { perAddressPerMinute: 30, globalPerMinute: 300 };

/** Fixed one-minute windows, per address and for the whole instance. */
export class RateLimiter {
  private window = 0;
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(private readonly limits: RateLimits, private readonly now: () => number) {}

  /** undefined when allowed; otherwise which limit refused. */
  take(address: string): 'address' | 'global' | undefined {
    const w = Math.floor(this.now() / 60_000);
    if (w !== this.window) {
      this.window = w;
      this.total = 0;
      this.byAddress.clear();
    }
    const n = (this.byAddress.get(address) ?? 0) + 1;
    if (n > this.limits.perAddressPerMinute) return 'address';
    if (this.total + 1 > this.limits.globalPerMinute) return 'global';
    this.byAddress.set(address, n);
    this.total++;
    return undefined;
  }
}
