/** The environment variable names core/config.ts reads, for the infra-* tests that check docs and units against them. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './terraform.js';

/** Every `env.NAME` and `env, 'NAME'` in core/config.ts. */
export function configEnvNames(): Set<string> {
  const src = readFileSync(join(ROOT, 'core', 'config.ts'), 'utf8');
  const names = new Set<string>();
  for (const m of src.matchAll(/env\.([A-Z][A-Z0-9_]+)/g)) names.add(m[1]!);
  for (const m of src.matchAll(/env,\s*'([A-Z][A-Z0-9_]+)'/g)) names.add(m[1]!);
  return names;
}
