/** The pure doctor checks of the cloud side: Secret Manager, Pub/Sub, clock, Saxo, the cloud path. */
import { describe, expect, it } from 'vitest';
import { cloudPathCheck } from '../../agent/doctor/checks/cloud-path.js';
import { skewOf } from '../../core/server-time.js';
import { clockCheck, saxoCheck } from '../../agent/doctor/checks/network.js';
import { pubsubIamCheck, subscriptionCheck, topicCheck } from '../../agent/doctor/checks/pubsub.js';
import { secretIamCheck, secretManagerCheck } from '../../agent/doctor/checks/secret-manager.js';
import type { Facts } from '../../agent/doctor/doctor.js';
import type { PubSubFacts, SubscriptionInfo } from '../../agent/doctor/checks/pubsub.js';
import type { SecretFacts } from '../../agent/doctor/checks/secret-manager.js';
import { facts, failed, NOW, ok } from '../helpers/doctor-facts.js';

const withSecret = (over: Partial<SecretFacts>, rest: Partial<Facts> = {}) => {
  const f = facts(rest);
  return facts({ ...rest, secret: { ...f.secret!, ...over } });
};
const withPubSub = (over: Partial<PubSubFacts>) => facts({ pubsub: { ...facts().pubsub!, ...over } });
const withSub = (over: Partial<SubscriptionInfo>) =>
  withPubSub({ subscription: ok({ topic: 'projects/p1/topics/token-rotated', ackDeadlineSeconds: 30, retentionSeconds: 3600, filter: '', detached: false, ...over }) });

describe('doctor: Secret Manager', () => {
  it('a missing secret fails with how to create it; a down service with where to look', () => {
    const nf = secretManagerCheck(withSecret({ meta: failed('NOT_FOUND') }));
    expect(nf).toMatchObject({ status: 'fail', summary: 'secret saxo-token does not exist in project p1' });
    expect(nf.fix).toContain('gcloud secrets create saxo-token --project=p1 --replication-policy=automatic');
    const down = secretManagerCheck(withSecret({ meta: failed('UNAVAILABLE', 'UNAVAILABLE: connect refused', 40) }));
    expect(down.summary).toBe('Secret Manager GetSecret failed: UNAVAILABLE: connect refused (after 40 ms)');
    expect(down.fix).toBe('check egress from this host to secretmanager.googleapis.com:443, then: gcloud secrets describe saxo-token --project=p1');
  });

  it('versions: K+1 is a refresh between add and prune; more warns with the destroy pipeline; none fails', () => {
    expect(secretManagerCheck(withSecret({ versions: ok(4) })).status).toBe('ok');
    const many = secretManagerCheck(withSecret({ versions: ok(9) }));
    expect(many.status).toBe('warn');
    expect(many.summary).toBe('9 live version(s), KEEP_SECRET_VERSIONS=3: old versions are not being destroyed ($0.06/month each)');
    expect(many.fix).toContain("--sort-by=~createTime --format='value(name)' | tail -n +4 | xargs -r -n1 gcloud secrets versions destroy --secret=saxo-token --project=p1 --quiet");
    expect(secretManagerCheck(withSecret({ versions: ok(0) })).status).toBe('fail');
  });

  it('lease: held, stale, or longer than LEASE_TTL_SECONDS allows', () => {
    const meta = (lease: { holder: string; expiresAt: number }) => ok({ etag: 'e', failures: 0, annotations: {}, lease });
    expect(secretManagerCheck(withSecret({ meta: meta({ holder: 'cloud:r:1', expiresAt: NOW + 30_000 }) })).summary).toContain('lease held by cloud:r:1 for 30 s more (a refresh in progress)');
    expect(secretManagerCheck(withSecret({ meta: meta({ holder: 'agent:vm2:9', expiresAt: NOW - 90_000 }) })).summary).toContain('stale lease of agent:vm2:9 expired 90 s ago');
    expect(secretManagerCheck(withSecret({ meta: meta({ holder: 'agent:vm2:9', expiresAt: NOW + 600_000 }) })).status).toBe('warn');
  });

  it('IAM: all missing → bind the role to this identity; some missing → add them to the role', () => {
    const none = secretIamCheck(withSecret({ iam: ok([]) }, { identity: 'tk-vm1@p1.iam.gserviceaccount.com' }));
    expect(none.fix).toBe(
      'gcloud secrets add-iam-policy-binding saxo-token --project=p1 --member=serviceAccount:tk-vm1@p1.iam.gserviceaccount.com --role=projects/p1/roles/tokenKeeperSecretRotator (or terraform apply in infra/terraform)',
    );
    const some = secretIamCheck(withSecret({ iam: ok(['secretmanager.versions.access', 'secretmanager.secrets.get']) }));
    expect(some.summary).toBe(
      'missing on projects/p1/secrets/saxo-token: secretmanager.secrets.update (updateSecret), secretmanager.versions.add (addSecretVersion), secretmanager.versions.destroy (destroySecretVersion), secretmanager.versions.list (listSecretVersions)',
    );
    expect(some.fix).toMatch(/^gcloud iam roles update tokenKeeperSecretRotator --project=p1 --add-permissions=secretmanager\.secrets\.update,secretmanager\.versions\.add,/);
    expect(secretIamCheck(withSecret({ iam: failed('NOT_FOUND') })).status).toBe('skip');
    expect(secretIamCheck(withSecret({ iam: failed('DEADLINE_EXCEEDED') })).status).toBe('skip');
  });
});

describe('doctor: Pub/Sub', () => {
  it('subscription: deleted topic, detached, filter, short retention, expiring — each named', () => {
    expect(subscriptionCheck(withSub({ topic: '_deleted-topic_' })).summary).toBe('the topic of token-rotated-vm1 was deleted: it receives nothing');
    expect(subscriptionCheck(withSub({ detached: true })).status).toBe('fail');
    expect(subscriptionCheck(withSub({ filter: 'attributes.type = "X"' })).status).toBe('warn');
    const short = subscriptionCheck(withSub({ retentionSeconds: 600 }));
    expect(short).toMatchObject({ status: 'warn', fix: 'gcloud pubsub subscriptions update token-rotated-vm1 --project=p1 --message-retention-duration=3540s' });
    const exp = subscriptionCheck(withSub({ expirationTtlSeconds: 31 * 86400 }));
    expect(exp).toMatchObject({ status: 'warn', fix: 'gcloud pubsub subscriptions update token-rotated-vm1 --project=p1 --expiration-period=never' });
  });

  it('subscription / topic: missing ones fail with the create command; unreadable config warns with the viewer grant', () => {
    const missing = subscriptionCheck(withPubSub({ subscription: failed('NOT_FOUND') }));
    expect(missing.fix).toBe(
      'terraform apply in infra/terraform (or: gcloud pubsub subscriptions create token-rotated-vm1 --topic=token-rotated --project=p1 --ack-deadline=30 --message-retention-duration=1h --expiration-period=never)',
    );
    const denied = subscriptionCheck(withPubSub({ subscription: failed('PERMISSION_DENIED') }));
    expect(denied.status).toBe('warn');
    expect(denied.fix).toContain('--role=roles/pubsub.viewer');
    expect(topicCheck(withPubSub({ topic: failed('NOT_FOUND') })).fix).toContain('gcloud pubsub topics create token-rotated --project=p1');
    // Terraform grants the VM's account roles/pubsub.viewer on both: that is the fix, not "another account".
    const topicDenied = topicCheck(withPubSub({ topic: failed('PERMISSION_DENIED') }));
    expect(topicDenied.status).toBe('warn');
    expect(topicDenied.fix).toBe(
      "terraform apply in infra/terraform (it grants the VM's account roles/pubsub.viewer on the topic), or: gcloud pubsub topics add-iam-policy-binding token-rotated --project=p1 --member='serviceAccount:<this VM's service account>' --role=roles/pubsub.viewer",
    );
    expect(denied.fix).toMatch(/^terraform apply in infra\/terraform \(it grants the VM's account roles\/pubsub\.viewer on the subscription\), or: gcloud pubsub subscriptions add-iam-policy-binding token-rotated-vm1 /);
  });

  it('IAM: when neither the topic nor the subscription exists there is nothing verified: a skip with the reason, never "granted"', () => {
    const nf = failed('NOT_FOUND');
    const none = pubsubIamCheck(withPubSub({ topicIam: nf, subscriptionIam: nf }));
    expect(none).toMatchObject({
      status: 'skip',
      summary: 'projects/p1/topics/token-rotated and projects/p1/subscriptions/token-rotated-vm1 do not exist (see pubsub.topic, pubsub.subscription): no permission to check',
    });
    const one = pubsubIamCheck(withPubSub({ topicIam: nf }));
    expect(one).toMatchObject({ status: 'ok', summary: 'granted: pubsub.subscriptions.consume on projects/p1/subscriptions/token-rotated-vm1; not checked: projects/p1/topics/token-rotated (does not exist)' });
  });

  it('IAM: missing publish or consume fails with the binding; UNIMPLEMENTED skips only against an emulator', () => {
    const c = pubsubIamCheck(withPubSub({ topicIam: ok([]) }));
    expect(c).toMatchObject({ status: 'fail', summary: 'missing pubsub.topics.publish on projects/p1/topics/token-rotated' });
    expect(c.fix).toBe("gcloud pubsub topics add-iam-policy-binding token-rotated --project=p1 --member='serviceAccount:<this VM's service account>' --role=roles/pubsub.publisher");
    const u = failed('UNIMPLEMENTED');
    expect(pubsubIamCheck(withPubSub({ emulator: true, topicIam: u, subscriptionIam: u })).status).toBe('skip');
    expect(pubsubIamCheck(withPubSub({ emulator: false, topicIam: u, subscriptionIam: u })).status).toBe('warn');
  });
});

describe('doctor: Google credentials that cannot be loaded', () => {
  const creds = failed('CREDENTIALS', "cannot load Google credentials: The file at /nonexistent does not exist, or it is not a file. ENOENT: no such file or directory, lstat '/nonexistent'");
  const all = { meta: creds, latest: creds, versions: creds, iam: creds };
  const ADC = "gcloud auth application-default login (or GOOGLE_APPLICATION_CREDENTIALS=<a service account key file>); on a GCE VM, check that it runs with a service account";
  const KEY = "check GOOGLE_APPLICATION_CREDENTIALS=/nonexistent: the key file must exist and be readable by this user (ls -l /nonexistent), or unset it to use the VM's service account";

  it('Secret Manager: a failed probe with the credentials fix (naming the key file when one is set), never "check egress"', () => {
    const sm = secretManagerCheck(withSecret(all, { credentialsFile: '/nonexistent' }));
    expect(sm).toMatchObject({ status: 'fail', fix: KEY });
    expect(sm.summary).toMatch(/^Secret Manager GetSecret failed: cannot load Google credentials: The file at \/nonexistent/);
    expect(secretIamCheck(withSecret(all))).toMatchObject({ status: 'skip', summary: 'no usable Google credentials: nothing could be asked (see secret-manager)' });
    expect(cloudPathCheck(withSecret(all)).status).toBe('skip');
  });

  it('UNAUTHENTICATED and ADC\'s "Could not load the default credentials" get the credentials fix too', () => {
    expect(secretManagerCheck(withSecret({ meta: failed('UNAUTHENTICATED', 'UNAUTHENTICATED: Request had invalid authentication credentials.') })).fix).toBe(ADC);
    const adc = { ok: false as const, ms: 5, error: 'Error: Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.' };
    expect(secretManagerCheck(withSecret({ meta: adc })).fix).toBe(ADC);
    expect(topicCheck(withPubSub({ topic: failed('UNAUTHENTICATED') })).fix).toBe(ADC);
    expect(subscriptionCheck(withPubSub({ subscription: adc })).fix).toBe(ADC);
  });

  it('Pub/Sub: topic and subscription fail with the credentials fix; IAM is a skip (nothing was asked)', () => {
    const f = facts({ credentialsFile: '/nonexistent', pubsub: { ...facts().pubsub!, topic: creds, subscription: creds, topicIam: creds, subscriptionIam: creds } });
    expect(topicCheck(f)).toMatchObject({ status: 'fail', fix: KEY });
    expect(subscriptionCheck(f)).toMatchObject({ status: 'fail', fix: KEY });
    expect(pubsubIamCheck(f)).toMatchObject({ status: 'skip', summary: 'no usable Google credentials: nothing could be asked (see pubsub.topic)' });
  });
});

describe('doctor: clock and Saxo', () => {
  it('skewOf: the least skew consistent with a whole-second Date header and the round trip', () => {
    expect(skewOf({ dateMs: 10_000, sentAt: 10_100, receivedAt: 10_300 })).toEqual({ estimateMs: -300, minAbsMs: 0 });
    expect(skewOf({ dateMs: 10_000, sentAt: 17_100, receivedAt: 17_300 })).toEqual({ estimateMs: 6700, minAbsMs: 6100 });
    expect(skewOf({ dateMs: 10_000, sentAt: 3_000, receivedAt: 3_200 })).toEqual({ estimateMs: -7400, minAbsMs: 6800 });
  });

  it('clock: warn above 5 s, fail above 60 s, warn when unreadable', () => {
    const at = (skew: number) => facts({ clock: { target: 'https://x', local: false, probe: ok({ dateMs: NOW, sentAt: NOW + skew, receivedAt: NOW + skew + 50 }) } });
    expect(clockCheck(at(3000)).status).toBe('ok');
    expect(clockCheck(at(7000))).toMatchObject({ status: 'warn', fix: 'sudo timedatectl set-ntp true; timedatectl timesync-status' });
    expect(clockCheck(at(-90_000)).status).toBe('fail');
    expect(clockCheck(facts({ clock: { target: 'https://x', local: false, probe: failed('ETIMEDOUT') } })).status).toBe('warn');
  });

  it('Saxo: a certificate problem suggests openssl s_client; DNS failures say so', () => {
    const s = facts().saxo;
    const cert = saxoCheck(facts({ saxo: { ...s, tls: failed('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain') } }));
    expect(cert.fix).toBe('openssl s_client -connect sim.logonvalidation.net:443 -servername sim.logonvalidation.net </dev/null  # an intercepting proxy or an outdated CA store?');
    expect(saxoCheck(facts({ saxo: { ...s, dns: failed('ENOTFOUND'), tls: undefined } })).summary).toMatch(/^DNS lookup of sim\.logonvalidation\.net failed/);
    expect(saxoCheck(facts()).summary).toBe('sim.logonvalidation.net → 192.0.2.10; TLSv1.3 handshake with sim.logonvalidation.net:443 in 5 ms, certificate sim.logonvalidation.net valid until 2026-05-31; no request sent');
  });
});

describe('doctor: the cloud path', () => {
  const meta = (m: object) => withSecret({ meta: ok({ etag: 'e', failures: 0, annotations: {}, ...m }) });
  it('ok within the expected period; late, never, or last refreshed by the agent warns; repeated failures fail', () => {
    expect(cloudPathCheck(facts()).summary).toBe(
      'last refreshed by cloud:rev:ab 2m 20s ago (expected at least every 14m 00s: token life 19m 00s − cloud threshold 10m 00s, + the Scheduler\'s 5m 00s)',
    );
    expect(cloudPathCheck(meta({ lastRefresh: { at: NOW - 25 * 60_000, by: 'cloud:rev:ab', version: 'v' } })).summary).toMatch(/^the cloud last refreshed 25m 00s ago/);
    expect(cloudPathCheck(meta({})).summary).toMatch(/^no refresh recorded on the secret yet/);
    expect(cloudPathCheck(meta({ lastRefresh: { at: NOW - 60_000, by: 'agent:vm1:77', version: 'v' } })).summary).toBe(
      'the last refresh was by agent:vm1:77 60 s ago, not by the cloud: the cloud missed its window then',
    );
    const failing = cloudPathCheck(meta({ failures: 5, lastRefresh: { at: NOW - 60_000, by: 'cloud:r', version: 'v' } }));
    expect(failing.status).toBe('fail');
    expect(failing.fix).toContain('gcloud scheduler jobs list --project=p1');
  });
});
