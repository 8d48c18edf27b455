/**
 * The part of the EventBus contract the in-memory double shares with the Pub/Sub adapter (the
 * adapter also runs the full suite against the emulator: acks, delayed nacks, malformed messages,
 * reconnects — test/helpers/event-bus-contract.ts). Known, accepted difference: Pub/Sub keeps a
 * message for a subscriber that is away; the memory bus does not (the soak models retention itself).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventBus, TokenRotatedEvent } from '../../core/ports.js';

export interface CoreBusUnderTest {
  bus: EventBus;
  /** The configured secret's project, for well-formed version names. */
  projectId?: string;
  close(): Promise<void>;
}

/** A well-formed TOKEN_ROTATED for generation `generation` of `projectId`'s saxo-token (fixed times). */
export function rotatedEvent(projectId: string, generation: number): TokenRotatedEvent {
  return {
    type: 'TOKEN_ROTATED',
    version: `projects/${projectId}/secrets/saxo-token/versions/${generation}`,
    generation,
    accessExpiresAt: new Date(Date.UTC(2025, 0, 1, 12, generation)).toISOString(),
    source: 'cloud',
    publishedAt: new Date(Date.UTC(2025, 0, 1, 11, 59)).toISOString(),
  };
}

export function eventBusCoreContract(label: string, make: () => Promise<CoreBusUnderTest>): void {
  describe(`EventBus core contract: ${label}`, () => {
    let t: CoreBusUnderTest;
    const closers: (() => Promise<void>)[] = [];
    beforeEach(async () => {
      t = await make();
    });
    afterEach(async () => {
      for (const c of closers.splice(0).reverse()) await c();
      await t.close();
    });
    const project = () => t.projectId ?? 'core-contract';

    it('refuses to publish an event that breaks the schema (nothing goes out)', async () => {
      const got: TokenRotatedEvent[] = [];
      closers.push(await t.bus.subscribe(async (e) => void got.push(e)));
      await expect(t.bus.publish({ ...rotatedEvent(project(), 1), version: 'not-a-version-name' })).rejects.toThrow();
      await expect(t.bus.publish({ ...rotatedEvent(project(), 1), generation: -1 })).rejects.toThrow();
      await t.bus.publish(rotatedEvent(project(), 2)); // a marker: everything before it was refused
      await until(() => got.length >= 1);
      expect(got.map((e) => e.generation)).toEqual([2]);
    });

    it('delivers exactly the published fields, and publish does not wait for the handler', async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const got: TokenRotatedEvent[] = [];
      closers.push(
        await t.bus.subscribe(async (e) => {
          got.push(e);
          await gate; // a handler busy on the agent's serialized run
        }),
      );
      const sent = rotatedEvent(project(), 3);
      await t.bus.publish(sent); // resolves although the handler has not finished
      await until(() => got.length >= 1);
      expect(got[0]).toEqual(sent);
      release();
    });
  });
}

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for a delivery');
    await new Promise((r) => setTimeout(r, 20));
  }
}
