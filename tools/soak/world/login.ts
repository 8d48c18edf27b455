/** The operator: `token-keeper login` after the chain died — a fresh pair into the secret and the cache. */
import { serializeFlat } from '../../../core/codec.js';
import { fromResponse, type TokenSet } from '../../../core/token.js';
import { Proc } from '../procs.js';
import { APP_KEY, APP_SECRET, type World } from '../world.js';

export async function login(w: World): Promise<void> {
  const res = w.saxo.issue();
  w.ledger.byRefresh.get(res.refreshToken)!.delivered = true;
  const gens = [w.state.value?.token?.generation ?? 0, w.cacheToken()?.generation ?? 0];
  const pair: TokenSet = { ...fromResponse(res, w.now(), undefined, 'login'), appKey: APP_KEY, appSecret: APP_SECRET };
  if (!w.smDown) {
    const latest = await w.store.latest();
    pair.generation = Math.max(...gens, latest?.token?.generation ?? 0) + 1;
    const v = w.store.addRaw(serializeFlat(pair));
    w.secretAdded(new Proc('login', 'bot'), pair);
    w.route({
      type: 'TOKEN_ROTATED', version: v.name, generation: pair.generation, source: 'login',
      accessExpiresAt: new Date(pair.accessExpiresAt).toISOString(), publishedAt: new Date(w.now()).toISOString(),
    });
  } else pair.generation = Math.max(...gens) + 1;
  const held = await w.lock.acquire();
  w.setWriter('login');
  w.cache.raw = serializeFlat(pair);
  await held.release();
  w.loginRequiredAt = undefined;
}
