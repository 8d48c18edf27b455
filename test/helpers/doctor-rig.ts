/**
 * Helpers for the doctor integration tests: token pairs whose text is remembered (so every run can
 * prove none of it was printed), the real CLI run as `node bin/token-keeper.js doctor --json`, a
 * self-signed certificate made with openssl, and a TLS front for the (plain HTTP) Saxo stand-in.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { expect } from 'vitest';
import type { DoctorReport, CheckResult } from '../../agent/doctor/types.js';
import type { TokenSet } from '../../core/token.js';
import { startCli, type CliProcess } from './agent-process.js';

export const APP_KEY = 'doctor-app-key';
export const APP_SECRET = 'doctor-app-secret-7f3a9c1e5b';

/** Every token and secret a test planted: no doctor output may contain any of them. */
export const planted = new Set<string>([APP_SECRET]);

export function pair(opts: { accessLeftSec: number; refreshLeftSec?: number; lifeSec?: number; generation?: number; source?: string; access?: string; refresh?: string }): TokenSet {
  const now = Date.now();
  const life = opts.lifeSec ?? 1140;
  const t: TokenSet = {
    accessToken: opts.access ?? `sa_${randomBytes(24).toString('base64url')}`,
    refreshToken: opts.refresh ?? `sr_${randomBytes(24).toString('base64url')}`,
    accessExpiresAt: now + opts.accessLeftSec * 1000,
    refreshExpiresAt: now + (opts.refreshLeftSec ?? 3400) * 1000,
    issuedAt: now + (opts.accessLeftSec - life) * 1000,
    generation: opts.generation ?? 5,
    source: opts.source ?? 'cloud:rev-1:ab12',
    appKey: APP_KEY,
    appSecret: APP_SECRET,
    extra: {},
  };
  planted.add(t.accessToken);
  planted.add(t.refreshToken);
  return t;
}

export interface DoctorRun {
  report: DoctorReport;
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  check(id: string): CheckResult;
}

/** One real `doctor --json` process; asserts no planted secret reached stdout or stderr. */
export async function runDoctor(env: Record<string, string | undefined>, args: string[] = []): Promise<DoctorRun> {
  const t0 = Date.now();
  const p: CliProcess = startCli(['doctor', '--json', ...args], env);
  const closed = new Promise<void>((r) => p.proc.once('close', () => r()));
  const [{ code }] = await Promise.all([p.exited, closed]);
  const ms = Date.now() - t0;
  const stdout = p.raw.join('\n');
  const stderr = p.stderr();
  for (const s of planted) {
    expect(stdout.includes(s) || stderr.includes(s), 'a token or the app secret appeared in doctor output').toBe(false);
  }
  let report: DoctorReport;
  try {
    report = JSON.parse(stdout) as DoctorReport;
  } catch {
    throw new Error(`doctor printed no JSON (exit ${code}): ${stdout.slice(0, 500)} ${stderr.slice(-500)}`);
  }
  expect(report.exitCode).toBe(code);
  return {
    report,
    code,
    stdout,
    stderr,
    ms,
    check: (id) => {
      const c = report.checks.find((x) => x.id === id);
      if (!c) throw new Error(`no check ${id}`);
      return c;
    },
  };
}

/** Checks other than `ids` that are not ok/skip, as "id: status summary" (for a readable failure). */
export function othersNotOk(r: DoctorRun, ...ids: string[]): string[] {
  return r.report.checks.filter((c) => !ids.includes(c.id) && c.status !== 'ok' && c.status !== 'skip').map((c) => `${c.id}: ${c.status} ${c.summary}`);
}

/** A self-signed certificate for IP 127.0.0.1, made with openssl (trusted through NODE_EXTRA_CA_CERTS). */
export function selfSignedCert(dir: string): { certPath: string; key: Buffer; cert: Buffer } {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { certPath, key: readFileSync(keyPath), cert: readFileSync(certPath) };
}

/** TLS on 127.0.0.1 in front of a plain TCP service (the Saxo stand-in). */
export async function tlsFront(targetPort: number, key: Buffer, cert: Buffer): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createTlsServer({ key, cert }, (socket) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    socket.pipe(upstream).pipe(socket);
    const end = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return { url: `https://127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}
