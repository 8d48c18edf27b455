/**
 * What every SecretStore must do, run against each way the project gets one: the adapter over the
 * gRPC Secret Manager stand-in (test/integration/secret-store.test.ts) and the in-memory double
 * the unit tests and the soak use (test/unit/memory-doubles.test.ts). A double that passes this
 * suite can stand in for the adapter in a proof; one that does not, cannot.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeFlat } from '../../core/codec.js';
import { SecretStoreError } from '../../core/errors.js';
import { ANNOTATION } from '../../core/gcp/secret-store.js';
import { createLogger, type Logger } from '../../core/log.js';
import type { SecretStore } from '../../core/ports.js';
import type { TokenSet } from '../../core/token.js';

/** Direct access to the secret behind the store (what an operator, a bot or another host does). */
export interface RawSecret {
  /** Add a version with this payload text, bypassing the adapter (a bot's save, a corrupt write). */
  addRaw(data: string): Promise<void>;
  setState(version: number, state: 'DESTROYED' | 'DISABLED'): Promise<void>;
  /** Replace the annotations (an operator's UpdateSecret). */
  setAnnotations(a: Record<string, string>): Promise<void>;
  outage(on: boolean): void;
  states(): { version: number; state: string }[];
}

export interface StoreUnderTest {
  store: SecretStore;
  raw: RawSecret;
  /** The project number the service behind the store answers with (its names carry it, not the id). */
  projectNumber: string;
}

export interface SecretStoreTarget {
  /** A store on a fresh, empty secret, logging to `logger`. */
  fresh(logger: Logger): Promise<StoreUnderTest>;
  /** A store on a secret that does not exist. */
  missing(logger: Logger): Promise<SecretStore>;
}

const T0 = Date.UTC(2025, 0, 15, 12, 0, 0);

export function token(n: number, extra: Record<string, unknown> = {}): TokenSet {
  return {
    accessToken: `ACCESS-secret-value-${n}-${'a'.repeat(24)}`,
    refreshToken: `REFRESH-secret-value-${n}-${'r'.repeat(24)}`,
    accessExpiresAt: T0 + n * 60_000,
    refreshExpiresAt: T0 + n * 60_000 + 3_600_000,
    issuedAt: T0 + n * 60_000 - 1_200_000,
    generation: n,
    source: 'test',
    appKey: 'app-key-123',
    appSecret: 'APP-SECRET-do-not-print',
    extra,
  };
}

export function secretStoreContract(label: string, target: SecretStoreTarget): void {
  describe(`SecretStore contract: ${label}`, () => {
    let store: SecretStore;
    let raw: RawSecret;
    let projectNumber: string;
    let lines: string[];
    let logger: Logger;
    /** By the configured project id: what requests use. */
    const nameOf = (v: number) => `${store.name}/versions/${v}`;
    /** As the service answers: the project NUMBER in place of the id. */
    const answeredName = (v: number) => `${store.name.replace(/^projects\/[^/]+/, `projects/${projectNumber}`)}/versions/${v}`;

    beforeEach(async () => {
      lines = [];
      logger = createLogger({ write: (l) => lines.push(l), minSeverity: 'DEBUG' });
      ({ store, raw, projectNumber } = await target.fresh(logger));
    });
    afterEach(() => {
      raw.outage(false);
      // I5: nothing secret in any line the adapter logged.
      expect(lines.join('\n')).not.toMatch(/ACCESS-secret-value|REFRESH-secret-value|APP-SECRET-do-not-print/);
    });

    it('numbers versions from 1 and reads latest and specific versions back, unknown keys kept', async () => {
      expect(await store.latest()).toBeUndefined();
      expect(await store.countVersions()).toBe(0);
      expect(await store.add(token(1))).toEqual({ name: answeredName(1), version: 1 });
      expect(await store.add(token(2, { custom_key: 'kept', nested: { a: 1 } }))).toEqual({ name: answeredName(2), version: 2 });
      const latest = await store.latest();
      expect(latest).toMatchObject({ name: answeredName(2), version: 2 });
      expect(latest?.error).toBeUndefined();
      expect(latest?.token).toMatchObject({ refreshToken: token(2).refreshToken, generation: 2, appSecret: token(2).appSecret, extra: { custom_key: 'kept', nested: { a: 1 } } });
      expect(latest?.token?.accessExpiresAt).toBe(token(2).accessExpiresAt);
      expect((await store.version(1))?.token?.refreshToken).toBe(token(1).refreshToken);
      expect((await store.version(nameOf(1)))?.version).toBe(1);
      expect((await store.version('2'))?.token?.generation).toBe(2);
      expect(await store.version(99)).toBeUndefined();
      expect(await store.countVersions()).toBe(2);
    });

    it('answers with the project NUMBER in every name (as Google does) and reads a version named either way', async () => {
      expect(projectNumber).toMatch(/^[0-9]+$/);
      expect(store.name).not.toContain(projectNumber); // configured by project id
      const added = await store.add(token(1));
      expect(added.name).toBe(answeredName(1));
      expect((await store.latest())?.name).toBe(answeredName(1));
      // An announcement carries the answered name; the id form still works too.
      expect(await store.version(answeredName(1))).toMatchObject({ name: answeredName(1), version: 1, token: { generation: 1 } });
      expect(await store.version(nameOf(1))).toMatchObject({ name: answeredName(1), version: 1 });
      // Never another secret's version, whatever its project form.
      const other = answeredName(1).replace(/\/secrets\/[^/]+\//, '/secrets/another-secret/');
      await expect(store.version(other)).rejects.toBeInstanceOf(SecretStoreError);
      await expect(store.version(nameOf(1).replace(/^projects\/[^/]+/, 'projects/another-project'))).rejects.toBeInstanceOf(SecretStoreError);
    });

    it('treats destroyed and disabled versions as unreadable; latest is the newest enabled; both still count (billed)', async () => {
      for (const n of [1, 2, 3]) await store.add(token(n));
      await raw.setState(2, 'DESTROYED');
      await raw.setState(3, 'DISABLED');
      expect(await store.version(2)).toBeUndefined();
      expect(await store.version(3)).toBeUndefined();
      expect((await store.latest())?.version).toBe(1);
      expect(await store.countVersions()).toBe(2);
      expect(raw.states().map((v) => v.state)).toEqual(['ENABLED', 'DESTROYED', 'DISABLED']);
    });

    it('reports a corrupt payload as an error on the read — no throw, no payload text', async () => {
      await raw.addRaw('{"access_token": "ACCESS-secret-value-leak", "refresh_token": ');
      const r = await store.latest();
      expect(r?.version).toBe(1);
      expect(r?.token).toBeUndefined();
      expect(r?.error).toMatch(/^payload unusable: not valid JSON/);
      expect(r?.error).not.toContain('ACCESS-secret-value');
      await raw.addRaw(JSON.stringify({ refresh_token: 'REFRESH-secret-value-x' }));
      expect((await store.latest())?.error).toMatch(/access_token/);
      expect(lines.some((l) => l.includes('"event":"secret_payload_corrupt"'))).toBe(true);
    });

    it("reads a bot's save over one of ours (three keys replaced, the rest copied) as a bot pair", async () => {
      await store.add(token(7));
      const ours = encodeFlat(token(7)); // what the bot read: exactly what the adapter stored
      await raw.addRaw(JSON.stringify({ ...ours, access_token: 'ACCESS-secret-value-bot', refresh_token: 'REFRESH-secret-value-bot', token_expiry: '2025-01-15T12:30:00' }));
      expect((await store.latest())?.token).toMatchObject({ refreshToken: 'REFRESH-secret-value-bot', generation: undefined, refreshExpiresAt: undefined, inheritedGeneration: 7 });
    });

    it('prunes to exactly K after 30 adds, keeping the newest; prune(0) is refused', async () => {
      for (let i = 1; i <= 30; i++) await store.add(token(i));
      await raw.setState(15, 'DISABLED');
      expect(await store.countVersions()).toBe(30);
      expect(await store.prune(3)).toBe(27);
      expect(await store.countVersions()).toBe(3);
      expect(raw.states().filter((s) => s.state !== 'DESTROYED').map((s) => s.version)).toEqual([28, 29, 30]);
      expect((await store.latest())?.token?.generation).toBe(30);
      expect(await store.prune(3)).toBe(0);
      await expect(store.prune(0)).rejects.toBeInstanceOf(SecretStoreError);
    });

    it('lets exactly one of N concurrent lease acquirers win', async () => {
      const holders = Array.from({ length: 8 }, (_, i) => `host-${i}`);
      const results = await Promise.all(holders.map((h) => store.acquireLease(h, 60_000, T0)));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await store.meta()).lease).toEqual({ holder: holders[results.indexOf(true)], expiresAt: T0 + 60_000 });
    });

    it('blocks other lease holders until expiry, then lets them in; the same holder extends', async () => {
      expect(await store.acquireLease('a', 1000, T0)).toBe(true);
      expect(await store.acquireLease('b', 1000, T0 + 500)).toBe(false);
      expect(await store.acquireLease('a', 1000, T0 + 600)).toBe(true);
      expect((await store.meta()).lease).toEqual({ holder: 'a', expiresAt: T0 + 1600 });
      expect(await store.acquireLease('b', 1000, T0 + 1500)).toBe(false);
      expect(await store.acquireLease('b', 1000, T0 + 1601)).toBe(true);
    });

    it('releases only for the holder, records the outcome, keeps operator annotations; an older lastRefresh never wins', async () => {
      await raw.setAnnotations({ owner: 'ops-team' });
      expect(await store.acquireLease('a', 60_000, T0)).toBe(true);
      const before = (await store.meta()).etag;
      await store.releaseLease('b'); // not the holder, nothing to record: no write at all
      expect((await store.meta()).etag).toBe(before);
      const lastRefresh = { at: T0 + 5, by: 'cloud', version: nameOf(7) };
      await store.releaseLease('a', { failures: 0, lastRefresh });
      const meta = await store.meta();
      expect(meta).toMatchObject({ lease: undefined, failures: 0, lastRefresh });
      expect(meta.annotations.owner).toBe('ops-team');
      expect(meta.annotations[ANNOTATION.leaseHolder]).toBeUndefined();
      await store.record({ failures: 3 });
      await store.record({ lastRefresh: { at: T0, by: 'agent:x', version: nameOf(6) } });
      expect(await store.meta()).toMatchObject({ failures: 3, lastRefresh });
    });

    it('remembers an announcement still owed, and forgets it', async () => {
      await store.record({ announcePending: nameOf(4) });
      expect((await store.meta()).announcePending).toBe(nameOf(4));
      await store.record({ announcePending: null, failures: 2 });
      const cleared = await store.meta();
      expect(cleared).toMatchObject({ announcePending: undefined, failures: 2 });
      // Every successful publish clears the mark: with nothing owed (and the same failure count)
      // that is a read, never a write.
      await store.record({ announcePending: null, failures: 2 });
      await store.releaseLease('nobody', { failures: 2 });
      expect((await store.meta()).etag).toBe(cleared.etag);
    });

    it('keeps bookkeeping written concurrently (compare-and-swap retried); a lease that lost the race says so', async () => {
      const [, , won] = await Promise.all([
        store.record({ failures: 1 }),
        store.record({ lastRefresh: { at: T0, by: 'cloud', version: nameOf(1) } }),
        store.acquireLease('a', 60_000, T0),
      ]);
      const meta = await store.meta();
      expect(meta).toMatchObject({ failures: 1, lastRefresh: { by: 'cloud' } });
      // acquireLease makes one compare-and-swap: it either holds the lease or answered false.
      expect(meta.lease?.holder === 'a').toBe(won);
    });

    it('maps an outage to SecretStoreError("unavailable") on every call, with no token text', async () => {
      raw.outage(true);
      for (const call of [() => store.add(token(1)), () => store.latest(), () => store.version(1), () => store.meta(), () => store.acquireLease('a', 1000, T0), () => store.countVersions(), () => store.record({ failures: 1 })]) {
        const err = await call().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(SecretStoreError);
        expect(err).toMatchObject({ code: 'unavailable' });
        expect((err as Error).message).not.toMatch(/secret-value|APP-SECRET/);
      }
    });

    it('maps a missing secret to not_found for metadata and writes, undefined for reads', async () => {
      const missing = await target.missing(logger);
      await expect(missing.meta()).rejects.toMatchObject({ code: 'not_found' });
      expect(await missing.latest()).toBeUndefined();
      await expect(missing.add(token(1))).rejects.toMatchObject({ code: 'not_found' });
    });
  });
}
