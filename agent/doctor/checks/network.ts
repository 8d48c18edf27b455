/**
 * `clock` (skew against a Google API's Date header: an unauthenticated GET / over HTTP/2, as gRPC
 * speaks it) and `saxo` (DNS + TCP + TLS handshake to the auth host: no HTTP request, so no token
 * can be sent).
 */
import { lookup } from 'node:dns/promises';
import { connect as h2connect } from 'node:http2';
import { isIP, connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { GcpConfig } from '../../../core/config.js';
import { isLoopbackHost } from '../../../core/config-check.js';
import { describeSkew, skewOf, SKEW_WARN_MS as RECORDED_SKEW_WARN_MS } from '../../../core/server-time.js';
import type { Facts } from '../doctor.js';
import { attempt, skip, type CheckResult, type Probe } from '../types.js';

// One rule with the configuration check, one arithmetic for a Date header with the agent's expiries (docs/DESIGN.md "Server time").
export { isLoopbackHost, skewOf };

export interface ClockFacts {
  /** Where the Date header came from (an https/http origin). */
  target: string;
  /** The target runs on this machine (an emulator): a skew is impossible, the check only proves the path. */
  local: boolean;
  probe: Probe<{ dateMs: number; sentAt: number; receivedAt: number }>;
}

export interface SaxoFacts {
  url: string;
  protocol: string;
  host: string;
  port: number;
  loopback: boolean;
  dns?: Probe<string[]> | undefined;
  tcp?: Probe<true> | undefined;
  tls?: Probe<{ protocol: string; subject?: string | undefined; validTo?: number | undefined }> | undefined;
}

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

const SKEW_WARN_MS = 5_000;
const SKEW_FAIL_MS = 60_000;

/** The skew the agent recorded against Saxo's Date header (state file), as doctor reports it. */
function recordedSkew(f: Facts): { text: string; warn: boolean; details: Record<string, unknown> } | undefined {
  const s = f.state.ok ? f.state.value?.clockSkew : undefined;
  if (!s) return undefined;
  const how = s.by === 'saxo' ? 'measured at an exchange' : 'adjusted for a clock jump';
  return {
    text: `the agent recorded: ${describeSkew(s.ms)} (${how}, ${new Date(s.at).toISOString()})`,
    warn: Math.abs(s.ms) > RECORDED_SKEW_WARN_MS,
    details: { recordedSkewMs: s.ms, recordedAt: s.at, recordedBy: s.by },
  };
}

const RECORDED_FIX = "sudo timedatectl set-ntp true; timedatectl timesync-status  # expiries stay in Saxo's time, but the bots read token_expiry by this clock";

export function clockCheck(f: Facts): CheckResult {
  const rec = recordedSkew(f);
  const base = clockCheckAgainstGoogle(f);
  if (!rec) return base;
  const summary = base.status === 'skip' ? rec.text : `${base.summary}; ${rec.text}`;
  const details = { ...(base.details ?? {}), ...rec.details };
  if (rec.warn && (base.status === 'ok' || base.status === 'skip')) return { id: 'clock', status: 'warn', summary, fix: RECORDED_FIX, details };
  return { ...base, summary, details };
}

function clockCheckAgainstGoogle(f: Facts): CheckResult {
  const c = f.clock;
  if (!c) return skip('clock', 'standalone: every expiry is computed and compared on this host');
  if (!c.probe.ok) {
    return { id: 'clock', status: 'warn', summary: `could not read the time from ${c.target}: ${c.probe.error}`, fix: 'timedatectl status  # is NTP synchronised?' };
  }
  const { estimateMs, minAbsMs } = skewOf(c.probe.value);
  const txt = `this host is ${(Math.abs(estimateMs) / 1000).toFixed(1)} s ${estimateMs >= 0 ? 'ahead of' : 'behind'} ${c.target} (±${((c.probe.value.receivedAt - c.probe.value.sentAt + 1000) / 2000).toFixed(1)} s)`;
  const details = { target: c.target, skewMs: estimateMs, minAbsSkewMs: minAbsMs, local: c.local };
  if (minAbsMs > SKEW_FAIL_MS || minAbsMs > SKEW_WARN_MS) {
    return {
      id: 'clock',
      status: minAbsMs > SKEW_FAIL_MS ? 'fail' : 'warn',
      summary: `${txt}: expiries are compared across hosts (cloud, agent, bots), so the tiers shift by that much`,
      fix: 'sudo timedatectl set-ntp true; timedatectl timesync-status',
      details,
    };
  }
  const local = c.local ? ' — a stand-in on this host: a real deployment compares with Google\'s clock' : '';
  return { id: 'clock', status: 'ok', summary: `${txt}${local}`, details };
}

export function saxoCheck(f: Facts): CheckResult {
  const s = f.saxo;
  const where = `${s.host}:${s.port}`;
  if (s.protocol === 'http:') {
    if (!s.loopback) {
      return { id: 'saxo', status: 'fail', summary: `${s.url} is plain HTTP to a non-loopback host: doctor sent nothing (see config)`, fix: 'remove SAXO_AUTH_BASE_URL (SAXO_ENVIRONMENT picks the https host)' };
    }
    if (s.tcp && !s.tcp.ok) return { id: 'saxo', status: 'warn', summary: `nothing answers at ${s.url}: ${s.tcp.error}`, fix: 'start the Saxo stand-in, or remove SAXO_AUTH_BASE_URL' };
    return skip('saxo', `plain HTTP on loopback (${s.url}, a stand-in): TLS check skipped; TCP connect ok${s.tcp?.ok ? ` in ${s.tcp.ms} ms` : ''}`);
  }
  if (s.protocol !== 'https:') return { id: 'saxo', status: 'fail', summary: `${s.url}: unsupported scheme ${s.protocol}`, fix: 'SAXO_AUTH_BASE_URL must be https://…' };
  if (s.dns && !s.dns.ok) {
    return { id: 'saxo', status: 'fail', summary: `DNS lookup of ${s.host} failed: ${s.dns.error}`, fix: `getent hosts ${s.host}; cat /etc/resolv.conf` };
  }
  if (!s.tls) return { id: 'saxo', status: 'fail', summary: `${s.host} resolves to no address`, fix: `getent hosts ${s.host}` };
  const addrs = s.dns?.ok ? s.dns.value.join(', ') : '';
  if (!s.tls.ok) {
    const cert = /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ALTNAME/i.test(`${s.tls.code ?? ''} ${s.tls.error}`);
    return {
      id: 'saxo',
      status: 'fail',
      summary: `TLS handshake with ${where} (${addrs}) failed: ${s.tls.error}`,
      fix: cert
        ? `openssl s_client -connect ${where} -servername ${s.host} </dev/null  # an intercepting proxy or an outdated CA store?`
        : `check egress from this host to ${where} (firewall, proxy)`,
    };
  }
  const t = s.tls.value;
  const valid = t.validTo !== undefined ? `, certificate${t.subject ? ` ${t.subject}` : ''} valid until ${new Date(t.validTo).toISOString().slice(0, 10)}` : '';
  return { id: 'saxo', status: 'ok', summary: `${s.host} → ${addrs}; ${t.protocol} handshake with ${where} in ${s.tls.ms} ms${valid}; no request sent`, details: { addresses: s.dns?.ok ? s.dns.value : [], protocol: t.protocol } };
}
