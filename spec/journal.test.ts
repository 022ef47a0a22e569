/**
 * The write-group journal (lib/wal/journal.ts, issue 18): the record format, and a journal-mode
 * store's replay at open of records a crash left (the directory copied while the store is open
 * is exactly what a crash leaves once every acknowledged write was fsynced).
 */
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeEntry } from '../lib/codec.js';
import { ErrorCode } from '../lib/errors.js';
import { JOURNAL_CHECKPOINT_DELAY_MS, JOURNAL_CHECKPOINT_ENTRIES, ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry, type HardState } from '../lib/types.js';
import { verifyTree } from '../lib/verify.js';
import {
  crc32,
  crc32Portable,
  decodeJournalRecord,
  encodeJournalRecord,
  JOURNAL_DIRECTORY,
  journalRecordName,
  journalRecordTear,
  journalSegmentName,
  parseJournalRecordName,
  parseJournalSegmentName,
  scanJournalSegment,
} from '../lib/wal/journal.js';
import { nodeFileSystem, type FileSystem } from '../lib/wal/file-system.js';
import { formatLsn, walPath } from '../lib/wal/layout.js';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';
import { ensureBuilt, runCli } from './cli/harness.js';

afterEach(removeTempDirs);

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new TextEncoder().encode(`${index}@${term}`) });
const run = (from: number, to: number, term: number) => Array.from({ length: to - from + 1 }, (_, k) => entry(from + k, term));
const hex = (entries: readonly Entry[]) => entries.map((item) => Buffer.from(encodeEntry(item)).toString('hex'));

describe('record format', () => {
  it('CRC-32 is the IEEE one (the check value of "123456789"), native and portable alike', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32Portable(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    // Records of every size up to 70 KiB, random bytes: the two never disagree.
    for (const length of [0, 1, 7, 64, 1000, 65_537, 70_000]) {
      const bytes = randomBytes(length);
      expect(crc32(bytes), `length ${length}`).toBe(crc32Portable(bytes));
    }
  });

  it.each([
    ['entries and a hard state', { entries: run(4, 6, 2), hardState: { term: 2, vote: 1, commit: 5 } }],
    ['entries only', { entries: run(1, 1, 1) }],
    ['a hard state only', { entries: [], hardState: { term: 7, vote: 0, commit: 0 } }],
  ])('%s round-trips', (_name, record: { entries: Entry[]; hardState?: HardState }) => {
    const bytes = encodeJournalRecord(record);
    expect(journalRecordTear(bytes)).toBeUndefined();
    const decoded = decodeJournalRecord(bytes, 'r');
    expect(hex(decoded.entries)).toEqual(hex(record.entries));
    expect(decoded.hardState).toEqual(record.hardState);
  });

  const whole = encodeJournalRecord({ entries: run(1, 3, 1), hardState: { term: 1, vote: 1, commit: 2 } });
  it.each([
    ['empty', new Uint8Array(0), /shorter than a record header/],
    ['cut inside the header', whole.subarray(0, 7), /shorter than a record header/],
    ['cut inside the payload', whole.subarray(0, whole.length - 3), /header announces/],
    ['longer than announced', Uint8Array.from([...whole, 0]), /header announces/],
    ['zeroed (data lost)', new Uint8Array(whole.length), /no record magic/],
    ['one payload bit flipped', Uint8Array.from(whole, (value, position) => (position === 20 ? value ^ 1 : value)), /CRC mismatch/],
  ])('a torn record is told apart: %s', (_name, bytes, reason) => {
    expect(journalRecordTear(bytes)).toMatch(reason);
  });

  it('a record whose CRC holds but whose contents do not decode is ERR_CORRUPT, never torn', () => {
    const bytes = encodeJournalRecord({ entries: run(1, 1, 1) });
    bytes[bytes.length - 1] = 7; // the hard-state flag
    const view = new DataView(bytes.buffer);
    view.setUint32(4, crc32(bytes.subarray(8)), true);
    expect(journalRecordTear(bytes)).toBeUndefined();
    expect(() => decodeJournalRecord(bytes, '/j/r')).toThrow(expect.objectContaining({ code: ErrorCode.Corrupt, message: expect.stringMatching(/^\/j\/r: .*flag 7/) }));
  });

  it.each([
    [journalRecordName(1), 1],
    [journalRecordName(2 ** 40), 2 ** 40],
    ['00000000000000000000.rec', undefined],
    ['1.rec', undefined],
    ['00000000000000000001.rec.tmp', undefined],
  ])('record name %s parses as %s', (name, sequence) => {
    expect(parseJournalRecordName(name)).toBe(sequence);
  });
});

/** A copy of an open store's directory: the state a crash leaves after its acknowledged writes. */
function crashCopy(store: ReplicaLogStore): string {
  const copy = join(makeTempDir('replicalog-journal-crash-'), 'store');
  cpSync(store.dir, copy, { recursive: true });
  return copy;
}

const journalNames = (dir: string) => (existsSync(join(dir, JOURNAL_DIRECTORY)) ? readdirSync(join(dir, JOURNAL_DIRECTORY)).sort() : []);

/**
 * The sequences of the whole records journal/ holds, ascending: record files by name, segments
 * by their contents (a zero-filled spare holds none).
 */
function journalSequences(dir: string): number[] {
  const sequences: number[] = [];
  for (const name of journalNames(dir)) {
    const sequence = parseJournalRecordName(name);
    if (sequence !== undefined) sequences.push(sequence);
    else if (parseJournalSegmentName(name) !== undefined) {
      const path = join(dir, JOURNAL_DIRECTORY, name);
      sequences.push(...scanJournalSegment(readFileSync(path), path).records.map((record) => record.sequence));
    } else throw new Error(`unexpected name ${name} in journal/`);
  }
  return sequences.sort((a, b) => a - b);
}

/**
 * The default file system writes records into segments (it has writeAt and syncData); without
 * them a store writes one record file per group (wal.journalSegmentsSupported).
 */
const recordFileSystem: FileSystem = { ...nodeFileSystem, writeAt: undefined, syncData: undefined };
type JournalWriter = 'segments' | 'record files';
const fileSystemFor = (writer: JournalWriter): FileSystem => (writer === 'segments' ? nodeFileSystem : recordFileSystem);
const writers: JournalWriter[] = ['segments', 'record files'];

/** Records wait for a checkpoint until their count calls for one (or a close): no timer here. */
async function openJournal(dir: string, journalCheckpointDelayMs = 600_000, writer: JournalWriter = 'segments'): Promise<ReplicaLogStore> {
  return ReplicaLogStore.open({ dir, journal: true, journalCheckpointDelayMs, fileSystem: fileSystemFor(writer) });
}

describe('a journal-mode store', () => {
  it.each([
    ['segments', (names: string[]) => expect(names.filter((name) => name !== journalSegmentName(2))).toEqual([journalSegmentName(1)])],
    ['record files', (names: string[]) => expect(names).toEqual([journalRecordName(1), journalRecordName(2)])],
  ] as const)('%s: acknowledges a group with one record; verify and inspect see it after a crash, and a reopen replays it (wal/ and KV behind it)', async (writer, expectNames) => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir, undefined, writer);
    await Promise.all([store.append(run(1, 3, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
    await store.append(run(4, 5, 1));
    // Segments: both records in segment 1 (segment 2, the spare, may be made already).
    expectNames(journalNames(dir));
    expect(journalSequences(dir)).toEqual([1, 2]);
    expect(store.stats()).toMatchObject({ journalCheckpoints: 0, journalRecordsWaiting: 2, journalEntriesWaiting: 5 });
    // Nothing in wal/ yet: the checkpoint runs behind, at its threshold or at close.
    expect(readdirSync(walPath(dir))).toEqual([]);
    const copy = crashCopy(store);
    await store.close();
    expect(journalNames(dir)).toEqual([]);
    expect(readdirSync(walPath(dir))).toHaveLength(5);

    // verify and inspect (read-only) see the records the crash left.
    const before = await verifyTree(copy);
    expect(before.problems).toEqual([]);
    expect(before.notices.map((notice) => [notice.code, notice.message])).toContainEqual(['JOURNAL_PENDING', expect.stringMatching(/^2 journal records \(5 entries\) wait in /)]);
    await ensureBuilt();
    const inspected = await runCli(['inspect', copy, '--json']);
    expect(JSON.parse(inspected.stdout)).toMatchObject({ journalPending: 2, lastIndex: 0, ok: true });
    expect((await runCli(['inspect', copy])).stdout).toMatch(/^ *journal +2 records wait in .*journal \(the figures above are wal\/'s and KV's\)/m);
    const reopened = await ReplicaLogStore.open({ dir: copy });
    expect(reopened.repairs).toEqual(['replayed 2 journal records (5 entries written into wal/)']);
    expect(hex(reopened.entries(1, 6))).toEqual(hex(run(1, 5, 1)));
    expect(reopened.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 2 });
    expect(journalNames(copy)).toEqual([]);
    await reopened.close();
    expect(await verifyTree(copy)).toEqual({ ok: true, problems: [], notices: [] });
  });

  it.each(writers)('%s: replays truncations in order: a later group replacing the tail of an earlier one', async (writer) => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir, undefined, writer);
    await Promise.all([store.append(run(1, 5, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
    await store.append(run(3, 4, 2)); // cuts 3..5 of term 1
    await store.append(run(5, 6, 2));
    expect(hex(store.entries(1, 7))).toEqual(hex([...run(1, 2, 1), ...run(3, 6, 2)]));
    expect(journalSequences(dir)).toEqual([1, 2, 3]);
    const copy = crashCopy(store);
    await store.close();
    for (const dir of [store.dir, copy]) {
      const reopened = await ReplicaLogStore.open({ dir });
      expect(reopened.repairs).toEqual(dir === copy ? ['replayed 3 journal records (6 entries written into wal/)'] : []);
      expect(hex(reopened.entries(1, 7))).toEqual(hex([...run(1, 2, 1), ...run(3, 6, 2)]));
      expect(reopened.lastIndex()).toBe(6);
      await reopened.close();
    }
  });

  it.each(writers)('%s: checkpoints behind the acknowledgements once enough entries wait, and serves reads throughout', async (writer) => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir, undefined, writer);
    const total = JOURNAL_CHECKPOINT_ENTRIES + 100;
    for (let first = 1; first <= total; first += 50) {
      await Promise.all([store.append(run(first, first + 49, 1)), store.setHardState({ term: 1, vote: 1, commit: first + 49 })]);
      expect(store.entries(first, first + 50).map((item) => item.index)).toEqual(run(first, first + 49, 1).map((item) => item.index));
    }
    // The checkpoint writes the entries into wal/, then removes the records it covered (last):
    // record files one by one; segments only once filled (segment 1 is not, it stays).
    await expect.poll(() => store.stats().journalCheckpoints, { timeout: 20_000 }).toBeGreaterThanOrEqual(1);
    expect(readdirSync(walPath(dir)).length).toBeGreaterThanOrEqual(JOURNAL_CHECKPOINT_ENTRIES);
    if (writer === 'record files') await expect.poll(() => journalSequences(dir).length, { timeout: 20_000 }).toBeLessThan(Math.ceil(total / 50));
    else expect(journalNames(dir)[0]).toBe(journalSegmentName(1));
    expect(hex(store.entries(1, total + 1))).toEqual(hex(run(1, total, 1)));
    await store.close();
  });

  it.each([
    // Segment 1 is still the one written: it stays (its record is covered by raft/journal_through).
    ['segments', [1]],
    ['record files', []],
  ] as const)('%s: a quiet store checkpoints within about a second: its entries reach wal/ without a close', async (writer, sequencesLeft) => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir, JOURNAL_CHECKPOINT_DELAY_MS, writer);
    await Promise.all([store.append(run(1, 3, 1)), store.setHardState({ term: 1, vote: 1, commit: 3 })]);
    await expect.poll(() => store.stats().journalCheckpoints, { timeout: JOURNAL_CHECKPOINT_DELAY_MS + 10_000, interval: 100 }).toBe(1);
    expect(readdirSync(walPath(dir))).toHaveLength(3);
    expect(store.stats()).toMatchObject({ journalCheckpoints: 1, journalRecordsWaiting: 0, journalEntriesWaiting: 0 });
    await expect.poll(() => journalSequences(dir), { timeout: 5000 }).toEqual(sequencesLeft);
    // A crash now: the record left behind is covered, nothing is replayed.
    const copy = crashCopy(store);
    await store.close();
    const reopened = await ReplicaLogStore.open({ dir: copy });
    expect(reopened.repairs).toEqual([]);
    expect(hex(reopened.entries(1, 4))).toEqual(hex(run(1, 3, 1)));
    expect(journalNames(copy)).toEqual([]);
    await reopened.close();
  });

  it.each(writers)('%s: records at or below raft/journal_through (a checkpoint whose removals a crash undid) are leftovers', async (writer) => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir, undefined, writer);
    await store.append(run(1, 2, 1));
    expect(journalSequences(dir)).toEqual([1]);
    await store.close(); // checkpoint: journal_through = 1, the record removed
    expect(journalNames(dir)).toEqual([]);
    // The record as a record file (open reads those whichever writer made the journal).
    writeFileSync(join(dir, JOURNAL_DIRECTORY, journalRecordName(1)), encodeJournalRecord({ entries: run(1, 2, 1) }));
    const reopened = await ReplicaLogStore.open({ dir });
    expect(reopened.repairs).toEqual([]);
    expect(journalNames(dir)).toEqual([]);
    expect(reopened.lastIndex()).toBe(2);
    // The sequence goes on after the leftover: a new group is record 2.
    await reopened.close();
    const again = await openJournal(dir, undefined, writer);
    await again.append(run(3, 3, 1));
    expect(journalSequences(dir)).toEqual([2]);
    expect(journalNames(dir)[0]).toBe(writer === 'segments' ? journalSegmentName(1) : journalRecordName(2));
    await again.close();
  });

  /**
   * A crashed journal-mode store with records 1..3 pending (entries 1..6, commit 4 in record 2),
   * as record files (a storage's partitions, a file system without writeAt; segments:
   * journal-segments.test.ts).
   */
  async function crashedWithThreeRecords(): Promise<string> {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir, undefined, 'record files');
    await store.append(run(1, 2, 1));
    await Promise.all([store.append(run(3, 4, 1)), store.setHardState({ term: 1, vote: 1, commit: 4 })]);
    await store.append(run(5, 6, 1));
    const copy = crashCopy(store);
    await store.close();
    return copy;
  }
  const recordPath = (dir: string, sequence: number) => join(dir, JOURNAL_DIRECTORY, journalRecordName(sequence));

  it.each([
    [
      'the newest record torn (its group was never acknowledged): dropped, the rest replayed',
      (dir: string) => writeFileSync(recordPath(dir, 3), readFileSync(recordPath(dir, 3)).subarray(0, 10)),
      { lastIndex: 4, repairs: [/^dropped the torn journal record .*00000000000000000003\.rec \(10 bytes, shorter than a record header\)/, /^replayed 2 journal records/] },
    ],
    [
      'the newest record zeroed (data lost, name kept): dropped',
      (dir: string) => writeFileSync(recordPath(dir, 3), new Uint8Array(readFileSync(recordPath(dir, 3)).length)),
      { lastIndex: 4, repairs: [/no record magic/, /^replayed 2 journal records/] },
    ],
    [
      'a torn record before a whole one: ERR_CORRUPT',
      (dir: string) => writeFileSync(recordPath(dir, 2), readFileSync(recordPath(dir, 2)).subarray(0, 20)),
      { error: /00000000000000000002\.rec: torn journal record .* before .*00000000000000000003\.rec/ },
    ],
    [
      'an emptied record before a whole one: ERR_CORRUPT',
      (dir: string) => writeFileSync(recordPath(dir, 1), ''),
      { error: /00000000000000000001\.rec: torn journal record \(0 bytes/ },
    ],
    [
      'a stray name in journal/: ERR_CORRUPT',
      (dir: string) => writeFileSync(join(dir, JOURNAL_DIRECTORY, 'notes.txt'), 'x'),
      { error: /stray name in the journal: .*notes\.txt is not a journal record/ },
    ],
    [
      'a whole record that does not apply (a gap after the log): ERR_CORRUPT',
      (dir: string) => writeFileSync(recordPath(dir, 3), encodeJournalRecord({ entries: run(9, 9, 1) })),
      { error: /00000000000000000003\.rec: the journal record does not apply to the log in .*wal/ },
    ],
  ])('%s', async (_name, damage, expected: { lastIndex?: number; repairs?: RegExp[]; error?: RegExp }) => {
    const dir = await crashedWithThreeRecords();
    damage(dir);
    if (expected.error !== undefined) {
      await expect(ReplicaLogStore.open({ dir })).rejects.toMatchObject({ code: ErrorCode.Corrupt, message: expect.stringMatching(expected.error) });
      const verified = await verifyTree(dir);
      expect(verified.ok).toBe(/does not apply/.test(String(expected.error)));
      return;
    }
    const store = await ReplicaLogStore.open({ dir });
    expect(store.lastIndex()).toBe(expected.lastIndex);
    expect(store.repairs).toHaveLength(expected.repairs!.length);
    expected.repairs!.forEach((pattern, position) => expect(store.repairs[position]).toMatch(pattern));
    await store.close();
  });

  it('a missing record before a later one is ERR_CORRUPT (its group was acknowledged before the later one was written)', async () => {
    const dir = await crashedWithThreeRecords();
    const { rmSync } = await import('node:fs');
    rmSync(recordPath(dir, 2));
    await expect(ReplicaLogStore.open({ dir })).rejects.toMatchObject({
      code: ErrorCode.Corrupt,
      message: expect.stringMatching(/^journal record 2 is missing \(the next one is 3, .*journal\/00000000000000000003\.rec\)$/),
    });
    expect((await verifyTree(dir)).problems.map((problem) => problem.code)).toEqual(['JOURNAL_CORRUPT']);
  });

  it('every other write first drains the journal: compact sees the entries in wal/', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    await Promise.all([store.append(run(1, 6, 1)), store.setHardState({ term: 1, vote: 1, commit: 6 })]);
    expect(readdirSync(walPath(dir))).toEqual([]);
    expect(store.stats()).toMatchObject({ journalRecordsWaiting: 1, journalCheckpoints: 0 });
    await store.compact(3);
    expect(store.stats()).toMatchObject({ journalRecordsWaiting: 0, journalCheckpoints: 1 });
    expect(readdirSync(walPath(dir)).length).toBeGreaterThanOrEqual(3);
    expect(store.firstIndex()).toBe(4);
    // The compacted directories wait in wal/ for a checkpoint to reuse them (recycling); close
    // removes those left.
    expect(readdirSync(walPath(dir))).toHaveLength(6);
    await store.close();
    expect(readdirSync(walPath(dir))).toEqual(run(4, 6, 1).map((item) => formatLsn(item.index)));
  });

  // Record files: verify reads the crash copy's pending journal (segments: spec/journal-segments.test.ts).
  it('compact below every waiting record does not drain the journal; at or above the first one it does', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir, undefined, 'record files');
    await Promise.all([store.append(run(1, 6, 1)), store.setHardState({ term: 1, vote: 1, commit: 6 })]);
    await store.compact(3); // drains: the record writes 1..6
    await Promise.all([store.append(run(7, 10, 1)), store.setHardState({ term: 1, vote: 1, commit: 10 })]);
    await store.compact(5); // below 7, the waiting record's first entry
    expect(store.stats()).toMatchObject({ journalRecordsWaiting: 1, journalCheckpoints: 1 });
    expect(journalSequences(dir).at(-1)).toBe(2);
    // 1..5 compacted, waiting in wal/ for reuse (recycling).
    await expect.poll(() => store.stats().recyclePoolSize, { timeout: 5000 }).toBe(5);
    expect(readdirSync(walPath(dir))).toEqual(run(1, 6, 1).map((item) => formatLsn(item.index)));
    expect(store.firstIndex()).toBe(6);
    const copy = crashCopy(store);
    // Only the directories kept for a checkpoint to reuse, at or below the anchor, are left over.
    expect(new Set((await verifyTree(copy)).problems.map((problem) => problem.code))).toEqual(new Set(['COMPACTION_LEFTOVER']));
    await store.compact(8); // 8 is in the waiting record: drained first (7..10 reuse 1..4)
    expect(store.stats()).toMatchObject({ journalRecordsWaiting: 0, journalCheckpoints: 2 });
    await store.close();
    expect(readdirSync(walPath(dir))).toEqual([formatLsn(9), formatLsn(10)]);
    const reopened = await ReplicaLogStore.open({ dir: copy });
    expect([reopened.firstIndex(), reopened.lastIndex()]).toEqual([6, 10]);
    expect(hex(reopened.entries(6, 11))).toEqual(hex(run(6, 10, 1)));
    await reopened.close();
  });

  it("a compaction's directory moves run behind the queue: write groups after it do not wait for them; a drained write does", async () => {
    const dir = join(makeTempDir(), 'store');
    let releaseMoves!: () => void;
    const movesMayRun = new Promise<void>((resolve) => (releaseMoves = resolve));
    const fileSystem: FileSystem = {
      ...nodeFileSystem,
      // No recycling (it needs overwriteFile): a compaction moves its directories out.
      overwriteFile: undefined,
      // Held: a compaction's renames out of wal/ (into a staging/ batch directory).
      rename: async (from, to) => {
        if (from.startsWith(walPath(dir)) && to.includes('/staging/batch-')) await movesMayRun;
        return nodeFileSystem.rename(from, to);
      },
    };
    const store = await ReplicaLogStore.open({ dir, journal: true, journalCheckpointDelayMs: 600_000, fileSystem });
    await Promise.all([store.append(run(1, 6, 1)), store.setHardState({ term: 1, vote: 1, commit: 6 })]);
    await store.compact(3); // drains (1..6 reach wal/), records the anchor; the moves wait
    expect(store.firstIndex()).toBe(4);
    await Promise.all([store.append(run(7, 8, 1)), store.setHardState({ term: 1, vote: 1, commit: 8 })]);
    expect(store.lastIndex()).toBe(8);
    expect(readdirSync(walPath(dir))).toEqual(run(1, 6, 1).map((item) => formatLsn(item.index)));
    let drained = false;
    const confChange = store.setConfState({ voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }).then(() => (drained = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(drained).toBe(false);
    releaseMoves();
    await confChange;
    expect(readdirSync(walPath(dir))).toEqual(run(4, 8, 1).map((item) => formatLsn(item.index)));
    await store.close();
    expect(await verifyTree(dir)).toEqual({ ok: true, problems: [], notices: [] });
  });

  // Record files: verify reads the crash copy's pending journal (segments: spec/journal-segments.test.ts).
  it('createSnapshot does not drain the journal: a snapshot above wal/ is covered by the records, and a crash then replays them', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir, undefined, 'record files');
    await Promise.all([store.append(run(1, 6, 1)), store.setHardState({ term: 1, vote: 1, commit: 6 })]);
    const data = new TextEncoder().encode('state at 4');
    expect((await store.createSnapshot(4, undefined, data)).metadata).toMatchObject({ index: 4, term: 1 });
    expect(store.stats()).toMatchObject({ journalRecordsWaiting: 1, journalCheckpoints: 0 });
    expect(journalSequences(dir)).toEqual([1]);
    expect(readdirSync(walPath(dir))).toEqual([]);
    const copy = crashCopy(store);
    await store.close();
    const before = await verifyTree(copy);
    expect(before.problems).toEqual([]);
    expect(before.notices.map((notice) => notice.code)).toEqual(['JOURNAL_PENDING']);
    const reopened = await ReplicaLogStore.open({ dir: copy });
    expect(reopened.snapshot()).toMatchObject({ metadata: { index: 4, term: 1 }, data });
    expect(hex(reopened.entries(1, 7))).toEqual(hex(run(1, 6, 1)));
    await reopened.close();
    expect(await verifyTree(copy)).toEqual({ ok: true, problems: [], notices: [] });
  });

  it('verify still reports a snapshot above the log when the journal does not reach it either', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    await Promise.all([store.append(run(1, 6, 1)), store.setHardState({ term: 1, vote: 1, commit: 6 })]);
    await store.createSnapshot(6, undefined, new TextEncoder().encode('state at 6'));
    const copy = crashCopy(store);
    await store.close();
    // The record is lost: the snapshot is above both wal/ (empty) and the journal.
    for (const name of journalNames(copy)) writeFileSync(join(copy, JOURNAL_DIRECTORY, name), new Uint8Array(0));
    const problems = (await verifyTree(copy)).problems;
    expect(problems.map((problem) => [problem.code, problem.message])).toContainEqual(['SNAPSHOT_BEYOND_LOG', "the snapshot's index 6 is above the last index 0"]);
  });

  it('a compaction beside a running checkpoint (below its records) leaves a store that reopens whole', async () => {
    const dir = join(makeTempDir(), 'store');
    const store = await openJournal(dir);
    await Promise.all([store.append(run(1, 100, 1)), store.setHardState({ term: 1, vote: 1, commit: 100 })]);
    await store.compact(50); // drained: 51..100 in wal/
    // Enough entries to start a checkpoint, which runs while compact(90) is queued and runs.
    const total = JOURNAL_CHECKPOINT_ENTRIES + 100;
    await Promise.all([store.append(run(101, total, 1)), store.setHardState({ term: 1, vote: 1, commit: total })]);
    await store.compact(90);
    expect(store.firstIndex()).toBe(91);
    await store.close();
    const reopened = await ReplicaLogStore.open({ dir });
    expect([reopened.firstIndex(), reopened.lastIndex()]).toEqual([91, total]);
    expect(hex(reopened.entries(91, total + 1))).toEqual(hex(run(91, total, 1)));
    await reopened.close();
    expect(await verifyTree(dir)).toEqual({ ok: true, problems: [], notices: [] });
  });
});

