/**
 * Journal segments (lib/wal/journal.ts "segments", lib/wal/journal-segments.ts; issue 18): the
 * scan of a segment's bytes, and a journal-mode store on the default file system writing its
 * records into preallocated segments, then replaying them at open after a crash (the directory
 * copied while the store is open is what a crash leaves once every acknowledged write was
 * fsynced; bytes overwritten in the copy are what a power cut in the middle of a write leaves).
 */
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeEntry } from '../lib/codec.js';
import { ErrorCode } from '../lib/errors.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type ConfState, type Entry } from '../lib/types.js';
import {
  decodeJournalPayload,
  encodeJournalRecord,
  encodeSegmentRecord,
  JOURNAL_DIRECTORY,
  JOURNAL_SEGMENT_BYTES,
  journalRecordName,
  journalSegmentName,
  journalSegmentSizeFor,
  scanJournalSegment,
  SEGMENT_RECORD_HEADER_BYTES,
  type JournalRecord,
} from '../lib/wal/journal.js';
import { walPath } from '../lib/wal/layout.js';
import { nodeFileSystem, type FileSystem } from '../lib/wal/file-system.js';
import { verifyTree } from '../lib/verify.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';

afterEach(removeTempDirs);

const entry = (index: number, term: number, data: Uint8Array = new TextEncoder().encode(`${index}@${term}`)): Entry => ({ index, term, type: EntryType.Normal, data });
const run = (from: number, to: number, term: number) => Array.from({ length: to - from + 1 }, (_, k) => entry(from + k, term));
const hex = (entries: readonly Entry[]) => entries.map((item) => Buffer.from(encodeEntry(item)).toString('hex'));
const concat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));
/** A segment of `size` bytes: `parts` from offset 0, then zeros. */
const segmentOf = (size: number, ...parts: Uint8Array[]) => {
  const bytes = new Uint8Array(size);
  bytes.set(concat(...parts), 0);
  return bytes;
};
const recordOf = (sequence: number): JournalRecord => ({ entries: run(sequence, sequence, 1) });
const rec = (sequence: number) => encodeSegmentRecord(sequence, recordOf(sequence));
/** `bytes` with the byte at `position` flipped. */
const flipped = (bytes: Uint8Array, position: number) => Uint8Array.from(bytes, (value, at) => (at === position ? value ^ 0xff : value));

describe('scanJournalSegment', () => {
  const one = rec(1);
  const two = rec(2);
  const withLength = (bytes: Uint8Array, length: number) => {
    const out = Uint8Array.from(bytes);
    new DataView(out.buffer).setUint32(8, length, true);
    return out;
  };

  it.each([
    ['an empty file', new Uint8Array(0), [], undefined],
    ['an all-zero segment (a fresh spare)', new Uint8Array(4096), [], undefined],
    ['three records, then zeros', segmentOf(4096, one, two, rec(3)), [1, 2, 3], undefined],
    ['two records filling the segment exactly (no zeros after them)', concat(one, two), [1, 2], undefined],
    ['fewer zeros than a header after the last record', concat(one, new Uint8Array(7)), [1], undefined],
    ['a short header at the end', concat(one, two.subarray(0, 10)), [1], { offset: one.length, reason: /^10 bytes, shorter than a record header$/ }],
    ['bad magic', segmentOf(4096, one, flipped(two, 0)), [1], { offset: one.length, reason: /^no record magic$/ }],
    ['garbage where a header should be', segmentOf(4096, one, new Uint8Array(40).fill(0xab)), [1], { offset: one.length, reason: /^no record magic$/ }],
    ['a length past the end', segmentOf(4096, one, withLength(two, 5000)), [1], { offset: one.length, reason: /announces 5000 payload bytes past the segment's end/ }],
    ['a CRC mismatch at the last record', segmentOf(4096, one, flipped(two, two.length - 2)), [1], { offset: one.length, reason: /^CRC mismatch$/ }],
    ['the last record half written (the rest of it still zeros)', segmentOf(4096, one, two.subarray(0, SEGMENT_RECORD_HEADER_BYTES + 3)), [1], { offset: one.length, reason: /^CRC mismatch$/ }],
    ['the first record torn', segmentOf(4096, flipped(one, 25)), [], { offset: 0, reason: /^CRC mismatch$/ }],
  ])('%s', (_name, bytes, sequences, tear: { offset: number; reason: RegExp } | undefined) => {
    const scan = scanJournalSegment(bytes, '/j/s.seg');
    expect(scan.records.map((record) => record.sequence)).toEqual(sequences);
    // Each record starts where the one before it ends, and its payload is the record's own.
    let offset = 0;
    for (const record of scan.records) {
      expect(record.offset).toBe(offset);
      expect(hex(decodeJournalPayload(record.payload, 'p').entries)).toEqual(hex(recordOf(record.sequence).entries));
      offset += SEGMENT_RECORD_HEADER_BYTES + record.payload.length;
    }
    if (tear === undefined) {
      expect(scan.tear).toBeUndefined();
    } else {
      expect(scan.tear?.offset).toBe(tear.offset);
      expect(scan.tear?.reason).toMatch(tear.reason);
    }
  });

  it.each([
    ['a CRC mismatch followed by a whole record', segmentOf(4096, flipped(one, one.length - 2), two), /^\/j\/s\.seg: the journal record at offset 0 is damaged \(CRC mismatch\) and a whole record follows it$/],
    ['a damaged middle record', segmentOf(4096, one, flipped(two, 30), rec(3)), new RegExp(`^/j/s\\.seg: the journal record at offset ${one.length} is damaged \\(CRC mismatch\\)`)],
    ['sequence 0', segmentOf(4096, encodeSegmentRecord(0, recordOf(1))), /^\/j\/s\.seg: the journal record at offset 0 has sequence 0$/],
    ['sequence 0 after a whole record', segmentOf(4096, one, encodeSegmentRecord(0, recordOf(2))), new RegExp(`^/j/s\\.seg: the journal record at offset ${one.length} has sequence 0$`)],
    ['sequences that skip one', segmentOf(4096, one, rec(3)), new RegExp(`^/j/s\\.seg: the journal record at offset ${one.length} has sequence 3 after 1$`)],
    ['sequences that go back', segmentOf(4096, rec(5), rec(4)), /has sequence 4 after 5$/],
    ['a repeated sequence', segmentOf(4096, one, one), /has sequence 1 after 1$/],
  ])('%s is ERR_CORRUPT naming the segment', (_name, bytes, message) => {
    expect(() => scanJournalSegment(bytes, '/j/s.seg')).toThrow(expect.objectContaining({ code: ErrorCode.Corrupt, message: expect.stringMatching(message), path: '/j/s.seg' }));
  });

  it('a sequence above 2^32 round-trips (low 32 bits, then high)', () => {
    const first = 2 ** 32 + 5;
    const bytes = encodeSegmentRecord(first, recordOf(1));
    const view = new DataView(bytes.buffer);
    expect([view.getUint32(12, true), view.getUint32(16, true)]).toEqual([5, 1]);
    const large = 2 ** 52 + 3;
    for (const [sequences, segment] of [
      [[first, first + 1], segmentOf(4096, bytes, encodeSegmentRecord(first + 1, recordOf(2)))],
      // 2^32 - 1 then 2^32: the carry into the high word.
      [[2 ** 32 - 1, 2 ** 32], segmentOf(4096, encodeSegmentRecord(2 ** 32 - 1, recordOf(1)), encodeSegmentRecord(2 ** 32, recordOf(2)))],
      [[large], segmentOf(4096, encodeSegmentRecord(large, recordOf(1)))],
    ] as const) {
      expect(scanJournalSegment(segment, 's').records.map((record) => record.sequence)).toEqual(sequences);
    }
  });

  it('journalSegmentSizeFor: a segment for a record that fits is the standard size; a larger one is rounded up to 4096', () => {
    expect([1, JOURNAL_SEGMENT_BYTES - 1, JOURNAL_SEGMENT_BYTES].map(journalSegmentSizeFor)).toEqual([JOURNAL_SEGMENT_BYTES, JOURNAL_SEGMENT_BYTES, JOURNAL_SEGMENT_BYTES]);
    expect([JOURNAL_SEGMENT_BYTES + 1, JOURNAL_SEGMENT_BYTES + 4096, JOURNAL_SEGMENT_BYTES + 4097].map(journalSegmentSizeFor)).toEqual([
      JOURNAL_SEGMENT_BYTES + 4096,
      JOURNAL_SEGMENT_BYTES + 4096,
      JOURNAL_SEGMENT_BYTES + 8192,
    ]);
  });
});

// ---------------------------------------------------------------- a store writing segments

const journalDir = (dir: string) => join(dir, JOURNAL_DIRECTORY);
const journalNames = (dir: string) => (existsSync(journalDir(dir)) ? readdirSync(journalDir(dir)).sort() : []);
const segmentPath = (dir: string, segment: number) => join(journalDir(dir), journalSegmentName(segment));
const scanSegment = (dir: string, segment: number) => scanJournalSegment(readFileSync(segmentPath(dir, segment)), segmentPath(dir, segment));
const sequencesIn = (dir: string, segment: number) => scanSegment(dir, segment).records.map((record) => record.sequence);
const isAllZeros = (bytes: Uint8Array) => bytes.every((value) => value === 0);
const confState: ConfState = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

/** A copy of an open store's directory: the state a crash leaves after its acknowledged writes. */
function crashCopy(store: ReplicaLogStore): string {
  const copy = join(makeTempDir('replicalog-segments-crash-'), 'store');
  cpSync(store.dir, copy, { recursive: true });
  return copy;
}

/** The default file system (writeAt, syncData): segments. No checkpoint timer. */
async function openJournal(dir: string): Promise<ReplicaLogStore> {
  return ReplicaLogStore.open({ dir, journal: true, journalCheckpointDelayMs: 600_000 });
}

/** Overwrites `bytes` at `offset` of a file (a power cut in the middle of a write). */
function overwrite(path: string, offset: number, bytes: Uint8Array): void {
  const content = readFileSync(path);
  content.set(bytes, offset);
  writeFileSync(path, content);
}

/** Entries of about 256 KiB: 15 records fill a segment, the 16th goes to the next one. */
const BIG_DATA = 256 * 1024;
const bigEntry = (index: number) => entry(index, 1, new Uint8Array(BIG_DATA).fill(index % 251));
const RECORDS_PER_SEGMENT = Math.floor(JOURNAL_SEGMENT_BYTES / encodeSegmentRecord(1, { entries: [bigEntry(1)] }).length);

describe('a journal-mode store on segments', () => {
  it('writes its groups as records in segment 1 at consecutive offsets, makes the spare segment 2 in the background, and leaves journal/ empty at close', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    const groups: JournalRecord[] = [
      { entries: run(1, 2, 1), hardState: { term: 1, vote: 1, commit: 1 } },
      { entries: run(3, 3, 1) },
      { entries: [], hardState: { term: 1, vote: 1, commit: 3 } },
    ];
    await Promise.all([store.append(groups[0]!.entries), store.setHardState(groups[0]!.hardState!)]);
    await store.append(groups[1]!.entries);
    await store.setHardState(groups[2]!.hardState!);
    expect(statSync(segmentPath(dir, 1)).size).toBe(JOURNAL_SEGMENT_BYTES);
    // Owner read-write: records are written into it in place (0400 made every write fail with
    // EACCES for anyone but root, which the tests, run as root, did not see).
    expect(statSync(segmentPath(dir, 1)).mode & 0o777).toBe(0o600);
    const scan = scanSegment(dir, 1);
    expect(scan.tear).toBeUndefined();
    const lengths = groups.map((group, position) => encodeSegmentRecord(position + 1, group).length);
    expect(scan.records.map((record) => [record.sequence, record.offset])).toEqual([
      [1, 0],
      [2, lengths[0]],
      [3, lengths[0]! + lengths[1]!],
    ]);
    // Byte for byte the encoded records, then zeros to the end of the segment.
    const bytes = readFileSync(segmentPath(dir, 1));
    expect(Buffer.from(bytes.subarray(0, lengths[0]))).toEqual(Buffer.from(encodeSegmentRecord(1, groups[0]!)));
    expect(isAllZeros(bytes.subarray(lengths[0]! + lengths[1]! + lengths[2]!))).toBe(true);
    scan.records.forEach((record, position) => {
      const decoded = decodeJournalPayload(record.payload, 'p');
      expect(hex(decoded.entries)).toEqual(hex(groups[position]!.entries));
      expect(decoded.hardState).toEqual(groups[position]!.hardState);
    });
    // The spare: made behind the first record, zero-filled at the full size.
    await expect.poll(() => journalNames(dir), { timeout: 5000 }).toEqual([journalSegmentName(1), journalSegmentName(2)]);
    await expect.poll(() => statSync(segmentPath(dir, 2)).size, { timeout: 5000 }).toBe(JOURNAL_SEGMENT_BYTES);
    expect(isAllZeros(readFileSync(segmentPath(dir, 2)))).toBe(true);
    expect(readdirSync(walPath(dir))).toEqual([]);
    await store.close();
    expect(journalNames(dir)).toEqual([]);
    expect(readdirSync(walPath(dir))).toHaveLength(3);
    const reopened = await ReplicaLogStore.open({ dir });
    expect(reopened.repairs).toEqual([]);
    expect(hex(reopened.entries(1, 4))).toEqual(hex(run(1, 3, 1)));
    expect(reopened.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 3 });
    await reopened.close();
  });

  it('a record larger than a segment gets a segment of its own, sized journalSegmentSizeFor(its size)', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    await store.append(run(1, 1, 1));
    await expect.poll(() => journalNames(dir), { timeout: 5000 }).toEqual([journalSegmentName(1), journalSegmentName(2)]);
    const large = entry(2, 1, new Uint8Array(JOURNAL_SEGMENT_BYTES + 1000).fill(7));
    const size = encodeSegmentRecord(2, { entries: [large] }).length;
    expect(size).toBeGreaterThan(JOURNAL_SEGMENT_BYTES);
    await store.append([large]);
    // Segment 2 is the spare (standard size, still empty); the record's segment is 3.
    expect(statSync(segmentPath(dir, 3)).size).toBe(journalSegmentSizeFor(size));
    expect(journalSegmentSizeFor(size) % 4096).toBe(0);
    expect(scanSegment(dir, 3).records.map((record) => [record.sequence, record.offset, record.payload.length])).toEqual([[2, 0, size - SEGMENT_RECORD_HEADER_BYTES]]);
    expect(sequencesIn(dir, 1)).toEqual([1]);
    expect(sequencesIn(dir, 2)).toEqual([]);
    // A small record after it (in the big record's segment's rounded-up rest, or the spare): a
    // crash replays all three in order.
    await store.append(run(3, 3, 1));
    const copy = crashCopy(store);
    await store.close();
    expect(journalNames(dir)).toEqual([]);
    const reopened = await ReplicaLogStore.open({ dir: copy });
    expect(reopened.repairs).toEqual(['replayed 3 journal records (3 entries written into wal/)']);
    expect(hex(reopened.entries(1, 4))).toEqual(hex([entry(1, 1), large, entry(3, 1)]));
    await reopened.close();
  });

  it('moves to the spare when a record does not fit, a checkpoint removes the filled segment it covers, and a crash before it replays both', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    const total = RECORDS_PER_SEGMENT + 4;
    for (let index = 1; index <= total; index++) await store.append([bigEntry(index)]);
    // Segment 1: records 1..N (the next did not fit); segment 2 (the spare made while 1 filled): the rest.
    expect(sequencesIn(dir, 1)).toEqual(Array.from({ length: RECORDS_PER_SEGMENT }, (_, k) => k + 1));
    // The next record (of the same size) did not fit in the rest of segment 1.
    const last = scanSegment(dir, 1).records.at(-1)!;
    expect(last.offset + 2 * (SEGMENT_RECORD_HEADER_BYTES + last.payload.length)).toBeGreaterThan(JOURNAL_SEGMENT_BYTES);
    expect(scanSegment(dir, 2).records.map((record) => [record.sequence, record.offset])[0]).toEqual([RECORDS_PER_SEGMENT + 1, 0]);
    expect(sequencesIn(dir, 2)).toEqual([RECORDS_PER_SEGMENT + 1, RECORDS_PER_SEGMENT + 2, RECORDS_PER_SEGMENT + 3, RECORDS_PER_SEGMENT + 4]);
    // And a new spare, 3, for the switch after that.
    await expect.poll(() => journalNames(dir), { timeout: 5000 }).toEqual([1, 2, 3].map(journalSegmentName));
    const copy = crashCopy(store);

    // A conf-state change drains the journal: a checkpoint of every record. Segment 1 is filled
    // and covered: removed; segment 2 is still written: kept, as is the spare.
    await store.setConfState(confState);
    expect(store.stats()).toMatchObject({ journalCheckpoints: 1, journalRecordsWaiting: 0 });
    expect(readdirSync(walPath(dir))).toHaveLength(total);
    expect(journalNames(dir)).toEqual([2, 3].map(journalSegmentName));
    await store.close();
    expect(journalNames(dir)).toEqual([]);

    const reopened = await ReplicaLogStore.open({ dir: copy });
    expect(reopened.repairs).toEqual([`replayed ${total} journal records (${total} entries written into wal/)`]);
    expect(reopened.lastIndex()).toBe(total);
    expect(hex(reopened.entries(1, total + 1))).toEqual(hex(Array.from({ length: total }, (_, k) => bigEntry(k + 1))));
    expect(journalNames(copy)).toEqual([]);
    await reopened.close();
  });

  /**
   * A crashed store with segment 1 holding records 1..3 (entries 1..2 with commit 1, entry 3,
   * entries 4..5 with commit 4) and the spare segment 2.
   */
  async function crashedWithThreeRecords(): Promise<{ dir: string; offsets: number[]; ends: number[] }> {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    await Promise.all([store.append(run(1, 2, 1)), store.setHardState({ term: 1, vote: 1, commit: 1 })]);
    await store.append(run(3, 3, 1));
    await Promise.all([store.append(run(4, 5, 1)), store.setHardState({ term: 1, vote: 1, commit: 4 })]);
    await expect.poll(() => journalNames(dir), { timeout: 5000 }).toEqual([1, 2].map(journalSegmentName));
    const copy = crashCopy(store);
    await store.close();
    const records = scanSegment(copy, 1).records;
    expect(records.map((record) => record.sequence)).toEqual([1, 2, 3]);
    return { dir: copy, offsets: records.map((record) => record.offset), ends: records.map((record) => record.offset + SEGMENT_RECORD_HEADER_BYTES + record.payload.length) };
  }

  it.each([
    [
      'the last record torn (a payload byte lost): dropped with a repair, the acknowledged groups before it replayed',
      (dir: string, ends: number[]) => overwrite(segmentPath(dir, 1), ends[2]! - 3, Uint8Array.of(0xee, 0xee)),
      { lastIndex: 3, commit: 1, repairs: [/^dropped the torn journal record .*journal\/00000000000000000001\.seg at offset \d+ \(CRC mismatch\): an unacknowledged write group$/, /^replayed 2 journal records \(3 entries/] },
    ],
    [
      'the last record cut short (its tail still zeros)',
      (dir: string, ends: number[], offsets: number[]) => overwrite(segmentPath(dir, 1), offsets[2]! + 24, new Uint8Array(ends[2]! - offsets[2]! - 24)),
      { lastIndex: 3, commit: 1, repairs: [/00000000000000000001\.seg at offset \d+ \(CRC mismatch\)/, /^replayed 2 journal records/] },
    ],
    [
      "the last record's magic lost",
      (dir: string, _ends: number[], offsets: number[]) => overwrite(segmentPath(dir, 1), offsets[2]!, Uint8Array.of(0x58)),
      { lastIndex: 3, commit: 1, repairs: [/00000000000000000001\.seg at offset \d+ \(no record magic\)/, /^replayed 2 journal records/] },
    ],
    [
      'a middle record damaged, a whole one after it: ERR_CORRUPT naming the segment',
      (dir: string, ends: number[]) => overwrite(segmentPath(dir, 1), ends[1]! - 3, Uint8Array.of(0xee, 0xee)),
      { error: /journal\/00000000000000000001\.seg: the journal record at offset \d+ is damaged \(CRC mismatch\) and a whole record follows it/ },
    ],
    [
      'the first record damaged, whole ones after it: ERR_CORRUPT',
      (dir: string, _ends: number[], offsets: number[]) => overwrite(segmentPath(dir, 1), offsets[0]! + 22, Uint8Array.of(0xee)),
      { error: /journal\/00000000000000000001\.seg: the journal record at offset 0 is damaged \(CRC mismatch\)/ },
    ],
    [
      'the spare segment 2 lost (no record was in it): all three replayed',
      (dir: string) => rmSync(segmentPath(dir, 2)),
      { lastIndex: 5, commit: 4, repairs: [/^replayed 3 journal records \(5 entries written into wal\/\)$/] },
    ],
  ])('%s', async (_name, damage, expected: { lastIndex?: number; commit?: number; repairs?: RegExp[]; error?: RegExp }) => {
    const { dir, offsets, ends } = await crashedWithThreeRecords();
    damage(dir, ends, offsets);
    // verify (read-only) agrees with open: what open refuses is JOURNAL_CORRUPT naming the
    // segment; what open repairs is a notice of the waiting records (and of the torn newest).
    const verified = await verifyTree(dir);
    if (expected.error !== undefined) {
      expect(verified.problems.map((problem) => [problem.code, problem.path])).toEqual([['JOURNAL_CORRUPT', segmentPath(dir, 1)]]);
    } else {
      expect(verified.problems).toEqual([]);
      const pending = verified.notices.filter((notice) => notice.code === 'JOURNAL_PENDING');
      expect(pending).toHaveLength(1);
      expect(pending[0]!.message.includes('the newest is torn')).toBe(expected.repairs!.some((pattern) => pattern.source.includes('dropped') || pattern.source.includes('CRC') || pattern.source.includes('magic')));
    }
    if (expected.error !== undefined) {
      await expect(ReplicaLogStore.open({ dir })).rejects.toMatchObject({ code: ErrorCode.Corrupt, message: expect.stringMatching(expected.error), path: segmentPath(dir, 1) });
      // Refused: nothing changed, the segments are kept for a look.
      expect(journalNames(dir)).toEqual([1, 2].map(journalSegmentName));
      return;
    }
    const store = await ReplicaLogStore.open({ dir });
    expect(store.lastIndex()).toBe(expected.lastIndex);
    expect(store.initialState().hardState).toEqual({ term: 1, vote: 1, commit: expected.commit });
    expect(hex(store.entries(1, expected.lastIndex! + 1))).toEqual(hex(run(1, expected.lastIndex!, 1)));
    expect(store.repairs).toHaveLength(expected.repairs!.length);
    expected.repairs!.forEach((pattern, position) => expect(store.repairs[position]).toMatch(pattern));
    expect(journalNames(dir)).toEqual([]);
    await store.close();
  });

  it('the last record of a filled segment torn while the next segment holds a whole record: ERR_CORRUPT naming both', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    for (let index = 1; index <= RECORDS_PER_SEGMENT + 1; index++) await store.append([bigEntry(index)]);
    const copy = crashCopy(store);
    await store.close();
    const last = scanSegment(copy, 1).records.at(-1)!;
    overwrite(segmentPath(copy, 1), last.offset + SEGMENT_RECORD_HEADER_BYTES + 100, Uint8Array.of(0xee));
    const tornAt = `${segmentPath(copy, 1)} at offset ${last.offset}`;
    // Both faces of it: a record missing before segment 2's, and the tear before a whole record.
    expect((await verifyTree(copy)).problems.map((problem) => [problem.code, problem.path])).toEqual([
      ['JOURNAL_CORRUPT', `${segmentPath(copy, 2)} at offset 0`],
      ['JOURNAL_CORRUPT', tornAt],
    ]);
    await expect(ReplicaLogStore.open({ dir: copy })).rejects.toMatchObject({
      code: ErrorCode.Corrupt,
      message: expect.stringMatching(new RegExp(`00000000000000000001\\.seg at offset ${last.offset}: torn journal record \\(CRC mismatch\\) before .*00000000000000000002\\.seg at offset 0$`)),
    });
    // The same copy without segment 2's record (never written): the torn one is dropped.
    overwrite(segmentPath(copy, 2), 0, new Uint8Array(SEGMENT_RECORD_HEADER_BYTES));
    const verified = await verifyTree(copy);
    expect(verified.problems).toEqual([]);
    expect(verified.notices.find((notice) => notice.code === 'JOURNAL_PENDING')?.message).toMatch(/the newest is torn/);
    const reopened = await ReplicaLogStore.open({ dir: copy });
    expect(reopened.lastIndex()).toBe(RECORDS_PER_SEGMENT - 1);
    expect(reopened.repairs[0]).toMatch(new RegExp(`^dropped the torn journal record .*00000000000000000001\\.seg at offset ${last.offset} \\(CRC mismatch\\)`));
    await reopened.close();
  });

  it('verify: a segment holding only a torn record is a notice that open drops it, not a count of waiting records', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    await store.close();
    writeFileSync(segmentPath(dir, 1), segmentOf(4096, rec(1).subarray(0, 30)));
    const verified = await verifyTree(dir);
    expect(verified.problems).toEqual([]);
    expect(verified.notices.map((notice) => [notice.code, notice.message])).toEqual([
      ['JOURNAL_PENDING', `a torn journal record (an unacknowledged group) is in ${join(dir, 'journal')}: the next open drops it`],
    ]);
    const reopened = await ReplicaLogStore.open({ dir });
    expect(reopened.repairs).toEqual([expect.stringMatching(/^dropped the torn journal record .*00000000000000000001\.seg at offset 0 \(CRC mismatch\)/)]);
    expect(journalNames(dir)).toEqual([]);
    await reopened.close();
  });

  /**
   * A store whose second record write fails (EIO: the store is poisoned) while `background`
   * work, which `overrides` delays, still runs; close must wait for it: `done()` false before
   * close, true after. The journal the failure left replays record 1 at the next open.
   */
  async function closeAfterFailure(overrides: Partial<FileSystem>, journalCheckpointDelayMs: number, started: Promise<void>, done: () => boolean): Promise<void> {
    const dir = join(makeTempDir(), 'store');
    let recordWrites = 0;
    const fileSystem: FileSystem = {
      ...nodeFileSystem,
      ...overrides,
      async writeAt(path, offset, data) {
        if (++recordWrites === 2) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
        return nodeFileSystem.writeAt!(path, offset, data);
      },
    };
    const store = await ReplicaLogStore.open({ dir, journal: true, journalCheckpointDelayMs, fileSystem });
    await store.append(run(1, 1, 1));
    await started;
    await expect(store.append(run(2, 2, 1))).rejects.toMatchObject({ code: ErrorCode.Io });
    expect(done()).toBe(false);
    await store.close();
    expect(done()).toBe(true);
    const reopened = await ReplicaLogStore.open({ dir });
    expect(reopened.lastIndex()).toBe(1);
    await reopened.close();
  }

  /** A promise and the function that resolves it. */
  function signal(): { promise: Promise<void>; fire: () => void } {
    let fire: () => void = () => {};
    const promise = new Promise<void>((resolve) => {
      fire = resolve;
    });
    return { promise, fire };
  }

  it('close waits for a spare still being made, also after a failure (no write into journal/ outlives the lock)', async () => {
    let spareDone = false;
    const spareStarted = signal();
    await closeAfterFailure(
      {
        async writeFile(path, data, mode) {
          if (!path.endsWith(journalSegmentName(2))) return nodeFileSystem.writeFile(path, data, mode);
          spareStarted.fire();
          await new Promise((resolve) => setTimeout(resolve, 300));
          await nodeFileSystem.writeFile(path, data, mode);
          spareDone = true;
        },
      },
      600_000,
      spareStarted.promise,
      () => spareDone,
    );
  });

  it('close waits for a checkpoint still running after a failure (its writes must not outlive the lock)', async () => {
    let checkpointSynced = false;
    const syncStarted = signal();
    // journalCheckpointDelayMs 0: the checkpoint of record 1 starts right after it.
    await closeAfterFailure(
      {
        async syncFileSystem(path) {
          syncStarted.fire();
          await new Promise((resolve) => setTimeout(resolve, 300));
          const synced = await nodeFileSystem.syncFileSystem!(path);
          checkpointSynced = true;
          return synced;
        },
      },
      0,
      syncStarted.promise,
      () => checkpointSynced,
    );
  });

  it('a segment missing between two others: ERR_CORRUPT (a record missing before a later one)', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    for (let index = 1; index <= 2 * RECORDS_PER_SEGMENT + 1; index++) await store.append([bigEntry(index)]);
    const copy = crashCopy(store);
    await store.close();
    expect(sequencesIn(copy, 3)).toEqual([2 * RECORDS_PER_SEGMENT + 1]);
    rmSync(segmentPath(copy, 2));
    await expect(ReplicaLogStore.open({ dir: copy })).rejects.toMatchObject({
      code: ErrorCode.Corrupt,
      message: expect.stringMatching(new RegExp(`^journal record ${RECORDS_PER_SEGMENT + 1} is missing \\(the next one is ${2 * RECORDS_PER_SEGMENT + 1}, .*00000000000000000003\\.seg at offset 0\\)$`)),
    });
  });

  it('a record file (sequence n) and a segment holding n+1.. are replayed together, in order', async () => {
    const { dir } = await crashedWithThreeRecords();
    // Record 1 becomes a record file; segment 1 keeps records 2 and 3 (from offset 0).
    const [first, ...rest] = scanSegment(dir, 1).records;
    writeFileSync(join(journalDir(dir), journalRecordName(1)), encodeJournalRecord(decodeJournalPayload(first!.payload, 'p')));
    const bytes = readFileSync(segmentPath(dir, 1));
    writeFileSync(segmentPath(dir, 1), segmentOf(JOURNAL_SEGMENT_BYTES, bytes.subarray(rest[0]!.offset, rest[1]!.offset + SEGMENT_RECORD_HEADER_BYTES + rest[1]!.payload.length)));
    expect(sequencesIn(dir, 1)).toEqual([2, 3]);
    const store = await ReplicaLogStore.open({ dir });
    expect(store.repairs).toEqual(['replayed 3 journal records (5 entries written into wal/)']);
    expect(hex(store.entries(1, 6))).toEqual(hex(run(1, 5, 1)));
    expect(store.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 4 });
    expect(journalNames(dir)).toEqual([]);
    await store.close();
  });

  it('after open the journal is empty, and the next write goes to a segment numbered above every one found (names are never reused)', async () => {
    const { dir } = await crashedWithThreeRecords();
    // A zero-filled segment 7 (a spare a crash left): no records, but its number counts.
    writeFileSync(segmentPath(dir, 7), new Uint8Array(4096));
    const store = await openJournal(dir);
    expect(store.repairs).toEqual(['replayed 3 journal records (5 entries written into wal/)']);
    expect(journalNames(dir)).toEqual([]);
    await store.append(run(6, 6, 1));
    expect(journalNames(dir)[0]).toBe(journalSegmentName(8));
    // The sequence goes on from the records replayed.
    expect(sequencesIn(dir, 8)).toEqual([4]);
    await expect.poll(() => journalNames(dir), { timeout: 5000 }).toEqual([8, 9].map(journalSegmentName));
    const copy = crashCopy(store);
    await store.close();
    const reopened = await ReplicaLogStore.open({ dir: copy });
    expect(reopened.repairs).toEqual(['replayed 1 journal record (1 entries written into wal/)']);
    expect(hex(reopened.entries(1, 7))).toEqual(hex(run(1, 6, 1)));
    await reopened.close();
  });
});
