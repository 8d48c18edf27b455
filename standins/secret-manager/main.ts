/**
 * Runs the Secret Manager stand-in as its own process (demo, cross-process tests).
 * Prints one JSON line when listening; exits 0 on SIGTERM/SIGINT.
 * Usage: tsx standins/secret-manager/main.ts [--port N]   (or SECRET_MANAGER_PORT=N)
 * Answers carry project numbers; SECRET_MANAGER_PROJECT_NUMBER sets the first one (default 123456789012).
 */
import { startSecretManagerServer, type SecretManagerServer } from './server.js';

function portArg(argv: string[]): number {
  const i = argv.indexOf('--port');
  const raw = i >= 0 ? argv[i + 1] : process.env.SECRET_MANAGER_PORT;
  const n = raw === undefined ? 0 : Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write(`invalid port "${raw}"\n`);
    process.exit(2);
  }
  return n;
}

// Handlers go in before start-up so a signal at any moment ends in a clean exit 0.
let stopping = false;
const running: { server?: SecretManagerServer } = {};
const stop = () => {
  if (stopping) return;
  stopping = true;
  void (running.server ? running.server.close() : Promise.resolve()).then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

const server = await startSecretManagerServer({
  port: portArg(process.argv.slice(2)),
  projects: { firstNumber: process.env.SECRET_MANAGER_PROJECT_NUMBER || undefined },
});
running.server = server;
if (stopping) await server.close();
else process.stdout.write(JSON.stringify({ event: 'secret_manager_listening', host: server.host }) + '\n');
