/** core/failures.ts: the Python keeper's "attempt N/MAX" while it means something, never past MAX. */
import { describe, expect, it } from 'vitest';
import { FailureCounter } from '../../core/failures.js';
import { captureLogger } from '../helpers/memory-rig.js';

describe('failure messages never say "attempt N/M" past M', () => {
  it('attempt 1/3 … 3/3, then a count; the ALERT at 3 and 6', async () => {
    const log = captureLogger();
    const f = new FailureCounter(log.logger, 3);
    for (let i = 0; i < 7; i++) f.failed('no_room', 'no room for the successor: 0 bytes free in /data');
    expect(log.events('refresh_failed').map((l) => l.message)).toEqual([
      'Token refresh failed (attempt 1/3)',
      'Token refresh failed (attempt 2/3)',
      'Token refresh failed (attempt 3/3)',
      'Token refresh failed (4 consecutive failures)',
      'Token refresh failed (5 consecutive failures)',
      'Token refresh failed (6 consecutive failures)',
      'Token refresh failed (7 consecutive failures)',
    ]);
    expect(log.events('refresh_alert').map((l) => l.consecutiveFailures)).toEqual([3, 6]);
  });
});
