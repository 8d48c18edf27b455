/** The stand-in's odd 2xx answers (fault `odd2xx`): a granted pair's body altered as asked. */
import type { IssuedPair } from './state.js';

export interface OddAnswer {
  set?: Record<string, unknown> | undefined;
  omit?: string[] | undefined;
  html?: boolean | undefined;
}

/** A granted pair's answer made odd as the fault asks: [body, headers] for send(). */
export function oddBody(pair: IssuedPair, odd: OddAnswer): [unknown, Record<string, string>] {
  if (odd.html) return ['<!DOCTYPE html><html><body><p>Request accepted.</p></body></html>', { 'content-type': 'text/html; charset=utf-8' }];
  const body: Record<string, unknown> = { ...pair, ...(odd.set ?? {}) };
  for (const k of odd.omit ?? []) delete body[k];
  return [body, {}];
}

