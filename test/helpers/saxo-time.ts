/**
 * When a pair is issued by Saxo's clock as token-keeper reckons it (core/server-time.ts issueTime):
 * the answer's HTTP Date header (whole seconds) less one second. Tests of exact expiries use it with
 * the doubles that send a Date header (standins/memory.ts, the HTTP stand-in).
 */
export const saxoIssued = (now: number): number => Math.floor(now / 1000) * 1000 - 1000;
