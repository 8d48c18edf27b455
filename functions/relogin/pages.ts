/**
 * The phone pages: plain HTML, no script, one inline style block (allowed by the CSP), readable at
 * 390×844. Every value is escaped; no page ever carries a token, code, state or link id except the
 * confirm form's hidden id (the page the link itself opened).
 */
const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const STYLE = `body{font:17px/1.45 system-ui,-apple-system,sans-serif;margin:0;padding:1.25rem;color:#111;background:#fafafa}
main{max-width:34rem;margin:0 auto}h1{font-size:1.35rem;margin:.2rem 0 1rem}
dl{margin:1rem 0}dt{color:#555;font-size:.95rem}dd{margin:0 0 .7rem;font-weight:600;word-break:break-word}
button{display:block;width:100%;padding:1rem;font-size:1.1rem;border:0;border-radius:.6rem;background:#0b5cff;color:#fff;margin:1.2rem 0}
.ok{color:#0a7a2f}.bad{color:#b00020}.note{color:#555;font-size:.95rem}`;

export function layout(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>${esc(title)} — token-keeper</title><style>${STYLE}</style></head>
<body><main>${body}</main></body></html>`;
}

const utc = (ms: number): string => `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;

function facts(rows: [string, string][]): string {
  return `<dl>${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>`;
}

export interface ConfirmView {
  id: string;
  environment: string;
  linkDeadline: number;
  chainStatus: string;
  /** Why the sign-in cannot start (no pin yet); the button is then not shown. */
  refusal?: string | undefined;
}

export function confirmPage(v: ConfirmView): string {
  const rows = facts([
    ['Environment', v.environment],
    ['Chain', v.chainStatus],
    ['Link valid until', utc(v.linkDeadline)],
  ]);
  if (v.refusal) {
    return layout('Cannot sign in here', `<h1>Re-login is not possible from this page</h1>${rows}<p class="bad" id="refusal">${esc(v.refusal)}</p>`);
  }
  return layout(
    'Sign in again',
    `<h1>Sign in to Saxo ${esc(v.environment)} again</h1>${rows}
<p>Opening this page changed nothing. Press the button to sign in with <strong>the account this chain belongs to</strong>; the link then stops working.</p>
<form method="post" action="/confirm"><input type="hidden" name="id" value="${esc(v.id)}"><button type="submit" id="confirm">Continue to Saxo sign-in</button></form>
<p class="note">Did not ask for this? Close the page; the link expires by itself.</p>`,
  );
}

export interface MessageView {
  title: string;
  lines: string[];
  /** Offer "send a new link" (POST to this path). */
  resendAction?: string | undefined;
  tone?: 'ok' | 'bad';
}

export function messagePage(v: MessageView): string {
  const resend = v.resendAction
    ? `<form method="post" action="${esc(v.resendAction)}"><button type="submit" id="resend">Send a new link</button></form>
<p class="note">The new link goes to the alert channels only (e-mail, SMS, …), never to this page.</p>`
    : '';
  const cls = v.tone === 'ok' ? 'ok' : 'bad';
  return layout(v.title, `<h1 class="${cls}" id="title">${esc(v.title)}</h1>${v.lines.map((l) => `<p>${esc(l)}</p>`).join('')}${resend}`);
}

export interface ResultView {
  environment: string;
  maskedUser: string;
  refreshDeadline: number;
  identityCall: string;
  version: number;
}

export function resultPage(v: ResultView): string {
  return layout(
    'Chain restored',
    `<h1 class="ok" id="title">The token chain is alive again</h1>${facts([
      ['Environment', v.environment],
      ['Signed in as', v.maskedUser],
      ['New refresh token valid until', utc(v.refreshDeadline)],
      ['Read-only check (users/me)', v.identityCall],
      ['Stored as secret version', String(v.version)],
    ])}<p>Every VM picks the new token up within seconds. Nothing else to do — you can close this page.</p>`,
  );
}
