/** Seeded PRNG (mulberry32): the soak's only source of randomness, so `--seed N` replays exactly. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  range(lo: number, hi: number): number {
    return lo + this.next() * (hi - lo);
  }
  /** Log-uniform in [lo, hi]: outages of minutes as often as outages of hours. */
  logRange(lo: number, hi: number): number {
    return Math.exp(this.range(Math.log(lo), Math.log(hi)));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)] as T;
  }
  /** Token-shaped text with a recognisable prefix, so a leak check can find it with one regex. */
  token(bytes: number): string {
    const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    let out = 'SXT';
    for (let i = 0; i < Math.ceil((bytes * 4) / 3); i++) out += abc[Math.floor(this.next() * 64)];
    return out;
  }
}

export const TOKEN_RE = /SXT[A-Za-z0-9_-]{16,}/;
