/** The token-health and agent-silence rules `status` and doctor share (agent/status.ts). */
import { describe, expect, it } from 'vitest';
import type { Plan } from '../../core/decide.js';
import type { TokenSet } from '../../core/token.js';
import { agentSeenRecently, tokenHealth } from '../../agent/status.js';

const best = { generation: 1 } as TokenSet;
const plan = (p: Partial<Plan>): Pick<Plan, 'best' | 'health' | 'origin'> => ({ best, health: 'fresh', origin: 'cache', ...p });

describe('tokenHealth: one mapping for status and doctor', () => {
  it('missing, login required (dead chain, or the agent\'s record unless the secret holds the newest pair), expired, overdue, healthy', () => {
    expect(tokenHealth(plan({ best: undefined }), false)).toBe('missing');
    expect(tokenHealth(plan({ health: 'login_required' }), false)).toBe('login_required');
    expect(tokenHealth(plan({ origin: 'cache' }), true)).toBe('login_required');
    expect(tokenHealth(plan({ origin: 'known' }), true)).toBe('login_required');
    expect(tokenHealth(plan({ origin: 'secret' }), true)).toBe('healthy');
    expect(tokenHealth(plan({ health: 'expired' }), false)).toBe('expired');
    expect(tokenHealth(plan({ health: 'due' }), false)).toBe('refresh_overdue');
    expect(tokenHealth(plan({}), false)).toBe('healthy');
  });
});

describe('agentSeenRecently: not seen for more than 3 check intervals', () => {
  it('within 3 intervals is recent; beyond, or never seen, is not', () => {
    expect(agentSeenRecently(180_000, 60_000)).toBe(true);
    expect(agentSeenRecently(180_001, 60_000)).toBe(false);
    expect(agentSeenRecently(undefined, 60_000)).toBe(false);
  });
});
