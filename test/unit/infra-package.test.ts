/**
 * tools/package-function.mjs on fake repositories: what it copies, which dependencies it declares,
 * what it refuses, and the package-lock.json it cuts from the repository's lock (the exact tested
 * versions: nested paths kept, dev packages left out, optional ones marked). The real package is
 * installed offline and loaded in test/integration/infra-package-function.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PACKAGER = join(ROOT, 'tools', 'package-function.mjs');

const rootDeps = {
  '@google-cloud/functions-framework': '^5.0.5',
  '@google-cloud/pubsub': '^5.3.1',
  '@google-cloud/secret-manager': '^6.3.0',
  '@grpc/grpc-js': '^1.14.7',
  chokidar: '^5.0.0',
  'fs-ext': '^2.1.1',
  'openid-client': '^6.9.0',
  zod: '^4.6.7',
};

type Entry = Record<string, unknown>;
const pkgEntry = (version: string, extra: Entry = {}): Entry => ({ version, resolved: `https://registry.npmjs.org/x/-/x-${version}.tgz`, integrity: `sha512-${version}`, ...extra });

/** A lock in which every function dependency resolves, with the shapes the derivation must handle. */
function fakeLock(): Entry {
  return {
    name: 'token-keeper',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'token-keeper', version: '1.2.3', dependencies: rootDeps, devDependencies: { vitest: '4.1.12' } },
      'node_modules/@google-cloud/functions-framework': pkgEntry('5.0.5', { dependencies: { express: '^4' } }),
      'node_modules/express': pkgEntry('4.21.0', { dependencies: { debug: '2.6.9' } }),
      // express needs an older debug than the hoisted one: kept nested, at the same path.
      'node_modules/express/node_modules/debug': pkgEntry('2.6.9', { dependencies: { ms: '2.0.0' } }),
      'node_modules/express/node_modules/ms': pkgEntry('2.0.0'),
      'node_modules/debug': pkgEntry('4.4.0', { dev: true, dependencies: { ms: '^2.1.3' } }),
      'node_modules/ms': pkgEntry('2.1.3', { dev: true }),
      'node_modules/@google-cloud/pubsub': pkgEntry('5.3.1', { dependencies: { 'google-gax': '^5' } }),
      'node_modules/@google-cloud/secret-manager': pkgEntry('6.3.0', { dependencies: { 'google-gax': '^5' } }),
      'node_modules/google-gax': pkgEntry('5.0.1', { optionalDependencies: { 'fast-native': '^1' }, peerDependencies: { 'opt-peer': '*' }, peerDependenciesMeta: { 'opt-peer': { optional: true } } }),
      'node_modules/fast-native': pkgEntry('1.0.0', { optional: true, os: ['linux'] }),
      'node_modules/@grpc/grpc-js': pkgEntry('1.14.7'),
      'node_modules/openid-client': pkgEntry('6.9.0', { dependencies: { jose: '^6' } }),
      'node_modules/jose': pkgEntry('6.0.0'),
      'node_modules/zod': pkgEntry('4.6.7'),
      'node_modules/chokidar': pkgEntry('5.0.0'),
      'node_modules/fs-ext': pkgEntry('2.1.1', { hasInstallScript: true }),
      'node_modules/vitest': pkgEntry('4.1.12', { dev: true, dependencies: { debug: '^4' } }),
    },
  };
}

describe('tools/package-function.mjs', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tk-pkgfn-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function fakeRepo(name: string, files: Record<string, string>, lock: Entry | null = fakeLock()): string {
    const root = join(dir, name);
    for (const [p, text] of Object.entries(files)) {
      mkdirSync(dirname(join(root, p)), { recursive: true });
      writeFileSync(join(root, p), text);
    }
    writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'token-keeper', version: '1.2.3', dependencies: rootDeps }));
    if (lock) writeFileSync(join(root, 'package-lock.json'), JSON.stringify(lock));
    return root;
  }
  const run = (root: string) => spawnSync(process.execPath, [PACKAGER, '--no-build', '--root', root], { encoding: 'utf8' });
  const okFiles = {
    'dist/functions/index.js':
      "import { readFileSync } from 'node:fs';\nimport { a } from '../core/a.js';\nimport {\n  http,\n} from '@google-cloud/functions-framework';\nimport { z } from 'zod';\nexport const x = 1;\n",
    'dist/functions/index.js.map': '{}',
    'dist/functions/index.d.ts': 'export {};',
    'dist/core/a.js':
      "import * as grpc from '@grpc/grpc-js';\nexport const a = 1; // we import tokens from 'the secret'\nexport function f() {\n  return 'none';\n}\nexport * as t from './t.js';\n",
    'dist/core/t.js': "import type from 'zod';\nexport {};\n",
    'dist/core/gcp/b.js': "export const b = await import('./c.js');\n",
    // Not reachable from the entry: copied, but its VM-only import does not count.
    'dist/core/watch.js': "import chokidar from 'chokidar';\n",
    'dist/agent/cli.js': "import 'fs-ext';\n",
  };

  it('copies dist/core and dist/functions and writes a package.json without native deps', () => {
    const root = fakeRepo('ok', okFiles);
    const r = run(root);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = join(root, 'build', 'function');
    const pkg = JSON.parse(readFileSync(join(out, 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({ type: 'module', main: 'functions/index.js', engines: { node: '24' }, version: '1.2.3' });
    expect(pkg.dependencies).toEqual({
      '@google-cloud/functions-framework': '^5.0.5',
      '@google-cloud/pubsub': '^5.3.1',
      '@google-cloud/secret-manager': '^6.3.0',
      '@grpc/grpc-js': '^1.14.7',
      'openid-client': '^6.9.0',
      zod: '^4.6.7',
    });
    expect(existsSync(join(out, 'core', 'a.js'))).toBe(true);
    expect(existsSync(join(out, 'core', 'gcp', 'b.js'))).toBe(true);
    expect(existsSync(join(out, 'functions', 'index.js.map'))).toBe(false);
    expect(existsSync(join(out, 'functions', 'index.d.ts'))).toBe(false);
    expect(existsSync(join(out, 'agent'))).toBe(false);
  });

  it("ships a lock cut from the repository's: the function's closure at the same paths, nothing dev", () => {
    const root = fakeRepo('lock', okFiles);
    expect(run(root).status).toBe(0);
    const out = join(root, 'build', 'function');
    const pkg = JSON.parse(readFileSync(join(out, 'package.json'), 'utf8'));
    const lock = JSON.parse(readFileSync(join(out, 'package-lock.json'), 'utf8'));
    const source = fakeLock().packages as Record<string, Entry>;
    expect(lock).toMatchObject({ name: 'token-keeper-function', version: '1.2.3', lockfileVersion: 3, requires: true });
    // npm ci demands that the lock's root entry matches package.json.
    expect(lock.packages['']).toEqual({ name: 'token-keeper-function', version: '1.2.3', dependencies: pkg.dependencies, engines: { node: '24' } });
    expect(Object.keys(lock.packages).sort()).toEqual([
      '',
      'node_modules/@google-cloud/functions-framework',
      'node_modules/@google-cloud/pubsub',
      'node_modules/@google-cloud/secret-manager',
      'node_modules/@grpc/grpc-js',
      'node_modules/express',
      'node_modules/express/node_modules/debug',
      'node_modules/express/node_modules/ms',
      'node_modules/fast-native',
      'node_modules/google-gax',
      'node_modules/jose',
      'node_modules/openid-client',
      'node_modules/zod',
    ]);
    // Versions and integrity exactly as tested; flags recomputed.
    for (const [at, entry] of Object.entries(lock.packages as Record<string, Entry>)) {
      if (at === '') continue;
      expect(entry.integrity, at).toBe(source[at]!.integrity);
      expect(entry.version, at).toBe(source[at]!.version);
      expect(entry.dev, at).toBeUndefined();
    }
    expect(lock.packages['node_modules/fast-native']).toMatchObject({ optional: true, os: ['linux'] });
    expect(lock.packages['node_modules/google-gax'].optional).toBeUndefined();
  });

  it('refuses to package without a lock, or with a dependency the lock lacks', () => {
    const none = run(fakeRepo('nolock', okFiles, null));
    expect(none.status).toBe(1);
    expect(none.stderr).toContain('package-lock.json is missing');
    const partial = fakeLock();
    delete (partial.packages as Record<string, Entry>)['node_modules/jose'];
    const r = run(fakeRepo('partial', okFiles, partial));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('jose (needed by node_modules/openid-client) is not in package-lock.json');
  });

  it('refuses a function that reaches a native module or code outside core/ and functions/', () => {
    const native = fakeRepo('native', {
      'dist/functions/index.js': "export * from '../core/lock.js';\n",
      'dist/core/lock.js': "import fsExt from 'fs-ext';\nexport const l = fsExt;\n",
    });
    const r1 = run(native);
    expect(r1.status).toBe(1);
    expect(r1.stderr).toContain('fs-ext');
    const agent = fakeRepo('agent', {
      'dist/functions/index.js': "import { c } from '../agent/cli.js';\n",
      'dist/core/x.js': '',
      'dist/agent/cli.js': 'export const c = 1;\n',
    });
    const r2 = run(agent);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toContain('../agent/cli.js');
  });

  const built = existsSync(join(ROOT, 'dist', 'functions', 'index.js'));
  it.skipIf(!built)(
    built ? "packages the real function with a lock of the repository's exact versions" : 'packages the real function (SKIPPED: dist/functions not built; run npm run build)',
    () => {
      const out = join(dir, 'real');
      const r = spawnSync(process.execPath, [PACKAGER, '--no-build', '--out', out], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const pkg = JSON.parse(readFileSync(join(out, 'package.json'), 'utf8'));
      expect(Object.keys(pkg.dependencies)).not.toContain('fs-ext');
      const lock = JSON.parse(readFileSync(join(out, 'package-lock.json'), 'utf8'));
      const rootLock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
      for (const name of Object.keys(pkg.dependencies)) {
        expect(lock.packages[`node_modules/${name}`]?.version, name).toBe(rootLock.packages[`node_modules/${name}`].version);
      }
      for (const at of Object.keys(lock.packages)) expect(at === '' || at in rootLock.packages, at).toBe(true);
      expect(Object.keys(lock.packages).filter((k) => /node_modules\/(fs-ext|chokidar|vitest|typescript|eslint)$/.test(k))).toEqual([]);
    },
  );
});
