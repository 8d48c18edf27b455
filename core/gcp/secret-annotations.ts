/**
 * The secret's annotations as token-keeper uses them: the cross-host lease (holder + expiry), the
 * refresh bookkeeping (consecutive failures, the last refresh) and an announcement still owed.
 * Pure: the adapter (secret-store.ts) reads and compare-and-swaps them; doctor and status read them.
 */
import type { protos } from '@google-cloud/secret-manager';
import { pinToAnnotations } from '../identity.js';
import type { SecretMeta, SecretRecord } from '../ports.js';

type Secret = protos.google.cloud.secretmanager.v1.ISecret;

export const ANNOTATION = {
  leaseHolder: 'tk-lease-holder',
  leaseExpires: 'tk-lease-expires',
  failures: 'tk-failures',
  lastRefreshAt: 'tk-last-refresh-at',
  lastRefreshBy: 'tk-last-refresh-by',
  lastRefreshVersion: 'tk-last-refresh-version',
  announcePending: 'tk-announce-pending',
  rejected: 'tk-rejected',
  ended: 'tk-ended',
} as const;

export function parseMeta(secret: Secret): SecretMeta {
  const a: Record<string, string> = { ...(secret.annotations ?? {}) };
  const holder = a[ANNOTATION.leaseHolder];
  const expiresAt = Number(a[ANNOTATION.leaseExpires]);
  const failures = Number(a[ANNOTATION.failures]);
  const at = Number(a[ANNOTATION.lastRefreshAt]);
  return {
    etag: secret.etag ?? '',
    lease: holder && Number.isFinite(expiresAt) ? { holder, expiresAt } : undefined,
    failures: Number.isInteger(failures) && failures >= 0 ? failures : 0,
    lastRefresh: Number.isFinite(at)
      ? { at, by: a[ANNOTATION.lastRefreshBy] ?? '', version: a[ANNOTATION.lastRefreshVersion] ?? '' }
      : undefined,
    announcePending: a[ANNOTATION.announcePending] || undefined,
    rejected: a[ANNOTATION.rejected] || undefined,
    ended: a[ANNOTATION.ended] || undefined,
    annotations: a,
  };
}

/** Apply a record to annotations; a lastRefresh older than the stored one never replaces it. */
export function applyRecord(a: Record<string, string>, record: SecretRecord | undefined): void {
  if (!record) return;
  if (record.announcePending === null) delete a[ANNOTATION.announcePending];
  else if (record.announcePending !== undefined) a[ANNOTATION.announcePending] = record.announcePending;
  if (record.rejected === null) delete a[ANNOTATION.rejected];
  else if (record.rejected !== undefined) a[ANNOTATION.rejected] = record.rejected;
  if (record.pin) Object.assign(a, pinToAnnotations(record.pin));
  if (record.ended !== undefined) a[ANNOTATION.ended] = record.ended;
  if (record.failures !== undefined) a[ANNOTATION.failures] = String(Math.max(0, Math.floor(record.failures)));
  const lr = record.lastRefresh;
  const storedAt = Number(a[ANNOTATION.lastRefreshAt]);
  if (lr && !(Number.isFinite(storedAt) && storedAt > lr.at)) {
    a[ANNOTATION.lastRefreshAt] = String(lr.at);
    a[ANNOTATION.lastRefreshBy] = lr.by;
    a[ANNOTATION.lastRefreshVersion] = lr.version;
  }
}
