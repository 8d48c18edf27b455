/**
 * The unit's sandbox with the agent really inside it (no systemd PID 1 here, so its pieces are
 * rebuilt from the unit file): the SystemCallFilter= lines, expanded by `systemd-analyze
 * syscall-filter` exactly as systemd expands them, loaded with libseccomp with
 * SystemCallErrorNumber=EPERM; /proc mounted as ProtectProc=invisible + ProcSubset=pid make it, in
 * a fresh mount and PID namespace. The agent must refresh twice against the Saxo stand-in and exit 0
 * on SIGTERM - i.e. Node and the agent are happy with the filter and the /proc subset - standalone,
 * and cloud-connected (gRPC to the Secret Manager stand-in, Pub/Sub streaming pull from the emulator).
 * Needs root, unshare(1), python3 + libseccomp.so.2 and systemd-analyze; skipped (and named) otherwise.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSaxoStandin } from '../../standins/saxo/server.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { AGENT_NODE_FLAGS } from '../../agent/runtime-flags.js';
import { pubsubAvailable } from '../helpers/gcp.js';
import { startCloudRig } from '../helpers/cloud-rig.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const UNIT = join(ROOT, 'infra', 'systemd', 'token-keeper.service');

// SystemCallFilter=<allow list> + SystemCallErrorNumber=EPERM through libseccomp, then exec.
const LAUNCHER = `
import ctypes, errno, os, sys
lib = ctypes.CDLL('libseccomp.so.2')
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = lib.seccomp_init(0x00050000 | errno.EPERM)
for name in open(sys.argv[1]).read().split():
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0:
        lib.seccomp_rule_add(ctx, 0x7fff0000, nr, 0)
assert lib.seccomp_load(ctx) == 0
os.execvp(sys.argv[2], sys.argv[2:])
`;

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (spawnSync('unshare', ['--version']).status !== 0) return 'no unshare(1)';
  if (spawnSync('systemd-analyze', ['--version']).status !== 0) return 'no systemd-analyze';
  if (spawnSync('python3', ['-c', "import ctypes; ctypes.CDLL('libseccomp.so.2')"]).status !== 0) return 'no python3 with libseccomp.so.2';
  if (spawnSync('unshare', ['-m', '-p', '-f', 'sh', '-c', 'mount -t proc -o subset=pid,hidepid=invisible proc /proc']).status !== 0) return 'cannot mount /proc with subset=pid';
  return undefined;
}

/** The syscalls the unit allows: its SystemCallFilter= lines applied in order, groups expanded by systemd. */
function allowedSyscalls(): string[] {
  const listing = spawnSync('systemd-analyze', ['syscall-filter', '--no-pager'], { encoding: 'utf8' }).stdout;
  const groups = new Map<string, string[]>();
  let current = '';
  for (const line of listing.split('\n')) {
    if (/^@\S+/.test(line)) groups.set((current = line.trim()), []);
    else if (current && /^\s+[@\w]/.test(line)) groups.get(current)!.push(line.trim());
  }
  const expand = (item: string): string[] => (item.startsWith('@') ? (groups.get(item) ?? []).flatMap(expand) : [item]);
  const filters = readFileSync(UNIT, 'utf8').split('\n').filter((l) => l.startsWith('SystemCallFilter=')).map((l) => l.slice('SystemCallFilter='.length));
  expect(filters.length).toBeGreaterThan(0);
  let allowed = new Set<string>();
  for (const f of filters) {
    const deny = f.startsWith('~');
    const names = (deny ? f.slice(1) : f).split(/\s+/).filter(Boolean).flatMap(expand);
    if (deny) for (const n of names) allowed.delete(n);
    else allowed = new Set([...allowed, ...names]);
  }
  return [...allowed].sort();
}

const why = missing();
describe.skipIf(why !== undefined)(why ? `the unit's sandbox (SKIPPED: ${why})` : "the agent inside the unit's syscall filter and /proc subset", () => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-sandbox-'));
  beforeAll(() => {
    const allowed = allowedSyscalls();
    expect(allowed).toContain('epoll_pwait');
    expect(allowed).not.toContain('setgroups'); // in @privileged
    writeFileSync(join(dir, 'allowed.txt'), allowed.join('\n'));
    writeFileSync(join(dir, 'launcher.py'), LAUNCHER);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const sandbox = (argv: string[], env: Record<string, string> = {}) =>
    spawn('unshare', ['-m', '-p', '-f', '--kill-child', 'sh', '-c',
      'mount -t proc -o subset=pid,hidepid=invisible proc /proc && exec python3 "$0" "$@"', join(dir, 'launcher.py'), join(dir, 'allowed.txt'), ...argv], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', METADATA_SERVER_DETECTION: 'none', LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });

  /** Runs the agent in the sandbox until `done(events)`, then SIGTERM; returns the events; expects exit 0. */
  async function runAgent(env: Record<string, string>, done: (events: string[]) => boolean): Promise<string[]> {
    const agent = sandbox([process.execPath, ...AGENT_NODE_FLAGS, join(ROOT, 'bin', 'token-keeper.js'), 'agent'], env);
    const events: string[] = [];
    let stderr = '';
    agent.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => agent.on('exit', r));
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      agent.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        buf += chunk;
        for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
          try {
            events.push((JSON.parse(buf.slice(0, i)) as { event: string }).event);
          } catch {
            /* not a log line */
          }
          if (done(events)) resolve();
        }
      });
      void exited.then(() => reject(new Error(`agent exited early: ${stderr.slice(-800)} ${events.join(',')}`)));
    });
    // node is PID 1 of the namespace: the child of unshare (sh and python exec'd into it).
    const nodePid = Number(readFileSync(`/proc/${agent.pid}/task/${agent.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    expect(readFileSync(`/proc/${nodePid}/cmdline`, 'utf8')).toContain('token-keeper.js');
    process.kill(nodePid, 'SIGTERM');
    expect(await exited, stderr.slice(-800)).toBe(0);
    expect(events.filter((e) => /error|failed|unavailable/.test(e)), events.join(',')).toEqual([]);
    return events;
  }

  it('refreshes twice and stops cleanly with the filter loaded and /proc reduced to processes', async () => {
    // The sandbox is real: a privileged call fails with EPERM even as root, and /proc/meminfo is gone.
    const probe = sandbox([process.execPath, '-e',
      "let r='allowed'; try { process.setgroups([0]); } catch (e) { r = e.code; } console.log(JSON.stringify({ setgroups: r, meminfo: require('fs').existsSync('/proc/meminfo') }))"]);
    let probeOut = '';
    probe.stdout!.on('data', (c: Buffer) => (probeOut += c.toString()));
    expect(await new Promise((r) => probe.on('exit', r))).toBe(0);
    expect(JSON.parse(probeOut)).toEqual({ setgroups: 'EPERM', meminfo: false });

    const standin = await startSaxoStandin({ accessLifetimeSec: 8, refreshLifetimeSec: 60, clients: { k: 'app-secret-0123456789' } });
    try {
      const pair = standin.issue('k');
      await createCacheFile(join(dir, 'saxo_token_cache.json')).write({
        accessToken: pair.access_token, refreshToken: pair.refresh_token, accessExpiresAt: Date.now() + 7000, appKey: 'k', appSecret: 'app-secret-0123456789', extra: {},
      });
      const events = await runAgent({
        TOKEN_KEEPER_DATA_DIR: dir, TOKEN_KEEPER_CREATE_DATA_DIR: 'true', SAXO_AUTH_BASE_URL: standin.url, SAXO_APP_KEY: 'k', SAXO_APP_SECRET: 'app-secret-0123456789',
        CHECK_INTERVAL_SECONDS: '0.5', REFRESH_THRESHOLD_SECONDS: '4', TOKEN_EXPIRY_MARGIN_SECONDS: '1', REFRESH_TOKEN_ALERT_SECONDS: '0',
      }, (e) => e.filter((x) => x === 'token_refreshed').length >= 2);
      expect(events).toContain('agent_ready');
      // The start-up page release (agent/page-release.ts) works under the filter and the /proc subset.
      expect(events).toContain('pages_released');
      expect(events).not.toContain('pages_not_released');
      expect(standin.stats().reusedPresentations).toBe(0);
    } finally {
      await standin.close();
    }
  }, 60_000);

  // Under CI=true the emulator is required (the rig fails without it), as everywhere else.
  it.skipIf(!pubsubAvailable() && process.env.CI !== 'true')('cloud-connected: reads and writes the secret over gRPC, publishes and pulls events, inside the sandbox', async () => {
    const rig = await startCloudRig({ projectId: 'tk-sandbox', accessLifetimeSec: 20, refreshLifetimeSec: 300 });
    try {
      const cloudDir = mkdtempSync(join(tmpdir(), 'tk-sandbox-cloud-'));
      // 3 s left, no function running: the agent refreshes under the lease, writes the secret, announces.
      await rig.seedSecret(3, 1);
      const sub = await rig.createSubscription('agent-sandbox');
      const events = await runAgent(
        rig.agentEnv(cloudDir, { TOKEN_SUBSCRIPTION_ID: sub, CHECK_INTERVAL_SECONDS: '0.5', REFRESH_THRESHOLD_SECONDS: '5', REFRESH_TOKEN_ALERT_SECONDS: '0' }),
        (e) => e.includes('token_refreshed') && e.includes('agent_ready'),
      );
      expect(events).toContain('cache_written');
      expect((await rig.latest())?.generation).toBeGreaterThanOrEqual(2);
      rmSync(cloudDir, { recursive: true, force: true });
    } finally {
      await rig.close();
    }
  }, 90_000);
});
