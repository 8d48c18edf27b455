/**
 * SecretStore on Secret Manager. The payload is the bots' flat JSON (codec.ts) with a crc32c
 * checksum; the cross-host lease and refresh bookkeeping live in the secret's annotations and are
 * changed only by UpdateSecret with the current etag (compare-and-swap; docs/DESIGN.md "The lease").
 * The in-memory double (standins/memory.ts) is this very adapter over an in-process transport.
 *
 * IAM: permissions are derived from the literal `client.<method>(` calls in this file.
 */
import type { SecretManagerServiceClient, protos } from '@google-cloud/secret-manager';
import { parseFlat, serializeFlat } from '../codec.js';
import { SecretStoreError } from '../errors.js';
import type { Logger } from '../log.js';
import type { SecretRead, SecretStore } from '../ports.js';
import { ANNOTATION, applyRecord, parseMeta } from './secret-annotations.js';
import { secretsOf, type TokenSet } from '../token.js';
import { checksumValue, crc32c } from './crc32c.js';
import { grpcCode, isConflict, Status, toStoreError } from './grpc-errors.js';
import { SecretIdentity, versionNumberOf } from './resource-names.js';

export { ensureSecret } from './provision.js';
export { ANNOTATION, applyRecord, parseMeta } from './secret-annotations.js';

export interface SecretStoreOptions {
  client: SecretManagerServiceClient;
  projectId: string;
  secretId: string;
  logger?: Logger | undefined;
  /** Deadline per operation (default 10 s); idempotent reads retry UNAVAILABLE within it. */
  timeoutMs?: number | undefined;
}

type Secret = protos.google.cloud.secretmanager.v1.ISecret;

const CAS_ATTEMPTS = 3;

const versionNumber = (name: string): number => versionNumberOf(name) ?? 0;

export function createSecretStore(opts: SecretStoreOptions): SecretStore {
  const { client, logger } = opts;
  // Requests use the project id; answers carry the project number (resource-names.ts).
  const identity = new SecretIdentity(`projects/${opts.projectId}/secrets/${opts.secretId}`);
  const secretName = identity.name;
  const timeout = opts.timeoutMs ?? 10_000;
  // Reads may retry transient outages inside the deadline; writes never retry automatically
  // (AddSecretVersion is not idempotent, UpdateSecret is a CAS the caller re-runs itself).
  const readCall = {
    timeout,
    retry: {
      retryCodes: [Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED],
      backoffSettings: {
        initialRetryDelayMillis: 200,
        retryDelayMultiplier: 2,
        maxRetryDelayMillis: 2000,
        initialRpcTimeoutMillis: timeout,
        rpcTimeoutMultiplier: 1,
        maxRpcTimeoutMillis: timeout,
        totalTimeoutMillis: timeout,
      },
    },
  };
  const writeCall = { timeout, retry: null };

  // The generated client's methods re-throw a failed initialise (no credentials, a metadata-server
  // hiccup) from a detached promise as well as to the caller: an unhandled rejection that would
  // kill the agent. Initialising first, here, turns that into one ordinary error (memoised once it
  // succeeds; the REST and in-process transports have nothing to initialise).
  const ready = async (op: string): Promise<void> => {
    const init = (client as { initialize?: () => Promise<unknown> }).initialize;
    if (!init) return;
    try {
      await init.call(client);
    } catch (e) {
      throw toStoreError(e, `${op} (client initialisation)`);
    }
  };

  /** A version of OUR secret, whatever project form a full name came in (never another secret's). */
  const versionName = (ref: string | number): string => {
    if (typeof ref === 'number' || !ref.includes('/')) return identity.versionName(ref);
    const n = versionNumberOf(ref);
    if (n === undefined || !identity.ownsVersion(ref)) throw new SecretStoreError('other', `${ref} is not a version of ${secretName}`);
    return identity.versionName(n);
  };

  async function access(name: string): Promise<SecretRead | undefined> {
    let res: protos.google.cloud.secretmanager.v1.IAccessSecretVersionResponse;
    await ready('AccessSecretVersion');
    try {
      [res] = await client.accessSecretVersion({ name }, readCall);
    } catch (e) {
      const c = grpcCode(e);
      // NOT_FOUND: no such version / no enabled version; FAILED_PRECONDITION: destroyed or disabled.
      if (c === Status.NOT_FOUND || c === Status.FAILED_PRECONDITION) return undefined;
      throw toStoreError(e, 'AccessSecretVersion');
    }
    identity.learn(res.name);
    const resolved = res.name ?? name;
    const read: SecretRead = { name: resolved, version: versionNumber(resolved) };
    const data = Buffer.from(res.payload?.data ?? []);
    const payload = res.payload as (typeof res.payload & { _dataCrc32c?: string }) | null | undefined;
    const expected = payload?._dataCrc32c === 'dataCrc32c' ? checksumValue(payload.dataCrc32c) : undefined;
    if (expected !== undefined && expected !== crc32c(data)) {
      read.error = 'payload checksum mismatch (data corrupted in transit)';
    } else {
      const parsed = parseFlat(data.toString('utf8'));
      if (parsed.ok) {
        read.token = parsed.token;
        logger?.addSecret(...secretsOf(parsed.token));
      } else {
        read.error = `payload unusable: ${parsed.reason}`;
      }
    }
    if (read.error) logger?.warn('secret_payload_corrupt', 'Secret version payload cannot be used', { version: resolved, reason: read.error });
    return read;
  }

  async function getSecret(): Promise<Secret> {
    await ready('GetSecret');
    try {
      const [secret] = await client.getSecret({ name: secretName }, readCall);
      if (!secret.etag) throw new SecretStoreError('other', `Secret ${secretName} has no etag; compare-and-swap impossible`);
      return secret;
    } catch (e) {
      throw toStoreError(e, 'GetSecret');
    }
  }

  /** UpdateSecret(annotations) guarded by `etag`. Returns false on a CAS conflict. */
  async function casAnnotations(etag: string, annotations: Record<string, string>): Promise<boolean> {
    await ready('UpdateSecret');
    try {
      await client.updateSecret(
        { secret: { name: secretName, etag, annotations }, updateMask: { paths: ['annotations'] } },
        writeCall,
      );
      return true;
    } catch (e) {
      if (isConflict(e)) return false;
      throw toStoreError(e, 'UpdateSecret');
    }
  }

  /** Read–modify–CAS with a bounded number of attempts; `mutate` returns false to skip the write. */
  /** Read-modify-CAS; a change that changes nothing writes nothing (a clear with nothing pending is one read). */
  async function updateAnnotations(op: string, mutate: (a: Record<string, string>) => void): Promise<void> {
    for (let attempt = 1; attempt <= CAS_ATTEMPTS; attempt++) {
      const secret = await getSecret();
      const before: Record<string, string> = secret.annotations ?? {};
      const a: Record<string, string> = { ...before };
      mutate(a);
      if (sameAnnotations(a, before)) return;
      if (await casAnnotations(secret.etag!, a)) return;
      logger?.debug('secret_cas_retry', `${op}: etag changed, retrying`, { attempt });
    }
    throw new SecretStoreError('conflict', `Secret Manager ${op}: etag kept changing after ${CAS_ATTEMPTS} attempts`);
  }

  async function listLive(): Promise<{ name: string; version: number }[]> {
    await ready('ListSecretVersions');
    try {
      const [versions] = await client.listSecretVersions(
        { parent: secretName, filter: 'state:ENABLED OR state:DISABLED' },
        readCall,
      );
      return versions
        .filter((v) => v.state !== 'DESTROYED')
        .map((v) => ({ name: v.name ?? '', version: versionNumber(v.name ?? '') }))
        .sort((x, y) => y.version - x.version);
    } catch (e) {
      throw toStoreError(e, 'ListSecretVersions');
    }
  }

  return {
    latest: () => access(`${secretName}/versions/latest`),

    version: async (ref) => access(versionName(ref)),

    name: secretName,

    async add(token: TokenSet) {
      logger?.addSecret(...secretsOf(token));
      const data = Buffer.from(serializeFlat(token), 'utf8');
      await ready('AddSecretVersion');
      try {
        const [v] = await client.addSecretVersion(
          { parent: secretName, payload: { data, dataCrc32c: crc32c(data) } },
          writeCall,
        );
        const name = v.name ?? '';
        identity.learn(name);
        return { name, version: versionNumber(name) };
      } catch (e) {
        throw toStoreError(e, 'AddSecretVersion');
      }
    },

    async prune(keep: number) {
      if (!Number.isInteger(keep) || keep < 1) throw new SecretStoreError('other', `prune keep must be an integer ≥ 1, got ${keep}`);
      const live = await listLive();
      let destroyed = 0;
      for (const v of live.slice(keep)) {
        try {
          await client.destroySecretVersion({ name: v.name }, readCall);
          destroyed++;
        } catch (e) {
          const c = grpcCode(e);
          // Someone else (a bot, another pruner) destroyed it first: the goal is met.
          if (c === Status.FAILED_PRECONDITION || c === Status.NOT_FOUND) continue;
          throw toStoreError(e, 'DestroySecretVersion');
        }
      }
      return destroyed;
    },

    async countVersions() {
      return (await listLive()).length;
    },

    async meta() {
      return parseMeta(await getSecret());
    },

    async acquireLease(holder, ttlMs, now) {
      const secret = await getSecret();
      const meta = parseMeta(secret);
      if (meta.lease && meta.lease.holder !== holder && meta.lease.expiresAt > now) return false;
      const a = { ...meta.annotations, [ANNOTATION.leaseHolder]: holder, [ANNOTATION.leaseExpires]: String(now + ttlMs) };
      const won = await casAnnotations(meta.etag, a);
      logger?.debug(won ? 'lease_acquired' : 'lease_lost_race', won ? 'Lease acquired' : 'Lease race lost', { holder });
      return won;
    },

    async releaseLease(holder, record) {
      await updateAnnotations('releaseLease', (a) => {
        if (a[ANNOTATION.leaseHolder] === holder) {
          delete a[ANNOTATION.leaseHolder];
          delete a[ANNOTATION.leaseExpires];
        }
        applyRecord(a, record);
      });
    },

    async record(record) {
      await updateAnnotations('record', (a) => applyRecord(a, record));
    },
  };
}

function sameAnnotations(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => b[k] === a[k]);
}
