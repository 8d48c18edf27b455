/**
 * What doctor shares about Google: the IAM table (every permission the runtime's calls need, per role and resource, as typed
 * data), credentials, how a client is connected inside a deadline, and who doctor runs as. test/unit/doctor-probes.test.ts
 * ("doctor permissions") drives the runtime's adapters against the Secret Manager stand-in and proves the calls they make are
 * exactly this table's, and that it equals the custom role in infra/terraform/iam.tf. (TestIamPermissions needs none.)
 */
import { readFile } from 'node:fs/promises';
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import type { GcpConfig } from '../../core/config.js';
import type { PublisherClient, SubscriberClient } from '../../core/gcp/clients.js';
import { attempt, sh, type Failed, type Finding } from './types.js';

type Calls<Client> = Partial<Record<keyof Client, string>>;

/** Each role the runtime relies on, where it is bound, and the permission each client method it calls needs. */
const IAM = {
  secret: {
    role: 'projects/{project}/roles/tokenKeeperSecretRotator',
    calls: {
      accessSecretVersion: 'secretmanager.versions.access',
      addSecretVersion: 'secretmanager.versions.add',
      destroySecretVersion: 'secretmanager.versions.destroy',
      getSecret: 'secretmanager.secrets.get',
      listSecretVersions: 'secretmanager.versions.list',
      updateSecret: 'secretmanager.secrets.update',
    } satisfies Calls<SecretManagerServiceClient>,
  },
  /** TOKEN_ROTATED announcements (the function and every agent publish). */
  topic: { role: 'roles/pubsub.publisher', calls: { publish: 'pubsub.topics.publish' } satisfies Calls<PublisherClient> },
  /** The agent's streaming pull, ack and modifyAckDeadline on its own subscription. */
  subscription: {
    role: 'roles/pubsub.subscriber',
    calls: { streamingPull: 'pubsub.subscriptions.consume', acknowledge: 'pubsub.subscriptions.consume', modifyAckDeadline: 'pubsub.subscriptions.consume' } satisfies Calls<SubscriberClient>,
  },
} as const;

export const SECRET_MANAGER_CALLS = IAM.secret.calls;
const permissionsOf = (calls: Record<string, string>): readonly string[] => [...new Set(Object.values(calls))].sort();
export const SECRET_MANAGER_PERMISSIONS = permissionsOf(IAM.secret.calls);
export const TOPIC_PERMISSIONS = permissionsOf(IAM.topic.calls);
export const SUBSCRIPTION_PERMISSIONS = permissionsOf(IAM.subscription.calls);

const member = (identity: string | undefined) => `--member=${identity ? `serviceAccount:${identity}` : "'serviceAccount:<this VM's service account>'"}`;

/** The binding when nothing is granted (the role is not bound to this identity), else the role update (it lacks some). */
export function secretGrantFix(projectId: string, secretId: string, missing: readonly string[], identity: string | undefined): string {
  const roleId = IAM.secret.role.split('/').pop()!;
  if (missing.length === SECRET_MANAGER_PERMISSIONS.length) {
    return `gcloud secrets add-iam-policy-binding ${sh(secretId)} --project=${sh(projectId)} ${member(identity)} --role=${IAM.secret.role.replace('{project}', projectId)} (or terraform apply in infra/terraform)`;
  }
  return `gcloud iam roles update ${roleId} --project=${sh(projectId)} --add-permissions=${missing.join(',')} (or terraform apply in infra/terraform)`;
}

export function pubsubGrantFix(kind: 'topics' | 'subscriptions', projectId: string, id: string, identity: string | undefined, role: string = IAM[kind === 'topics' ? 'topic' : 'subscription'].role): string {
  return `gcloud pubsub ${kind} add-iam-policy-binding ${sh(id)} --project=${sh(projectId)} ${member(identity)} --role=${role}`;
}

/** `Probe.code` of a Google client that could not initialise: no usable credentials (ADC, key file, metadata server). */
const CREDENTIALS = 'CREDENTIALS';

/** A Google call that failed for want of credentials is fixed by credentials, never by the network. */
export const isCredentialFailure = (p: Failed): boolean => p.code === CREDENTIALS || p.code === 'UNAUTHENTICATED' || /could not load the default credentials/i.test(p.error);

/** Where this process's Google credentials come from, and how to give it working ones. */
export function credentialsFix(file: string | undefined): string {
  if (file) return `check GOOGLE_APPLICATION_CREDENTIALS=${sh(file)}: the key file must exist and be readable by this user (ls -l ${sh(file)}), or unset it to use the VM's service account`;
  return 'gcloud auth application-default login (or GOOGLE_APPLICATION_CREDENTIALS=<a service account key file>); on a GCE VM, check that it runs with a service account';
}

/** A Google call that got no answer: the credentials fix when they are the cause, else how long it waited and `where` to look. */
export function unanswered(p: Failed, what: string, credentialsFile: string | undefined, where: string): Finding {
  if (isCredentialFailure(p)) return { status: 'fail', text: `${what}: ${p.error}`, fix: credentialsFix(credentialsFile) };
  return { status: 'fail', text: `${what}: ${p.error} (after ${p.ms} ms)`, fix: where };
}

/** Per-call deadline inside the probe's own deadline; no retries (doctor must answer fast). */
export const call = (timeoutMs: number) => ({ timeout: Math.max(100, timeoutMs - 250), retry: null });

/**
 * Create the clients and initialise them inside the deadline, before any call: a generated client's methods re-throw a failed
 * initialise (no credentials) from a detached promise — an unhandled rejection that would kill doctor — so it fails the probe.
 */
export async function connect<C extends readonly { initialize(): Promise<unknown>; close(): Promise<unknown> }[]>(create: () => Promise<C>, timeoutMs: number): Promise<{ clients: C } | { failed: Failed }> {
  const made: { clients?: C } = {};
  const p = await attempt(async () => {
    made.clients = await create();
    await Promise.all(made.clients.map((c) => c.initialize()));
  }, timeoutMs);
  if (p.ok) return { clients: made.clients! };
  for (const c of made.clients ?? []) void c.close().catch(() => undefined); // not awaited: it waits for the initialise
  if (!made.clients) return { failed: p };
  return { failed: { ...p, code: CREDENTIALS, error: `cannot load Google credentials: ${p.error.replace(/^Error: /, '')}` } };
}

/**
 * The service account doctor runs as, for the `--member=` of a fix: a key file's client_email, or the metadata server's default
 * account (on GCE). Never asked with emulators or when metadata detection is off (tests): no address but the configured ones.
 */
export async function identity(gcp: GcpConfig, env: Record<string, string | undefined>, timeoutMs: number): Promise<string | undefined> {
  const keyFile = env.GOOGLE_APPLICATION_CREDENTIALS;
  if (keyFile) {
    const key = JSON.parse(await readFile(keyFile, 'utf8').catch(() => '{}')) as { client_email?: unknown };
    return typeof key.client_email === 'string' ? key.client_email : undefined;
  }
  if (gcp.secretManagerEmulatorHost || gcp.pubsubEmulatorHost || env.METADATA_SERVER_DETECTION === 'none') return undefined;
  const url = 'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/email';
  const res = await fetch(url, { headers: { 'Metadata-Flavor': 'Google' }, signal: AbortSignal.timeout(timeoutMs) });
  return res.ok ? (await res.text()).trim() : undefined;
}
