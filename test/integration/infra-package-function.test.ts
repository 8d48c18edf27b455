/**
 * Reproducible function builds: the directory `npm run package:function` writes is installed the way
 * Cloud Build's Node.js buildpack installs it when a lock is present (`npm ci`, production only),
 * offline from the npm cache the repository's own `npm ci` filled - so only what the lock names, at
 * the tested versions, can be installed - and functions-framework then loads `refreshToken` from it
 * and serves it on 127.0.0.1.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PACKAGER = join(ROOT, 'tools', 'package-function.mjs');
const NPM_CLI = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');

/** Every installed package (path under node_modules -> version), nested ones included. */
function installed(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(join(dir, 'node_modules'), { recursive: true, withFileTypes: true })) {
    if (e.name !== 'package.json') continue;
    const rel = join(e.parentPath, e.name).slice(dir.length + 1).replace(/\/package\.json$/, '');
    // A package's own dir: node_modules/<name> or node_modules/@scope/<name>, possibly nested.
    if (!/^node_modules\/(@[^/]+\/)?[^/@][^/]*(\/node_modules\/(@[^/]+\/)?[^/@][^/]*)*$/.test(rel)) continue;
    out[rel] = (JSON.parse(readFileSync(join(e.parentPath, e.name), 'utf8')) as { version: string }).version;
  }
  return out;
}

describe('the packaged function (npm run package:function)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tk-fnpkg-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('installs with npm ci --omit=dev offline from its lock, exactly the tested versions, and serves refreshToken', async () => {
    expect(existsSync(join(ROOT, 'dist', 'functions', 'index.js')), 'run npm run build first').toBe(true);
    const pack = spawnSync(process.execPath, [PACKAGER, '--no-build', '--out', join(dir, 'pkg')], { encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    // A copy outside the repository, so nothing resolves from the repository's node_modules.
    const app = join(dir, 'app');
    cpSync(join(dir, 'pkg'), app, { recursive: true });

    const npm = existsSync(NPM_CLI) ? [process.execPath, NPM_CLI] : ['npm'];
    const ci = spawnSync(npm[0]!, [...npm.slice(1), 'ci', '--omit=dev', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: app,
      encoding: 'utf8',
      env: { ...process.env, npm_config_engine_strict: 'false' },
      timeout: 120_000,
    });
    expect(ci.status, `npm ci --offline failed (is the npm cache filled by the repository's npm ci?): ${ci.stderr}`).toBe(0);

    // Exactly the lock, at the versions the repository's tests ran with.
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; optional?: boolean }> };
    const rootLock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> };
    const got = installed(app);
    for (const [at, entry] of Object.entries(lock.packages)) {
      if (at === '') continue;
      if (entry.optional && !(at in got)) continue; // platform-specific optional packages
      expect(got[at], at).toBe(entry.version);
      expect(entry.version, at).toBe(rootLock.packages[at]!.version);
    }
    for (const at of Object.keys(got)) expect(at in lock.packages, `${at} installed but not locked`).toBe(true);
    expect(Object.keys(got).some((k) => /\/(fs-ext|chokidar)$/.test(k))).toBe(false);

    // functions-framework (the package's own copy) loads the entry point and serves it on loopback.
    const probe = `
      await import('./functions/index.js');
      const { getTestServer } = await import('@google-cloud/functions-framework/testing');
      const fw = import.meta.resolve('@google-cloud/functions-framework');
      const server = getTestServer('refreshToken');
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      const res = await fetch('http://127.0.0.1:' + server.address().port + '/', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"source":"test"}',
      });
      process.stdout.write(JSON.stringify({ fw, status: res.status, body: await res.json() }) + '\\n');
      server.close();`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', probe], {
      cwd: app,
      // No GCP settings: the handler must answer (a configuration failure), not crash or hang.
      env: { PATH: process.env.PATH ?? '', METADATA_SERVER_DETECTION: 'none', LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code, err).toBe(0);
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as { fw: string; status: number; body: unknown };
    expect(result.fw.startsWith(`file://${app}/node_modules/`), result.fw).toBe(true);
    // The handler ran (no GCP settings: it answers 500 and logs why), it did not crash or hang.
    expect(result.status).toBe(500);
    expect(result.body).toMatchObject({ reason: 'internal' });
    expect(out).toContain('"event":"function_error"');
  }, 120_000);
});
