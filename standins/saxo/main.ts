/**
 * The Saxo stand-in as its own process (demo, soak, cross-process tests):
 *   node dist/standins/saxo/main.js --port 0 --access-lifetime 20 --refresh-lifetime 60 --client key:secret
 * Prints one JSON line {"event":"saxo_standin_listening","url":…} on stdout; exits 0 on SIGTERM/SIGINT.
 * Token pairs are never printed: seed one with POST /_admin/issue or --initial-token-file (0600).
 */
import { writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { startSaxoStandin } from './server.js';

function num(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a non-negative number');
  return n;
}

/** "key:secret" → confidential client; "key" or "key:" → public/PKCE client. */
function parseClient(v: string, acc: Record<string, string | null> = {}): Record<string, string | null> {
  const i = v.indexOf(':');
  const id = i < 0 ? v : v.slice(0, i);
  const secret = i < 0 ? '' : v.slice(i + 1);
  if (!id) throw new InvalidArgumentError('client id must not be empty');
  return { ...acc, [id]: secret === '' ? null : secret };
}

async function main(argv: string[]): Promise<void> {
  const cmd = new Command('saxo-standin')
    .option('--port <n>', 'port on 127.0.0.1 (0 = any free port)', num, 0)
    .option('--access-lifetime <sec>', 'access token lifetime (expires_in)', num, 1200)
    .option('--refresh-lifetime <sec>', 'refresh token lifetime (refresh_token_expires_in)', num, 3600)
    .option('--success-status <code>', '200 or 201', num, 201)
    .option('--client <id:secret>', 'accepted client (repeatable; "id" alone = PKCE client)', parseClient)
    .option('--initial-token-file <path>', 'write a seeded token pair here (mode 0600)')
    .parse(argv);
  const o = cmd.opts<{
    port: number;
    accessLifetime: number;
    refreshLifetime: number;
    successStatus: number;
    client?: Record<string, string | null>;
    initialTokenFile?: string;
  }>();
  if (o.successStatus !== 200 && o.successStatus !== 201) throw new InvalidArgumentError('--success-status must be 200 or 201');

  const standin = await startSaxoStandin({
    port: o.port,
    accessLifetimeSec: o.accessLifetime,
    refreshLifetimeSec: o.refreshLifetime,
    successStatus: o.successStatus,
    clients: o.client,
    initialRefreshToken: Boolean(o.initialTokenFile),
  });
  if (o.initialTokenFile && standin.initial) {
    writeFileSync(o.initialTokenFile, JSON.stringify(standin.initial) + '\n', { mode: 0o600 });
  }
  process.stdout.write(JSON.stringify({ severity: 'INFO', event: 'saxo_standin_listening', message: 'Saxo stand-in listening', url: standin.url, port: standin.port }) + '\n');

  const stop = (signal: string) => {
    process.stdout.write(JSON.stringify({ severity: 'INFO', event: 'saxo_standin_stopping', message: `Stopping on ${signal}` }) + '\n');
    void standin.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main(process.argv).catch((err: unknown) => {
  process.stderr.write(JSON.stringify({ severity: 'ERROR', event: 'saxo_standin_failed', message: err instanceof Error ? err.message : String(err) }) + '\n');
  process.exit(1);
});
