/**
 * The IAM side of the Secret Manager stand-in: the permission each RPC needs (as the real v1 API
 * documents it), `TestIamPermissions`, and denials a test switches on. A denied permission is
 * denied everywhere it matters: TestIamPermissions leaves it out AND the RPC that needs it answers
 * PERMISSION_DENIED, so a test cannot make the two disagree.
 */
import { status } from '@grpc/grpc-js';
import { RpcError } from './state.js';

/** RPC → the IAM permission the real service checks (https://cloud.google.com/secret-manager/docs/access-control). */
export const RPC_PERMISSION: Readonly<Record<string, string>> = {
  CreateSecret: 'secretmanager.secrets.create',
  GetSecret: 'secretmanager.secrets.get',
  ListSecrets: 'secretmanager.secrets.list',
  UpdateSecret: 'secretmanager.secrets.update',
  DeleteSecret: 'secretmanager.secrets.delete',
  AddSecretVersion: 'secretmanager.versions.add',
  GetSecretVersion: 'secretmanager.versions.get',
  AccessSecretVersion: 'secretmanager.versions.access',
  ListSecretVersions: 'secretmanager.versions.list',
  DestroySecretVersion: 'secretmanager.versions.destroy',
  DisableSecretVersion: 'secretmanager.versions.disable',
  EnableSecretVersion: 'secretmanager.versions.enable',
  GetIamPolicy: 'secretmanager.secrets.getIamPolicy',
  SetIamPolicy: 'secretmanager.secrets.setIamPolicy',
};

/** Permissions that can be tested on a secret (the real API rejects any other with INVALID_ARGUMENT). */
const SECRET_PERMISSIONS = new Set(
  Object.values(RPC_PERMISSION).filter((p) => !['secretmanager.secrets.create', 'secretmanager.secrets.list'].includes(p)),
);

type Msg = Record<string, unknown>;

/** The resource an RPC names: `name`, `parent` or `secret.name`. */
function resourceOf(req: Msg): string {
  const s = (req.secret as Msg | undefined)?.name;
  for (const v of [req.name, req.parent, req.resource, s]) if (typeof v === 'string' && v) return v;
  return '';
}

export class IamModel {
  private readonly denied = new Set<string>();

  /** From now on `permissions` are not granted to the caller (on every resource). */
  deny(permissions: Iterable<string>): void {
    for (const p of permissions) this.denied.add(p);
  }

  /** Grant everything again. */
  allowAll(): void {
    this.denied.clear();
  }

  deniedPermissions(): string[] {
    return [...this.denied].sort();
  }

  /** Throws PERMISSION_DENIED when `method` needs a denied permission (message as the real API's). */
  check(method: string, req: Msg): void {
    const perm = RPC_PERMISSION[method];
    if (perm && this.denied.has(perm)) {
      throw new RpcError(status.PERMISSION_DENIED, `Permission '${perm}' denied for resource '${resourceOf(req)}' (or it may not exist).`);
    }
  }

  /**
   * google.iam.v1.TestIamPermissions: the subset of the asked permissions the caller holds.
   * Needs no permission itself. `secretExists` decides NOT_FOUND for an unknown secret.
   */
  test(req: Msg, secretExists: (name: string) => boolean): Msg {
    const resource = typeof req.resource === 'string' ? req.resource : '';
    if (!/^projects\/[^/]+\/secrets\/[^/]+$/.test(resource)) {
      throw new RpcError(status.INVALID_ARGUMENT, `Invalid resource field value in the request: resource "${resource}"`);
    }
    const asked = Array.isArray(req.permissions) ? req.permissions.map(String) : [];
    for (const p of asked) {
      if (!SECRET_PERMISSIONS.has(p)) throw new RpcError(status.INVALID_ARGUMENT, `Permission ${p} is not valid for this resource.`);
    }
    if (!secretExists(resource)) throw new RpcError(status.NOT_FOUND, `Secret [${resource}] not found.`);
    return { permissions: asked.filter((p) => !this.denied.has(p)) };
  }
}
