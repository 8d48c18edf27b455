/**
 * Where `login` puts the pair Saxo issued for the code, and what makes that safe: checking every
 * target before the browser opens, storing (the secret announced, the cache under the flock), and
 * — when storing fails after the exchange — a 0600 rescue file with the command that imports it.
 */
import { constants, existsSync } from 'node:fs';
import { access, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { addVersion, announce, pruneVersions, rotatedEvent } from '../core/announce.js';
import { systemClock } from '../core/clock.js';
import { parseFlat, serializeFlat } from '../core/codec.js';
import type { Config } from '../core/config.js';
import { errorText } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { checkUsersMe, pinFromAnnotations, pinFromClaims } from '../core/identity.js';
import type { SecretStore } from '../core/ports.js';
import { fetchUsersMe, openapiBaseUrl } from '../core/saxo/users-me.js';
import { compareFreshness, secretsOf, withNextGeneration, withPayloadCredentials, type TokenSet } from '../core/token.js';
import { atomicWriteFile } from './atomic-write.js';
import { createCacheFile } from './cache-file.js';
import { acquireFlock } from './flock.js';
import { readRegularNoFollow } from './safe-open.js';
import { createStateFile } from './state-file.js';
import { connectCloud } from './wiring.js';

export class LoginError extends Error {
  override readonly name = 'LoginError';
}

export type LoginTarget = 'auto' | 'secret' | 'cache' | 'both';

interface Targets {
  secret: boolean;
  cache: boolean;
}

function targets(config: Config, target: LoginTarget): Targets {
  const secret = target === 'secret' || target === 'both' || (target === 'auto' && !!config.gcp);
  const cache = target === 'cache' || target === 'both' || (target === 'auto' && (!config.gcp || existsSync(config.dataDir)));
  if (secret && !config.gcp) throw new LoginError('--target secret needs GOOGLE_CLOUD_PROJECT and TOKEN_SECRET_ID');
  return { secret, cache };
}

/**
 * Before the browser: every place the pair must go is there and takes writes. An authorization code
 * is single-use and the pair it buys is only saved if storing works — find out first.
 */
export async function preflight(config: Config, target: LoginTarget, logger: Logger): Promise<void> {
  const t = targets(config, target);
  if (t.cache) {
    try {
      await access(config.dataDir, constants.W_OK | constants.X_OK);
    } catch (err) {
      throw new LoginError(`data dir ${config.dataDir} is not writable (${(err as NodeJS.ErrnoException).code ?? 'error'}): run as the bots' user or fix its owner`);
    }
  }
  if (t.secret) {
    const cloud = await connectCloud(config, logger, { timeoutMs: 5_000 });
    try {
      await cloud!.store.meta();
    } catch (err) {
      throw new LoginError(`Secret Manager is not reachable for ${config.gcp!.secretId}: ${errorText(err)}`);
    } finally {
      await cloud?.close();
    }
  }
}

/** Store the pair; refuses to replace a pair newer than it unless `force`. Returns where it went. */
export async function storeLogin(config: Config, token: TokenSet, target: LoginTarget, force: boolean, logger: Logger): Promise<string[]> {
  const t = targets(config, target);
  const cloud = t.secret ? await connectCloud(config, logger) : undefined;
  const stored: string[] = [];
  try {
    const cache = createCacheFile(config.cachePath, { logger });
    const stateFile = createStateFile(config.statePath, { logger });
    const latest = cloud ? await cloud.store.latest() : undefined;
    const cached = t.cache ? await cache.read() : undefined;
    const known = t.cache ? (await stateFile.read())?.token : undefined;
    const existing = [latest?.token, cached?.kind === 'ok' ? cached.token : undefined, known];
    for (const e of existing) {
      if (e && e.accessExpiresAt > token.accessExpiresAt && compareFreshness(e, token) > 0 && !force) {
        throw new LoginError('A newer token pair is already stored (someone refreshed during the login); use --force to replace it');
      }
    }
    const pair = withNextGeneration(token, ...existing);
    if (cloud) {
      await pinChain(cloud.store, config, pair, force, logger);
      // The app credentials in the secret stay what they were; a first version takes the login's.
      const v = await addVersion(cloud.store, withPayloadCredentials(pair, latest?.token), logger, 'login');
      await announce({ bus: cloud.bus, clock: systemClock, logger }, rotatedEvent(pair, v, Date.now()));
      await pruneVersions(cloud.store, config.keepSecretVersions, logger);
      stored.push(v);
    }
    if (t.cache) {
      const held = await acquireFlock(config.lockPath, { timeoutMs: config.lockTimeoutMs });
      try {
        await cache.write(pair);
      } finally {
        await held.release();
      }
      stored.push(config.cachePath);
    }
    logger.notice('login_stored', `Login complete: new token stored (generation ${pair.generation})`, { stored, generation: pair.generation });
    return stored;
  } finally {
    await cloud?.close();
  }
}

/**
 * Pin the chain to the account that signed in (docs/DESIGN.md "Re-login from a phone"): the access
 * token's claims, confirmed by a read-only users/me. A chain pinned to another account is re-pinned
 * only with --force (the operator changes whose chain this is).
 */
async function pinChain(store: SecretStore, config: Config, token: TokenSet, force: boolean, logger: Logger): Promise<void> {
  const got = pinFromClaims(token.accessToken, config.environment);
  if (!('pin' in got)) {
    logger.warn('identity_unpinned', `The chain is not pinned: ${got.reason}`);
    return;
  }
  const me = await fetchUsersMe(openapiBaseUrl(config.environment, config.relogin.openapiBaseUrl, config.authBaseUrl), token.accessToken);
  if (me.ok) {
    const same = checkUsersMe(got.pin, me.me);
    if (!same.ok) throw new LoginError(`The token's claims and users/me disagree (${same.reason}); not pinning`);
  } else {
    logger.warn('identity_check_skipped', `Pinned from the token's claims only: ${me.reason}`);
  }
  const current = pinFromAnnotations((await store.meta()).annotations);
  if (current && (current.userKey !== got.pin.userKey || current.clientKey !== got.pin.clientKey || current.appKey !== got.pin.appKey) && !force) {
    throw new LoginError('This sign-in is for another account than the one the chain is pinned to; use --force to re-pin the chain');
  }
  await store.record({ pin: got.pin });
  logger.notice('identity_pinned', `Pinned the chain to the signed-in account (${config.environment})`, { environment: config.environment });
}

/**
 * The code was exchanged but storing failed: Saxo's pair exists nowhere else, so put it in a 0600
 * file next to the data (or in the working directory) and say how to import it.
 */
export async function rescue(config: Config, token: TokenSet): Promise<string> {
  const dir = existsSync(config.dataDir) ? config.dataDir : process.cwd();
  const path = join(dir, `token-keeper-login-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await atomicWriteFile(path, serializeFlat(token) + '\n', { mode: 0o600 });
  return path;
}

/** `login --import FILE`: store a pair a failed login saved, then delete the file. */
export async function importRescued(config: Config, file: string, target: LoginTarget, force: boolean, logger: Logger): Promise<number> {
  // The rescue file sits in the data dir, whose owner could swap it for a link: never followed.
  const raw = await readRegularNoFollow(file, 64 * 1024);
  if (raw.kind !== 'ok') {
    process.stderr.write(`token-keeper login: cannot use ${file}: ${raw.kind === 'missing' ? 'no such file' : raw.reason}\n`);
    return 2;
  }
  const parsed = parseFlat(raw.text);
  if (!parsed.ok) {
    process.stderr.write(`token-keeper login: ${file} holds no usable token (${parsed.reason})\n`);
    return 2;
  }
  logger.addSecret(...secretsOf(parsed.token));
  try {
    await storeLogin(config, { ...parsed.token, generation: undefined }, target, force, logger);
  } catch (err) {
    logger.error('login_store_failed', `Import failed: ${errorText(err)}; ${file} is kept`);
    return 1;
  }
  await unlink(file);
  return 0;
}
