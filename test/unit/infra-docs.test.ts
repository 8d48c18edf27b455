/**
 * docs/OPERATIONS.md against the real system: the unit, VM and CLI names, env vars the code reads,
 * the first deployment in an order that works (Service Usage, the secrets by a targeted apply,
 * their values on stdin, then the full apply), a second chain, an upgrade, and the doctor line.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { configEnvNames } from '../helpers/config-env.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const guide = readFileSync(join(ROOT, 'docs', 'OPERATIONS.md'), 'utf8');
const DOCTOR_LINE = 'Run `npx token-keeper doctor` after every deploy and first when troubleshooting.';

/** The bash blocks of one `## Section` (up to the next `## `). */
function section(title: string): { text: string; commands: string[] } {
  const start = guide.indexOf(`\n## ${title}\n`);
  expect(start, `section "${title}"`).toBeGreaterThan(0);
  const end = guide.indexOf('\n## ', start + 4);
  const text = guide.slice(start, end < 0 ? undefined : end);
  const commands = [...text.matchAll(/```bash\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n')).filter((l) => l.trim() && !l.trim().startsWith('#'));
  return { text, commands };
}

/** Index of the first command line matching `re`, failing if there is none. */
function at(commands: string[], re: RegExp): number {
  const i = commands.findIndex((l) => re.test(l));
  expect(i, `a command matching ${re}`).toBeGreaterThanOrEqual(0);
  return i;
}

const allCommands = [...guide.matchAll(/```bash\n([\s\S]*?)```/g)].map((m) => m[1]!).join('\n');

describe('docs/OPERATIONS.md', () => {
  it('uses the real unit, VM, CLI subcommands and flags', () => {
    expect(allCommands).toContain('--zone=us-east1-b');
    for (const verb of ['start', 'stop', 'restart', 'status']) expect(allCommands).toContain(`sudo systemctl ${verb} token-keeper`);
    expect(allCommands).toContain('journalctl -u token-keeper');
    // The old unit name only appears where the Python keeper is stopped.
    for (const line of allCommands.split('\n').filter((l) => /token_keeper\b/.test(l))) expect(line).toMatch(/stop|disable|mask|Before=|grep/);
    const cli = [...allCommands.matchAll(/token-keeper(?:\.js)? ([a-z][a-z-]*)((?: --?[a-z-]+)*)/g)];
    expect(cli.length).toBeGreaterThan(3);
    const allowed: Record<string, string[]> = {
      agent: [],
      status: ['--json', '--chain'],
      refresh: ['--force', '--chain'],
      login: ['--force', '--no-open', '--timeout', '--target', '--import', '--link', '--chain'],
      demo: ['--duration'],
      doctor: ['--json', '--chain', '--bots-user', '--unit'],
    };
    for (const [, verb, flags] of cli) {
      expect(Object.keys(allowed), `unknown subcommand: ${verb}`).toContain(verb);
      for (const f of (flags ?? '').trim().split(/\s+/).filter(Boolean)) expect(allowed[verb!], `${verb} ${f}`).toContain(f);
    }
  });

  it('mentions only env vars the code reads, never deletes the lock file, never puts a secret on a command line', () => {
    const known = new Set([...configEnvNames(), 'CI', 'PATH', 'HOME', 'DESTDIR', 'BOT_UNITS', 'CHAINS', 'OPS_AGENT', 'APP_DIR', 'NODE_BIN', 'RUN_USER', 'RUN_GROUP', 'METADATA_SERVER_DETECTION']);
    for (const m of guide.matchAll(/\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)=/g)) expect(known, `${m[1]} is not an env var of this system`).toContain(m[1]!);
    expect(allCommands).not.toMatch(/rm\s+(-\w+\s+)*\S*saxo_token\.lock/);
    for (const line of allCommands.split('\n').filter((l) => /secrets versions add/.test(l))) expect(line).toContain('--data-file=-');
    expect(allCommands).not.toMatch(/SAXO_APP_SECRET=\S/);
  });

  it('walks the first deployment in the order that works on a new project', () => {
    const { commands } = section('First deployment');
    const serviceUsage = at(commands, /gcloud services enable serviceusage\.googleapis\.com --project=/);
    const pack = at(commands, /npm run package:function/);
    const init = at(commands, /^terraform init$/);
    const targeted = at(commands, /^terraform apply (-target=\S+ ?)+$/);
    const secretValue = at(commands, /gcloud secrets versions add token-keeper-saxo-app-secret --data-file=-/);
    const full = at(commands, /^terraform apply$/);
    expect([serviceUsage, pack, init, targeted, secretValue, full]).toEqual([...[serviceUsage, pack, init, targeted, secretValue, full]].sort((a, b) => a - b));
    // The targeted apply creates both secrets (the function needs the app secret's value at start).
    expect(commands[targeted]).toContain('-target=google_secret_manager_secret.app_secret');
    expect(commands[targeted]).toContain('-target=google_secret_manager_secret.token');
    expect(at(commands, /cp terraform\.tfvars\.example terraform\.tfvars/)).toBeLessThan(init);
    // Then the VM: install (with the Ops Agent configuration), settings, start, check.
    const install = at(commands, /OPS_AGENT=yes \/opt\/token-keeper\/infra\/systemd\/install\.sh/);
    const enable = at(commands, /systemctl enable --now token-keeper"/);
    const doctor = at(commands, /npx token-keeper doctor/);
    expect(install).toBeLessThan(enable);
    expect(enable).toBeLessThan(doctor);
  });

  it('walks a second chain: two module instances, the template unit, the bots bound to their chain', () => {
    const { text, commands } = section('A second chain');
    expect(text).toContain('infra/terraform/examples/two-chains');
    const first = at(commands, /terraform apply -var project_id=my-project -target=module\.sim\./);
    expect(at(commands, /^terraform apply -var project_id=my-project$/)).toBeGreaterThan(first);
    at(commands, /CHAINS='sim live' OPS_AGENT=yes \/opt\/token-keeper\/infra\/systemd\/install\.sh/);
    at(commands, /systemctl enable --now token-keeper@sim token-keeper@live/);
    at(commands, /BindPaths=\/var\/lib\/token-keeper\/live:\/opt\/calypso\/data/);
    at(commands, /npx token-keeper doctor --chain live && npx token-keeper status --chain live/);
  });

  it('walks an upgrade: code, package, terraform, units, restart, doctor', () => {
    const { commands } = section('Upgrade');
    const order = [/^git pull$/, /^npm run package:function$/, /^terraform apply$/, /git pull && npm ci/, /infra\/systemd\/install\.sh/, /systemctl restart token-keeper"/, /npx token-keeper doctor/].map((re) => at(commands, re));
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it('says when to run doctor, in one line per place', () => {
    expect(guide.split(DOCTOR_LINE).length - 1).toBe(2); // the top, and Troubleshooting
    expect(section('Troubleshooting').text).toContain(DOCTOR_LINE);
  });

  it('states what is left out of the unit hardening and why, and what was not run here', () => {
    const { text } = section('Unit hardening');
    for (const k of ['MemoryDenyWriteExecute', 'RemoveIPC', 'PrivateNetwork']) expect(text).toContain(`\`${k}\``);
    expect(section('What has not been run here').text).toMatch(/real Google Cloud project/);
  });
});
