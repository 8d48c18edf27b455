/**
 * `clock` (skew against a Google API's Date header: an unauthenticated GET / over HTTP/2, as gRPC speaks it) and `saxo`
 * (DNS + TCP + TLS handshake to the auth host: no HTTP request, so no token can be sent).
 */
import { lookup } from 'node:dns/promises';
import { connect as h2connect } from 'node:http2';
import { isIP, connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { GcpConfig } from '../../../core/config.js';
import { isLoopbackHost } from '../../../core/config-check.js';
import { describeSkew, skewOf, SKEW_WARN_MS as RECORDED_SKEW_WARN_MS } from '../../../core/server-time.js';
import type { Facts } from '../doctor.js';
import { attempt, result, skip, type CheckResult, type Probe } from '../types.js';

/** Where the auth host is and what answered: `tcp` for plain HTTP on loopback (a stand-in), else `dns`, then `tls`. */
export interface SaxoFacts {
  url: string;
  protocol: string;
  host: string;
  port: number;
  dns?: Probe<string[]> | undefined;
  tcp?: Probe<true> | undefined;
  tls?: Probe<{ protocol: string; subject?: string | undefined; validTo?: number | undefined }> | undefined;
}

/** The Secret Manager endpoint the agent uses: the stand-in (h2c) when configured, else Google's. */
export function clockTarget(gcp: Pick<GcpConfig, 'secretManagerEmulatorHost'>): { origin: string; local: boolean } {
  const host = gcp.secretManagerEmulatorHost;
  return host ? { origin: `http://${host}`, local: isLoopbackHost(host.replace(/:\d+$/, '')) } : { origin: 'https://secretmanager.googleapis.com', local: false };
}

/** One GET / and the answer's Date header, with when it was sent and received; the session is closed whatever happens. */
function dateHeader(origin: string, timeoutMs: number): Promise<{ dateMs: number; sentAt: number; receivedAt: number }> {
  return new Promise((resolve, reject) => {
    const session = h2connect(origin).on('error', reject);
    const timer = setTimeout(() => session.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    session.on('close', () => clearTimeout(timer));
    const sentAt = Date.now();
    const req = session.request({ ':method': 'GET', ':path': '/' }).on('error', (e) => session.destroy(e));
    req.on('response', (headers) => {
      const [receivedAt, dateMs] = [Date.now(), typeof headers.date === 'string' ? Date.parse(headers.date) : NaN];
      session.destroy();
      if (Number.isFinite(dateMs)) resolve({ dateMs, sentAt, receivedAt });
      else reject(new Error(`the answer from ${origin} has no Date header`));
    });
    req.end();
  });
}

/** `local`: the target runs on this machine (an emulator): a skew is impossible, the check only proves the path. */
export type ClockFacts = Awaited<ReturnType<typeof clockFacts>>;
export async function clockFacts(gcp: GcpConfig, timeoutMs: number) {
  const { origin, local } = clockTarget(gcp);
  return { target: origin, local, probe: await attempt(() => dateHeader(origin, timeoutMs), timeoutMs + 100) };
}

/** Wait for a socket's `event` (TCP connect or TLS handshake), read what is wanted, close; nothing is sent. */
function reach<T>(s: Socket, event: 'connect' | 'secureConnect', what: string, timeoutMs: number, read: () => T): Promise<T> {
  return new Promise((resolve, reject) => {
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no ${what} within ${timeoutMs} ms`)));
    s.once(event, () => {
      const v = read();
      s.destroy();
      resolve(v);
    });
    s.once('error', reject);
  });
}

export async function saxoFacts(authBaseUrl: string, timeoutMs: number): Promise<SaxoFacts> {
  const u = new URL(authBaseUrl);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port) || (u.protocol === 'https:' ? 443 : 80);
  const facts: SaxoFacts = { url: u.origin, protocol: u.protocol, host, port };
  // Plain HTTP is loopback only (core/config-check.ts refuses the rest): a stand-in, where a TCP connect is all doctor tries.
  if (u.protocol === 'http:') {
    const tcp = await attempt(() => reach(tcpConnect({ host, port }), 'connect', 'connection', timeoutMs, () => true as const), timeoutMs + 100);
    return { ...facts, tcp };
  }
  facts.dns = await attempt(async () => (isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address)), timeoutMs);
  if (!facts.dns.ok || facts.dns.value.length === 0) return facts;
  const s = tlsConnect({ host: facts.dns.value[0]!, port, servername: isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'] });
  const read = () => {
    const cert = s.getPeerCertificate();
    return { protocol: s.getProtocol() ?? 'TLS', subject: cert?.subject?.CN ? String(cert.subject.CN) : undefined, validTo: cert?.valid_to ? Date.parse(cert.valid_to) : undefined };
  };
  facts.tls = await attempt(() => reach(s, 'secureConnect', 'TLS handshake', timeoutMs, read), timeoutMs + 100);
  return facts;
}

const SKEW_WARN_MS = 5_000;
const SKEW_FAIL_MS = 60_000;
const NTP = 'sudo timedatectl set-ntp true; timedatectl timesync-status';

/** Against Google's clock (cloud-connected), plus the skew the agent recorded against Saxo's Date header (its state file). */
export function clockCheck(f: Facts): CheckResult {
  const base = clockAgainstGoogle(f);
  const s = f.state.ok ? f.state.value?.clockSkew : undefined;
  if (!s) return base;
  const text = `the agent recorded: ${describeSkew(s.ms)} (${s.by === 'saxo' ? 'measured at an exchange' : 'adjusted for a clock jump'}, ${new Date(s.at).toISOString()})`;
  const summary = base.status === 'skip' ? text : `${base.summary}; ${text}`;
  const details = { ...(base.details ?? {}), recordedSkewMs: s.ms, recordedAt: s.at, recordedBy: s.by };
  if (Math.abs(s.ms) > RECORDED_SKEW_WARN_MS && (base.status === 'ok' || base.status === 'skip')) {
    return result('clock', 'warn', summary, `${NTP}  # expiries stay in Saxo's time, but the bots read token_expiry by this clock`, details);
  }
  return { ...base, summary, details };
}

function clockAgainstGoogle(f: Facts): CheckResult {
  const c = f.clock;
  if (!c) return skip('clock', 'standalone: every expiry is computed and compared on this host');
  if (!c.probe.ok) return result('clock', 'warn', `could not read the time from ${c.target}: ${c.probe.error}`, 'timedatectl status  # is NTP synchronised?');
  const { estimateMs, minAbsMs } = skewOf(c.probe.value);
  const { receivedAt, sentAt } = c.probe.value;
  const txt = `this host is ${(Math.abs(estimateMs) / 1000).toFixed(1)} s ${estimateMs >= 0 ? 'ahead of' : 'behind'} ${c.target} (±${((receivedAt - sentAt + 1000) / 2000).toFixed(1)} s)`;
  const details = { target: c.target, skewMs: estimateMs, minAbsSkewMs: minAbsMs, local: c.local };
  if (minAbsMs > SKEW_WARN_MS) return result('clock', minAbsMs > SKEW_FAIL_MS ? 'fail' : 'warn', `${txt}: expiries are compared across hosts (cloud, agent, bots), so the tiers shift by that much`, NTP, details);
  return result('clock', 'ok', `${txt}${c.local ? " — a stand-in on this host: a real deployment compares with Google's clock" : ''}`, undefined, details);
}

export function saxoCheck(f: Facts): CheckResult {
  const s = f.saxo;
  const where = `${s.host}:${s.port}`;
  // Plain http is loopback only (core/config-check.ts refuses the rest, and any other scheme, before doctor runs).
  if (s.protocol === 'http:') {
    if (s.tcp && !s.tcp.ok) return result('saxo', 'warn', `nothing answers at ${s.url}: ${s.tcp.error}`, 'start the Saxo stand-in, or remove SAXO_AUTH_BASE_URL');
    return skip('saxo', `plain HTTP on loopback (${s.url}, a stand-in): TLS check skipped; TCP connect ok${s.tcp?.ok ? ` in ${s.tcp.ms} ms` : ''}`);
  }
  if (s.dns && !s.dns.ok) return result('saxo', 'fail', `DNS lookup of ${s.host} failed: ${s.dns.error}`, `getent hosts ${s.host}; cat /etc/resolv.conf`);
  if (!s.tls) return result('saxo', 'fail', `${s.host} resolves to no address`, `getent hosts ${s.host}`);
  const addrs = s.dns?.ok ? s.dns.value.join(', ') : '';
  if (!s.tls.ok) {
    const cert = /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ALTNAME/i.test(`${s.tls.code ?? ''} ${s.tls.error}`);
    const fix = cert ? `openssl s_client -connect ${where} -servername ${s.host} </dev/null  # an intercepting proxy or an outdated CA store?` : `check egress from this host to ${where} (firewall, proxy)`;
    return result('saxo', 'fail', `TLS handshake with ${where} (${addrs}) failed: ${s.tls.error}`, fix);
  }
  const t = s.tls.value;
  const valid = t.validTo !== undefined ? `, certificate${t.subject ? ` ${t.subject}` : ''} valid until ${new Date(t.validTo).toISOString().slice(0, 10)}` : '';
  return result('saxo', 'ok', `${s.host} → ${addrs}; ${t.protocol} handshake with ${where} in ${s.tls.ms} ms${valid}; no request sent`, undefined, { addresses: s.dns?.ok ? s.dns.value : [], protocol: t.protocol });
}
