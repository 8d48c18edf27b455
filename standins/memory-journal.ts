import type { Journal, JournalEntry, Room } from '../core/ports.js';

/**
 * The agent's journal (agent/journal.ts) in memory: one entry, kept across the agent's deaths.
 * `full` stands for a data dir without room: room() says so (the journal's own blocks are reserved,
 * so an entry can still be recorded).
 */
export class MemoryJournal implements Journal {
  readonly path = 'memory://token-keeper.journal';
  entry: JournalEntry | undefined;
  full = false;
  async room(): Promise<Room> {
    return this.full ? { ok: false, reason: `no room for the successor: 0 bytes free in memory://` } : { ok: true };
  }
  async record(e: JournalEntry): Promise<void> {
    this.entry = structuredClone(e);
  }
  async pending(): Promise<JournalEntry | undefined> {
    return this.entry && structuredClone(this.entry);
  }
  async wipe(): Promise<void> {
    this.entry = undefined;
  }
}
