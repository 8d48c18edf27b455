/**
 * Network facts that carry nothing of ours: the `Date` header of a Google API answer (an
 * unauthenticated GET / over HTTP/2, as gRPC speaks it), and DNS + TCP + TLS handshake to Saxo's
 * auth host (no HTTP request at all, so no token can be sent).
 */
import { lookup } from 'node:dns/promises';
import { connect as h2connect } from 'node:http2';
import { isIP, connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { GcpConfig } from '../../../core/config.js';
import { isLoopbackHost } from '../../../core/config-check.js';
import type { ClockFacts, SaxoFacts } from '../facts.js';
import { attempt } from './attempt.js';

// One rule with the configuration check (core/config-check.ts).
export { isLoopbackHost };

/** The Secret Manager endpoint the agent uses: the stand-in (h2c) when configured, else Google's. */
export function clockTarget(gcp: Pick<GcpConfig, 'secretManagerEmulatorHost'>): { origin: string; local: boolean } {
  if (gcp.secretManagerEmulatorHost) {
    const host = gcp.secretManagerEmulatorHost;
    return { origin: `http://${host}`, local: isLoopbackHost(host.replace(/:\d+$/, '')) };
  }
  return { origin: 'https://secretmanager.googleapis.com', local: false };
}

function dateHeader(origin: string, timeoutMs: number): Promise<{ dateMs: number; sentAt: number; receivedAt: number }> {
  return new Promise((resolve, reject) => {
    const session = h2connect(origin);
    const done = (err?: Error, v?: { dateMs: number; sentAt: number; receivedAt: number }) => {
      clearTimeout(timer);
      session.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    session.on('error', (e) => done(e));
    const sentAt = Date.now();
    const req = session.request({ ':method': 'GET', ':path': '/' });
    req.on('response', (headers) => {
      const receivedAt = Date.now();
      const raw = headers.date;
      const dateMs = typeof raw === 'string' ? Date.parse(raw) : NaN;
      if (!Number.isFinite(dateMs)) done(new Error(`the answer from ${origin} has no Date header`));
      else done(undefined, { dateMs, sentAt, receivedAt });
    });
    req.on('error', (e) => done(e));
    req.end();
  });
}

export async function clockFacts(gcp: GcpConfig, timeoutMs: number): Promise<ClockFacts> {
  const { origin, local } = clockTarget(gcp);
  return { target: origin, local, probe: await attempt(() => dateHeader(origin, timeoutMs), timeoutMs + 100) };
}

function tcp(host: string, port: number, timeoutMs: number): Promise<true> {
  return new Promise((resolve, reject) => {
    const s = tcpConnect({ host, port });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no connection within ${timeoutMs} ms`)));
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', reject);
  });
}

function handshake(address: string, port: number, servername: string | undefined, timeoutMs: number) {
  return new Promise<{ protocol: string; subject?: string | undefined; validTo?: number | undefined }>((resolve, reject) => {
    const s = tlsConnect({ host: address, port, servername, ALPNProtocols: ['http/1.1'] });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)));
    s.once('secureConnect', () => {
      const cert = s.getPeerCertificate();
      const out = {
        protocol: s.getProtocol() ?? 'TLS',
        subject: cert?.subject?.CN ? String(cert.subject.CN) : undefined,
        validTo: cert?.valid_to ? Date.parse(cert.valid_to) : undefined,
      };
      s.destroy();
      resolve(out);
    });
    s.once('error', reject);
  });
}

export async function saxoFacts(authBaseUrl: string, timeoutMs: number): Promise<SaxoFacts> {
  const u = new URL(authBaseUrl);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
  const facts: SaxoFacts = { url: u.origin, protocol: u.protocol, host, port, loopback: isLoopbackHost(host) };
  if (u.protocol === 'http:') {
    // Plain HTTP is only legitimate on loopback (a stand-in); anywhere else doctor sends nothing.
    if (facts.loopback) facts.tcp = await attempt(() => tcp(host, port, timeoutMs), timeoutMs + 100);
    return facts;
  }
  if (u.protocol !== 'https:') return facts;
  facts.dns = await attempt(async () => (isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address)), timeoutMs);
  if (!facts.dns.ok || facts.dns.value.length === 0) return facts;
  const address = facts.dns.value[0]!;
  facts.tls = await attempt(() => handshake(address, port, isIP(host) ? undefined : host, timeoutMs), timeoutMs + 100);
  return facts;
}
