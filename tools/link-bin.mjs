// `npx token-keeper` from the repo root looks in node_modules/.bin, where npm never links the root
// package's own bin. Link it there after install (run by the "prepare" script).
import { mkdirSync, rmSync, symlinkSync, chmodSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binDir = join(root, 'node_modules', '.bin');
const target = join(root, 'bin', 'token-keeper.js');
mkdirSync(binDir, { recursive: true });
const link = join(binDir, 'token-keeper');
rmSync(link, { force: true });
symlinkSync(relative(binDir, target), link);
chmodSync(target, 0o755);
