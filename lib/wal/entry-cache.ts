/**
 * A byte- and count-bounded cache of recently appended entries, so raft's reads of the tail
 * (MsgApp to followers, committed entries to apply) never touch the disk. Entries are stored
 * frozen and private; readers get copies. Insertion order is index order (appends only grow
 * the tail; a truncation removes the tail first), so eviction drops the oldest index.
 */
import { entrySize } from '../codec.js';
import type { Entry } from '../types.js';

export const DEFAULT_CACHE_MAX_ENTRIES = 4096;
export const DEFAULT_CACHE_MAX_BYTES = 16 * 1024 * 1024;

export class EntryCache {
  private readonly entries = new Map<number, Entry>();
  private bytes = 0;
  /**
   * Every cached index lies in [lowest, highest] (empty when lowest > highest). Entries are
   * added in increasing index order, so eviction walks `lowest` forward: amortised O(1) per
   * add, where iterating the Map from its head would pass every deleted slot each time.
   */
  private lowest = 1;
  private highest = 0;

  constructor(
    private readonly maxEntries = DEFAULT_CACHE_MAX_ENTRIES,
    private readonly maxBytes = DEFAULT_CACHE_MAX_BYTES,
  ) {}

  get(index: number): Entry | undefined {
    return this.entries.get(index);
  }

  /** Adds `entry` (a private copy the caller will not change) as the newest; evicts the oldest beyond the bounds. */
  add(entry: Entry): void {
    const size = entrySize(entry);
    if (size > this.maxBytes || this.maxEntries === 0) return;
    this.delete(entry.index);
    this.entries.set(entry.index, Object.freeze(entry));
    this.bytes += size;
    if (this.entries.size === 1) this.lowest = entry.index;
    this.lowest = Math.min(this.lowest, entry.index);
    this.highest = Math.max(this.highest, entry.index);
    while ((this.entries.size > this.maxEntries || this.bytes > this.maxBytes) && this.lowest <= this.highest) {
      this.delete(this.lowest++);
    }
  }

  /** Forgets every index >= `index`. */
  truncateFrom(index: number): void {
    while (this.highest >= index && this.highest >= this.lowest) this.delete(this.highest--);
  }

  /** Forgets every index < `index`. */
  dropBelow(index: number): void {
    while (this.lowest < index && this.lowest <= this.highest) this.delete(this.lowest++);
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
    this.lowest = 1;
    this.highest = 0;
  }

  get size(): number {
    return this.entries.size;
  }

  get byteSize(): number {
    return this.bytes;
  }

  private delete(index: number): void {
    const existing = this.entries.get(index);
    if (existing === undefined) return;
    this.entries.delete(index);
    this.bytes -= entrySize(existing);
  }
}
