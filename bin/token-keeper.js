#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=1 --optimize-for-size --v8-pool-size=1 --no-maglev
// Flags and environment as agent/runtime-flags.ts (memory; see docs/BENCHMARKS.md).
// Thin launcher: the CLI is compiled to dist/ by `npm ci` / `npm install` (the "prepare" script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'agent', 'cli.js');
if (!existsSync(entry)) {
  console.error('token-keeper: dist/ is missing; run `npm ci` (or `npm run build`) in ' + root);
  process.exit(2);
}
const { main } = await import(entry);
process.exitCode = await main(process.argv.slice(2));
