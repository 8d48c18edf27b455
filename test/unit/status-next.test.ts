import { describe, expect, it } from 'vitest';
import { nextStep, type NextStepInput } from '../../agent/status-next.js';

const main = { unit: 'token-keeper', cliFlags: '', cachePath: '/opt/calypso/data/saxo_token_cache.json' };
const live = { unit: 'token-keeper@live', cliFlags: ' --chain live', cachePath: '/var/lib/token-keeper/live/saxo_token_cache.json' };
const next = (s: Partial<NextStepInput>, w = main) => nextStep({ health: 'healthy', issues: [], ...s }, w);

describe('status: one "next:" line per state', () => {
  it('names the command for each state, for the main unit and for a chain', () => {
    expect(next({})).toBe('nothing to do');
    expect(next({ health: 'missing' })).toMatch(/^npx token-keeper login \(on a VM without a browser: add --no-open/);
    expect(next({ health: 'login_required' }, live)).toMatch(/^npx token-keeper login --chain live /);
    expect(next({ health: 'expired', refreshLeftSeconds: 1200 })).toMatch(/^npx token-keeper refresh \(the refresh token is still valid/);
    expect(next({ health: 'expired', refreshLeftSeconds: -1 })).toBe('npx token-keeper login');
    expect(next({ health: 'refresh_overdue' })).toMatch(/^npx token-keeper refresh \(the agent should have refreshed/);
    expect(next({ health: 'refresh_overdue', issues: ['agent_not_running'] }, live)).toBe('sudo systemctl start token-keeper@live (then: journalctl -u token-keeper@live -n 20)');
    expect(next({ health: 'degraded', issues: ['agent_never_seen', 'failures'] })).toMatch(/^sudo systemctl start token-keeper /);
    expect(next({ health: 'degraded', issues: ['agent_stale'] })).toMatch(/^sudo systemctl restart token-keeper /);
    expect(next({ health: 'degraded', issues: ['cache_unreadable'] })).toBe('sudo chown <bots-user> /opt/calypso/data/saxo_token_cache.json (or run status as the bots\' user)');
    expect(next({ health: 'degraded', issues: ['secret_behind'] })).toMatch(/^npx token-keeper refresh \(writes the newest pair/);
    expect(next({ health: 'degraded', issues: ['failures'] })).toMatch(/^npx token-keeper doctor /);
    expect(next({ health: 'healthy', issues: ['agent_unknown'] })).toMatch(/^npx token-keeper doctor /);
  });
});
