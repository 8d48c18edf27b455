/**
 * docs/DESIGN.md "Server time": doctor's clock check reports the skew the agent recorded against
 * Saxo's Date header (its state file), standalone too, and warns beyond 30 s.
 */
import { describe, expect, it } from 'vitest';
import { clockCheck } from '../../agent/doctor/checks/network.js';
import type { AgentState } from '../../agent/state-file.js';
import { facts, NOW, ok, token } from '../helpers/doctor-facts.js';

const HOUR = 3600_000;
// `clock` undefined: standalone (no probe of Google's clock).
const withRecorded = (clockSkew: AgentState['clockSkew'], clock: ReturnType<typeof facts>['clock']) =>
  facts({ clock, state: ok({ token: token(), failures: 0, agentSeenAt: NOW - 20_000, clockSkew }) });

describe('doctor clock check: the recorded skew', () => {
  it('standalone: no Google probe, yet a recorded 2 h skew warns and is named', () => {
    const r = clockCheck(withRecorded({ ms: 2 * HOUR, at: NOW - 60_000, by: 'saxo' }, undefined));
    expect(r.status).toBe('warn');
    expect(r.summary).toMatch(/the agent recorded: this host's clock is 7200 s ahead of Saxo \(measured at an exchange/);
    expect(r.fix).toMatch(/timedatectl set-ntp true/);
    expect(r.details).toMatchObject({ recordedSkewMs: 2 * HOUR, recordedBy: 'saxo' });
  });

  it('cloud-connected with Google\'s clock agreeing: the recorded skew still warns; a small one stays ok', () => {
    const google = { target: 'https://x', local: false, probe: ok({ dateMs: NOW, sentAt: NOW + 100, receivedAt: NOW + 150 }) };
    expect(clockCheck(withRecorded({ ms: -2 * HOUR, at: NOW, by: 'jump' }, google))).toMatchObject({ status: 'warn' });
    expect(clockCheck(withRecorded({ ms: -2 * HOUR, at: NOW, by: 'jump' }, google)).summary).toMatch(/7200 s behind Saxo \(adjusted for a clock jump/);
    const small = clockCheck(withRecorded({ ms: 800, at: NOW, by: 'saxo' }, google));
    expect(small.status).toBe('ok');
    expect(small.summary).toMatch(/1 s ahead of Saxo/);
  });

  it('nothing recorded: the check is what it was (standalone skip)', () => {
    expect(clockCheck(withRecorded(undefined, undefined)).status).toBe('skip');
  });
});
