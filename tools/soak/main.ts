/**
 * `npm run soak`: a seeded, virtual-time week of the whole system under injected faults.
 * Flags: --days D (7), --seed N, --seeds K, --break lease|generation|recovery, --verbose.
 * Exit 0 only when no invariant was violated.
 */
import { randomInt } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { runSoak } from './sim.js';
import type { BreakMode } from './procs.js';

export interface SoakArgs {
  days: number;
  seed: number;
  seeds: number;
  breakMode?: BreakMode | undefined;
  verbose: boolean;
}

export function parseArgs(argv: string[]): SoakArgs {
  const a: SoakArgs = { days: 7, seed: randomInt(1, 2 ** 31 - 1), seeds: 1, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    const int = (min: number) => {
      const v = val();
      if (!/^\d+$/.test(v) || Number(v) < min) throw new Error(`${k} needs an integer >= ${min}, got ${v}`);
      return Number(v);
    };
    if (k === '--days') a.days = int(1);
    else if (k === '--seed') a.seed = int(0);
    else if (k === '--seeds') a.seeds = int(1);
    else if (k === '--verbose') a.verbose = true;
    else if (k === '--break') {
      const v = val();
      if (v !== 'lease' && v !== 'generation' && v !== 'recovery') throw new Error(`--break must be lease, generation or recovery, got ${v}`);
      a.breakMode = v;
    } else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

/** Runs the soak, printing through `print`; resolves with the process exit code. */
export async function main(argv: string[], print: (line: string) => void = (l) => console.log(l)): Promise<number> {
  let args: SoakArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    print(`soak: ${(err as Error).message}`);
    return 2;
  }
  if (args.seeds === 1) {
    const r = await runSoak({ seed: args.seed, days: args.days, breakMode: args.breakMode, verbose: args.verbose });
    for (const l of r.lines) print(l);
    return r.violations.length === 0 ? 0 : 1;
  }
  print(`soak: seeds ${args.seed}..${args.seed + args.seeds - 1}`);
  let refreshes = 0;
  let violations = 0;
  for (let s = args.seed; s < args.seed + args.seeds; s++) {
    const r = await runSoak({ seed: s, days: args.days, breakMode: args.breakMode, verbose: args.verbose });
    if (args.verbose) for (const l of r.lines) print(l);
    const kinds = [...new Set(r.violations.map((x) => x.kind))].join(',');
    print(`seed ${s}: ${args.days} days, ${r.refreshes} refreshes, ${r.violations.length} violations${kinds ? ` (${kinds})` : ''}, ` +
      `${r.downtimeSec} s without a token, ${r.lostToSaxo} pairs lost to Saxo`);
    refreshes += r.refreshes;
    violations += r.violations.length;
  }
  print(`soak: ${args.seeds} seeds × ${args.days} days, ${refreshes} refreshes, ${violations} violations`);
  return violations === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
    console.error(err);
    process.exit(2);
  });
}
