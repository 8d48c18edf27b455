/** `pubsub.topic`, `pubsub.subscription`, `pubsub.iam`: the topic exists, the subscription is attached to it and fits the agent, IAM grants publish/consume. */
import type { GcpConfig } from '../../../core/config.js';
import { createPubSubGapicClient, type PublisherClient, type SubscriberClient } from '../../../core/gcp/clients.js';
import type { Facts } from '../doctor.js';
import { call, connect, credentialsFix, isCredentialFailure, pubsubGrantFix, SUBSCRIPTION_PERMISSIONS, TOPIC_PERMISSIONS, unanswered } from '../gcp.js';
import { attempt, fold, human, result, sh, skip, type CheckResult, type Failed, type Finding, type Probe } from '../types.js';

/** `expirationTtlSeconds` undefined: never expires. */
export interface SubscriptionInfo {
  topic: string;
  ackDeadlineSeconds: number;
  retentionSeconds?: number | undefined;
  expirationTtlSeconds?: number | undefined;
  filter: string;
  detached: boolean;
}

export interface PubSubFacts {
  emulator: boolean;
  topicName: string;
  subscriptionName?: string | undefined;
  topic: Probe<true>;
  subscription?: Probe<SubscriptionInfo> | undefined;
  topicIam: Probe<string[]>;
  subscriptionIam?: Probe<string[]> | undefined;
}

export type PubSubClients = { publisher: PublisherClient; subscriber: SubscriberClient };

const seconds = (d: { seconds?: unknown; nanos?: unknown } | null | undefined) => (d?.seconds !== undefined && d.seconds !== null ? Number(d.seconds) + Number(d.nanos ?? 0) / 1e9 : undefined);

const clients = async (gcp: GcpConfig): Promise<PubSubClients> => ({ publisher: await createPubSubGapicClient('publisher', gcp), subscriber: await createPubSubGapicClient('subscriber', gcp) });

/** `create` lets unit tests hand in clients whose initialise fails. */
export async function pubsubFacts(gcp: GcpConfig, timeoutMs: number, create = () => clients(gcp)): Promise<PubSubFacts> {
  const topicName = `projects/${gcp.projectId}/topics/${gcp.topicId}`;
  const subscriptionName = gcp.subscriptionId ? `projects/${gcp.projectId}/subscriptions/${gcp.subscriptionId}` : undefined;
  const names = { emulator: Boolean(gcp.pubsubEmulatorHost), topicName, subscriptionName };
  // The IAM mixin (TestIamPermissions) initialises itself with the same, by then loaded, credentials.
  const ready = await connect(() => create().then((c) => [c.publisher, c.subscriber] as const), timeoutMs);
  const sub = <T>(p: T) => (subscriptionName ? p : undefined);
  if ('failed' in ready) return { ...names, topic: ready.failed, topicIam: ready.failed, subscription: sub(ready.failed), subscriptionIam: sub(ready.failed) };
  const [publisher, subscriber] = ready.clients;
  // The IAM mixin is typed with the protobuf classes; a plain request object is what it sends.
  type IamRequest = Parameters<typeof publisher.testIamPermissions>[0];
  const granted = (client: PublisherClient | SubscriberClient, resource: string, permissions: readonly string[]) =>
    attempt(async () => ((await client.testIamPermissions({ resource, permissions: [...permissions] } as unknown as IamRequest, call(timeoutMs)))[0].permissions ?? []).map(String), timeoutMs);
  const subscriptionInfo = async (name: string): Promise<SubscriptionInfo> => {
    const [s] = await subscriber.getSubscription({ subscription: name }, call(timeoutMs));
    const { topic, ackDeadlineSeconds, filter, detached } = s;
    return { topic: topic ?? '', ackDeadlineSeconds: ackDeadlineSeconds ?? 0, retentionSeconds: seconds(s.messageRetentionDuration), expirationTtlSeconds: seconds(s.expirationPolicy?.ttl), filter: filter ?? '', detached: detached === true };
  };
  try {
    const [topic, topicIam, subscription, subscriptionIam] = await Promise.all([
      attempt(async () => (await publisher.getTopic({ topic: topicName }, call(timeoutMs)), true as const), timeoutMs),
      granted(publisher, topicName, TOPIC_PERMISSIONS),
      subscriptionName ? attempt(() => subscriptionInfo(subscriptionName), timeoutMs) : undefined,
      subscriptionName ? granted(subscriber, subscriptionName, SUBSCRIPTION_PERMISSIONS) : undefined,
    ]);
    return { ...names, topic, topicIam, subscription, subscriptionIam };
  } finally {
    await Promise.allSettled([publisher.close(), subscriber.close()]);
  }
}

/** A Pub/Sub check: cloud-connected only. */
const cloud = (id: string, check: (f: Facts, p: PubSubFacts, g: GcpConfig) => CheckResult) => (f: Facts) =>
  f.pubsub && f.config.gcp ? check(f, f.pubsub, f.config.gcp) : skip(id, 'standalone: no Pub/Sub');
/** Saxo's documented refresh-token life, when the newest pair does not say. */
const REFRESH_LIFE_MS = 3_600_000;
/** GetTopic / GetSubscription denied: roles/pubsub.publisher and .subscriber do not include *.get; Terraform grants roles/pubsub.viewer for it. */
const viewerFix = (f: Facts, kind: 'topics' | 'subscriptions', id: string) =>
  `terraform apply in infra/terraform (it grants the VM's account roles/pubsub.viewer on the ${kind.slice(0, -1)}), or: ${pubsubGrantFix(kind, f.config.gcp!.projectId, id, f.identity, 'roles/pubsub.viewer')}`;

function failed(f: Facts, id: string, p: Failed, what: string): CheckResult {
  const host = f.config.gcp?.pubsubEmulatorHost;
  return fold(id, '', [unanswered(p, what, f.credentialsFile, host ? `is the Pub/Sub emulator at ${host} running?` : 'check egress from this host to pubsub.googleapis.com:443')]);
}

export const topicCheck = cloud('pubsub.topic', (f, p, g) => {
  if (p.topic.ok) return result('pubsub.topic', 'ok', `${p.topicName} exists`);
  if (p.topic.code === 'NOT_FOUND') {
    return result('pubsub.topic', 'fail', `topic ${p.topicName} does not exist: nobody hears TOKEN_ROTATED`, `terraform apply in infra/terraform (or: gcloud pubsub topics create ${sh(g.topicId)} --project=${sh(g.projectId)})`);
  }
  if (p.topic.code !== 'PERMISSION_DENIED') return failed(f, 'pubsub.topic', p.topic, 'GetTopic failed');
  const summary = `cannot read ${p.topicName} as this identity (roles/pubsub.publisher does not include pubsub.topics.get); publish is checked in pubsub.iam`;
  return result('pubsub.topic', 'warn', summary, viewerFix(f, 'topics', g.topicId));
});

export const subscriptionCheck = cloud('pubsub.subscription', (f, p, g) => {
  if (!p.subscription || !g.subscriptionId) return skip('pubsub.subscription', 'no TOKEN_SUBSCRIPTION_ID: the agent does not subscribe (see config)');
  const sub = g.subscriptionId;
  const scope = `--project=${sh(g.projectId)}`;
  const create = `gcloud pubsub subscriptions create ${sh(sub)} --topic=${sh(g.topicId)} ${scope} --ack-deadline=30 --message-retention-duration=1h --expiration-period=never`;
  const recreate = `gcloud pubsub subscriptions delete ${sh(sub)} ${scope} && ${create}`;
  const s = p.subscription;
  if (!s.ok) {
    if (s.code === 'NOT_FOUND') return result('pubsub.subscription', 'fail', `subscription ${p.subscriptionName} does not exist`, `terraform apply in infra/terraform (or: ${create})`);
    if (s.code !== 'PERMISSION_DENIED') return failed(f, 'pubsub.subscription', s, 'GetSubscription failed');
    const summary = `cannot read ${p.subscriptionName}'s configuration as this identity (roles/pubsub.subscriber does not include pubsub.subscriptions.get): its topic is unchecked`;
    return result('pubsub.subscription', 'warn', summary, viewerFix(f, 'subscriptions', sub));
  }
  const v = s.value;
  const findings: Finding[] = [];
  if (v.topic === '_deleted-topic_') findings.push({ status: 'fail', text: `the topic of ${sub} was deleted: it receives nothing`, fix: recreate });
  else if (v.topic !== p.topicName) {
    const text = `${sub} is attached to ${v.topic}, not the configured ${p.topicName} (TOKEN_TOPIC_ID): TOKEN_ROTATED never reaches this agent`;
    findings.push({ status: 'fail', text, fix: `a subscription cannot change topic: ${recreate} (or set TOKEN_TOPIC_ID=${v.topic.split('/').pop()} if that topic is the right one)` });
  }
  if (v.detached) findings.push({ status: 'fail', text: `${sub} is detached from its topic: it receives nothing`, fix: recreate });
  if (v.filter) findings.push({ status: 'warn', text: `${sub} has a filter (${v.filter}): events it excludes never arrive`, fix: recreate });
  const life = f.view.refreshLifeMs ?? REFRESH_LIFE_MS;
  if (v.retentionSeconds !== undefined && v.retentionSeconds * 1000 < life) {
    const text = `message retention ${human(v.retentionSeconds * 1000)} is shorter than a refresh token's life (${human(life)}): an agent disconnected that long loses rotations it could still use`;
    findings.push({ status: 'warn', text, fix: `gcloud pubsub subscriptions update ${sh(sub)} ${scope} --message-retention-duration=${Math.ceil(life / 1000)}s` });
  }
  const ttl = v.expirationTtlSeconds ? human(v.expirationTtlSeconds * 1000) : undefined;
  if (ttl) findings.push({ status: 'warn', text: `${sub} is deleted after ${ttl} without a subscriber: a VM off that long loses it`, fix: `gcloud pubsub subscriptions update ${sh(sub)} ${scope} --expiration-period=never` });
  const retention = v.retentionSeconds !== undefined ? human(v.retentionSeconds * 1000) : 'default';
  // The agent's streaming pull sets its own 60 s ack deadline and extends it while it handles an event (core/gcp/event-bus.ts).
  const ok = `${p.subscriptionName} → ${v.topic}; ack deadline ${v.ackDeadlineSeconds} s (the agent's stream sets its own 60 s and extends it); retention ${retention}; ${ttl ? `expires after ${ttl} idle` : 'never expires'}`;
  return fold('pubsub.subscription', ok, findings, { ...v });
});

export const pubsubIamCheck = cloud('pubsub.iam', (f, p, g) => {
  const probes = [
    [p.topicName, p.topicIam, TOPIC_PERMISSIONS, 'topics', g.topicId],
    [p.subscriptionName ?? '', p.subscriptionIam, SUBSCRIPTION_PERMISSIONS, 'subscriptions', g.subscriptionId ?? ''],
  ] as const;
  const asked = probes.flatMap(([resource, probe, perms, kind, id]) => (probe ? [{ resource, probe, perms, kind, id }] : []));
  const failures = asked.flatMap(({ probe }) => (probe.ok ? [] : [probe]));
  const all = (is: (p: Failed) => boolean) => failures.length === asked.length && failures.every(is);
  if (p.emulator && all((x) => x.code === 'UNIMPLEMENTED')) {
    return skip('pubsub.iam', `the Pub/Sub emulator at ${g.pubsubEmulatorHost} does not implement TestIamPermissions (UNIMPLEMENTED): IAM cannot be checked against an emulator`);
  }
  if (all(isCredentialFailure)) return skip('pubsub.iam', 'no usable Google credentials: nothing could be asked (see pubsub.topic)');
  // TestIamPermissions on a resource that does not exist answers NOT_FOUND: nothing to verify there.
  const absent = asked.filter(({ probe }) => !probe.ok && probe.code === 'NOT_FOUND').map(({ resource }) => resource);
  if (absent.length === asked.length) return skip('pubsub.iam', `${absent.join(' and ')} ${absent.length > 1 ? 'do' : 'does'} not exist (see pubsub.topic, pubsub.subscription): no permission to check`);
  const findings: Finding[] = [];
  const granted: string[] = [];
  for (const { resource, probe, perms, kind, id } of asked) {
    if (!probe.ok) {
      if (probe.code !== 'NOT_FOUND') findings.push({ status: 'warn', text: `TestIamPermissions on ${resource} failed: ${probe.error}`, fix: isCredentialFailure(probe) ? credentialsFix(f.credentialsFile) : undefined });
      continue;
    }
    const missing = perms.filter((x) => !probe.value.includes(x));
    granted.push(...perms.filter((x) => probe.value.includes(x)).map((x) => `${x} on ${resource}`));
    if (missing.length) findings.push({ status: 'fail', text: `missing ${missing.join(', ')} on ${resource}${f.identity ? ` for ${f.identity}` : ''}`, fix: pubsubGrantFix(kind, g.projectId, id, f.identity) });
  }
  return fold('pubsub.iam', `granted: ${granted.join('; ')}${absent.length ? `; not checked: ${absent.join(', ')} (does not exist)` : ''}`, findings);
});
