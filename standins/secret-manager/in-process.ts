/**
 * The Secret Manager stand-in's model (state.ts) behind the few client methods the SecretStore
 * adapter calls, without gRPC: the real adapter (core/gcp/secret-store.ts) runs over it in unit
 * tests and in the virtual-time soak, so the double *is* the adapter. The message shapes are those
 * the generated client hands over (camelCase, `_dataCrc32c` oneof marker); the same contract suite
 * runs the adapter over this transport and over the gRPC server (test/contracts/secret-store.ts).
 */
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { status } from '@grpc/grpc-js';
import { RpcError, type SecretManagerState } from './state.js';

type Msg = Record<string, unknown>;

export interface InProcessTransport {
  readonly client: SecretManagerServiceClient;
  /** While true every call fails with UNAVAILABLE (an outage as the client sees it). */
  unavailable: boolean;
  /** Method names in call order (including failed ones). */
  readonly calls: string[];
}

const camelVersion = (v: Msg) => ({ name: v.name, state: v.state, etag: v.etag });

export function inProcessSecretManager(state: SecretManagerState): InProcessTransport {
  const t: InProcessTransport = { client: undefined as unknown as SecretManagerServiceClient, unavailable: false, calls: [] };
  // Resolve on a later microtask like a real call would; a fault is an RpcError carrying `code`.
  const call = async <T>(method: string, fn: () => T): Promise<[T]> => {
    t.calls.push(method);
    await Promise.resolve();
    if (t.unavailable) throw new RpcError(status.UNAVAILABLE, `${method}: Secret Manager stand-in is unavailable`);
    return [fn()];
  };
  const client = {
    accessSecretVersion: (req: { name: string }) =>
      call('AccessSecretVersion', () => {
        const res = state.AccessSecretVersion({ name: req.name });
        const payload = res.payload as { data: Buffer; data_crc32c: string };
        return { name: res.name, payload: { data: payload.data, dataCrc32c: payload.data_crc32c, _dataCrc32c: 'dataCrc32c' } };
      }),
    getSecret: (req: { name: string }) =>
      call('GetSecret', () => {
        const s = state.GetSecret({ name: req.name });
        return { name: s.name, etag: s.etag, annotations: s.annotations };
      }),
    updateSecret: (req: { secret: { name: string; etag?: string; annotations?: Record<string, string> }; updateMask: { paths: string[] } }) =>
      call('UpdateSecret', () => {
        const s = state.UpdateSecret({ secret: { ...req.secret }, update_mask: { paths: req.updateMask.paths } });
        return { name: s.name, etag: s.etag, annotations: s.annotations };
      }),
    addSecretVersion: (req: { parent: string; payload: { data: Buffer; dataCrc32c?: number } }) =>
      call('AddSecretVersion', () =>
        camelVersion(state.AddSecretVersion({ parent: req.parent, payload: { data: req.payload.data, data_crc32c: req.payload.dataCrc32c } })),
      ),
    listSecretVersions: (req: { parent: string; filter?: string }) =>
      call('ListSecretVersions', () => {
        const res = state.ListSecretVersions({ parent: req.parent, filter: req.filter ?? '' });
        return (res.versions as Msg[]).map(camelVersion);
      }).then(([v]) => [v, null, {}] as const),
    destroySecretVersion: (req: { name: string }) => call('DestroySecretVersion', () => camelVersion(state.DestroySecretVersion({ name: req.name }))),
    close: async () => undefined,
  };
  (t as { client: unknown }).client = client;
  return t;
}
