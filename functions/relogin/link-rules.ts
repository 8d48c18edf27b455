/**
 * The one-time link and the sign-in `state`, as pure transitions of one small document
 * (docs/DESIGN.md "Re-login from a phone"). Only SHA-256 hashes of link ids, states and cookies
 * are kept; the document lives in the link-state secret's annotations and every change is a
 * compare-and-set on its etag (link-store.ts), so "single use" holds across instances.
 */
import { createHash } from 'node:crypto';
import type { SaxoEnvironment } from '../../core/identity.js';

export const LINK_TTL_MS = 15 * 60_000;
/** From the confirm to the callback: the person signs in meanwhile. */
export const STATE_TTL_MS = 10 * 60_000;
/** A link whose page was opened this often is burned (scanners, a guessing loop that found it). */
export const MAX_LINK_VIEWS = 20;
/** "Send a new link" at most this often per environment. */
export const RESEND_INTERVAL_MS = 5 * 60_000;
/** The refresher, finding the chain dead at every Scheduler run, sends a link at most this often. */
export const AUTO_LINK_INTERVAL_MS = 60 * 60_000;
/** Entries are dropped this long after they expired (long enough to say "used" or "expired"). */
const KEEP_AFTER_EXPIRY_MS = 24 * 3600_000;
const MAX_ENTRIES = 12;

export interface LinkEntry {
  /** sha256(link id), base64url */
  h: string;
  env: SaxoEnvironment;
  exp: number;
  used?: number | undefined;
  views: number;
}

export interface StateEntry {
  /** sha256(state) */
  h: string;
  env: SaxoEnvironment;
  exp: number;
  /** sha256(cookie value): the state is good only in the browser that confirmed. */
  c: string;
  used?: number | undefined;
}

export interface ReloginDoc {
  v: 1;
  links: LinkEntry[];
  states: StateEntry[];
  /** Last link issued per environment (the resend rate limit). */
  issued: Partial<Record<SaxoEnvironment, number>>;
}

export const emptyDoc = (): ReloginDoc => ({ v: 1, links: [], states: [], issued: {} });

export const hashOf = (s: string): string => createHash('sha256').update(s, 'utf8').digest('base64url');

/** A link id or state as it may appear in a URL: base64url of ≥ 16 random bytes (≥ 128 bits). */
export const ID_PATTERN = /^[A-Za-z0-9_-]{22,128}$/;

export function parseDoc(text: string | undefined): ReloginDoc {
  if (!text) return emptyDoc();
  try {
    const d = JSON.parse(text) as Partial<ReloginDoc>;
    if (d.v !== 1 || !Array.isArray(d.links) || !Array.isArray(d.states)) return emptyDoc();
    return { v: 1, links: d.links, states: d.states, issued: d.issued ?? {} };
  } catch {
    return emptyDoc();
  }
}

function pruned(doc: ReloginDoc, now: number): ReloginDoc {
  const live = <T extends { exp: number }>(xs: T[]) => xs.filter((x) => x.exp + KEEP_AFTER_EXPIRY_MS > now).slice(-MAX_ENTRIES);
  return { ...doc, links: live(doc.links), states: live(doc.states) };
}

/** A new link for `env` (the id is returned once and never stored). */
export function addLink(doc: ReloginDoc, env: SaxoEnvironment, id: string, now: number): ReloginDoc {
  const d = pruned(doc, now);
  return { ...d, links: [...d.links, { h: hashOf(id), env, exp: now + LINK_TTL_MS, views: 0 }], issued: { ...d.issued, [env]: now } };
}

export type LinkLookup =
  | { kind: 'valid'; link: LinkEntry }
  | { kind: 'used' | 'expired' | 'worn'; link: LinkEntry }
  | { kind: 'unknown' };

export function lookupLink(doc: ReloginDoc, id: string, now: number): LinkLookup {
  if (!ID_PATTERN.test(id)) return { kind: 'unknown' };
  const h = hashOf(id);
  const link = doc.links.find((l) => l.h === h);
  if (!link) return { kind: 'unknown' };
  if (link.used !== undefined) return { kind: 'used', link };
  if (now >= link.exp) return { kind: 'expired', link };
  if (link.views >= MAX_LINK_VIEWS) return { kind: 'worn', link };
  return { kind: 'valid', link };
}

function replaceLink(doc: ReloginDoc, link: LinkEntry): ReloginDoc {
  return { ...doc, links: doc.links.map((l) => (l.h === link.h ? link : l)) };
}

/** The page was shown: counts a view, consumes nothing. */
export function viewLink(doc: ReloginDoc, link: LinkEntry): ReloginDoc {
  return replaceLink(doc, { ...link, views: link.views + 1 });
}

/** Confirm: the link is spent and a sign-in `state` bound to the cookie starts. */
export function consumeLink(doc: ReloginDoc, link: LinkEntry, state: string, cookie: string, now: number): ReloginDoc {
  const d = replaceLink(doc, { ...link, used: now });
  return { ...d, states: [...d.states, { h: hashOf(state), env: link.env, exp: now + STATE_TTL_MS, c: hashOf(cookie) }] };
}

export type StateCheck =
  | { ok: true; entry: StateEntry }
  | { ok: false; reason: 'state_unknown' | 'state_used' | 'state_expired' | 'cookie_missing' | 'cookie_mismatch' | 'environment_mismatch' };

/** The callback's checks, in order; the caller spends the state (useState) before exchanging the code. */
export function checkState(doc: ReloginDoc, state: string, cookie: string | undefined, env: SaxoEnvironment, now: number): StateCheck {
  const entry = ID_PATTERN.test(state) ? doc.states.find((s) => s.h === hashOf(state)) : undefined;
  if (!entry) return { ok: false, reason: 'state_unknown' };
  if (entry.used !== undefined) return { ok: false, reason: 'state_used' };
  if (now >= entry.exp) return { ok: false, reason: 'state_expired' };
  if (!cookie) return { ok: false, reason: 'cookie_missing' };
  if (hashOf(cookie) !== entry.c) return { ok: false, reason: 'cookie_mismatch' };
  if (entry.env !== env) return { ok: false, reason: 'environment_mismatch' };
  return { ok: true, entry };
}

export function useState(doc: ReloginDoc, entry: StateEntry, now: number): ReloginDoc {
  return { ...doc, states: doc.states.map((s) => (s.h === entry.h ? { ...s, used: now } : s)) };
}

/** May a new link be sent for `env` now ("send a new link" on an expired or used link's page)? */
export function mayResend(doc: ReloginDoc, env: SaxoEnvironment, now: number, intervalMs = RESEND_INTERVAL_MS): boolean {
  const last = doc.issued[env];
  return last === undefined || now - last >= intervalMs;
}
