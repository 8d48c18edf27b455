/**
 * Where the link and sign-in state live: a small secret of its own (the "link-state secret").
 * - Its annotation `tk-relogin` holds the ReloginDoc (hashes, environments, expiries) and every
 *   change is UpdateSecret with the etag read (compare-and-set), like the lease on the token secret.
 * - Its payload (one version) holds a random 32-byte key that derives each sign-in's PKCE verifier
 *   and signs the result cookie: the verifier stays server-side without being written anywhere
 *   annotations can be read (annotations need only secrets.get; a payload needs accessor).
 * Why not the token secret's annotations: bots and refreshers CAS those every few minutes
 * (lease), and a phone page must not contend with — or be able to disturb — the refresh path.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { SecretStoreError } from '../../core/errors.js';
import { grpcCode, isConflict, Status, toStoreError } from '../../core/gcp/grpc-errors.js';
import { crc32c } from '../../core/gcp/crc32c.js';
import { parseDoc, type ReloginDoc } from './link-rules.js';

export const LINK_DOC_ANNOTATION = 'tk-relogin';
const CAS_ATTEMPTS = 5;

export interface LinkStateStore {
  /**
   * Read the document, let `change` decide, write it back with the etag read. `change` returns the
   * new document (or undefined: nothing to write) and a result; it is re-run on a CAS conflict.
   */
  transact<T>(change: (doc: ReloginDoc) => { doc?: ReloginDoc | undefined; result: T }): Promise<T>;
  /** HMAC with the secret key (created on first use). */
  mac(purpose: string, value: string): Promise<string>;
}

type Client = Pick<SecretManagerServiceClient, 'getSecret' | 'updateSecret' | 'accessSecretVersion' | 'addSecretVersion'>;

export function createLinkStateStore(o: { client: Client; projectId: string; secretId: string; timeoutMs?: number }): LinkStateStore {
  const name = `projects/${o.projectId}/secrets/${o.secretId}`;
  const call = { timeout: o.timeoutMs ?? 10_000, retry: null };
  let key: Buffer | undefined;

  async function readKey(): Promise<Buffer | undefined> {
    try {
      const [res] = await o.client.accessSecretVersion({ name: `${name}/versions/latest` }, call);
      const data = Buffer.from(res.payload?.data ?? []);
      return data.length >= 32 ? data : undefined;
    } catch (e) {
      const c = grpcCode(e);
      if (c === Status.NOT_FOUND || c === Status.FAILED_PRECONDITION) return undefined;
      throw toStoreError(e, 'AccessSecretVersion (link-state key)');
    }
  }

  async function getKey(): Promise<Buffer> {
    if (key) return key;
    let k = await readKey();
    if (!k) {
      const data = randomBytes(32);
      try {
        await o.client.addSecretVersion({ parent: name, payload: { data, dataCrc32c: crc32c(data) } }, call);
      } catch (e) {
        throw toStoreError(e, 'AddSecretVersion (link-state key)');
      }
      // Two instances may both add one: everyone then uses the latest.
      k = await readKey();
    }
    if (!k) throw new SecretStoreError('other', `link-state secret ${o.secretId} has no usable key`);
    key = k;
    return k;
  }

  return {
    async transact(change) {
      for (let attempt = 1; attempt <= CAS_ATTEMPTS; attempt++) {
        let secret;
        try {
          [secret] = await o.client.getSecret({ name }, call);
        } catch (e) {
          throw toStoreError(e, 'GetSecret (link state)');
        }
        const annotations: Record<string, string> = { ...(secret.annotations ?? {}) };
        const { doc, result } = change(parseDoc(annotations[LINK_DOC_ANNOTATION]));
        if (!doc) return result;
        try {
          await o.client.updateSecret(
            { secret: { name, etag: secret.etag ?? '', annotations: { ...annotations, [LINK_DOC_ANNOTATION]: JSON.stringify(doc) } }, updateMask: { paths: ['annotations'] } },
            call,
          );
          return result;
        } catch (e) {
          if (!isConflict(e)) throw toStoreError(e, 'UpdateSecret (link state)');
        }
      }
      throw new SecretStoreError('conflict', `link state: etag kept changing after ${CAS_ATTEMPTS} attempts`);
    },
    async mac(purpose, value) {
      return createHmac('sha256', await getKey()).update(`${purpose}\n${value}`).digest('base64url');
    },
  };
}
