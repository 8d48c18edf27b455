/**
 * The IAM permissions the runtime needs, in one place: doctor asks TestIamPermissions for exactly
 * these, and test/unit/doctor-probes.test.ts ("doctor permissions") proves the Secret Manager list
 * equals the literal `client.<method>(` calls of core/gcp/secret-store.ts and the custom role in
 * infra/terraform/iam.tf.
 * (TestIamPermissions itself needs no permission.)
 */
import { sh } from './types.js';

/** SecretManagerServiceClient method the adapters call → the permission it needs on the secret. */
export const SECRET_MANAGER_CALLS = {
  accessSecretVersion: 'secretmanager.versions.access',
  addSecretVersion: 'secretmanager.versions.add',
  destroySecretVersion: 'secretmanager.versions.destroy',
  getSecret: 'secretmanager.secrets.get',
  listSecretVersions: 'secretmanager.versions.list',
  updateSecret: 'secretmanager.secrets.update',
} as const satisfies Record<string, string>;

export const SECRET_MANAGER_PERMISSIONS: readonly string[] = [...new Set(Object.values(SECRET_MANAGER_CALLS))].sort();

/** The agent's streaming pull, ack and modifyAckDeadline on its own subscription. */
export const SUBSCRIPTION_PERMISSIONS: readonly string[] = ['pubsub.subscriptions.consume'];
/** TOKEN_ROTATED announcements (the function and every agent publish). */
export const TOPIC_PERMISSIONS: readonly string[] = ['pubsub.topics.publish'];

/** The custom role infra/terraform/iam.tf defines for the token secret. */
const SECRET_ROLE_ID = 'tokenKeeperSecretRotator';

const member = (identity: string | undefined) => `--member=${identity ? `serviceAccount:${identity}` : "'serviceAccount:<this VM's service account>'"}`;

/**
 * The command that grants what is missing on the token secret: the binding when nothing is
 * granted (the role is not bound to this identity), else the role update (the role lacks some).
 */
export function secretGrantFix(projectId: string, secretId: string, missing: readonly string[], identity: string | undefined): string {
  if (missing.length === SECRET_MANAGER_PERMISSIONS.length) {
    return `gcloud secrets add-iam-policy-binding ${sh(secretId)} --project=${sh(projectId)} ${member(identity)} --role=projects/${projectId}/roles/${SECRET_ROLE_ID} (or terraform apply in infra/terraform)`;
  }
  return `gcloud iam roles update ${SECRET_ROLE_ID} --project=${sh(projectId)} --add-permissions=${missing.join(',')} (or terraform apply in infra/terraform)`;
}

export function pubsubGrantFix(kind: 'topics' | 'subscriptions', projectId: string, id: string, identity: string | undefined): string {
  const role = kind === 'topics' ? 'roles/pubsub.publisher' : 'roles/pubsub.subscriber';
  return `gcloud pubsub ${kind} add-iam-policy-binding ${sh(id)} --project=${sh(projectId)} ${member(identity)} --role=${role}`;
}
