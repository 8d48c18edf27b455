/**
 * Everything doctor learns before it judges: gathered once (gather.ts, real IO with short
 * deadlines), then read by pure checks (checks/*.ts). Unit tests build Facts by hand.
 * Nothing here holds token text except `cache`/`state`/`secret.latest`, which checks read for
 * expiries and never print.
 */
import type { Config } from '../../core/config.js';
import type { CacheRead, SecretMeta, SecretRead } from '../../core/ports.js';
import type { Deployment } from '../deployment.js';
import type { AgentState } from '../state-file.js';
import type { TokenView } from './checks/token-view.js';

/** `Probe.code` of a Google client that could not initialise: no usable credentials (ADC, key file, metadata server). */
export const CREDENTIALS = 'CREDENTIALS';

/**
 * One IO attempt: its value, or why it failed (`code`: a gRPC status name, an errno, or
 * CREDENTIALS), and how long it took.
 */
export type Probe<T> = { ok: true; value: T; ms: number } | { ok: false; error: string; code?: string | undefined; ms: number };

export interface FileInfo {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  uid: number;
  gid: number;
  /** Permission bits only (0o7777). */
  mode: number;
  mtimeMs: number;
  ino: number;
  dev: number;
}

/** The user the bots (and the agent's unit) run as, and how doctor knows. */
export interface BotsUser {
  name: string;
  uid: number;
  gid: number;
  /** Primary and supplementary group ids. */
  groups: number[];
  basis: string;
}

/** What doctor read from the installed systemd unit (and its drop-ins). */
export interface UnitInfo {
  path: string;
  user?: string | undefined;
  group?: string | undefined;
  readWritePaths: string[];
  /** StateDirectory= entries as absolute paths (writable for the service, like ReadWritePaths=). */
  stateDirectories: string[];
  /** ProtectSystem=: `no` (unset), `yes`, `full` or `strict` (which paths are read-only for the service). */
  protectSystem: 'no' | 'yes' | 'full' | 'strict';
}

export interface LockHolder {
  pid: number;
  /** /proc/<pid>/cmdline, spaces for NULs; undefined when unreadable (another pid namespace). */
  command?: string | undefined;
  /** FLOCK, POSIX, OFDLCK. */
  type: string;
}

/** `saxo_token.lock`: a real non-blocking flock attempt (only when the file exists). */
export type LockProbe =
  | { state: 'missing' }
  | { state: 'free'; ms: number }
  | { state: 'held'; holders: LockHolder[] }
  | { state: 'error'; error: string };

/** `.token-keeper-agent.lock`, read from /proc/locks only (doctor never takes the agent's lock). */
export type InstanceProbe =
  | { state: 'missing' }
  | { state: 'free' }
  | { state: 'held'; holders: LockHolder[] }
  | { state: 'unknown'; reason: string };

export interface TmpFile {
  name: string;
  ageMs: number;
}

interface Space {
  freeBytes: number;
  freeInodes: number;
  /** The filesystem's inode count; 0 where inodes are allocated on demand (btrfs): no inode limit. */
  files: number;
}

export interface SecretFacts {
  /** projects/P/secrets/S */
  name: string;
  meta: Probe<SecretMeta>;
  latest: Probe<SecretRead | undefined>;
  versions: Probe<number>;
  /** TestIamPermissions: the permissions granted out of those asked. */
  iam: Probe<string[]>;
}

export interface SubscriptionInfo {
  topic: string;
  ackDeadlineSeconds: number;
  retentionSeconds?: number | undefined;
  /** Undefined: never expires. */
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

export interface ClockFacts {
  /** Where the Date header came from (an https/http origin). */
  target: string;
  /** The target runs on this machine (an emulator): a skew is impossible, the check only proves the path. */
  local: boolean;
  probe: Probe<{ dateMs: number; sentAt: number; receivedAt: number }>;
}

export interface SaxoFacts {
  url: string;
  protocol: string;
  host: string;
  port: number;
  loopback: boolean;
  dns?: Probe<string[]> | undefined;
  tcp?: Probe<true> | undefined;
  tls?: Probe<{ protocol: string; subject?: string | undefined; validTo?: number | undefined }> | undefined;
}

export interface DataDirFacts {
  dir: Probe<FileInfo | undefined>;
  cache: Probe<FileInfo | undefined>;
  lock: Probe<FileInfo | undefined>;
  state: Probe<FileInfo | undefined>;
  tmpFiles: Probe<TmpFile[]>;
  space: Probe<Space>;
}

export interface Facts {
  now: number;
  config: Config;
  /** Which installed agent this is about: names the unit and env file in every fix. */
  deployment: Deployment;
  /** GCP variables that are set while the mode stayed standalone (half a configuration). */
  partialGcp: string[];
  botsUser: Probe<BotsUser>;
  unit?: UnitInfo | undefined;
  /** uid/gid → name, for readable summaries. */
  names: { users: Record<number, string>; groups: Record<number, string> };
  dataDir: DataDirFacts;
  lock: LockProbe;
  instance: InstanceProbe;
  cache: Probe<CacheRead>;
  state: Probe<AgentState | undefined>;
  /** The service account doctor runs as, when known (for `gcloud … --member=` fixes). */
  identity?: string | undefined;
  /** GOOGLE_APPLICATION_CREDENTIALS, when set (named in the fix of a credential failure). */
  credentialsFile?: string | undefined;
  secret?: SecretFacts | undefined;
  pubsub?: PubSubFacts | undefined;
  clock?: ClockFacts | undefined;
  saxo: SaxoFacts;
  /** The one decision over cache, agent state and secret (checks/token-view.ts), made once per report. */
  view: TokenView;
}
