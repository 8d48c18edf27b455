#!/usr/bin/env node
// Builds the Cloud Function's deploy package in build/function/: the compiled dist/core and
// dist/functions, a package.json whose dependencies need no native build (fs-ext is the agent's
// only), so Cloud Build never runs node-gyp, and a package-lock.json cut from the repository's own
// lock: exactly the versions (and integrity hashes) the tests ran with, and nothing else. Cloud
// Build's Node.js buildpack runs `npm ci` when a lock is present, so no `^` range is resolved at
// build time. Terraform zips the directory.
//
// Usage: node tools/package-function.mjs [--no-build] [--root DIR] [--out DIR]
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

/** Always shipped: the function's runtime. */
const BASE_DEPS = [
  '@google-cloud/functions-framework',
  '@google-cloud/secret-manager',
  '@google-cloud/pubsub',
  'openid-client',
  'zod',
];
/** Need a native build or only make sense on the VM: must never be reachable from the function. */
const FORBIDDEN = new Set(['fs-ext', 'chokidar']);
const ENTRY = 'functions/index.js';

class PackageError extends Error {}

function parseArgs(argv) {
  const opts = { build: true, root: resolve(dirname(fileURLToPath(import.meta.url)), '..'), out: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--no-build') opts.build = false;
    else if (a === '--root' && argv[i + 1]) opts.root = resolve(argv[++i]);
    else if (a === '--out' && argv[i + 1]) opts.out = resolve(argv[++i]);
    else throw new PackageError(`unknown argument: ${a}`);
  }
  opts.out ??= join(opts.root, 'build', 'function');
  return opts;
}

function build(root) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new PackageError('TypeScript build failed');
}

function copyJs(from, to) {
  cpSync(from, to, {
    recursive: true,
    // Only runtime code: no .d.ts, no source maps pointing at sources that are not shipped.
    filter: (src) => statSync(src).isDirectory() || src.endsWith('.js'),
  });
}

// `import x, { a as b } from 'm'`, `import 'm'`, `export * from 'm'` (tsc output: one per line start).
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?:[\w$*{}\s,]+?\s*from\s*)?['"]([^'"\s]+)['"]/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*['"]([^'"\s]+)['"]\s*\)/g;
const BUILTINS = new Set(builtinModules);

function specifiers(code) {
  const out = [];
  for (const re of [STATIC_IMPORT, DYNAMIC_IMPORT]) for (const m of code.matchAll(re)) out.push(m[1]);
  return out;
}

function packageName(spec) {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** Walks the import graph from the entry; returns the bare packages reachable from it. */
function reachablePackages(outDir) {
  const seen = new Set();
  const packages = new Map(); // name -> first importer
  const stack = [join(outDir, ENTRY)];
  while (stack.length) {
    const file = stack.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of specifiers(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec);
        const rel = relative(outDir, target);
        if (rel.split(sep)[0] === '..' || !existsSync(target)) {
          throw new PackageError(`${relative(outDir, file)} imports ${spec}, which is not in the package (only core/ and functions/ are shipped)`);
        }
        stack.push(target);
      } else if (!spec.startsWith('node:') && !BUILTINS.has(spec)) {
        const name = packageName(spec);
        if (!packages.has(name)) packages.set(name, relative(outDir, file));
      }
    }
  }
  return packages;
}

/** The location a package at `loc` resolves `name` from: its own node_modules, then each parent's. */
function resolveIn(packages, loc, name) {
  for (let at = loc; ; ) {
    const candidate = `${at ? `${at}/` : ''}node_modules/${name}`;
    if (packages[candidate]) return candidate;
    if (at === '') return undefined;
    const i = at.lastIndexOf('/node_modules/');
    at = i < 0 ? '' : at.slice(0, i);
  }
}

/**
 * A lockfile (v3) for `dependencies`, cut from the root lock: every package reachable from them
 * through dependencies, optionalDependencies and non-optional peerDependencies, at the same path
 * (so npm resolves each one exactly as it did in the repository). Flags are recomputed: nothing is
 * dev; optional only when reached through optional edges alone.
 */
function deriveLock(rootLock, pkg) {
  if (rootLock.lockfileVersion < 2 || !rootLock.packages) throw new PackageError('package-lock.json must be lockfileVersion 2 or 3 (npm >= 7)');
  const packages = rootLock.packages;
  const required = new Set();
  const reached = new Set();
  const queue = Object.keys(pkg.dependencies).map((name) => ({ from: '', name, optional: false }));
  while (queue.length) {
    const { from, name, optional } = queue.shift();
    const at = resolveIn(packages, from, name);
    if (!at) {
      if (optional) continue;
      throw new PackageError(`${name} (needed by ${from || 'the function'}) is not in package-lock.json; run npm install`);
    }
    if (packages[at].link) throw new PackageError(`${at} is a link (workspace); the function package cannot ship it`);
    const seenRequired = required.has(at);
    if (reached.has(at) && (optional || seenRequired)) continue;
    reached.add(at);
    if (!optional) required.add(at);
    const entry = packages[at];
    const peerMeta = entry.peerDependenciesMeta ?? {};
    for (const dep of Object.keys(entry.dependencies ?? {})) queue.push({ from: at, name: dep, optional });
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) queue.push({ from: at, name: dep, optional: true });
    for (const dep of Object.keys(entry.peerDependencies ?? {})) queue.push({ from: at, name: dep, optional: optional || peerMeta[dep]?.optional === true });
  }
  const out = {
    '': { name: pkg.name, version: pkg.version, dependencies: pkg.dependencies, ...(pkg.engines ? { engines: pkg.engines } : {}) },
  };
  for (const at of [...reached].sort()) {
    const { dev: _dev, devOptional: _devOptional, optional: _optional, peer: _peer, ...entry } = packages[at];
    out[at] = required.has(at) ? entry : { ...entry, optional: true };
  }
  return { name: pkg.name, version: pkg.version, lockfileVersion: 3, requires: true, packages: out };
}

function main(argv) {
  const opts = parseArgs(argv);
  const rootPkg = JSON.parse(readFileSync(join(opts.root, 'package.json'), 'utf8'));
  if (opts.build) build(opts.root);
  const dist = join(opts.root, 'dist');
  if (!existsSync(join(dist, ENTRY))) throw new PackageError(`${join(dist, ENTRY)} is missing; run npm run build`);

  rmSync(opts.out, { recursive: true, force: true });
  mkdirSync(opts.out, { recursive: true });
  copyJs(join(dist, 'core'), join(opts.out, 'core'));
  copyJs(join(dist, 'functions'), join(opts.out, 'functions'));

  const rootDeps = rootPkg.dependencies ?? {};
  const names = new Set(BASE_DEPS);
  for (const [name, importer] of reachablePackages(opts.out)) {
    if (FORBIDDEN.has(name)) throw new PackageError(`${importer} imports ${name}, which the function must not need (native / VM-only)`);
    if (!(name in rootDeps)) throw new PackageError(`${importer} imports ${name}, which is not a dependency in package.json`);
    names.add(name);
  }
  const dependencies = {};
  for (const name of [...names].sort()) {
    if (!(name in rootDeps)) throw new PackageError(`${name} is missing from package.json dependencies`);
    dependencies[name] = rootDeps[name];
  }
  const pkg = {
    name: `${rootPkg.name}-function`,
    version: rootPkg.version,
    private: true,
    description: 'token-keeper Cloud Function (generated by tools/package-function.mjs; do not edit)',
    type: 'module',
    main: ENTRY,
    engines: { node: '24' },
    dependencies,
  };
  writeFileSync(join(opts.out, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
  const lockPath = join(opts.root, 'package-lock.json');
  if (!existsSync(lockPath)) throw new PackageError(`${lockPath} is missing: the function ships the tested versions from it`);
  const lock = deriveLock(JSON.parse(readFileSync(lockPath, 'utf8')), pkg);
  writeFileSync(join(opts.out, 'package-lock.json'), JSON.stringify(lock, null, 2) + '\n');
  process.stdout.write(
    `package-function: wrote ${relative(process.cwd(), opts.out) || '.'} (deps: ${Object.keys(dependencies).join(', ')}; ` +
      `${Object.keys(lock.packages).length - 1} locked packages)\n`,
  );
}

try {
  main(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof PackageError)) throw err;
  process.stderr.write(`package-function: ${err.message}\n`);
  process.exitCode = 1;
}
