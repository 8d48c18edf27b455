/**
 * infra/terraform parsed offline with @cdktf/hcl2json (no providers needed), for the infra-* tests:
 * every .tf file of a directory merged into one view, and small accessors.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '@cdktf/hcl2json';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TF_DIR = join(ROOT, 'infra', 'terraform');

export type Block = Record<string, unknown>;
export interface Tf {
  resource: Record<string, Record<string, Block[]>>;
  data: Record<string, Record<string, Block[]>>;
  module: Record<string, Block[]>;
  output: Record<string, Block[]>;
  variable: Record<string, Block[]>;
  locals: Block;
}

/** Every .tf file of a directory merged into one view (hcl2json keeps `${...}` expressions as text). */
export async function loadTerraform(dir: string): Promise<Tf> {
  const tf: Tf = { resource: {}, data: {}, module: {}, output: {}, variable: {}, locals: {} };
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.tf')).sort()) {
    const parsed = (await parse(f, readFileSync(join(dir, f), 'utf8'))) as Partial<Tf>;
    for (const kind of ['resource', 'data'] as const) {
      for (const [type, byName] of Object.entries(parsed[kind] ?? {})) tf[kind][type] = { ...(tf[kind][type] ?? {}), ...byName };
    }
    Object.assign(tf.module, parsed.module ?? {});
    Object.assign(tf.output, parsed.output ?? {});
    Object.assign(tf.variable, parsed.variable ?? {});
    for (const l of (parsed.locals ?? []) as unknown as Block[]) Object.assign(tf.locals, l);
  }
  return tf;
}

/** All resources as [type, name, body]. */
export function allResources(tf: Tf): Array<[string, string, Block]> {
  return Object.entries(tf.resource).flatMap(([type, byName]) =>
    Object.entries(byName).map(([name, blocks]) => [type, name, blocks[0] ?? {}] as [string, string, Block]),
  );
}

export function one(tf: Tf, type: string, name: string): Block {
  const b = tf.resource[type]?.[name]?.[0];
  if (!b) throw new Error(`missing resource ${type}.${name}`);
  return b;
}

export function sub(block: Block, key: string): Block {
  const v = block[key];
  const b = Array.isArray(v) ? (v[0] as Block | undefined) : undefined;
  if (!b) throw new Error(`missing block ${key}`);
  return b;
}
