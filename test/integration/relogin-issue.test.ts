/**
 * Who issues phone re-login links, and how the link travels: `token-keeper login --link` (a real
 * CLI process) and the refresher function finding the chain dead (its production wiring,
 * functions/deps.ts, over the Secret Manager REST stand-in). Each writes the link in exactly one
 * ALERT line (`relogin_link`), the refresher at most once an hour; the link opens the confirm page.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.js';
import { createLogger } from '../../core/log.js';
import { functionDeps } from '../../functions/deps.js';
import { runCloudRefresh } from '../../functions/refresher.js';
import { startCli, until, type CliProcess } from '../helpers/agent-process.js';
import { freePort } from '../../standins/pubsub-emulator.js';
import { describeWithPubSub } from '../helpers/gcp.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pinFromAnnotations } from '../../core/identity.js';
import { APP, OWNER, STRANGER, startReloginRig, type ReloginRig } from '../helpers/relogin-rig.js';

describeWithPubSub('issuing re-login links', () => {
  let rig: ReloginRig;
  beforeAll(async () => {
    rig = await startReloginRig('tk-relogin-issue');
    await rig.seedDeadChain('SIM');
  }, 60_000);
  afterAll(async () => {
    await rig?.close();
  });

  const env = () => ({
    GOOGLE_CLOUD_PROJECT: rig.sm.projectId,
    TOKEN_SECRET_ID: rig.sm.secretId,
    TOKEN_TOPIC_ID: rig.topicId,
    SECRET_MANAGER_EMULATOR_HOST: rig.sm.server.host,
    SECRET_MANAGER_EMULATOR_REST_HOST: rig.sm.server.restHost,
    PUBSUB_EMULATOR_HOST: rig.ps.emulator.host,
    SAXO_ENVIRONMENT: 'SIM',
    SAXO_AUTH_BASE_URL: rig.chains.SIM.saxo.url,
    SAXO_APP_KEY: APP.SIM.key,
    SAXO_APP_SECRET: APP.SIM.secret,
    RELOGIN_BASE_URL: rig.baseUrl,
    RELOGIN_LINK_SECRET_ID: rig.linkSecretId,
    METADATA_SERVER_DETECTION: 'none',
  });

  it('`login --link` (a real process): one ALERT line with the link, the link printed to the person who asked; the link opens the confirm page', async () => {
    const cli = startCli(['login', '--link'], env());
    const { code } = await cli.exited;
    expect(code, cli.stderr()).toBe(0);
    const alerts = cli.logs.filter((l) => l.event === 'relogin_link');
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.severity).toBe('ALERT');
    expect(alerts[0]!.environment).toBe('SIM');
    const link = alerts[0]!.link as string;
    expect(link).toMatch(new RegExp(`^${rig.baseUrl}/l/[A-Za-z0-9_-]{43}$`));
    const id = link.split('/l/')[1]!;
    expect(cli.raw.filter((l) => l.includes(id))).toHaveLength(1); // no other log line carries it
    expect(cli.stderr()).toContain(link);
    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('id="confirm"');
  }, 60_000);

  it('`login --link` without RELOGIN_BASE_URL: exit 2 with one line saying what to set', async () => {
    const cli = startCli(['login', '--link'], { ...env(), RELOGIN_BASE_URL: '' });
    expect((await cli.exited).code).toBe(2);
    expect(cli.stderr()).toContain('RELOGIN_BASE_URL');
  }, 30_000);

  it('the refresher finding the chain dead issues one link (ALERT), and not again at its next run', async () => {
    // The LIVE chain: the SIM one just had a link from `login --link`, and links are rate-limited per environment.
    await rig.seedDeadChain('LIVE');
    const live = { ...env(), SAXO_ENVIRONMENT: 'LIVE', TOKEN_SECRET_ID: rig.chains.LIVE.secretId, SAXO_AUTH_BASE_URL: rig.chains.LIVE.saxo.url, SAXO_APP_KEY: APP.LIVE.key, SAXO_APP_SECRET: APP.LIVE.secret };
    const lines: string[] = [];
    const logger = createLogger({ component: 'function', write: (l) => lines.push(l) });
    const saved = { ...process.env };
    Object.assign(process.env, live);
    try {
      const deps = await functionDeps(loadConfig(live), logger, 'cloud:test');
      try {
        expect((await runCloudRefresh(deps)).outcome).toBe('rejected');
        expect((await runCloudRefresh(deps)).outcome).toBe('rejected');
      } finally {
        await deps.bus.close();
      }
    } finally {
      process.env = saved;
    }
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.filter((l) => l.event === 'login_required')).toHaveLength(2);
    const links = parsed.filter((l) => l.event === 'relogin_link');
    expect(links).toHaveLength(1);
    expect(links[0]!.severity).toBe('ALERT');
    expect(links[0]!.environment).toBe('LIVE');
    const res = await fetch(links[0]!.link as string);
    expect(res.status).toBe(200);
  }, 60_000);

  it('an agent started on an unpinned chain pins it from its current pair\'s claims (the first start after the upgrade)', async () => {
    const store = rig.chains.SIM.store;
    const meta = await store.meta();
    const unpinned = Object.fromEntries(Object.entries(meta.annotations).filter(([k]) => !k.startsWith('tk-pin-')));
    await rig.sm.client.updateSecret({ secret: { name: store.name, etag: meta.etag, annotations: unpinned }, updateMask: { paths: ['annotations'] } });
    expect(pinFromAnnotations((await store.meta()).annotations)).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'tk-relogin-pin-'));
    const agent = startCli(['agent'], { ...rig.agentEnv(dir, ''), TOKEN_SUBSCRIPTION_ID: '' });
    try {
      const line = await agent.waitForEvent('identity_pinned', 30_000);
      expect(line.severity).toBe('NOTICE');
      expect(pinFromAnnotations((await store.meta()).annotations)).toEqual({ userKey: OWNER.userKey, clientKey: OWNER.clientKey, appKey: APP.SIM.key, environment: 'SIM' });
    } finally {
      await agent.stop();
    }
  }, 60_000);

  /** Be the browser at the stand-in's sign-in page: post the authorization request with the chosen user. */
  async function signInAs(cli: CliProcess, userId: string): Promise<void> {
    let url: string | undefined;
    await until(() => (url = /(http:\/\/127\.0\.0\.1:\d+\/authorize\?\S+)/.exec(cli.stderr())?.[1]) !== undefined, 20_000, 'the authorize URL');
    const u = new URL(url!);
    const form = new URLSearchParams(u.searchParams);
    form.set('user', userId);
    const res = await fetch(`${u.origin}/authorize`, { method: 'POST', body: form, redirect: 'manual' });
    expect(res.status).toBe(303);
    await fetch(res.headers.get('location')!);
  }

  it('`login` pins the chain to the account that signed in (claims + users/me); another account needs --force', async () => {
    const store = rig.chains.SIM.store;
    const meta = await store.meta();
    const unpinned = Object.fromEntries(Object.entries(meta.annotations).filter(([k]) => !k.startsWith('tk-pin-')));
    await rig.sm.client.updateSecret({ secret: { name: store.name, etag: meta.etag, annotations: unpinned }, updateMask: { paths: ['annotations'] } });
    const dir = mkdtempSync(join(tmpdir(), 'tk-relogin-login-'));
    const loginEnv = (port: number) => ({ ...env(), TOKEN_KEEPER_DATA_DIR: dir, SAXO_REDIRECT_URI: `http://127.0.0.1:${port}/callback` });
    const first = startCli(['login', '--no-open', '--target', 'secret', '--force'], loginEnv(await freePort()));
    await signInAs(first, OWNER.userId);
    expect((await first.exited).code, first.stderr()).toBe(0);
    expect(first.logs.some((l) => l.event === 'identity_pinned')).toBe(true);
    const pinned = { userKey: OWNER.userKey, clientKey: OWNER.clientKey, appKey: APP.SIM.key, environment: 'SIM' };
    expect(pinFromAnnotations((await store.meta()).annotations)).toEqual(pinned);

    const versions = await store.countVersions();
    const second = startCli(['login', '--no-open', '--target', 'secret'], loginEnv(await freePort()));
    await signInAs(second, STRANGER.userId);
    expect((await second.exited).code).toBe(1);
    expect(second.logs.find((l) => l.event === 'login_store_failed')?.message).toContain('another account than the one the chain is pinned to');
    expect(await store.countVersions()).toBe(versions);
    expect(pinFromAnnotations((await store.meta()).annotations)).toEqual(pinned);
  }, 60_000);
});
