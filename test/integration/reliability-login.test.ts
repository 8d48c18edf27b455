/**
 * Issue 9, item 7 — `login` checks every target before the browser and never loses a pair Saxo
 * issued: `--target secret` with Secret Manager unreachable exits 2 before printing an authorize
 * URL; a data dir the user cannot write (uid 65534, or chmod 0555 when not root) exits 2 before the
 * browser; and when Secret Manager fails after the code was exchanged, the pair is kept in a 0600
 * `token-keeper-login-*.json` that `login --import FILE` stores once Secret Manager answers.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { freePort } from '../../standins/pubsub-emulator.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { parseFlat } from '../../core/codec.js';
import { silentLogger } from '../../core/log.js';
import type { CliProcess } from '../helpers/agent-process.js';
import { cloudEnv, describeWithPubSub, ensureTopicAndSubscription, startPubSubFixture, startSecretManagerFixture, type PubSubFixture, type SecretManagerFixture } from '../helpers/gcp.js';
import { agentUser, dataDirFor, expectNoSecrets, expectNoStack, isRoot, STANDALONE, startCliAs } from '../helpers/reliability-cli.js';
import { startBlackHole } from '../helpers/reliability-servers.js';
import { authorizeUrl, signIn } from '../helpers/login.js';

const PROJECT = 'tk-rel-login';
const SECRET_ID = 'saxo-token';
const TOPIC = 'rel-login-rotated';
const APP_KEY = 'rel-login-app';
const APP_SECRET = 'rel-login-app-secret-0123456789abcdef';

let saxo: SaxoStandin;
const procs: CliProcess[] = [];

beforeAll(async () => {
  saxo = await startSaxoStandin({ clients: { [APP_KEY]: APP_SECRET } });
});
afterAll(async () => {
  await saxo.close();
});
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
});

async function env(dir: string, extra: Record<string, string | undefined> = {}): Promise<Record<string, string | undefined>> {
  return {
    ...STANDALONE,
    TOKEN_KEEPER_DATA_DIR: dir,
    SAXO_AUTH_BASE_URL: saxo.url,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    SAXO_REDIRECT_URI: `http://127.0.0.1:${await freePort()}/callback`,
    ...extra,
  };
}

function login(args: string[], e: Record<string, string | undefined>, as = agentUser()): CliProcess {
  const p = startCliAs(['login', '--no-open', '--timeout', '30', ...args], e, as);
  procs.push(p);
  return p;
}

describe('login refuses before the browser (item 7)', () => {
  it('--target secret with Secret Manager unreachable: exit 2, no authorize URL', async () => {
    const hole = await startBlackHole(); // accepts, never answers
    try {
      const dir = dataDirFor(agentUser(), 'tk-rel-login-nosm-');
      const authBefore = saxo.stats().authorizations;
      const p = login(['--target', 'secret'], await env(dir, { GOOGLE_CLOUD_PROJECT: PROJECT, TOKEN_SECRET_ID: SECRET_ID, SECRET_MANAGER_EMULATOR_HOST: hole.host, PUBSUB_EMULATOR_HOST: hole.host }));
      const { code } = await p.exited;
      expect(code).toBe(2);
      expect(p.stderr()).toMatch(/^token-keeper login: Secret Manager is not reachable for saxo-token: /);
      expect(p.stderr()).not.toMatch(/authorize\?|Open this URL/);
      expectNoStack(p.stderr());
      expect(saxo.stats().authorizations).toBe(authBefore);
      expectNoSecrets([p], [APP_SECRET]);
    } finally {
      await hole.close();
    }
  }, 30_000);

  it(`a data dir the user cannot write: exit 2, no authorize URL (${isRoot() ? 'as uid 65534' : 'chmod 0555'})`, async () => {
    const dir = dataDirFor(undefined, 'tk-rel-login-ro-'); // ours: root's when we are root
    if (!isRoot()) chmodSync(dir, 0o555);
    try {
      const p = login(['--target', 'cache'], await env(dir));
      const { code } = await p.exited;
      expect(code).toBe(2);
      expect(p.stderr()).toMatch(/^token-keeper login: data dir .* is not writable \(EACCES\): run as the bots' user or fix its owner\n$/);
      expect(p.stderr()).not.toMatch(/authorize\?/);
      expectNoStack(p.stderr());
      expectNoSecrets([p], [APP_SECRET]);
    } finally {
      chmodSync(dir, 0o700);
    }
  }, 30_000);
});

describeWithPubSub('login when Secret Manager fails after the code exchange (item 7)', () => {
  let sm: SecretManagerFixture;
  let ps: PubSubFixture;
  beforeAll(async () => {
    sm = await startSecretManagerFixture(PROJECT, SECRET_ID);
    ps = await startPubSubFixture(PROJECT);
    await ensureTopicAndSubscription(ps.pubsub, TOPIC, `${TOPIC}-audit`);
  }, 30_000);
  afterAll(async () => {
    await ps?.close();
    await sm?.close();
  });

  it('keeps the pair in a 0600 rescue file; `login --import FILE` stores it once Secret Manager answers', async () => {
    const as = agentUser();
    const dir = dataDirFor(as, 'tk-rel-login-rescue-');
    const cloud = cloudEnv(sm, { topic: TOPIC, pubsubHost: ps.emulator.host });
    const p = login(['--target', 'secret'], await env(dir, cloud), as);
    const url = await authorizeUrl(p); // the preflight passed: Secret Manager answered
    const exchanges = saxo.stats().codeExchanges;
    sm.server.setUnavailable(true); // from here on: after the exchange, storing fails
    let code: string | null = null;
    try {
      const loc = await signIn(url);
      code = loc.searchParams.get('code');
      expect((await fetch(loc)).status).toBe(200);
      expect((await p.exited).code).toBe(1);
    } finally {
      sm.server.setUnavailable(false);
    }
    expect(saxo.stats().codeExchanges).toBe(exchanges + 1); // the code is spent: the file is the only copy
    const failed = p.logs.find((l) => l.event === 'login_store_failed');
    const file = String(failed?.file);
    expect(file).toMatch(new RegExp(`^${dir}/token-keeper-login-[^/]+\\.json$`));
    const st = statSync(file);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(as?.uid ?? process.getuid?.());
    expect(p.stderr()).toContain(`npx token-keeper login --import ${file}`);
    const rescued = parseFlat(readFileSync(file, 'utf8'));
    if (!rescued.ok) throw new Error(rescued.reason);
    expect(saxo.isValidAccessToken(rescued.token.accessToken)).toBe(true);

    const q = startCliAs(['login', '--import', file, '--target', 'secret'], await env(dir, cloud), as);
    procs.push(q);
    expect((await q.exited).code).toBe(0);
    expect(existsSync(file)).toBe(false);
    const latest = await createSecretStore({ client: sm.client, projectId: PROJECT, secretId: SECRET_ID, logger: silentLogger }).latest();
    expect(latest?.token?.refreshToken).toBe(rescued.token.refreshToken);
    expect(latest?.token?.source).toBe('login');
    expect(q.logs.some((l) => l.event === 'login_stored')).toBe(true);
    expectNoSecrets([p, q], [rescued.token.accessToken, rescued.token.refreshToken, code ?? undefined, APP_SECRET]);
  }, 60_000);
});
