/**
 * Client construction for Secret Manager and Pub/Sub. Imports are dynamic so a process that never
 * talks to GCP (standalone agent, CLI status without GCP) does not load the gRPC stacks (memory).
 */
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import type { PubSub } from '@google-cloud/pubsub';
import type { GcpConfig } from '../config.js';
import { ConfigError } from '../errors.js';

/** "host:port" → parts; only used for the local emulator / stand-in settings. */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`${what} must be host:port, got "${value}"`);
  }
  return { host: m[1]!, port };
}

/**
 * Secret Manager client. With `secretManagerEmulatorHost` it speaks plaintext gRPC to that address
 * (the stand-in; DESIGN §7), otherwise the real service with Application Default Credentials.
 */
export async function createSecretManagerClient(
  gcp: Pick<GcpConfig, 'projectId' | 'secretManagerEmulatorHost'>,
): Promise<SecretManagerServiceClient> {
  const { SecretManagerServiceClient } = await import('@google-cloud/secret-manager');
  if (gcp.secretManagerEmulatorHost) {
    const { host, port } = parseHostPort(gcp.secretManagerEmulatorHost, 'SECRET_MANAGER_EMULATOR_HOST');
    const grpc = await import('@grpc/grpc-js');
    return new SecretManagerServiceClient({
      projectId: gcp.projectId,
      apiEndpoint: host,
      port,
      sslCreds: grpc.credentials.createInsecure(),
      universeDomain: 'googleapis.com',
    });
  }
  return new SecretManagerServiceClient({ projectId: gcp.projectId });
}

/** Pub/Sub client; `pubsubEmulatorHost` selects the local emulator (no credentials). */
export async function createPubSub(gcp: Pick<GcpConfig, 'projectId' | 'pubsubEmulatorHost'>): Promise<PubSub> {
  const { PubSub } = await import('@google-cloud/pubsub');
  if (gcp.pubsubEmulatorHost) {
    parseHostPort(gcp.pubsubEmulatorHost, 'PUBSUB_EMULATOR_HOST');
    return new PubSub({ projectId: gcp.projectId, apiEndpoint: gcp.pubsubEmulatorHost, emulatorMode: true });
  }
  return new PubSub({ projectId: gcp.projectId });
}
