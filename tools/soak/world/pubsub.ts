/**
 * Pub/Sub as the soak models it: at-least-once, unordered, dropped while down; a message for a
 * subscriber that is away waits for it; a nack (the handler failed) means redelivery later.
 */
import { SecretStoreError } from '../../../core/errors.js';
import type { TokenRotatedEvent } from '../../../core/ports.js';
import type { World } from '../world.js';

const SEC = 1000;
const MIN = 60 * SEC;

export function route(w: World, e: TokenRotatedEvent): void {
  if (w.pubsubDown || w.rng.chance(0.03)) {
    w.eventsDropped++;
    return;
  }
  const copies = w.rng.chance(0.05) ? 2 : 1;
  if (copies === 2) w.eventsDuplicated++;
  for (let i = 0; i < copies; i++) {
    const delay = w.rng.chance(0.1) ? w.rng.range(5 * SEC, 10 * MIN) : w.rng.range(100, 3 * SEC);
    w.clock.at(w.now() + delay, () => deliver(w, e));
  }
}

export function deliver(w: World, e: TokenRotatedEvent): void {
  const a = w.agent;
  if (!a || a.proc.dead) {
    w.pendingEvents.push(e);
    return;
  }
  // A nack (the handler failed, e.g. the process died) means redelivery later.
  w.fire(a.rec.run({ kind: 'event', event: e }).catch((err: unknown) => {
    w.pendingEvents.push(e);
    // A nack by design: the announced version cannot be read while Secret Manager is down.
    if (err instanceof SecretStoreError) return 'deferred';
    throw err;
  }), a.proc.name);
}
