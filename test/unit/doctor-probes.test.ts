/**
 * doctor's helpers that parse what the system says: /proc/locks, the unit file, tmp names,
 * redaction and the report format (the flock probe is in test/integration/doctor-system.test.ts).
 * Also: the permission list doctor asks for is the one the code needs (one place, checked here).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basename } from 'node:path';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SECRET_MANAGER_CALLS, SECRET_MANAGER_PERMISSIONS, identity } from '../../agent/doctor/gcp.js';
import { isTmpName } from '../../agent/doctor/checks/data-dir.js';
import { devParts, locksOn, parseProcLocks } from '../../agent/lock-holders.js';
import { isLoopbackHost } from '../../core/config-check.js';
import { clockTarget } from '../../agent/doctor/checks/network.js';
import { pubsubFacts, type PubSubClients } from '../../agent/doctor/checks/pubsub.js';
import { secretFacts } from '../../agent/doctor/checks/secret-manager.js';
import { isTmpNameOf, tmpPathFor } from '../../agent/atomic-write.js';
import { parseUnit } from '../../agent/doctor/system.js';
import { buildReport, formatText, redact } from '../../agent/doctor/command.js';
import { attempt, exitCodeOf, fold, human, sh } from '../../agent/doctor/types.js';
import { RPC_PERMISSION } from '../../standins/secret-manager/iam.js';
import { inProcessSecretManager } from '../../standins/secret-manager/in-process.js';
import { SecretManagerState } from '../../standins/secret-manager/state.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { createLinkStateStore } from '../../functions/relogin/link-store.js';
import type { SecretStore } from '../../core/ports.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('doctor permissions: exactly what the code uses', () => {
  /**
   * The runtime's Secret Manager adapters, driven through every method of their interfaces over the
   * stand-in's in-process transport (which records each RPC): the calls made are the IAM table's.
   * A new SecretStore method fails to compile here until it is driven too.
   */
  it('SECRET_MANAGER_CALLS = the RPCs the runtime adapters (core/gcp/secret-store.ts, functions/relogin/link-store.ts) make', async () => {
    const model = new SecretManagerState();
    model.CreateSecret({ parent: 'projects/p', secret_id: 'tok', secret: { replication: { automatic: {} } } });
    model.CreateSecret({ parent: 'projects/p', secret_id: 'links', secret: { replication: { automatic: {} } } });
    const t = inProcessSecretManager(model);
    const store = createSecretStore({ client: t.client, projectId: 'p', secretId: 'tok' });
    const pair = { accessToken: 'a'.repeat(20), refreshToken: 'r'.repeat(20), accessExpiresAt: Date.now() + 1e6, refreshExpiresAt: Date.now() + 3e6, generation: 1, extra: {} };
    const drive: Record<Exclude<keyof SecretStore, 'name'>, () => Promise<unknown>> = {
      add: () => store.add(pair),
      latest: () => store.latest(),
      version: () => store.version(1),
      countVersions: () => store.countVersions(),
      prune: async () => (await store.add({ ...pair, generation: 2 }), store.prune(1)),
      meta: () => store.meta(),
      acquireLease: () => store.acquireLease('doctor-test', 30_000, Date.now()),
      releaseLease: () => store.releaseLease('doctor-test', { failures: 0 }),
      record: () => store.record({ failures: 1 }),
    };
    for (const run of Object.values(drive)) await run();
    const links = createLinkStateStore({ client: t.client, projectId: 'p', secretId: 'links' });
    await links.transact((doc) => ({ doc, result: undefined }));
    await links.mac('purpose', 'value');
    const called = new Set(t.calls.map((m) => m[0]!.toLowerCase() + m.slice(1)));
    expect([...called].sort()).toEqual(Object.keys(SECRET_MANAGER_CALLS).sort());
  });

  it('equals the custom role infra/terraform/iam.tf grants, and the stand-in\'s per-RPC permissions', () => {
    const tf = readFileSync(join(ROOT, 'infra', 'terraform', 'iam.tf'), 'utf8');
    const role = /resource "google_project_iam_custom_role" "token_secret"[\s\S]*?permissions\s*=\s*\[([\s\S]*?)\]/.exec(tf)?.[1] ?? '';
    expect([...role.matchAll(/"([\w.]+)"/g)].map((m) => m[1]).sort()).toEqual([...SECRET_MANAGER_PERMISSIONS]);
    for (const [method, perm] of Object.entries(SECRET_MANAGER_CALLS)) {
      expect(RPC_PERMISSION[method[0]!.toUpperCase() + method.slice(1)], method).toBe(perm);
    }
  });
});

describe('doctor probes', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tk-doctor-probe-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const LOCKS = [
    '1: FLOCK  ADVISORY  WRITE 7921 fe:00:2146472 0 EOF',
    '1: -> FLOCK  ADVISORY  WRITE 8000 fe:00:2146472 0 EOF',
    '2: POSIX  ADVISORY  READ 6801 00:2b:2146472 0 EOF',
    '3: OFDLCK ADVISORY  WRITE -1 fe:00:99 0 EOF',
  ].join('\n');

  it('/proc/locks: holders by device and inode, waiters left out; inode alone when no device matches', () => {
    const locks = parseProcLocks(LOCKS);
    expect(locks).toHaveLength(3);
    expect(devParts(65024)).toEqual({ major: 0xfe, minor: 0 });
    expect(locksOn(locks, { dev: 65024, ino: 2146472 }).map((l) => l.pid)).toEqual([7921]);
    expect(locksOn(locks, { dev: 1, ino: 2146472 }).map((l) => l.pid)).toEqual([7921, 6801]);
    expect(locksOn(locks, { dev: 65024, ino: 5 })).toEqual([]);
  });

  it('parseUnit: [Service] keys only, drop-ins override, an empty ReadWritePaths= resets', () => {
    const u = parseUnit('/u', [
      '[Unit]\nUser=nope\n[Service]\nUser=calypso\nGroup=calypso\nReadWritePaths=/opt/calypso/data\n# ReadWritePaths=/x\n',
      '[Service]\nReadWritePaths=-/var/extra /srv/more\n',
    ]);
    expect(u).toEqual({ path: '/u', user: 'calypso', group: 'calypso', readWritePaths: ['/opt/calypso/data', '/var/extra', '/srv/more'], stateDirectories: [], protectSystem: 'no' });
    expect(parseUnit('/u', ['[Service]\nReadWritePaths=/a\n', '[Service]\nReadWritePaths=\nUser=bots\n'])).toMatchObject({ user: 'bots', readWritePaths: [] });
  });

  it('parseUnit: ProtectSystem= (booleans, full, strict; later files win, empty resets)', () => {
    expect(parseUnit('/u', ['[Service]\nProtectSystem=strict\n']).protectSystem).toBe('strict');
    expect(parseUnit('/u', ['[Service]\nProtectSystem=full\n']).protectSystem).toBe('full');
    expect(parseUnit('/u', ['[Service]\nProtectSystem=true\n']).protectSystem).toBe('yes');
    expect(parseUnit('/u', ['[Service]\nProtectSystem=strict\n', '[Service]\nProtectSystem=\n']).protectSystem).toBe('no');
    expect(parseUnit('/u', ['[Service]\nProtectSystem=no\n', '[Service]\nProtectSystem=strict\n']).protectSystem).toBe('strict');
    expect(parseUnit('/u', ['[Unit]\nProtectSystem=strict\n']).protectSystem).toBe('no');
  });

  it('parseUnit: a template\'s StateDirectory= (with %i) is writable for the instance, under the state root', () => {
    const text = '[Service]\nUser=calypso\nStateDirectory=token-keeper/%i\nReadWritePaths=-/srv/%i\n';
    expect(parseUnit('/t@.service', [text], 'live')).toMatchObject({ readWritePaths: ['/srv/live'], stateDirectories: ['/var/lib/token-keeper/live'] });
    expect(parseUnit('/t@.service', [text, '[Service]\nStateDirectory=\nStateDirectory=a b:c\n'], 'live', '/tmp/x').stateDirectories).toEqual(['/tmp/x/a', '/tmp/x/b']);
  });

  it('tmp names: the bots\' fixed one and atomic-write\'s unique ones, nothing else', () => {
    const paths = { cachePath: '/d/saxo_token_cache.json', statePath: '/d/.token-keeper-state.json' };
    expect(isTmpName('saxo_token_cache.tmp', paths)).toBe(true);
    expect(isTmpName('.saxo_token_cache.json.0a1b2c3d4e5f.tmp', paths)).toBe(true);
    expect(isTmpName('..token-keeper-state.json.abcdef012345.tmp', paths)).toBe(true);
    expect(isTmpName('saxo_token_cache.json', paths)).toBe(false);
    expect(isTmpName('notes.tmp', paths)).toBe(false);
    // The rule is atomic-write's own: whatever name it picks for a file, doctor recognises.
    for (const path of Object.values(paths)) {
      const tmp = basename(tmpPathFor(path, '0123456789ab'));
      expect(isTmpNameOf(path, tmp)).toBe(true);
      expect(isTmpName(tmp, paths)).toBe(true);
    }
    expect(isTmpNameOf(paths.cachePath, '..token-keeper-state.json.0123456789ab.tmp')).toBe(false);
  });

  it('loopback detection and the clock\'s target (never a non-loopback host with an emulator configured)', () => {
    expect(['127.0.0.1', 'localhost', '[::1]', '127.9.9.9'].every(isLoopbackHost)).toBe(true);
    expect(['10.0.0.1', 'sim.logonvalidation.net', '128.0.0.1'].some(isLoopbackHost)).toBe(false);
    expect(clockTarget({ secretManagerEmulatorHost: '127.0.0.1:8500' })).toEqual({ origin: 'http://127.0.0.1:8500', local: true });
    expect(clockTarget({})).toEqual({ origin: 'https://secretmanager.googleapis.com', local: false });
  });
});

describe('doctor report', () => {
  it('exit code: 2 on any failure, 1 on any warning, else 0; fold keeps the worst and every fix', () => {
    expect(exitCodeOf([{ id: 'a', status: 'skip', summary: '' }, { id: 'b', status: 'ok', summary: '' }])).toBe(0);
    expect(exitCodeOf([{ id: 'a', status: 'warn', summary: '' }, { id: 'b', status: 'ok', summary: '' }])).toBe(1);
    expect(exitCodeOf([{ id: 'a', status: 'warn', summary: '' }, { id: 'b', status: 'fail', summary: '' }])).toBe(2);
    const c = fold('x', 'all good', [
      { status: 'ok', text: 'fine' },
      { status: 'warn', text: 'w', fix: 'f1' },
      { status: 'fail', text: 'f', fix: 'f2' },
    ]);
    expect(c).toMatchObject({ status: 'fail', summary: 'w; f', fix: 'f1 ; f2' });
    expect(fold('x', 'all good', [{ status: 'ok', text: 'fine' }])).toMatchObject({ status: 'ok', summary: 'all good' });
  });

  it('text: one line per check with its fix, then the counts; redaction catches planted secrets', () => {
    const r = buildReport(
      [
        { id: 'config', status: 'ok', summary: 'fine' },
        { id: 'lock', status: 'warn', summary: 'held by pid 9 (python3 bot.py --token sr_secret_value_1)', fix: 'ps -p 9' },
      ],
      'standalone',
      'token-keeper@live',
      Date.now(),
    );
    const text = formatText(r);
    expect(text.split('\n')).toEqual([
      'ok    config  fine',
      'warn  lock    held by pid 9 (python3 bot.py --token sr_secret_value_1) — fix: ps -p 9',
      expect.stringMatching(/^doctor: 1 ok, 1 warn, 0 fail, 0 skipped in \d+ ms \(token-keeper@live, standalone\) — exit 1$/),
    ]);
    expect(redact(text, ['sr_secret_value_1', undefined, 'short'])).toContain('--token [REDACTED])');
  });

  it('human durations and shell quoting', () => {
    expect([human(5_000), human(119_000), human(125_000), human(7_260_000), human(-30_000)]).toEqual(['5 s', '119 s', '2m 05s', '2h 01m', '-30 s']);
    expect(sh('/opt/calypso/data')).toBe('/opt/calypso/data');
    expect(sh("it's here")).toBe(`'it'\\''s here'`);
  });
});

describe('doctor identity (for the --member of a fix)', () => {
  it("a key file's client_email; nothing is asked with emulators or with metadata detection off", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tk-doctor-id-'));
    try {
      const key = join(dir, 'key.json');
      writeFileSync(key, JSON.stringify({ type: 'service_account', client_email: 'tk-vm1@p1.iam.gserviceaccount.com', private_key: 'x' }));
      const gcp = { projectId: 'p1', secretId: 's', topicId: 't' };
      expect(await identity(gcp, { GOOGLE_APPLICATION_CREDENTIALS: key }, 500)).toBe('tk-vm1@p1.iam.gserviceaccount.com');
      expect(await identity({ ...gcp, secretManagerEmulatorHost: '127.0.0.1:1' }, {}, 500)).toBeUndefined();
      expect(await identity(gcp, { METADATA_SERVER_DETECTION: 'none' }, 500)).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('doctor GCP probes: clients are initialised inside the deadline, before any call', () => {
  // Loopback hosts only: nothing here may reach a real Google endpoint.
  const gcp = { projectId: 'p1', secretId: 's', topicId: 't', subscriptionId: 'sub', secretManagerEmulatorHost: '127.0.0.1:1', pubsubEmulatorHost: '127.0.0.1:1' };
  const noCredentials = () => new Error('Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.');

  /** A generated client whose initialise fails; like gax, a method called anyway re-throws it from a detached promise. */
  function fakeClient(calls: string[]) {
    return new Proxy(
      {},
      {
        get: (_, prop: string) => {
          if (prop === 'then') return undefined;
          if (prop === 'initialize') return () => Promise.reject(noCredentials());
          if (prop === 'close') return () => Promise.resolve();
          return () => {
            calls.push(prop);
            void Promise.reject(noCredentials()); // what gax does: an unhandled rejection
            return Promise.reject(noCredentials());
          };
        },
      },
    );
  }

  it('Secret Manager: no credentials is a failed probe (CREDENTIALS) and no RPC is attempted', async () => {
    const calls: string[] = [];
    const s = await secretFacts(gcp, 1000, async () => fakeClient(calls) as never);
    expect(calls).toEqual([]);
    for (const p of [s.meta, s.latest, s.versions, s.iam]) {
      expect(p).toMatchObject({ ok: false, code: 'CREDENTIALS' });
      expect(!p.ok && p.error).toMatch(/^cannot load Google credentials: Could not load the default credentials/);
    }
  });

  it('Pub/Sub: no credentials is a failed probe (CREDENTIALS) for the topic, the subscription and IAM; no RPC is attempted', async () => {
    const calls: string[] = [];
    const clients = async (): Promise<PubSubClients> => ({ publisher: fakeClient(calls), subscriber: fakeClient(calls) }) as never;
    const p = await pubsubFacts(gcp, 1000, clients);
    expect(calls).toEqual([]);
    for (const probe of [p.topic, p.topicIam, p.subscription, p.subscriptionIam]) expect(probe).toMatchObject({ ok: false, code: 'CREDENTIALS' });
  });

  it('a failure to create the client (not to initialise it) keeps its own code', async () => {
    const s = await secretFacts(gcp, 1000, () => Promise.reject(Object.assign(new Error('boom'), { code: 'EMFILE' })));
    expect(s.meta).toMatchObject({ ok: false, code: 'EMFILE' });
  });

  it('gRPC status names come from core/gcp/grpc-errors.ts (every code, not a subset)', async () => {
    const fail = (code: number) => attempt(() => Promise.reject(Object.assign(new Error('x'), { code, details: 'd' })), 1000);
    expect(await fail(8)).toMatchObject({ ok: false, code: 'RESOURCE_EXHAUSTED', error: 'RESOURCE_EXHAUSTED: d' });
    expect(await fail(14)).toMatchObject({ code: 'UNAVAILABLE' });
    expect(await fail(99)).toMatchObject({ code: 'grpc 99' });
  });
});

describe('doctor exports: nothing is exported that no other file uses', () => {
  it('every export of agent/doctor/** is imported by another file (runtime or tests)', () => {
    const files = (dir: string) =>
      readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
        .map((e) => join(e.parentPath, e.name));
    const doctor = files('agent/doctor');
    const all = ['agent', 'core', 'functions', 'standins', 'tools', 'test'].flatMap((d) => (existsSync(join(ROOT, d)) ? files(d) : []));
    const text = new Map(all.map((f) => [f, readFileSync(f, 'utf8')]));
    const dead: string[] = [];
    for (const file of doctor) {
      for (const m of text.get(file)!.matchAll(/^export (?:async )?(?:function|const|class|interface|type) (\w+)/gm)) {
        const name = m[1]!;
        const re = new RegExp(`\\b${name}\\b`);
        if (![...text].some(([other, src]) => other !== file && re.test(src))) dead.push(`${file.slice(ROOT.length + 1)}: ${name}`);
      }
    }
    expect(dead).toEqual([]);
  });
});
