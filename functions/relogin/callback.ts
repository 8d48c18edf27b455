/**
 * GET /callback/<env>: Saxo sends the browser back with code + state. Checked in order — state known,
 * unused, unexpired, the `__Host-` cookie of the browser that confirmed, the environment of the path
 * — and the state spent (compare-and-set) before the code is exchanged. Then the identity check
 * (identity-check.ts); a pair of any other account is discarded and raises an ALERT. The right one
 * is stored as the next generation and announced (TOKEN_ROTATED), like any new pair. The browser is
 * then sent to /done so no code or state stays in the address bar; the proof rides in a signed cookie.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { addVersion, announce, rotatedEvent } from '../../core/announce.js';
import { systemClock } from '../../core/clock.js';
import { errorText } from '../../core/errors.js';
import { maskUser, pinFromAnnotations, type SaxoEnvironment } from '../../core/identity.js';
import { fromResponse, secretsOf, withNextGeneration, withPayloadCredentials } from '../../core/token.js';
import { clearCookie, readCookie, redirect, RESULT_COOKIE, setCookie, STATE_COOKIE } from './http.js';
import { verifyIdentity } from './identity-check.js';
import { checkState, useState, type StateCheck } from './link-rules.js';
import { messagePage, resultPage, type ResultView } from './pages.js';
import { redirectUri, type RequestContext } from './types.js';

const AGAIN = 'If the chain still needs a login, use "send a new link" on the link’s page or run `npx token-keeper login --link`.';

export async function callback(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, env: SaxoEnvironment, url: URL, headers: Record<string, string>): Promise<void> {
  const { deps, now } = ctx;
  const { logger } = deps;
  const state = url.searchParams.get('state') ?? '';
  const code = url.searchParams.get('code') ?? '';
  logger.addSecret(code, state);
  const cookie = readCookie(req, STATE_COOKIE);
  const clear = { 'set-cookie': clearCookie(STATE_COOKIE) };
  const fail = (status: number, reason: string, title: string, lines: string[], fields: Record<string, unknown> = {}) =>
    ctx.refuse(status, reason, messagePage({ title, lines: [...lines, AGAIN] }), { environment: env, route: 'callback', ...fields });

  if (url.searchParams.get('error')) return fail(400, 'saxo_error', 'Sign-in was not completed', ['Saxo did not sign you in. Nothing was stored.']);
  if (!code || !state) return fail(400, 'missing_code_or_state', 'Incomplete sign-in', ['The sign-in answer is incomplete. Nothing was stored.']);
  const spent = await deps.links.transact<StateCheck>((doc) => {
    const r = checkState(doc, state, cookie, env, now);
    return r.ok ? { doc: useState(doc, r.entry, now), result: r } : { result: r };
  });
  if (!spent.ok) {
    return fail(400, spent.reason, 'This sign-in cannot be used', [
      spent.reason === 'cookie_missing' || spent.reason === 'cookie_mismatch'
        ? 'Finish the sign-in in the same browser where you pressed the button. Nothing was stored.'
        : spent.reason === 'environment_mismatch'
          ? 'The sign-in came back for a different environment (SIM/LIVE) than the link was for. Nothing was stored.'
          : 'It was already used, has expired or is unknown. Nothing was stored.',
    ]);
  }
  const chain = deps.chains[env];
  if (!chain) return fail(404, 'environment_not_served', 'Not available', ['This service is not set up for that environment.']);

  const verifier = await deps.links.mac('pkce-verifier', state);
  logger.addSecret(verifier);
  let pair;
  try {
    const answer = await chain.saxo.exchangeCode(code, verifier, { appKey: chain.appKey, appSecret: chain.appSecret, redirectUri: redirectUri(deps.baseUrl, env), deadline: now + 30_000 });
    pair = { ...fromResponse(answer, now, undefined, 'relogin', chain.expiryMarginMs), generation: undefined, appKey: chain.appKey, appSecret: chain.appSecret };
    logger.addSecret(...secretsOf(pair));
  } catch (err) {
    return fail(502, 'code_exchange_failed', 'Saxo did not accept the sign-in', [`The code exchange failed (${errorText(err)}). Nothing was stored.`]);
  }

  const meta = await chain.store.meta();
  const pin = pinFromAnnotations(meta.annotations);
  if (!pin) return fail(409, 'not_pinned', 'Cannot store this sign-in', ['This chain has no pinned account. Run `npx token-keeper login` on a laptop once. Nothing was stored.']);
  const who = await verifyIdentity({ pin, accessToken: pair.accessToken, environment: env, openapiBaseUrl: chain.openapiBaseUrl, fetch: deps.fetch });
  if (!who.ok) {
    if (who.wrongAccount) {
      logger.alert('relogin_wrong_account', `Sign-in with the wrong account on the ${env} re-login page: the new token was discarded, nothing stored`, { environment: env, reason: who.reason });
      return fail(403, 'wrong_account', 'Signed in with the wrong account', ['That Saxo account is not the one this chain belongs to. Its token was discarded; nothing was stored.']);
    }
    return fail(502, 'identity_unconfirmed', 'Could not confirm the account', [`${who.reason}. The new token was discarded; nothing was stored.`]);
  }

  const latest = await chain.store.latest();
  const next = withNextGeneration(pair, latest?.token);
  const version = await addVersion(chain.store, withPayloadCredentials(next, latest?.token), logger, 'login');
  await announce({ bus: chain.bus, clock: systemClock, logger }, rotatedEvent(next, version, now));
  // No prune here: the service may not destroy versions (least privilege); the next refresh prunes.
  logger.notice('relogin_stored', `Re-login from the phone page stored a new ${env} token (generation ${next.generation})`, { environment: env, generation: next.generation, version });

  const view: ResultView = {
    environment: env,
    maskedUser: maskUser(typeof who.me.Name === 'string' ? who.me.Name : pin.userKey),
    refreshDeadline: next.refreshExpiresAt ?? next.accessExpiresAt,
    identityCall: who.call,
    version: Number(version.slice(version.lastIndexOf('/') + 1)),
  };
  const payload = Buffer.from(JSON.stringify(view)).toString('base64url');
  const signed = `${payload}.${await deps.links.mac('result', payload)}`;
  redirect(res, '/done', headers, { 'set-cookie': [clear['set-cookie'], setCookie(RESULT_COOKIE, signed, 600)] });
}

/** GET /done: the proof page, from the signed result cookie (nothing secret in it). */
export async function done(ctx: RequestContext, req: IncomingMessage): Promise<{ status: number; html: string }> {
  const raw = readCookie(req, RESULT_COOKIE) ?? '';
  const [payload, mac] = raw.split('.');
  if (!payload || !mac || mac !== (await ctx.deps.links.mac('result', payload))) {
    return { status: 404, html: messagePage({ title: 'Nothing to show', lines: ['There is no finished sign-in in this browser.'] }) };
  }
  return { status: 200, html: resultPage(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as ResultView) };
}
