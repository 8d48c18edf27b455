/**
 * `secret-manager` (reachable, versions, lease) and `secret-manager.iam` (every permission the code uses, from the IAM table).
 * Read through the runtime's own adapter (core/gcp/secret-store.ts) plus GetSecret and TestIamPermissions; nothing is written.
 */
import type { GcpConfig } from '../../../core/config.js';
import { createSecretManagerClient } from '../../../core/gcp/clients.js';
import { createSecretStore, parseMeta } from '../../../core/gcp/secret-store.js';
import type { SecretMeta, SecretRead } from '../../../core/ports.js';
import type { Facts } from '../doctor.js';
import { call, connect, isCredentialFailure, SECRET_MANAGER_CALLS, SECRET_MANAGER_PERMISSIONS, secretGrantFix, unanswered } from '../gcp.js';
import { attempt, fold, human, result, sh, skip, type CheckResult, type Failed, type Finding, type Probe } from '../types.js';

/** `name`: projects/P/secrets/S; `iam`: TestIamPermissions, the permissions granted out of those asked. */
export type SecretFacts = { name: string; meta: Probe<SecretMeta>; latest: Probe<SecretRead | undefined>; versions: Probe<number>; iam: Probe<string[]> };

type Client = Awaited<ReturnType<typeof createSecretManagerClient>>;

/** `create` lets unit tests hand in a client whose initialise fails. */
export async function secretFacts(gcp: GcpConfig, timeoutMs: number, create: () => Promise<Client> = () => createSecretManagerClient(gcp)): Promise<SecretFacts> {
  const name = `projects/${gcp.projectId}/secrets/${gcp.secretId}`;
  const none = (p: Failed): SecretFacts => ({ name, meta: p, latest: p, versions: p, iam: p });
  const ready = await connect(async () => [await create()] as const, timeoutMs);
  if ('failed' in ready) return none(ready.failed);
  const [client] = ready.clients;
  try {
    // GetSecret first, once and without retries: when Secret Manager is down, say so at once
    // instead of letting the adapter's read retries use up every deadline.
    const meta = await attempt(async () => parseMeta((await client.getSecret({ name }, call(timeoutMs)))[0]), timeoutMs);
    if (!meta.ok && ['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'UNAUTHENTICATED'].includes(meta.code ?? '')) return none(meta);
    const store = createSecretStore({ client, projectId: gcp.projectId, secretId: gcp.secretId, timeoutMs: Math.max(100, timeoutMs - 250) });
    const [latest, versions, iam] = await Promise.all([
      attempt(() => store.latest(), timeoutMs),
      attempt(() => store.countVersions(), timeoutMs),
      attempt(async () => ((await client.testIamPermissions({ resource: name, permissions: [...SECRET_MANAGER_PERMISSIONS] }, call(timeoutMs)))[0].permissions ?? []).map(String), timeoutMs),
    ]);
    return { name, meta, latest, versions, iam };
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** A Secret Manager check: cloud-connected only. */
const cloud = (id: string, check: (f: Facts, s: SecretFacts, g: GcpConfig) => CheckResult) => (f: Facts) =>
  f.secret && f.config.gcp ? check(f, f.secret, f.config.gcp) : skip(id, 'standalone (no GOOGLE_CLOUD_PROJECT + TOKEN_SECRET_ID): no Secret Manager');

/** A failed Secret Manager probe as a finding with the fix that fits its cause. */
function unreachable(f: Facts, p: Failed, what: string): Finding {
  const g = f.config.gcp!;
  const [secret, project, host] = [sh(g.secretId), sh(g.projectId), g.secretManagerEmulatorHost];
  const create = `terraform apply in infra/terraform (or: gcloud secrets create ${secret} --project=${project} --replication-policy=automatic, then npx token-keeper login)`;
  if (p.code === 'NOT_FOUND') return { status: 'fail', text: `secret ${g.secretId} does not exist in project ${g.projectId}`, fix: create };
  if (p.code === 'PERMISSION_DENIED') return { status: 'fail', text: `${what}: ${p.error}`, fix: 'see secret-manager.iam' };
  const egress = `check egress from this host to secretmanager.googleapis.com:443, then: gcloud secrets describe ${secret} --project=${project}`;
  return unanswered(p, what, f.credentialsFile, host ? `is the Secret Manager stand-in at ${host} running?` : egress);
}

export const secretManagerCheck = cloud('secret-manager', (f, s, g) => {
  if (!s.meta.ok) return fold('secret-manager', '', [unreachable(f, s.meta, 'Secret Manager GetSecret failed')]);
  const findings: Finding[] = [];
  const keep = f.config.keepSecretVersions;
  const n = s.versions.ok ? s.versions.value : undefined;
  const versions = n !== undefined ? `${n} live version(s), KEEP_SECRET_VERSIONS=${keep}` : '';
  const scope = `--secret=${sh(g.secretId)} --project=${sh(g.projectId)}`;
  const destroy = `gcloud secrets versions list ${sh(g.secretId)} --project=${sh(g.projectId)} --filter='state:(ENABLED OR DISABLED)' --sort-by=~createTime --format='value(name)' | tail -n +${keep + 1} | xargs -r -n1 gcloud secrets versions destroy ${scope} --quiet`;
  if (!s.versions.ok) findings.push(unreachable(f, s.versions, 'ListSecretVersions failed'));
  else if (n === 0) findings.push({ status: 'fail', text: `secret ${g.secretId} has no enabled version: it holds no token`, fix: 'npx token-keeper login' });
  // One above K is a refresh between its add and its prune.
  else if (n! > keep + 1) findings.push({ status: 'warn', text: `${versions}: old versions are not being destroyed ($0.06/month each)`, fix: destroy });
  if (!s.latest.ok) findings.push(unreachable(f, s.latest, 'AccessSecretVersion failed'));
  else if (s.latest.value?.error) findings.push({ status: 'fail', text: `latest version ${s.latest.value.version} unusable: ${s.latest.value.error}`, fix: 'a running agent pushes its pair over it; else npx token-keeper login' });
  const lease = s.meta.value.lease;
  const left = lease ? lease.expiresAt - f.now : 0;
  if (lease && left > f.config.leaseTtlMs + 5000) {
    const text = `the lease of ${lease.holder} runs ${human(left)} more, beyond LEASE_TTL_SECONDS (${human(f.config.leaseTtlMs)}): that host's clock is ahead or it uses a longer TTL`;
    findings.push({ status: 'warn', text, fix: 'compare `date -u` on that host with this one; every refresher should share LEASE_TTL_SECONDS' });
  }
  const stale = lease && left <= 0 ? `stale lease of ${lease.holder} expired ${human(-left)} ago (the next refresher takes it over)` : undefined;
  const leaseText = stale ?? (lease ? `lease held by ${lease.holder} for ${human(left)} more (a refresh in progress)` : 'no lease held');
  const latest = s.latest.ok && s.latest.value ? `latest version ${s.latest.value.version}` : 'no latest version';
  const details = { secret: s.name, latestVersion: s.latest.ok ? s.latest.value?.name : undefined, liveVersions: n, keep };
  const leaseDetails = lease ? { holder: lease.holder, expiresAt: new Date(lease.expiresAt).toISOString() } : undefined;
  return fold('secret-manager', `${s.name} answered in ${s.meta.ms} ms; ${latest}; ${versions}; ${leaseText}`, findings, { ...details, lease: leaseDetails });
});

export const secretIamCheck = cloud('secret-manager.iam', (f, s, g) => {
  if (!s.iam.ok) {
    const down = 'Secret Manager did not answer (see secret-manager)';
    const unimplemented = `the Secret Manager endpoint does not implement TestIamPermissions (${s.iam.error})`;
    const why: Record<string, string> = { NOT_FOUND: `secret ${g.secretId} does not exist (see secret-manager)`, UNIMPLEMENTED: unimplemented, UNAVAILABLE: down, DEADLINE_EXCEEDED: down };
    if (why[s.iam.code ?? '']) return skip('secret-manager.iam', why[s.iam.code!]!);
    if (isCredentialFailure(s.iam)) return skip('secret-manager.iam', 'no usable Google credentials: nothing could be asked (see secret-manager)');
    return fold('secret-manager.iam', '', [{ ...unreachable(f, s.iam, 'TestIamPermissions failed'), fix: undefined }]);
  }
  const granted = [...new Set(s.iam.value)].sort();
  const missing = SECRET_MANAGER_PERMISSIONS.filter((p) => !granted.includes(p));
  if (!missing.length) return result('secret-manager.iam', 'ok', `all ${SECRET_MANAGER_PERMISSIONS.length} permissions the code uses are granted on ${s.name}`, undefined, { granted });
  const uses = (p: string) => Object.entries(SECRET_MANAGER_CALLS).filter(([, perm]) => perm === p).map(([m]) => m).join(', ');
  const summary = `missing on ${s.name}${f.identity ? ` for ${f.identity}` : ''}: ${missing.map((p) => `${p} (${uses(p)})`).join(', ')}`;
  return result('secret-manager.iam', 'fail', summary, secretGrantFix(g.projectId, g.secretId, missing, f.identity), { missing, granted });
});
