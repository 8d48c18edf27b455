/**
 * The stand-in's sign-in page: a list of accounts, one button each, posting back to /authorize
 * with the authorization request's parameters — what a browser test clicks through at a phone
 * viewport. Plain HTML, no script.
 */
import type { StandinAccount } from './state.js';

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const CARRIED = ['response_type', 'client_id', 'redirect_uri', 'code_challenge', 'code_challenge_method', 'state'];

export function signInPage(o: { environment: string; accounts: StandinAccount[]; params: URLSearchParams }): string {
  const hidden = CARRIED.map((k) => `<input type="hidden" name="${k}" value="${esc(o.params.get(k) ?? '')}">`).join('');
  const buttons = o.accounts
    .map((a) => `<button type="submit" name="user" value="${esc(a.userId)}" id="user-${esc(a.userId)}">Sign in as ${esc(a.name)}</button>`)
    .join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Saxo stand-in — sign in (${esc(o.environment)})</title>
<style>body{font:16px system-ui,sans-serif;margin:1.5rem}button{display:block;width:100%;margin:.75rem 0;padding:.9rem;font-size:1rem}</style></head>
<body><h1>Saxo ${esc(o.environment)} sign-in (stand-in)</h1><form method="post" action="/authorize">${hidden}${buttons}</form></body></html>`;
}
