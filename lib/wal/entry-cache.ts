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
    for (const [index, oldest] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.entries.delete(index);
      this.bytes -= entrySize(oldest);
    }
  }

  /** Forgets every index >= `index`. */
  truncateFrom(index: number): void {
    for (const key of [...this.entries.keys()]) if (key >= index) this.delete(key);
  }

  /** Forgets every index < `index`. */
  dropBelow(index: number): void {
    for (const key of [...this.entries.keys()]) if (key < index) this.delete(key);
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
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
