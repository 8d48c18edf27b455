/**
 * `token-keeper status [--json]` as a real process: each health state is built from files (the
 * bots' cache and the agent's state file, written with the real adapters) and, for the cloud
 * cases, the Secret Manager stand-in. Exit codes: 0 healthy, 1 degraded / refresh overdue,
 * 2 expired / missing / login required. No token or app secret may appear in either view.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { createStateFile, type AgentState } from '../../agent/state-file.js';
import { createSecretStore, ensureSecret } from '../../core/gcp/secret-store.js';
import { silentLogger } from '../../core/log.js';
import type { TokenSet } from '../../core/token.js';
import type { StatusReport } from '../../agent/status.js';
import { acquireInstanceLock } from '../../agent/instance-lock.js';
import type { Held } from '../../core/ports.js';
import { startSaxoStandin } from '../../standins/saxo/server.js';
import { startCli, type CliProcess } from '../helpers/agent-process.js';
import { startSecretManagerFixture, type SecretManagerFixture } from '../helpers/gcp.js';

const APP_KEY = 'status-app-key';
const APP_SECRET = 'status-app-secret-0123456789abcdef';
const PROJECT = 'tk-status-test';
const secrets = new Set<string>([APP_SECRET]);

function pair(accessLeftSec: number, opts: { generation?: number; refreshLeftSec?: number; source?: string } = {}): TokenSet {
  const now = Date.now();
  const t: TokenSet = {
    accessToken: `sa_${randomBytes(24).toString('base64url')}`,
    refreshToken: `sr_${randomBytes(24).toString('base64url')}`,
    accessExpiresAt: now + accessLeftSec * 1000,
    refreshExpiresAt: now + (opts.refreshLeftSec ?? 3000) * 1000,
    issuedAt: now - 60_000,
    generation: opts.generation ?? 3,
    source: opts.source ?? 'agent:vm1',
    appKey: APP_KEY,
    appSecret: APP_SECRET,
    extra: {},
  };
  secrets.add(t.accessToken);
  secrets.add(t.refreshToken);
  return t;
}

/** Instance locks this test holds: a state file stamped by an agent is only healthy with an agent holding the lock. */
const held: Held[] = [];
afterAll(async () => {
  for (const h of held.splice(0)) await h.release();
});

async function dataDir(cache: TokenSet | 'corrupt' | undefined, state?: Partial<AgentState>, o: { agentRunning?: boolean } = {}): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'tk-status-'));
  if (cache === 'corrupt') writeFileSync(join(dir, 'saxo_token_cache.json'), '{"access_token": "half-writ');
  else if (cache) await createCacheFile(join(dir, 'saxo_token_cache.json')).write(cache);
  if (state) {
    await createStateFile(join(dir, '.token-keeper-state.json')).write({
      failures: 0,
      agentSeenAt: Date.now() - 5_000,
      ...state,
    });
    // An agent that stamped the state file 5 s ago is running: this process holds its instance lock.
    if (o.agentRunning ?? true) held.push(await acquireInstanceLock(dir));
  }
  return dir;
}

interface Views {
  json: StatusReport;
  jsonCode: number | null;
  text: string;
  textCode: number | null;
}

/** Both views, as separate real processes. */
async function status(dir: string, env: Record<string, string | undefined> = {}): Promise<Views> {
  const fullEnv = {
    TOKEN_KEEPER_DATA_DIR: dir,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    GOOGLE_CLOUD_PROJECT: undefined,
    GCLOUD_PROJECT: undefined,
    TOKEN_SECRET_ID: undefined,
    ...env,
  };
  const j = startCli(['status', '--json'], fullEnv);
  const t = startCli(['status'], fullEnv);
  // 'close' (not 'exit'): all stdout has been delivered by then.
  const closed = (p: CliProcess) => new Promise<void>((r) => p.proc.once('close', () => r()));
  const [je, te] = await Promise.all([j.exited, t.exited, closed(j), closed(t)]);
  const jsonText = j.raw.join('\n');
  const text = t.raw.join('\n');
  for (const s of secrets) {
    for (const out of [jsonText, j.stderr(), text, t.stderr()]) {
      expect(out.includes(s), 'a token or the app secret appeared in status output').toBe(false);
    }
  }
  return { json: JSON.parse(jsonText) as StatusReport, jsonCode: je.code, text, textCode: te.code };
}

describe('status (standalone, from files)', () => {
  it('healthy: exit 0, documented JSON fields, human view with countdowns, last refresh, failures, agent last seen', async () => {
    const t = pair(1000);
    const dir = await dataDir(t, {
      token: t,
      lastRefresh: { at: Date.now() - 200_000, by: 'agent:vm1' },
    });
    const v = await status(dir);
    expect(v.jsonCode).toBe(0);
    expect(v.textCode).toBe(0);
    const r = v.json;
    expect(r.health).toBe('healthy');
    expect(r.exitCode).toBe(0);
    expect(r.mode).toBe('standalone');
    expect(r.token!.accessLeftSeconds).toBeGreaterThan(980);
    expect(r.token!.accessLeftSeconds).toBeLessThanOrEqual(1000);
    expect(r.token!.refreshLeftSeconds).toBeGreaterThan(2980);
    expect(r.token!.generation).toBe(3);
    expect(r.agent.consecutiveFailures).toBe(0);
    expect(Date.parse(r.agent.lastSeen!)).toBeGreaterThan(Date.now() - 60_000);
    expect(r.agent.lastRefresh).toMatchObject({ by: 'agent:vm1' });
    expect(r.cache.state).toBe('ok');
    expect(r.secret).toBeUndefined();
    expect(r.problems).toEqual([]);
    expect(r.agent.running).toBe('running');
    expect(r.agent.pids).toEqual([process.pid]);
    expect(r.next).toBe('nothing to do');

    expect(v.text).toMatch(/HEALTHY \(exit 0\)/);
    expect(v.text).toMatch(/access token\s+expires in 16m \d+s/);
    expect(v.text).toMatch(/refresh token\s+expires in (49|50)m/);
    expect(v.text).toMatch(/refresh\s+\d{4}-\d\d-\d\dT[\d:.]+Z by agent:vm1$/m);
    expect(v.text).toMatch(/failures\s+0 \(agent\)/);
    expect(v.text).toMatch(/agent seen\s+\d{4}-.*\(\d+ s ago\)/);
    expect(v.text).toContain(`agent          running (pid ${process.pid})`);
    expect(v.text.split('\n').at(-1)).toBe('next: nothing to do');
  }, 20_000);

  it('a cloud-connected agent\'s data dir read standalone: a warning with the fix (the state names a secret version)', async () => {
    const t = pair(1000);
    const dir = await dataDir(t, { token: t, lastRefresh: { at: Date.now() - 200_000, by: 'agent:vm1', version: 'projects/p/secrets/s/versions/7' } });
    const v = await status(dir);
    expect(v.json.mode).toBe('standalone');
    expect(v.json.problems).toContain(
      "the agent that wrote this data dir is cloud-connected, but this command runs standalone (no GOOGLE_CLOUD_PROJECT/TOKEN_SECRET_ID): run it with the unit's settings (sudo -u <bots-user> npx token-keeper status reads /etc/token-keeper/token-keeper.env; --chain NAME for a chain)",
    );
    expect(v.text).toContain('! the agent that wrote this data dir is cloud-connected, but this command runs standalone');
    expect(v.json.agent.lastRefresh).toMatchObject({ version: 'projects/p/secrets/s/versions/7' });
  }, 20_000);

  it('degraded by consecutive failures: exit 1', async () => {
    const t = pair(1000);
    const v = await status(await dataDir(t, { token: t, failures: 2 }));
    expect([v.jsonCode, v.textCode]).toEqual([1, 1]);
    expect(v.json.health).toBe('degraded');
    expect(v.json.agent.consecutiveFailures).toBe(2);
    expect(v.json.problems.join(' ')).toMatch(/2 consecutive refresh failure/);
    expect(v.text).toMatch(/DEGRADED \(exit 1\)/);
    expect(v.text).toMatch(/failures\s+2 \(agent\)/);
  }, 20_000);

  it('refresh overdue (token within the agent threshold): exit 1', async () => {
    const t = pair(200);
    const v = await status(await dataDir(t, { token: t }));
    expect([v.jsonCode, v.textCode]).toEqual([1, 1]);
    expect(v.json.health).toBe('refresh_overdue');
    expect(v.json.token!.accessLeftSeconds).toBeLessThanOrEqual(200);
    expect(v.text).toMatch(/REFRESH_OVERDUE \(exit 1\)/);
    expect(v.text).toMatch(/access token\s+expires in 3m/);
  }, 20_000);

  it('expired access token: exit 2; the human view says how long ago', async () => {
    const t = pair(-30);
    const v = await status(await dataDir(t));
    expect([v.jsonCode, v.textCode]).toEqual([2, 2]);
    expect(v.json.health).toBe('expired');
    expect(v.json.token!.accessLeftSeconds).toBeLessThan(0);
    expect(v.json.agent.lastSeen).toBeUndefined();
    expect(v.text).toMatch(/access token\s+expired 0m \d+s ago/);
    expect(v.text).toMatch(/agent seen\s+never/);
    // Every problem is listed whatever the health, and the next step renews with the live refresh token.
    expect(v.json.problems).toContain('agent never seen: no agent has checked this data dir');
    expect(v.json.next).toBe('npx token-keeper refresh (the refresh token is still valid: this renews the pair now)');
    expect(v.text.split('\n').at(-1)).toBe(`next: ${v.json.next}`);
  }, 20_000);

  it('missing (no cache, no state; also a corrupt cache alone): exit 2', async () => {
    const [a, b] = await Promise.all([status(await dataDir(undefined)), status(await dataDir('corrupt'))]);
    for (const v of [a, b]) {
      expect([v.jsonCode, v.textCode]).toEqual([2, 2]);
      expect(v.json.health).toBe('missing');
      expect(v.json.token).toBeUndefined();
      expect(v.text).toMatch(/run `npx token-keeper login`/);
    }
    expect(b.json.cache.state).toBe('corrupt');
  }, 20_000);

  it('login required (agent flagged it; or the refresh token is dead): exit 2', async () => {
    const flagged = pair(1000);
    const dead = pair(-600, { refreshLeftSec: -10 });
    const [a, b] = await Promise.all([
      status(await dataDir(flagged, { token: flagged, loginRequired: true, failures: 1 })),
      status(await dataDir(dead, { token: dead })),
    ]);
    for (const v of [a, b]) {
      expect([v.jsonCode, v.textCode]).toEqual([2, 2]);
      expect(v.json.health).toBe('login_required');
      expect(v.text).toMatch(/LOGIN_REQUIRED \(exit 2\)/);
    }
    expect(a.json.agent.loginRequired).toBe(true);
    for (const v of [a, b]) expect(v.json.next).toMatch(/^npx token-keeper login \(on a VM without a browser: add --no-open/);
  }, 20_000);
});

describe('status tells whether the agent runs (its instance lock, as doctor)', () => {
  it('a state stamped seconds ago but no agent holding the lock: NOT RUNNING, degraded (exit 1), next: start the unit', async () => {
    const t = pair(1000);
    const v = await status(await dataDir(t, { token: t }, { agentRunning: false }));
    expect([v.jsonCode, v.textCode]).toEqual([1, 1]);
    expect(v.json.health).toBe('degraded');
    expect(v.json.agent.running).toBe('not_running');
    expect(v.json.problems.join('\n')).toMatch(/^agent not running \(last seen \d+ s ago\): no agent has run on .* \(\.token-keeper-agent\.lock is missing\)$/m);
    expect(v.json.next).toBe('sudo systemctl start token-keeper (then: journalctl -u token-keeper -n 20)');
    expect(v.text).toMatch(/DEGRADED \(exit 1\)/);
    expect(v.text).toContain('agent          NOT RUNNING');
  }, 20_000);

  it('never seen (a cache, no agent ever): not healthy, exit 1, next: start the unit', async () => {
    const t = pair(1000);
    const dir = await dataDir(t);
    const v = await status(dir);
    expect([v.jsonCode, v.textCode]).toEqual([1, 1]);
    expect(v.json.agent.running).toBe('not_running');
    expect(v.json.problems).toContain('agent never seen: no agent has checked this data dir');
    expect(v.json.next).toBe('sudo systemctl start token-keeper (then: journalctl -u token-keeper -n 20)');
  }, 20_000);

  it('right after the real agent stops: not running (exit 1) with the next step', async () => {
    const key = 'status-stop-app';
    const saxo = await startSaxoStandin({ accessLifetimeSec: 3600, refreshLifetimeSec: 7200, clients: { [key]: APP_SECRET } });
    try {
      const dir = mkdtempSync(join(tmpdir(), 'tk-status-stop-'));
      const p = saxo.issue(key);
      secrets.add(p.access_token).add(p.refresh_token);
      const now = Date.now();
      await createCacheFile(join(dir, 'saxo_token_cache.json')).write({
        accessToken: p.access_token, refreshToken: p.refresh_token, accessExpiresAt: now + 3_000_000, refreshExpiresAt: now + 7_000_000,
        issuedAt: now, generation: 1, source: 'login', appKey: key, appSecret: APP_SECRET, extra: {},
      });
      const env = { TOKEN_KEEPER_DATA_DIR: dir, SAXO_AUTH_BASE_URL: saxo.url, SAXO_APP_KEY: key, SAXO_APP_SECRET: APP_SECRET, CHECK_INTERVAL_SECONDS: '1',
        GOOGLE_CLOUD_PROJECT: undefined, GCLOUD_PROJECT: undefined, TOKEN_SECRET_ID: undefined };
      const agent = startCli(['agent'], env);
      await agent.waitForEvent('agent_ready', 20_000);
      const running = await status(dir, { SAXO_AUTH_BASE_URL: saxo.url, SAXO_APP_KEY: key });
      expect(running.json.agent).toMatchObject({ running: 'running', pids: [agent.proc.pid] });
      expect(running.jsonCode).toBe(0);
      expect((await agent.stop()).code).toBe(0);

      const v = await status(dir, { SAXO_AUTH_BASE_URL: saxo.url, SAXO_APP_KEY: key });
      expect(v.json.agent.lastSeenSecondsAgo).toBeLessThan(5); // the stamp alone would still say healthy
      expect([v.jsonCode, v.textCode]).toEqual([1, 1]);
      expect(v.json.agent.running).toBe('not_running');
      expect(v.text).toContain('agent          NOT RUNNING');
      expect(v.text).toMatch(/! agent not running \(last seen \d+ s ago\)/);
      expect(v.text.split('\n').at(-1)).toBe('next: sudo systemctl start token-keeper (then: journalctl -u token-keeper -n 20)');
    } finally {
      await saxo.close();
    }
  }, 40_000);
});

describe('status (cloud-connected, Secret Manager stand-in)', () => {
  let sm: SecretManagerFixture;
  beforeAll(async () => {
    sm = await startSecretManagerFixture(PROJECT, 'unused');
  });
  afterAll(async () => {
    await sm?.close();
  });

  async function secretWith(id: string, tokens: TokenSet[]) {
    await ensureSecret(sm.client, PROJECT, id);
    const store = createSecretStore({ client: sm.client, projectId: PROJECT, secretId: id, logger: silentLogger });
    let last = '';
    for (const t of tokens) last = (await store.add(t)).name;
    return { store, last };
  }

  const cloudEnv = (id: string) => ({
    GOOGLE_CLOUD_PROJECT: PROJECT,
    TOKEN_SECRET_ID: id,
    SECRET_MANAGER_EMULATOR_HOST: sm.server.host,
    PUBSUB_EMULATOR_HOST: '127.0.0.1:9', // status never publishes; keep the client off the network
  });

  it('healthy with the secret in step: exit 0; active versions and the cloud\'s last refresh are shown', async () => {
    const old = pair(-900, { generation: 2, source: 'cloud' });
    const t = pair(1000, { generation: 3, source: 'cloud' });
    const { store, last } = await secretWith('in-step', [old, t]);
    const at = Date.now() - 120_000;
    await store.record({ failures: 0, lastRefresh: { at, by: 'cloud', version: last } });
    const v = await status(await dataDir(t, { token: t }), cloudEnv('in-step'));
    expect([v.jsonCode, v.textCode]).toEqual([0, 0]);
    expect(v.json.mode).toBe('cloud-connected');
    expect(v.json.secret).toMatchObject({ state: 'ok', latestVersion: last, activeVersions: 2, consecutiveFailures: 0 });
    expect(v.json.secret!.lastRefresh).toEqual({ at: new Date(at).toISOString(), by: 'cloud', version: last });
    expect(v.text).toMatch(/secret\s+ok, latest .*versions\/2, 2 active version\(s\)/);
    expect(v.text).toContain(`last refresh   ${new Date(at).toISOString()} by cloud (${last})`);
    expect(v.text).toMatch(/failures\s+0 \(agent\), 0 \(cloud\)/);
  }, 20_000);

  it('degraded when the secret is behind the cache (a bot refreshed and nobody pushed): exit 1', async () => {
    const older = pair(500, { generation: 2, source: 'cloud' });
    const newer = pair(1100, { generation: 3 });
    await secretWith('behind', [older]);
    const v = await status(await dataDir(newer, { token: newer }), cloudEnv('behind'));
    expect([v.jsonCode, v.textCode]).toEqual([1, 1]);
    expect(v.json.health).toBe('degraded');
    expect(v.json.secret!.state).toBe('stale');
    expect(v.json.token!.origin).toBe('cache');
    expect(v.json.problems).toContain('the secret is behind the newest token');
    expect(v.text).toMatch(/secret\s+stale/);
  }, 20_000);

  it('Secret Manager unreachable with a fresh cache: degraded, exit 1 (status gives up after its 3 s budget)', async () => {
    const t = pair(1000);
    const v = await status(await dataDir(t, { token: t }), {
      ...cloudEnv('unreachable'),
      SECRET_MANAGER_EMULATOR_HOST: '127.0.0.1:9', // nothing listens on the discard port
    });
    expect([v.jsonCode, v.textCode]).toEqual([1, 1]);
    expect(v.json.health).toBe('degraded');
    expect(v.json.secret!.state).toBe('unavailable');
    expect(v.json.token!.origin).toBe('cache');
    expect(v.json.problems.join(' ')).toMatch(/Secret Manager unavailable/);
    expect(v.text).toMatch(/secret\s+unavailable/);
  }, 40_000);

  it('cloud failures recorded on the secret degrade the status even when the agent has none: exit 1', async () => {
    const t = pair(1000, { generation: 4, source: 'cloud' });
    const { store } = await secretWith('cloud-failing', [t]);
    await store.record({ failures: 3 });
    const v = await status(await dataDir(t, { token: t }), cloudEnv('cloud-failing'));
    expect([v.jsonCode, v.textCode]).toEqual([1, 1]);
    expect(v.json.health).toBe('degraded');
    expect(v.json.secret!.consecutiveFailures).toBe(3);
    expect(v.text).toMatch(/failures\s+0 \(agent\), 3 \(cloud\)/);
  }, 20_000);
});
