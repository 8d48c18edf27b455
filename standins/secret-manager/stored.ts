/**
 * What the Secret Manager stand-in stores per secret and version, and how the v1 API renders them
 * (proto-loader objects with snake_case keys). The model that changes them is state.ts.
 */
import { ts, type Msg } from './fields.js';
import type { VersionState } from './filter.js';

export interface StoredVersion {
  number: number;
  state: VersionState;
  createTime: number;
  destroyTime?: number | undefined;
  data?: Buffer | undefined;
  crc: number;
  clientChecksum: boolean;
  etag: string;
}

export interface StoredSecret {
  /** The project NUMBER: every name the service returns carries it (projects.ts). */
  project: string;
  id: string;
  createTime: number;
  replication: unknown;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  versionAliases: Record<string, number>;
  topics: unknown[];
  etag: string;
  versions: StoredVersion[];
  nextVersion: number;
}

/** A secret as the v1 API answers it. */
export function renderSecret(s: StoredSecret): Msg {
  return {
    name: `projects/${s.project}/secrets/${s.id}`,
    replication: s.replication,
    create_time: ts(s.createTime),
    labels: { ...s.labels },
    annotations: { ...s.annotations },
    version_aliases: Object.fromEntries(Object.entries(s.versionAliases).map(([k, v]) => [k, String(v)])),
    topics: s.topics,
    etag: s.etag,
  };
}

/** A version's metadata as the v1 API answers it (never its payload). */
export function renderVersion(s: StoredSecret, v: StoredVersion): Msg {
  return {
    name: `projects/${s.project}/secrets/${s.id}/versions/${v.number}`,
    create_time: ts(v.createTime),
    ...(v.destroyTime !== undefined ? { destroy_time: ts(v.destroyTime) } : {}),
    state: v.state,
    replication_status: { automatic: {} },
    etag: v.etag,
    client_specified_payload_checksum: v.clientChecksum,
  };
}
