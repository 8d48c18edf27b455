/** Check 6: the topic exists, the subscription is attached to it and fits the agent, IAM grants publish/consume. */
import type { Facts, Probe } from '../facts.js';
import { pubsubGrantFix, SUBSCRIPTION_PERMISSIONS, TOPIC_PERMISSIONS } from '../permissions.js';
import { fold, human, sh, skip, type CheckResult, type Finding } from '../types.js';
import { credentialsFix, isCredentialFailure } from './credentials.js';

const STANDALONE = 'standalone: no Pub/Sub';
/** Saxo's documented refresh-token life, when the newest pair does not say. */
const REFRESH_LIFE_MS = 3_600_000;

function failed(f: Facts, p: Extract<Probe<unknown>, { ok: false }>, what: string): Finding {
  const host = f.config.gcp?.pubsubEmulatorHost;
  return {
    status: 'fail',
    text: `${what}: ${p.error} (after ${p.ms} ms)`,
    fix: isCredentialFailure(p) ? credentialsFix(f) : host ? `is the Pub/Sub emulator at ${host} running?` : 'check egress from this host to pubsub.googleapis.com:443',
  };
}

export function topicCheck(f: Facts): CheckResult {
  const p = f.pubsub;
  const g = f.config.gcp;
  if (!p || !g) return skip('pubsub.topic', STANDALONE);
  if (p.topic.ok) return { id: 'pubsub.topic', status: 'ok', summary: `${p.topicName} exists` };
  if (p.topic.code === 'NOT_FOUND') {
    return { id: 'pubsub.topic', status: 'fail', summary: `topic ${p.topicName} does not exist: nobody hears TOKEN_ROTATED`, fix: `terraform apply in infra/terraform (or: gcloud pubsub topics create ${sh(g.topicId)} --project=${sh(g.projectId)})` };
  }
  if (p.topic.code === 'PERMISSION_DENIED') {
    return {
      id: 'pubsub.topic',
      status: 'warn',
      summary: `cannot read ${p.topicName} as this identity (roles/pubsub.publisher does not include pubsub.topics.get); publish is checked in pubsub.iam`,
      fix: `terraform apply in infra/terraform (it grants the VM's account roles/pubsub.viewer on the topic), or: ${pubsubGrantFix('topics', g.projectId, g.topicId, f.identity).replace('roles/pubsub.publisher', 'roles/pubsub.viewer')}`,
    };
  }
  return fold('pubsub.topic', '', [failed(f, p.topic, 'GetTopic failed')]);
}

export function subscriptionCheck(f: Facts): CheckResult {
  const p = f.pubsub;
  const g = f.config.gcp;
  if (!p || !g) return skip('pubsub.subscription', STANDALONE);
  if (!p.subscription || !g.subscriptionId) return skip('pubsub.subscription', 'no TOKEN_SUBSCRIPTION_ID: the agent does not subscribe (see config)');
  const sub = g.subscriptionId;
  const scope = `--project=${sh(g.projectId)}`;
  const create = `gcloud pubsub subscriptions create ${sh(sub)} --topic=${sh(g.topicId)} ${scope} --ack-deadline=30 --message-retention-duration=1h --expiration-period=never`;
  const s = p.subscription;
  if (!s.ok) {
    if (s.code === 'NOT_FOUND') return { id: 'pubsub.subscription', status: 'fail', summary: `subscription ${p.subscriptionName} does not exist`, fix: `terraform apply in infra/terraform (or: ${create})` };
    if (s.code === 'PERMISSION_DENIED') {
      return {
        id: 'pubsub.subscription',
        status: 'warn',
        summary: `cannot read ${p.subscriptionName}'s configuration as this identity (roles/pubsub.subscriber does not include pubsub.subscriptions.get): its topic is unchecked`,
        fix: `terraform apply in infra/terraform (it grants the VM's account roles/pubsub.viewer on the subscription), or: ${pubsubGrantFix('subscriptions', g.projectId, sub, f.identity).replace('roles/pubsub.subscriber', 'roles/pubsub.viewer')}`,
      };
    }
    return fold('pubsub.subscription', '', [failed(f, s, 'GetSubscription failed')]);
  }
  const v = s.value;
  const findings: Finding[] = [];
  if (v.topic === '_deleted-topic_') {
    findings.push({ status: 'fail', text: `the topic of ${sub} was deleted: it receives nothing`, fix: `gcloud pubsub subscriptions delete ${sh(sub)} ${scope} && ${create}` });
  } else if (v.topic !== p.topicName) {
    findings.push({
      status: 'fail',
      text: `${sub} is attached to ${v.topic}, not the configured ${p.topicName} (TOKEN_TOPIC_ID): TOKEN_ROTATED never reaches this agent`,
      fix: `a subscription cannot change topic: gcloud pubsub subscriptions delete ${sh(sub)} ${scope} && ${create} (or set TOKEN_TOPIC_ID=${v.topic.split('/').pop()} if that topic is the right one)`,
    });
  }
  if (v.detached) findings.push({ status: 'fail', text: `${sub} is detached from its topic: it receives nothing`, fix: `gcloud pubsub subscriptions delete ${sh(sub)} ${scope} && ${create}` });
  if (v.filter) findings.push({ status: 'warn', text: `${sub} has a filter (${v.filter}): events it excludes never arrive`, fix: `gcloud pubsub subscriptions delete ${sh(sub)} ${scope} && ${create}` });
  const life = f.view.refreshLifeMs ?? REFRESH_LIFE_MS;
  if (v.retentionSeconds !== undefined && v.retentionSeconds * 1000 < life) {
    findings.push({
      status: 'warn',
      text: `message retention ${human(v.retentionSeconds * 1000)} is shorter than a refresh token's life (${human(life)}): an agent disconnected that long loses rotations it could still use`,
      fix: `gcloud pubsub subscriptions update ${sh(sub)} ${scope} --message-retention-duration=${Math.ceil(life / 1000)}s`,
    });
  }
  if (v.expirationTtlSeconds !== undefined && v.expirationTtlSeconds > 0) {
    findings.push({
      status: 'warn',
      text: `${sub} is deleted after ${human(v.expirationTtlSeconds * 1000)} without a subscriber: a VM off that long loses it`,
      fix: `gcloud pubsub subscriptions update ${sh(sub)} ${scope} --expiration-period=never`,
    });
  }
  const retention = v.retentionSeconds !== undefined ? human(v.retentionSeconds * 1000) : 'default';
  // The agent's streaming pull sets its own 60 s ack deadline and extends it while it handles an
  // event (core/gcp/event-bus.ts), so the subscription's default never cuts a handler short.
  const ok = `${p.subscriptionName} → ${v.topic}; ack deadline ${v.ackDeadlineSeconds} s (the agent's stream sets its own 60 s and extends it); retention ${retention}; ${v.expirationTtlSeconds ? `expires after ${human(v.expirationTtlSeconds * 1000)} idle` : 'never expires'}`;
  return fold('pubsub.subscription', ok, findings, { ...v });
}

export function pubsubIamCheck(f: Facts): CheckResult {
  const p = f.pubsub;
  const g = f.config.gcp;
  if (!p || !g) return skip('pubsub.iam', STANDALONE);
  const probes: [string, Probe<string[]> | undefined, readonly string[], 'topics' | 'subscriptions', string][] = [
    [p.topicName, p.topicIam, TOPIC_PERMISSIONS, 'topics', g.topicId],
    [p.subscriptionName ?? '', p.subscriptionIam, SUBSCRIPTION_PERMISSIONS, 'subscriptions', g.subscriptionId ?? ''],
  ];
  const asked = probes.filter(([, probe]) => probe !== undefined);
  const unimplemented = asked.filter(([, probe]) => probe && !probe.ok && probe.code === 'UNIMPLEMENTED');
  if (p.emulator && unimplemented.length === asked.length) {
    return skip('pubsub.iam', `the Pub/Sub emulator at ${g.pubsubEmulatorHost} does not implement TestIamPermissions (UNIMPLEMENTED): IAM cannot be checked against an emulator`);
  }
  const failures = asked.flatMap(([, probe]) => (probe && !probe.ok ? [probe] : []));
  if (failures.length === asked.length && failures.every(isCredentialFailure)) {
    return skip('pubsub.iam', 'no usable Google credentials: nothing could be asked (see pubsub.topic)');
  }
  // TestIamPermissions on a resource that does not exist answers NOT_FOUND: nothing to verify there.
  const absent = asked.filter(([, probe]) => probe && !probe.ok && probe.code === 'NOT_FOUND').map(([resource]) => resource);
  if (absent.length === asked.length) {
    return skip('pubsub.iam', `${absent.join(' and ')} ${absent.length > 1 ? 'do' : 'does'} not exist (see pubsub.topic, pubsub.subscription): no permission to check`);
  }
  const findings: Finding[] = [];
  const granted: string[] = [];
  for (const [resource, probe, perms, kind, id] of asked) {
    if (!probe!.ok) {
      if (probe!.code !== 'NOT_FOUND') findings.push({ status: 'warn', text: `TestIamPermissions on ${resource} failed: ${probe!.error}`, fix: isCredentialFailure(probe!) ? credentialsFix(f) : undefined });
      continue;
    }
    const have = new Set(probe!.value);
    const missing = perms.filter((x) => !have.has(x));
    granted.push(...perms.filter((x) => have.has(x)).map((x) => `${x} on ${resource}`));
    if (missing.length) {
      findings.push({ status: 'fail', text: `missing ${missing.join(', ')} on ${resource}${f.identity ? ` for ${f.identity}` : ''}`, fix: pubsubGrantFix(kind, g.projectId, id, f.identity) });
    }
  }
  const unchecked = absent.length ? `; not checked: ${absent.join(', ')} (does not exist)` : '';
  return fold('pubsub.iam', `granted: ${granted.join('; ')}${unchecked}`, findings);
}
