/**
 * The writer of a journal store's segments (journal.ts, "segments"; issue 18). Write groups
 * arrive one at a time (the store's queue): each record goes at the current segment's offset and
 * is made durable by one fdatasync. When a record does not fit, the writer moves to the spare
 * segment, which it creates (zero-filled and durable, name included) in the background while
 * the current one fills, so a write group rarely waits for a segment. A record larger than a
 * segment gets one of its own. A segment no longer written whose records are all covered by
 * raft/journal_through (the checkpoint made them durable in wal/ and KV) is removed.
 */
import type { WalLogManager } from './log-manager.js';
import { JOURNAL_SEGMENT_BYTES, journalSegmentSizeFor } from './journal.js';

export class JournalSegmentWriter {
  private current: { segment: number; size: number; offset: number; lastSequence: number } | undefined;
  /** A zero-filled segment of JOURNAL_SEGMENT_BYTES being made (or made) for the next switch. */
  private spare: Promise<number> | undefined;
  /** Segments no longer written, oldest first, with the last sequence each holds (0: none). */
  private filled: { segment: number; lastSequence: number }[] = [];

  /** `nextSegment`: above every segment number journal/ held at open (names are never reused). */
  constructor(
    private readonly wal: WalLogManager,
    private nextSegment: number,
  ) {}

  /** Writes the record `bytes` (encodeSegmentRecord of `sequence`) and makes it durable. */
  async append(sequence: number, bytes: Uint8Array): Promise<void> {
    let current = this.current;
    if (current === undefined || current.offset + bytes.length > current.size) current = await this.switchFor(bytes.length);
    await this.wal.writeJournalSegmentRecord(current.segment, current.offset, bytes);
    current.offset += bytes.length;
    current.lastSequence = sequence;
  }

  /** Removes the segments no longer written whose records are all at or below `through`. */
  async release(through: number): Promise<void> {
    const done = this.filled.filter((segment) => segment.lastSequence <= through);
    if (done.length === 0) return;
    this.filled = this.filled.filter((segment) => segment.lastSequence > through);
    await this.wal.removeJournalSegments(done.map((segment) => segment.segment));
  }

  /** At a clean close (every record checkpointed): removes every segment, the spare included. */
  async removeAll(): Promise<void> {
    const segments = this.filled.map((segment) => segment.segment);
    this.filled = [];
    if (this.current !== undefined) segments.push(this.current.segment);
    this.current = undefined;
    const spare = this.spare;
    this.spare = undefined;
    if (spare !== undefined) segments.push(...(await spare.then((segment) => [segment], () => [])));
    await this.wal.removeJournalSegments(segments);
  }

  /**
   * Waits for a spare being made (its outcome ignored): at close, so that no write into
   * journal/ outlives the store's lock (another process may open the store right after).
   */
  async settle(): Promise<void> {
    await this.spare?.catch(() => {});
  }

  private async switchFor(recordBytes: number): Promise<{ segment: number; size: number; offset: number; lastSequence: number }> {
    const size = journalSegmentSizeFor(recordBytes);
    let segment: number;
    if (size === JOURNAL_SEGMENT_BYTES && this.spare !== undefined) {
      const spare = this.spare;
      this.spare = undefined;
      // A spare that failed (a full disk a moment ago) is made again here, in the write path:
      // this error, if it repeats, is the write group's.
      segment = await spare.catch(() => this.create(size));
    } else {
      segment = await this.create(size);
    }
    if (this.current !== undefined) this.filled.push({ segment: this.current.segment, lastSequence: this.current.lastSequence });
    this.current = { segment, size, offset: 0, lastSequence: 0 };
    if (this.spare === undefined) {
      const spare = this.create(JOURNAL_SEGMENT_BYTES);
      // Handled where it is used (above); not an unhandled rejection meanwhile.
      spare.catch(() => {});
      this.spare = spare;
    }
    return this.current;
  }

  private async create(size: number): Promise<number> {
    const segment = this.nextSegment++;
    await this.wal.createJournalSegment(segment, size);
    return segment;
  }
}
