/**
 * The demo bot as its own process (a real bot is one): `node bot-main.js --data-dir D --saxo-url U
 * --buffer S --margin S --interval S`, app credentials from SAXO_APP_KEY / SAXO_APP_SECRET (never
 * argv, I5). One JSON line per tick on stdout; SIGTERM finishes the current tick, then exits 0.
 */
import { parseArgs } from 'node:util';
import { DemoBot } from './bot.js';

const { values } = parseArgs({
  options: {
    'data-dir': { type: 'string' },
    'saxo-url': { type: 'string' },
    buffer: { type: 'string', default: '120' },
    margin: { type: 'string', default: '60' },
    interval: { type: 'string', default: '1' },
  },
});

const dataDir = values['data-dir'];
const saxoUrl = values['saxo-url'];
if (!dataDir || !saxoUrl) {
  process.stderr.write('bot: --data-dir and --saxo-url are required\n');
  process.exit(2);
}
const bot = new DemoBot({
  dataDir,
  saxoUrl,
  appKey: process.env.SAXO_APP_KEY ?? '',
  appSecret: process.env.SAXO_APP_SECRET ?? '',
  bufferSec: Number(values.buffer),
  marginSec: Number(values.margin),
});
const intervalMs = Number(values.interval) * 1000;

let stopping = false;
let wake: (() => void) | undefined;
const stop = () => {
  stopping = true;
  wake?.();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

process.stdout.write(JSON.stringify({ ready: true, pid: process.pid }) + '\n');
while (!stopping) {
  const rec = await bot.tick();
  process.stdout.write(JSON.stringify(rec) + '\n');
  if (stopping) break;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, intervalMs);
    wake = () => {
      clearTimeout(t);
      resolve();
    };
  });
}
process.exit(0);
