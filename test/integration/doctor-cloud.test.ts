/**
 * `token-keeper doctor --json` as a real process against a cloud-connected deployment on this
 * machine: the gRPC Secret Manager stand-in, the real Pub/Sub emulator, a running agent, the Saxo
 * stand-in behind TLS. A healthy setup exits 0; then each named fault is introduced alone, found
 * with its fix and exit code, and undone. Doctor never prints a token or the app secret, never
 * writes to the secret, and presents nothing to Saxo (the stand-in's counters stay at 0).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCacheFile } from '../../agent/cache-file.js';
import { acquireFlock } from '../../agent/flock.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { freePort } from '../../standins/pubsub-emulator.js';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { startSecretManagerServer } from '../../standins/secret-manager/server.js';
import { startCli, type CliProcess } from '../helpers/agent-process.js';
import { APP_KEY, APP_SECRET, othersNotOk, pair, runDoctor, selfSignedCert, tlsFront } from '../helpers/doctor-rig.js';
import {
  describeWithPubSub,
  ensureTopicAndSubscription,
  startPubSubFixture,
  startSecretManagerFixture,
  type PubSubFixture,
  type SecretManagerFixture,
} from '../helpers/gcp.js';

const PROJECT = 'tk-doctor-cloud';
const SECRET = 'saxo-token';
const TOPIC = 'token-rotated';
const SUB = 'token-rotated-vm1';
const OTHER_TOPIC = 'some-other-topic';
const OTHER_SUB = 'sub-on-other-topic';
const WRITES = ['AddSecretVersion', 'UpdateSecret', 'DestroySecretVersion', 'DisableSecretVersion', 'EnableSecretVersion', 'CreateSecret', 'DeleteSecret'];

describeWithPubSub('doctor (cloud-connected: Secret Manager stand-in, Pub/Sub emulator, running agent)', () => {
  let tmp: string;
  let dir: string;
  let sm: SecretManagerFixture;
  let ps: PubSubFixture;
  let saxo: SaxoStandin;
  let front: { url: string; close(): Promise<void> };
  let agent: CliProcess;
  let env: Record<string, string | undefined>;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'tk-doctor-'));
    dir = join(tmp, 'data');
    const tls = selfSignedCert(tmp);
    saxo = await startSaxoStandin({ clients: { [APP_KEY]: APP_SECRET } });
    front = await tlsFront(saxo.port, tls.key, tls.cert);
    [sm, ps] = await Promise.all([startSecretManagerFixture(PROJECT, SECRET), startPubSubFixture(PROJECT)]);
    await ensureTopicAndSubscription(ps.pubsub, TOPIC, SUB, { ackDeadlineSeconds: 30 });
    await ensureTopicAndSubscription(ps.pubsub, OTHER_TOPIC, OTHER_SUB, { ackDeadlineSeconds: 30 });

    // A live pair Saxo really issued, 140 s into its 1140 s usable life, in the cache and the secret.
    const issued = saxo.issue(APP_KEY);
    const t = pair({ accessLeftSec: 1000, access: issued.access_token, refresh: issued.refresh_token });
    const store = createSecretStore({ client: sm.client, projectId: PROJECT, secretId: SECRET });
    const { name } = await store.add(t);
    await store.record({ failures: 0, lastRefresh: { at: Date.now() - 140_000, by: 'cloud:rev-1:ab12', version: name } });
    mkdirSync(dir, { mode: 0o750 });
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(t);
    writeFileSync(join(dir, 'saxo_token.lock'), '', { mode: 0o600 }); // as the first bot to lock leaves it

    env = {
      TOKEN_KEEPER_DATA_DIR: dir,
      GOOGLE_CLOUD_PROJECT: PROJECT,
      GCLOUD_PROJECT: undefined,
      TOKEN_SECRET_ID: SECRET,
      TOKEN_TOPIC_ID: TOPIC,
      TOKEN_SUBSCRIPTION_ID: SUB,
      SECRET_MANAGER_EMULATOR_HOST: sm.server.host,
      PUBSUB_EMULATOR_HOST: ps.emulator.host,
      SAXO_AUTH_BASE_URL: front.url,
      NODE_EXTRA_CA_CERTS: tls.certPath,
      SAXO_APP_KEY: APP_KEY,
      SAXO_APP_SECRET: APP_SECRET,
      TOKEN_KEEPER_HOLDER_ID: 'agent:vm1:test',
      GOOGLE_APPLICATION_CREDENTIALS: undefined,
    };
    agent = startCli(['agent'], { ...env, TOKEN_KEEPER_CREATE_DATA_DIR: 'true' });
    await agent.waitForEvent('agent_ready', 30_000);
  }, 90_000);

  afterAll(async () => {
    await agent?.stop();
    await Promise.allSettled([sm?.close(), ps?.close(), front?.close(), saxo?.close()]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** A doctor run that must leave the secret unwritten (the idle agent writes nothing either). */
  async function doctor(extraEnv: Record<string, string | undefined> = {}, args: string[] = []) {
    const before = sm.server.calls.length;
    const run = await runDoctor({ ...env, ...extraEnv }, args);
    const calls = sm.server.calls.slice(before);
    expect(calls.filter((c) => WRITES.includes(c)), 'doctor wrote to Secret Manager').toEqual([]);
    return { ...run, calls };
  }

  it('healthy: exit 0, every check ok or skipped with its reason; the agent is seen running', async () => {
    const r = await doctor();
    expect(othersNotOk(r)).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.report.mode).toBe('cloud-connected');
    expect(r.calls).toContain('TestIamPermissions');
    expect(r.check('secret-manager.iam').status).toBe('ok');
    expect(r.check('secret-manager').summary).toMatch(/latest version 1; 1 live version\(s\), KEEP_SECRET_VERSIONS=3; no lease held/);
    expect(r.check('pubsub.subscription').summary).toContain(`projects/${PROJECT}/subscriptions/${SUB} → projects/${PROJECT}/topics/${TOPIC}`);
    // The emulator answers UNIMPLEMENTED to IAM calls: a named skip, never a faked ok.
    expect(r.check('pubsub.iam')).toMatchObject({ status: 'skip' });
    expect(r.check('pubsub.iam').summary).toMatch(/Pub\/Sub emulator .* does not implement TestIamPermissions \(UNIMPLEMENTED\)/);
    expect(r.check('token').summary).toMatch(/^newest: gen 5 from the cache \(cache gen 5, state gen 5, secret gen 5\); access (16|17)m \d\ds left/);
    expect(r.check('token').summary).toMatch(/last refresh 2m 2\ds ago by cloud:rev-1:ab12/);
    expect(r.check('agent').summary).toContain(`running: pid ${agent.proc.pid}`);
    expect(r.check('lock').status).toBe('ok');
    expect(r.check('clock').summary).toMatch(/a stand-in on this host/);
    expect(r.check('saxo').summary).toMatch(/^127\.0\.0\.1 → 127\.0\.0\.1; TLSv1\.3 handshake with 127\.0\.0\.1:\d+ in \d+ ms, certificate 127\.0\.0\.1 valid until/);
    expect(r.check('cloud-path').summary).toMatch(/^last refreshed by cloud:rev-1:ab12 2m 2\ds ago/);
    expect(r.ms).toBeLessThan(5000);
  });

  it('the text view prints one line per check and a closing count, no token', async () => {
    const p = startCli(['doctor'], env);
    const closed = new Promise<void>((res) => p.proc.once('close', () => res()));
    const [{ code }] = await Promise.all([p.exited, closed]);
    expect(code).toBe(0);
    expect(p.raw.filter(Boolean)).toHaveLength(18);
    expect(p.raw[0]).toMatch(/^ok {4}config {15}SIM via https:\/\/127\.0\.0\.1:\d+; cloud-connected \(project tk-doctor-cloud/);
    expect(p.raw[0]).toContain('this VM is the primary');
    expect(p.raw[17]).toMatch(/^doctor: 16 ok, 0 warn, 0 fail, 1 skipped in \d+ ms \(token-keeper, cloud-connected\) — exit 0$/);
    expect(p.raw.join('\n')).not.toContain(APP_SECRET);
  });

  it('a missing permission: secret-manager.iam fails naming it and the gcloud command that grants it (exit 2)', async () => {
    sm.server.denyPermissions(['secretmanager.versions.add']);
    try {
      const r = await doctor();
      expect(r.code).toBe(2);
      expect(r.check('secret-manager.iam')).toMatchObject({
        status: 'fail',
        summary: `missing on projects/${PROJECT}/secrets/${SECRET}: secretmanager.versions.add (addSecretVersion)`,
        fix: `gcloud iam roles update tokenKeeperSecretRotator --project=${PROJECT} --add-permissions=secretmanager.versions.add (or terraform apply in infra/terraform)`,
      });
      expect(othersNotOk(r, 'secret-manager.iam')).toEqual([]);
    } finally {
      sm.server.allowAllPermissions();
    }
  });

  it('a subscription attached to the wrong topic: pubsub.subscription fails with the recreate command (exit 2)', async () => {
    const r = await doctor({ TOKEN_SUBSCRIPTION_ID: OTHER_SUB });
    expect(r.code).toBe(2);
    const c = r.check('pubsub.subscription');
    expect(c.status).toBe('fail');
    expect(c.summary).toBe(
      `${OTHER_SUB} is attached to projects/${PROJECT}/topics/${OTHER_TOPIC}, not the configured projects/${PROJECT}/topics/${TOPIC} (TOKEN_TOPIC_ID): TOKEN_ROTATED never reaches this agent`,
    );
    expect(c.fix).toContain(`gcloud pubsub subscriptions delete ${OTHER_SUB} --project=${PROJECT} && gcloud pubsub subscriptions create ${OTHER_SUB} --topic=${TOPIC}`);
    expect(c.fix).toContain(`or set TOKEN_TOPIC_ID=${OTHER_TOPIC}`);
    expect(othersNotOk(r, 'pubsub.subscription')).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)('a cache owned by another user: judged for the bots\' user, not for root (exit 2)', async () => {
    // The bots run as `daemon`: the dir and the other files are theirs, the cache is nobody's (0600).
    const files = ['saxo_token.lock', '.token-keeper-state.json'].map((f) => join(dir, f));
    const cache = join(dir, 'saxo_token_cache.json');
    for (const p of [dir, ...files]) chownSync(p, 1, 1);
    chownSync(cache, 65534, 65534);
    try {
      const r = await doctor({}, ['--bots-user', 'daemon']);
      expect(r.code).toBe(2);
      const c = r.check('data-dir.files');
      expect(c.status).toBe('fail');
      expect(c.summary).toContain("the bots' user daemon cannot read and write the cache (owner nobody(65534):nogroup(65534), mode 0600)");
      expect(c.fix).toContain(`sudo chown daemon:daemon ${cache} && sudo chmod 0600 ${cache}`);
      expect(r.check('data-dir').summary).toMatch(/fits the bots' user daemon: --bots-user/);
      expect(othersNotOk(r, 'data-dir.files')).toEqual([]);
    } finally {
      for (const p of [dir, cache, ...files]) chownSync(p, 0, 0);
    }
  });

  it('a held lock: named with the holder\'s pid and command line from /proc/locks (exit 1)', async () => {
    const held = await acquireFlock(join(dir, 'saxo_token.lock'), { timeoutMs: 0 });
    try {
      const r = await doctor();
      expect(r.code).toBe(1);
      const c = r.check('lock');
      expect(c.status).toBe('warn');
      expect(c.summary).toContain(`is held by pid ${process.pid} (${process.execPath}`);
      expect(c.fix).toBe(`ps -o pid,etime,args -p ${process.pid}  # still there after a minute? stop that process`);
      expect(othersNotOk(r, 'lock')).toEqual([]);
    } finally {
      await held.release();
    }
  });

  it('tiers out of order: config.tiers fails with the variable to change (exit 2)', async () => {
    const r = await doctor({ REFRESH_THRESHOLD_SECONDS: '700' });
    expect(r.code).toBe(2);
    const c = r.check('config.tiers');
    expect(c.status).toBe('fail');
    expect(c.summary).toMatch(/^CLOUD_REFRESH_THRESHOLD_SECONDS \(600 s\) must be above REFRESH_THRESHOLD_SECONDS \(700 s\)/);
    expect(c.fix).toBe('CLOUD_REFRESH_THRESHOLD_SECONDS=920 in /etc/token-keeper/token-keeper.env'); // inside the usable life (1140 s)
    expect(othersNotOk(r, 'config.tiers')).toEqual([]);
  });

  it('Secret Manager not answering: doctor still finishes within a few seconds and says so (exit 2)', async () => {
    const hung = await startSecretManagerServer();
    hung.setLatency(60_000); // accepts every call, answers none
    try {
      const [dead, slow] = await Promise.all([doctor({ SECRET_MANAGER_EMULATOR_HOST: `127.0.0.1:${await freePort()}` }), doctor({ SECRET_MANAGER_EMULATOR_HOST: hung.host })]);
      for (const r of [dead, slow]) {
        expect(r.code).toBe(2);
        expect(r.check('secret-manager').status).toBe('fail');
        expect(r.check('secret-manager').fix).toMatch(/^is the Secret Manager stand-in at 127\.0\.0\.1:\d+ running\?$/);
        expect(r.check('token').summary).toContain('secret unreachable');
        expect(r.check('cloud-path').status).toBe('skip');
        // The probe's own deadline (2.5 s) held: the hung server would answer after 60 s. The whole run
        // adds the process start, which on 2 busy cores alone has taken 2.5 s.
        const after = Number(/\(after (\d+) ms\)/.exec(r.check('secret-manager').summary)?.[1]);
        expect(after, r.check('secret-manager').summary).toBeLessThanOrEqual(3000);
        expect(r.ms, `doctor took ${r.ms} ms`).toBeLessThan(10_000);
      }
      expect(slow.check('secret-manager').summary).toMatch(/DEADLINE_EXCEEDED/);
      expect(dead.check('secret-manager').summary).toMatch(/UNAVAILABLE/);
    } finally {
      await hung.close();
    }
  });

  it('doctor presented nothing to Saxo: the stand-in counted no presentation, refresh or code exchange', () => {
    expect(saxo.stats()).toMatchObject({ presentations: 0, refreshes: 0, codeExchanges: 0, authorizations: 0, invalidGrants: 0 });
  });
});
