/**
 * The fleet's save to the shared secret, performed for test/helpers/python_bot.py.
 *
 * After its own fallback refresh a bot (the fleet's TokenCoordinator, DESIGN §3) saves the pair to
 * Secret Manager: it reads the latest version's payload, replaces only access_token, refresh_token
 * and token_expiry, and adds the result as a new version; newer fleet releases then destroy the
 * previous version. Every other key of the previous version — ours included (generation,
 * refresh_token_expiry, issued_at, source, pair_id) — is carried over verbatim, describing the pair
 * the bot started from. PyPI is not reachable here, so the Python model cannot run the gRPC client:
 * it writes the three values to a file (`--secret-save FILE`), and this module does exactly that
 * algorithm with the real client against the Secret Manager stand-in. No checksum is sent (the
 * fleet's client does not set one) and the JSON is written as Python's json.dumps writes it.
 */
import { readFileSync } from 'node:fs';
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';

export interface FleetSaved {
  /** The version the bot added. */
  added: string;
  /** The version it read (and destroyed, when asked). */
  previous: string;
  /** The payload it wrote, as an object. */
  payload: Record<string, unknown>;
}

/** Python's json.dumps(obj) with default separators. */
function pythonDumps(o: Record<string, unknown>): string {
  return '{' + Object.entries(o).map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ') + '}';
}

export async function fleetSaveToSecret(
  client: SecretManagerServiceClient,
  secretName: string,
  savedFile: string,
  opts: { destroyPrevious: boolean },
): Promise<FleetSaved> {
  const saved = JSON.parse(readFileSync(savedFile, 'utf8')) as { access_token: string; refresh_token: string; token_expiry: string };
  const [latest] = await client.accessSecretVersion({ name: `${secretName}/versions/latest` });
  const payload = JSON.parse(Buffer.from(latest.payload?.data ?? []).toString('utf8')) as Record<string, unknown>;
  payload.access_token = saved.access_token;
  payload.refresh_token = saved.refresh_token;
  payload.token_expiry = saved.token_expiry;
  const [v] = await client.addSecretVersion({ parent: secretName, payload: { data: Buffer.from(pythonDumps(payload), 'utf8') } });
  const previous = latest.name ?? '';
  if (opts.destroyPrevious && previous) await client.destroySecretVersion({ name: previous });
  return { added: v.name ?? '', previous, payload };
}
