/**
 * A local Secret Manager v1 gRPC server for tests and the demo. Loaded from the client package's own
 * protos so the real SecretManagerServiceClient talks to it unchanged (insecure, 127.0.0.1 only).
 * Fault injection (codes, latency, outage) lets tests exercise the adapters' error paths.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { IamModel } from './iam.js';
import type { ProjectNumbers } from './projects.js';
import { RpcError, SecretManagerState, type VersionState } from './state.js';
import { startRestFront } from './rest.js';

export type { VersionState } from './state.js';
export { DEFAULT_PROJECT_NUMBER } from './projects.js';

export const SECRET_MANAGER_METHODS = [
  'CreateSecret',
  'GetSecret',
  'ListSecrets',
  'UpdateSecret',
  'DeleteSecret',
  'AddSecretVersion',
  'GetSecretVersion',
  'AccessSecretVersion',
  'ListSecretVersions',
  'DestroySecretVersion',
  'DisableSecretVersion',
  'EnableSecretVersion',
] as const;
export type SecretManagerMethod = (typeof SECRET_MANAGER_METHODS)[number];

export interface Fault {
  code: grpc.status;
  /** How many matching calls fail (default 1; Infinity for "until cleared"). */
  times?: number;
  /** Method names (e.g. 'AccessSecretVersion'); all methods when omitted. */
  methods?: string[];
  message?: string;
}

export interface SecretManagerServer {
  readonly port: number;
  /** "127.0.0.1:PORT", the value for SECRET_MANAGER_EMULATOR_HOST. */
  readonly host: string;
  /** "127.0.0.1:PORT" of the REST front (same model and faults), for SECRET_MANAGER_EMULATOR_REST_HOST. */
  readonly restHost: string;
  /** Method names in the order they were received (including failed ones). */
  readonly calls: string[];
  inject(fault: Fault): void;
  clearFaults(): void;
  setLatency(ms: number): void;
  setUnavailable(on: boolean): void;
  /** While on, AccessSecretVersion returns flipped payload bytes with the original checksum (bit rot in transit). */
  setCorruptAccess(on: boolean): void;
  /**
   * Take `permissions` away from every caller: TestIamPermissions no longer returns them and each RPC
   * that needs one answers PERMISSION_DENIED (iam.ts has the RPC → permission map).
   */
  denyPermissions(permissions: string[]): void;
  /** Grant every permission again. */
  allowAllPermissions(): void;
  versionStates(secret: string, project?: string): { version: number; state: VersionState }[];
  /** The project number every returned resource name carries for this project id (as Google's). */
  projectNumber(projectId: string): string;
  close(): Promise<void>;
}

/** google-gax does not export its package.json: walk up from its entry point instead. */
function packageDir(entry: string, name: string): string {
  let dir = dirname(entry);
  while (dir !== dirname(dir)) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === name) return dir;
    dir = dirname(dir);
  }
  throw new Error(`cannot locate package ${name}`);
}

let cachedDefinition: grpc.ServiceDefinition | undefined;

function serviceDefinition(): grpc.ServiceDefinition {
  if (cachedDefinition) return cachedDefinition;
  // Resolve the protos shipped inside the client packages (not a copy), so fields never drift.
  const smPkg = createRequire(import.meta.url).resolve('@google-cloud/secret-manager/package.json');
  const smRoot = join(dirname(smPkg), 'build', 'protos');
  const gaxRoot = join(packageDir(createRequire(smPkg).resolve('google-gax'), 'google-gax'), 'build', 'protos');
  const def = protoLoader.loadSync('google/cloud/secretmanager/v1/service.proto', {
    includeDirs: [smRoot, gaxRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    google: { cloud: { secretmanager: { v1: { SecretManagerService: grpc.ServiceClientConstructor } } } };
  };
  cachedDefinition = pkg.google.cloud.secretmanager.v1.SecretManagerService.service;
  return cachedDefinition;
}

function corrupt(res: Record<string, unknown>): void {
  const payload = res.payload as { data?: Buffer } | undefined;
  if (!payload?.data || payload.data.length === 0) return;
  const data = Buffer.from(payload.data);
  data[0] = data[0]! ^ 0x01;
  payload.data = data;
}

export async function startSecretManagerServer(opts: { port?: number; projects?: ProjectNumbers } = {}): Promise<SecretManagerServer> {
  const state = new SecretManagerState(opts.projects);
  const iam = new IamModel();
  const server = new grpc.Server();
  const calls: string[] = [];
  let faults: (Fault & { remaining: number })[] = [];
  let latencyMs = 0;
  let unavailable = false;
  let corruptAccess = false;

  const takeFault = (method: string): Fault | undefined => {
    const f = faults.find((x) => x.remaining > 0 && (!x.methods || x.methods.includes(method)));
    if (!f) return undefined;
    f.remaining--;
    faults = faults.filter((x) => x.remaining > 0);
    return f;
  };

  const handlers: grpc.UntypedServiceImplementation = {};
  type Impl = (req: Record<string, unknown>) => Record<string, unknown>;
  const impls: [string, Impl][] = [
    ...SECRET_MANAGER_METHODS.map((m): [string, Impl] => {
      const run = state[m].bind(state) as Impl;
      return [
        m,
        (req) => {
          iam.check(m, req);
          return run(req);
        },
      ];
    }),
    ['TestIamPermissions', (req) => iam.test(req, (name) => state.hasSecret(name))],
  ];
  const implOf = new Map(impls);
  /** One call, as both fronts (gRPC and REST) see it: faults, outage, latency, then the model. */
  const dispatch = (method: string, req: Record<string, unknown>): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      calls.push(method);
      const run = () => {
        if (unavailable) return reject({ code: grpc.status.UNAVAILABLE, details: 'Secret Manager stand-in is unavailable' });
        const fault = takeFault(method);
        if (fault) return reject({ code: fault.code, details: fault.message ?? `injected fault (${grpc.status[fault.code]})` });
        const impl = implOf.get(method);
        if (!impl) return reject({ code: grpc.status.UNIMPLEMENTED, details: `${method} is not implemented` });
        try {
          const res = impl(req);
          if (corruptAccess && method === 'AccessSecretVersion') corrupt(res);
          resolve(res);
        } catch (e) {
          if (e instanceof RpcError) reject({ code: e.code, details: e.message });
          else reject({ code: grpc.status.INTERNAL, details: e instanceof Error ? e.message : 'internal error' });
        }
      };
      // The mutation still happens when the client gave up meanwhile: the real service may apply a
      // request whose response never arrives, and callers must cope with that.
      if (latencyMs > 0) setTimeout(run, latencyMs);
      else run();
    });
  for (const [method] of impls) {
    handlers[method] = (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      dispatch(method, call.request).then(
        (res) => callback(null, res),
        (err: { code: grpc.status; details: string }) => callback(err),
      );
    };
  }
  server.addService(serviceDefinition(), handlers);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });

  const rest = await startRestFront(dispatch);

  return {
    port,
    host: `127.0.0.1:${port}`,
    restHost: rest.host,
    calls,
    inject: (fault) => {
      faults.push({ ...fault, remaining: fault.times ?? 1 });
    },
    clearFaults: () => {
      faults = [];
    },
    setLatency: (ms) => {
      latencyMs = Math.max(0, ms);
    },
    setUnavailable: (on) => {
      unavailable = on;
    },
    setCorruptAccess: (on) => {
      corruptAccess = on;
    },
    denyPermissions: (permissions) => iam.deny(permissions),
    allowAllPermissions: () => iam.allowAll(),
    versionStates: (secret, project) => state.versionStates(secret, project),
    projectNumber: (projectId) => state.projectNumber(projectId),
    close: () =>
      new Promise<void>((resolve) => {
        void rest.close();
        // Graceful first; clients with open channels must not keep a test process hanging.
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
