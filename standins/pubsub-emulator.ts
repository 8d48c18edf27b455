/**
 * Launches Google's real Pub/Sub emulator (the Java jar shipped with the Cloud SDK) on 127.0.0.1
 * for tests and the demo, and kills its whole process group on stop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';

const JAR_DIRS = [
  process.env.PUBSUB_EMULATOR_JAR_DIR,
  '/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib',
  '/usr/share/google-cloud-sdk/platform/pubsub-emulator/lib',
  '/opt/google-cloud-sdk/platform/pubsub-emulator/lib',
].filter((d): d is string => Boolean(d));

export function findPubSubEmulatorJar(): string | undefined {
  for (const dir of JAR_DIRS) {
    if (!existsSync(dir)) continue;
    const jar = readdirSync(dir)
      .filter((f) => /^cloud-pubsub-emulator-.*-all\.jar$/.test(f))
      .sort()
      .pop();
    if (jar) return join(dir, jar);
  }
  return undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface PubSubEmulator {
  /** "127.0.0.1:PORT", the value for PUBSUB_EMULATOR_HOST. */
  host: string;
  port: number;
  stop(): Promise<void>;
}

export class PubSubEmulatorError extends Error {
  override readonly name = 'PubSubEmulatorError';
}

export async function startPubSubEmulator(opts: { port?: number; java?: string; startTimeoutMs?: number } = {}): Promise<PubSubEmulator> {
  const jar = findPubSubEmulatorJar();
  if (!jar) throw new PubSubEmulatorError('Pub/Sub emulator jar not found (install google-cloud-cli-pubsub-emulator)');
  const port = opts.port ?? (await freePort());
  const child: ChildProcess = spawn(opts.java ?? 'java', ['-jar', jar, '--host=127.0.0.1', `--port=${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group so stop() can kill anything the JVM starts.
    detached: true,
  });
  let output = '';
  const collect = (b: Buffer) => {
    if (output.length < 20_000) output += b.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(-1));
  });

  const kill = (signal: NodeJS.Signals) => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      /* already gone */
    }
  };
  const stop = async () => {
    kill('SIGTERM');
    const timer = setTimeout(() => kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };

  // Ready when it logs "Server started" or accepts TCP connections, whichever we see first.
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  let gone = false;
  void exited.then(() => (gone = true));
  while (!output.includes('Server started') && !(await canConnect(port))) {
    if (gone) throw new PubSubEmulatorError(`Pub/Sub emulator exited during start-up: ${output.slice(-500)}`);
    if (Date.now() > deadline) {
      await stop();
      throw new PubSubEmulatorError(`Pub/Sub emulator did not start within ${opts.startTimeoutMs ?? 30_000} ms`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { host: `127.0.0.1:${port}`, port, stop };
}
