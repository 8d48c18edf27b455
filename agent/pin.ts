/**
 * The agent's identity guard (I7; docs/DESIGN.md "Re-login from a phone"): every pair it adopts
 * must belong to the chain's pinned account, judged by the access token's claims — no network. The
 * pin lives in the token secret's annotations (written by `login`, or here at the first start after
 * the upgrade from the current pair's claims) and is read once at start-up.
 */
import { errorText } from '../core/errors.js';
import { checkPin, pinFromClaims, type IdentityPin, type SaxoEnvironment } from '../core/identity.js';
import { pinFromAnnotations } from '../core/identity.js';
import type { Logger } from '../core/log.js';
import type { SecretStore } from '../core/ports.js';
import { pairId, type TokenSet } from '../core/token.js';

export class PinGuard {
  private pin: IdentityPin | undefined;
  private readonly refused = new Set<string>();

  constructor(
    private readonly logger: Logger,
    private readonly environment: SaxoEnvironment,
  ) {}

  get pinned(): IdentityPin | undefined {
    return this.pin;
  }

  /** Read the pin; a chain without one is pinned to its current pair's claims (once, at the first start). */
  async load(store: SecretStore | undefined, known: TokenSet | undefined): Promise<void> {
    if (!store) return;
    try {
      this.pin = pinFromAnnotations((await store.meta()).annotations);
      if (this.pin) return;
      const current = (await store.latest())?.token ?? known;
      if (!current) return;
      const got = pinFromClaims(current.accessToken, this.environment);
      if (!('pin' in got)) {
        this.logger.warn('identity_unpinned', `The chain has no identity pin and its token cannot give one (${got.reason}); run \`npx token-keeper login\` to pin it`);
        return;
      }
      await store.record({ pin: got.pin });
      this.pin = got.pin;
      this.logger.notice('identity_pinned', `Pinned the chain to the account of its current token (${this.environment})`, { environment: this.environment });
    } catch (err) {
      this.logger.warn('identity_pin_unreadable', `Could not read the identity pin: ${errorText(err)}; pairs are adopted unchecked until the next start`);
    }
  }

  /** False (and an ALERT once per pair) when `token` belongs to another account than the pin. */
  accepts(token: TokenSet): boolean {
    if (!this.pin) return true;
    const r = checkPin(this.pin, token.accessToken, this.environment);
    if (r.ok) return true;
    const id = pairId(token.refreshToken);
    if (!this.refused.has(id)) {
      this.refused.add(id);
      this.logger.alert('identity_mismatch', `Refused to adopt a token of another account: ${r.reason}`, { environment: this.environment, pair: id });
    }
    return false;
  }
}
