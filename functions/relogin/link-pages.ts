/**
 * The link's two steps: GET /l/<id> shows what would happen and consumes nothing (mail scanners and
 * chat previews open links); POST /confirm spends the link, starts authorization code + PKCE with
 * a server-side `state` bound to a `__Host-` cookie, and sends the browser to Saxo's sign-in.
 * Expired and used links offer "send a new link" (delivered only by the ALERT line).
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { pinFromAnnotations } from '../../core/identity.js';
import { errorText } from '../../core/errors.js';
import { buildAuthorizationUrl, pkceChallenge } from '../../core/saxo/authorize.js';
import { redirect, sendHtml, setCookie, STATE_COOKIE } from './http.js';
import { issueLink } from './issue.js';
import { consumeLink, lookupLink, type LinkLookup, mayResend, RESEND_INTERVAL_MS, STATE_TTL_MS, viewLink, type LinkEntry } from './link-rules.js';
import { confirmPage, messagePage } from './pages.js';
import { redirectUri, type ChainDeps, type RequestContext } from './types.js';

const utc = (ms: number) => `${new Date(ms).toISOString().slice(11, 16)} UTC`;

const GONE = {
  used: 'This link was already used. Each link works once.',
  expired: 'This link has expired (links work for 15 minutes).',
  worn: 'This link was opened too many times and no longer works.',
};

/** The chain's state in plain words, and why a phone login cannot start (if it cannot). */
async function chainFacts(chain: ChainDeps | undefined, now: number): Promise<{ status: string; refusal?: string }> {
  if (!chain) return { status: 'not served here', refusal: 'This service is not set up for that environment.' };
  try {
    const [latest, meta] = await Promise.all([chain.store.latest(), chain.store.meta()]);
    const t = latest?.token;
    const status = !t
      ? 'no token stored'
      : t.refreshExpiresAt === undefined
        ? 'token stored (refresh deadline unknown)'
        : t.refreshExpiresAt > now
          ? `alive until ${utc(t.refreshExpiresAt)} unless refreshed`
          : `dead since ${utc(t.refreshExpiresAt)} — needs a login`;
    if (!pinFromAnnotations(meta.annotations)) {
      return {
        status,
        refusal:
          'This chain has no pinned account yet, so a phone sign-in could store anybody’s token. Run `npx token-keeper login` once on a laptop (it pins the account), or start the agent once after the upgrade.',
      };
    }
    return { status };
  } catch (err) {
    return { status: 'unknown', refusal: `Secret Manager did not answer (${errorText(err)}); try again in a minute.` };
  }
}

function gonePage(kind: keyof typeof GONE, id: string): string {
  return messagePage({ title: 'Link no longer valid', lines: [GONE[kind], 'If the chain still needs a login, ask for a new link below.'], resendAction: `/l/${id}/resend` });
}

export async function showLink(ctx: RequestContext, res: ServerResponse, id: string, headers: Record<string, string>): Promise<void> {
  const { deps, now } = ctx;
  const found = await deps.links.transact<LinkLookup>((doc) => {
    const r = lookupLink(doc, id, now);
    return r.kind === 'valid' ? { doc: viewLink(doc, r.link), result: r } : { result: r };
  });
  if (found.kind === 'unknown') return ctx.refuse(404, 'link_unknown', messagePage({ title: 'Unknown link', lines: ['This link is not valid. Check that you opened the whole link from the alert.'] }));
  if (found.kind !== 'valid') return ctx.refuse(410, `link_${found.kind}`, gonePage(found.kind, id), { environment: found.link.env });
  const facts = await chainFacts(deps.chains[found.link.env], now);
  if (facts.refusal) ctx.deps.logger.warn('relogin_refused', 'Re-login page shown without a sign-in button', { reason: 'not_ready', environment: found.link.env, route: 'link' });
  sendHtml(res, 200, confirmPage({ id, environment: found.link.env, linkDeadline: found.link.exp, chainStatus: facts.status, refusal: facts.refusal }), headers);
}

export async function confirm(ctx: RequestContext, res: ServerResponse, id: string, headers: Record<string, string>): Promise<void> {
  const { deps, now } = ctx;
  const first = await deps.links.transact((doc) => ({ result: lookupLink(doc, id, now) }));
  if (first.kind === 'unknown') return ctx.refuse(404, 'link_unknown', messagePage({ title: 'Unknown link', lines: ['This link is not valid.'] }), { route: 'confirm' });
  if (first.kind !== 'valid') return ctx.refuse(410, `link_${first.kind}`, gonePage(first.kind, id), { route: 'confirm' });
  const env = first.link.env;
  const chain = deps.chains[env];
  const facts = await chainFacts(chain, now);
  if (!chain || facts.refusal) return ctx.refuse(409, 'not_ready', messagePage({ title: 'Cannot sign in here', lines: [facts.refusal ?? 'Not available.'] }), { environment: env });
  const state = randomBytes(32).toString('base64url');
  const cookie = randomBytes(32).toString('base64url');
  // Spent in the same compare-and-set that checks it: two confirms of one link cannot both win.
  const spent = await deps.links.transact<LinkEntry | undefined>((doc) => {
    const r = lookupLink(doc, id, now);
    return r.kind === 'valid' ? { doc: consumeLink(doc, r.link, state, cookie, now), result: r.link } : { result: undefined };
  });
  if (!spent) return ctx.refuse(410, 'link_race_lost', gonePage('used', id), { environment: env });
  const verifier = await deps.links.mac('pkce-verifier', state);
  const url = buildAuthorizationUrl({ authBaseUrl: chain.authBaseUrl, appKey: chain.appKey, redirectUri: redirectUri(deps.baseUrl, env), state, codeChallenge: pkceChallenge(verifier) });
  deps.logger.info('relogin_started', `Re-login confirmed for ${env}; sending the browser to Saxo's sign-in`, { environment: env });
  redirect(res, url, headers, { 'set-cookie': setCookie(STATE_COOKIE, cookie, STATE_TTL_MS / 1000) });
}

export async function resend(ctx: RequestContext, res: ServerResponse, id: string, headers: Record<string, string>): Promise<void> {
  const { deps, now } = ctx;
  const found = await deps.links.transact((doc) => {
    const r = lookupLink(doc, id, now);
    return { result: { r, quiet: r.kind !== 'unknown' && mayResend(doc, r.link.env, now) } };
  });
  // Only someone who held a (now spent or expired) link may ask: a stranger cannot make us send links.
  if (found.r.kind === 'unknown' || found.r.kind === 'valid') {
    return ctx.refuse(found.r.kind === 'valid' ? 409 : 404, `resend_${found.r.kind}`, messagePage({ title: 'No new link sent', lines: ['Only an expired or used link can ask for a new one.'] }), { route: 'resend' });
  }
  const env = found.r.link.env;
  if (!found.quiet) {
    return ctx.refuse(429, 'resend_too_soon', messagePage({ title: 'A link was sent recently', lines: ['Check your alert e-mail or SMS for it. A new one can be sent 5 minutes after the last.'] }), { environment: env });
  }
  const issued = await issueLink({ links: deps.links, environment: env, baseUrl: deps.baseUrl, logger: deps.logger, now, reason: 'requested from an expired or used link', quietMs: RESEND_INTERVAL_MS });
  if (!issued) return ctx.refuse(429, 'resend_too_soon', messagePage({ title: 'A link was sent recently', lines: ['Check your alert channels for it.'] }), { environment: env });
  sendHtml(res, 200, messagePage({ title: 'New link sent', tone: 'ok', lines: ['A new link went to the alert channels (e-mail, SMS, …). It works for 15 minutes.'] }), headers);
}
