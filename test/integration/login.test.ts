/**
 * `token-keeper login` end to end: the real CLI process, the Saxo stand-in as the authorization
 * server, this test as the browser (GET /authorize → 302 → loopback callback), and — for the cloud
 * case — the Secret Manager stand-in, the real Pub/Sub emulator and a running agent that must pick
 * the new pair up from the TOKEN_ROTATED event.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSaxoStandin, type SaxoStandin } from '../../standins/saxo/server.js';
import { freePort } from '../../standins/pubsub-emulator.js';
import { createCacheFile } from '../../agent/cache-file.js';
import { createSecretStore } from '../../core/gcp/secret-store.js';
import { silentLogger } from '../../core/log.js';
import type { TokenSet } from '../../core/token.js';
import type { SecretStore } from '../../core/ports.js';
import { startCli, type CliProcess } from '../helpers/agent-process.js';
import { authorizeUrl, signIn } from '../helpers/login.js';
import { cachedPair, issuedPair } from '../helpers/reliability-cli.js';
import {
  cloudEnv,
  describeWithPubSub,
  ensureTopicAndSubscription,
  startPubSubFixture,
  startSecretManagerFixture,
  type PubSubFixture,
  type SecretManagerFixture,
} from '../helpers/gcp.js';

const APP_KEY = 'login-app-key';
const APP_SECRET = 'login-app-secret-0123456789abcdef';
const PUBLIC_APP = 'login-public-app';

let standin: SaxoStandin;
const procs: CliProcess[] = [];

beforeAll(async () => {
  standin = await startSaxoStandin({ clients: { [APP_KEY]: APP_SECRET, [PUBLIC_APP]: null } });
});
afterAll(async () => {
  await standin.close();
});
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
});

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'tk-login-'));
}

function baseEnv(dataDir: string, port: number, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    TOKEN_KEEPER_DATA_DIR: dataDir,
    SAXO_AUTH_BASE_URL: standin.url,
    SAXO_APP_KEY: APP_KEY,
    SAXO_APP_SECRET: APP_SECRET,
    SAXO_REDIRECT_URI: `http://127.0.0.1:${port}/callback`,
    // Keep this process standalone unless the test says otherwise (CI may export these).
    GOOGLE_CLOUD_PROJECT: undefined,
    GCLOUD_PROJECT: undefined,
    TOKEN_SECRET_ID: undefined,
    TOKEN_SUBSCRIPTION_ID: undefined,
    ...extra,
  };
}

function startLogin(args: string[], env: Record<string, string | undefined>): CliProcess {
  const p = startCli(['login', '--no-open', ...args], env);
  procs.push(p);
  return p;
}

/** A live pair with `leftSec` of access left, issued a minute ago. */
function seeded(leftSec: number, generation?: number): TokenSet {
  return issuedPair(standin, { key: APP_KEY, secret: APP_SECRET }, { leftSec, lifeSec: leftSec + 60, refreshLeftSec: 3600, generation, source: 'cloud' });
}

function assertNothingSecret(p: CliProcess, secrets: (string | undefined)[]): void {
  const out = p.raw.join('\n') + p.stderr();
  for (const s of secrets) {
    if (!s) continue;
    expect(out.includes(s), 'a token, code or the app secret appeared in the login output').toBe(false);
  }
}

describe('login: PKCE at the stand-in', () => {
  it('rejects a code exchange with the wrong verifier (so a passing login proves the S256 verifier)', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const redirectUri = 'http://127.0.0.1:1/callback';
    const q = new URLSearchParams({ response_type: 'code', client_id: APP_KEY, redirect_uri: redirectUri, code_challenge: challenge, code_challenge_method: 'S256', state: 's' });
    const loc = await signIn(`${standin.url}/authorize?${q}`);
    const code = loc.searchParams.get('code')!;
    const before = standin.stats().codeExchanges;
    const res = await fetch(`${standin.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: randomBytes(32).toString('base64url'), client_id: APP_KEY, client_secret: APP_SECRET }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_grant');
    expect(standin.stats().codeExchanges).toBe(before);
  });
});

describe('login (standalone, cache target)', () => {
  it('works for a public PKCE app (no client secret)', async () => {
    const dir = tempDir();
    const port = await freePort();
    const p = startLogin(['--timeout', '30', '--target', 'cache'], baseEnv(dir, port, { SAXO_APP_KEY: PUBLIC_APP, SAXO_APP_SECRET: undefined }));
    const before = standin.stats().codeExchanges;
    const loc = await signIn(await authorizeUrl(p));
    const cb = await fetch(loc);
    expect(cb.status).toBe(200);
    expect((await p.exited).code).toBe(0);
    expect(standin.stats().codeExchanges).toBe(before + 1);
    const t = cachedPair(dir)!;
    expect(t.appKey).toBe(PUBLIC_APP);
    expect(t.appSecret).toBeUndefined();
    expect(standin.isValidAccessToken(t.accessToken)).toBe(true);
    expect(p.logs.some((l) => l.event === 'login_stored')).toBe(true);
    assertNothingSecret(p, [t.accessToken, t.refreshToken, loc.searchParams.get('code') ?? undefined]);
  }, 30_000);

  it('the login starts the chain: a forced refresh carries its start, and doctor reports the chain\'s age', async () => {
    const dir = tempDir();
    const env = baseEnv(dir, await freePort());
    const p = startLogin(['--timeout', '30', '--target', 'cache'], env);
    await fetch(await signIn(await authorizeUrl(p)));
    expect((await p.exited).code).toBe(0);
    const login = cachedPair(dir)!;
    expect(login.chainStartedAt).toBe(login.issuedAt);
    const r = startCli(['refresh', '--force'], env);
    procs.push(r);
    expect((await r.exited).code).toBe(0);
    const next = cachedPair(dir)!;
    expect(next.refreshToken).not.toBe(login.refreshToken);
    expect(next.chainStartedAt).toBe(login.chainStartedAt);
    const d = startCli(['doctor', '--json'], env);
    procs.push(d);
    await d.exited;
    const report = JSON.parse(d.raw.join('\n')) as { checks: { id: string; summary: string; details?: { chainStartedAt?: string; chainAgeSeconds?: number } }[] };
    const token = report.checks.find((c) => c.id === 'token')!;
    expect(token.details?.chainStartedAt).toBe(new Date(login.chainStartedAt!).toISOString());
    expect(token.details?.chainAgeSeconds).toBeLessThan(60);
    expect(token.summary).toMatch(/chain started \d+ s ago \(login\)/);
    assertNothingSecret(d, [login.refreshToken, next.accessToken, next.refreshToken, APP_SECRET]);
  }, 30_000);

  it('times out with a non-zero exit, frees the loopback port, and stores nothing', async () => {
    const dir = tempDir();
    const port = await freePort();
    const t0 = Date.now();
    const p = startLogin(['--timeout', '1', '--target', 'cache'], baseEnv(dir, port));
    await authorizeUrl(p);
    const exit = await p.exited;
    expect(exit.code).toBe(1);
    expect(exit.signal).toBeNull();
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(p.logs.some((l) => l.event === 'login_failed' && /No browser callback within 1 s/.test(l.message))).toBe(true);
    expect(cachedPair(dir)).toBeUndefined();
    // The listener is gone with the process: the port can be bound again.
    const srv = createServer();
    await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
    await new Promise<void>((r) => srv.close(() => r()));
    assertNothingSecret(p, [APP_SECRET]);
  }, 30_000);

  it('rejects bad options with exit 2 before listening (non-numeric --timeout, unknown --target, missing app key)', async () => {
    const dir = tempDir();
    const port = await freePort();
    const runs = [
      startLogin(['--timeout', 'soon'], baseEnv(dir, port)),
      startLogin(['--target', 'everywhere'], baseEnv(dir, port)),
      startLogin([], baseEnv(dir, port, { SAXO_APP_KEY: undefined })),
    ];
    const exits = await Promise.all(runs.map((r) => r.exited));
    expect(exits.map((e) => e.code)).toEqual([2, 2, 2]);
    expect(runs[0]!.stderr()).toMatch(/--timeout must be a positive number/);
    expect(runs[1]!.stderr()).toMatch(/--target must be/);
    expect(runs[2]!.stderr()).toMatch(/set SAXO_APP_KEY/);
    for (const r of runs) expect(r.stderr()).not.toMatch(/\/authorize\?/);
  }, 20_000);

  it('refuses to replace a newer stored pair without --force; the consumed authorization is kept in a 0600 file that `--import --force` stores', async () => {
    const dir = tempDir();
    // "Someone refreshed during the login": the cache already holds a pair that outlives the new one.
    const newer = seeded(7200);
    newer.generation = undefined; // as a bot writes it
    await createCacheFile(join(dir, 'saxo_token_cache.json')).write(newer);

    const port = await freePort();
    const p = startLogin(['--timeout', '30', '--target', 'cache'], baseEnv(dir, port));
    const loc = await signIn(await authorizeUrl(p));
    expect((await fetch(loc)).status).toBe(200);
    expect((await p.exited).code).toBe(1);
    const failed = p.logs.find((l) => l.event === 'login_store_failed');
    expect(failed?.message).toMatch(/newer token pair is already stored/);
    expect(cachedPair(dir)!.refreshToken).toBe(newer.refreshToken);
    // The pair Saxo issued for the code is not lost: it waits in a 0600 file, and stderr says how to import it.
    const file = String(failed?.file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(p.stderr()).toContain(`npx token-keeper login --import ${file}`);

    const q = startCli(['login', '--import', file, '--target', 'cache', '--force'], baseEnv(dir, await freePort()));
    procs.push(q);
    expect((await q.exited).code).toBe(0);
    expect(existsSync(file)).toBe(false);
    const after = cachedPair(dir)!;
    expect(after.refreshToken).not.toBe(newer.refreshToken);
    expect(after.source).toBe('login');
    expect(standin.isValidAccessToken(after.accessToken)).toBe(true);
    for (const x of [p, q]) assertNothingSecret(x, [newer.accessToken, newer.refreshToken, after.accessToken, after.refreshToken, APP_SECRET]);
  }, 40_000);
});

describeWithPubSub('login (cloud: secret + event to a running agent)', () => {
  const PROJECT = 'tk-login-test';
  const SECRET_ID = 'saxo-token';
  const TOPIC = 'token-rotated-login';
  const SUB = 'agent-login-sub';
  let sm: SecretManagerFixture;
  let ps: PubSubFixture;
  let store: SecretStore;

  beforeAll(async () => {
    sm = await startSecretManagerFixture(PROJECT, SECRET_ID);
    ps = await startPubSubFixture(PROJECT);
    await ensureTopicAndSubscription(ps.pubsub, TOPIC, SUB);
    store = createSecretStore({ client: sm.client, projectId: PROJECT, secretId: SECRET_ID, logger: silentLogger });
  }, 30_000);
  afterAll(async () => {
    await ps?.close();
    await sm?.close();
  });

  it('rejects a wrong state, then stores the pair in the secret (newer generation) and the cache; the agent adopts it from TOKEN_ROTATED', async () => {
    const cloud = cloudEnv(sm, { topic: TOPIC, pubsubHost: ps.emulator.host });
    // The secret and the agent's cache hold generation 5, fresh enough that nobody refreshes.
    const presentedBefore = standin.stats().presentations; // earlier tests of this file refreshed
    const existing = seeded(1000, 5);
    await store.add(existing);
    const agentDir = tempDir();
    await createCacheFile(join(agentDir, 'saxo_token_cache.json')).write(existing);
    const agent = startCli(['agent'], {
      ...baseEnv(agentDir, 1),
      ...cloud,
      TOKEN_SUBSCRIPTION_ID: SUB,
      CHECK_INTERVAL_SECONDS: '60', // no periodic check during the test: only the event can bring the pair
      TOKEN_KEEPER_HOLDER_ID: 'agent:login-test',
    });
    procs.push(agent);
    await agent.waitForEvent('agent_ready', 20_000);
    expect(agent.logs.some((l) => l.event === 'subscribed')).toBe(true);

    // The login runs elsewhere (its own data dir), as an operator would from another shell.
    const loginDir = tempDir();
    const port = await freePort();
    const p = startLogin(['--timeout', '30'], { ...baseEnv(loginDir, port), ...cloud });
    const url = new URL(await authorizeUrl(p));
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('redirect_uri')).toBe(`http://127.0.0.1:${port}/callback`);
    const exchangesBefore = standin.stats().codeExchanges;
    const loc = await signIn(url.toString());
    const code = loc.searchParams.get('code')!;

    // A callback with a forged state: 400, and no code exchange.
    const forged = new URL(loc);
    forged.searchParams.set('state', 'forged-state');
    const bad = await fetch(forged);
    expect(bad.status).toBe(400);
    await bad.text();
    expect(standin.stats().codeExchanges).toBe(exchangesBefore);
    expect(p.proc.exitCode).toBeNull();

    // The genuine callback.
    const good = await fetch(loc);
    expect(good.status).toBe(200);
    await good.text();
    expect((await p.exited).code).toBe(0);
    expect(standin.stats().codeExchanges).toBe(exchangesBefore + 1);
    expect(p.logs.some((l) => l.event === 'login_state_mismatch')).toBe(true);

    // Secret: a new version above generation 5, announced.
    const latest = (await store.latest())!;
    expect(latest.token?.generation).toBe(6);
    expect(latest.token?.source).toBe('login');
    expect(latest.token?.refreshToken).not.toBe(existing.refreshToken);
    expect(standin.isValidAccessToken(latest.token!.accessToken)).toBe(true);
    expect(p.logs.some((l) => l.event === 'secret_version_added')).toBe(true);
    // Cache (the login's own data dir exists, so auto stores there too).
    expect(cachedPair(loginDir)?.refreshToken).toBe(latest.token!.refreshToken);

    // The agent learns about it from the event alone and rewrites its cache.
    const adopted = await agent.waitFor((l) => l.event === 'token_adopted' && l.generation === 6, 20_000, 'agent adopting generation 6');
    expect(adopted.from).toBe('secret');
    await agent.waitFor((l) => l.event === 'cache_written' && l.generation === 6, 10_000, 'agent cache write');
    expect(cachedPair(agentDir)?.refreshToken).toBe(latest.token!.refreshToken);
    expect(standin.stats().presentations).toBe(presentedBefore); // nobody refreshed: the pair came from the login

    const secrets = [existing.accessToken, existing.refreshToken, latest.token!.accessToken, latest.token!.refreshToken, code, APP_SECRET];
    assertNothingSecret(p, secrets);
    expect((await agent.stop()).code).toBe(0);
    assertNothingSecret(agent, secrets);
  }, 60_000);
});
