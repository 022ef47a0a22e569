/**
 * backfill(): migrating a WAL written before Raft (API.md last on-disk bullet; gitaly.md §1.5,
 * B7). Pre-Raft trees are built by hand exactly as Gitaly's log manager leaves them: entry
 * directories with a MANIFEST and payload files, no RAFT, no hard state.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeEntry, decodeRaftEntry, encodeEntry, encodeLogEntry, encodeRaftEntry } from '../lib/codec.js';
import { ErrorCode } from '../lib/errors.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import { entryPath, formatLsn } from '../lib/wal/layout.js';
import type { CrashPointName } from '../lib/wal/log-manager.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { closeTestStores, codeOf, openTestStore, reopenTestStore, type TestStoreOptions } from './helpers/stores.js';

afterEach(closeTestStores);

const open = (dir: string, options: TestStoreOptions = {}): Promise<ReplicaLogStore> => openTestStore({ ...options, dir });
const reopen = reopenTestStore;

const utf8 = (text: string) => new TextEncoder().encode(text);

/** What Gitaly's log manager leaves for entry `index`: MANIFEST + payloads, and RAFT only if given. */
function writeGitalyEntry(dir: string, index: number, raft?: Uint8Array): void {
  const directory = entryPath(dir, index);
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const manifest = encodeLogEntry({
    relativePath: `@hashed/repo-${index}.git`,
    referenceTransactions: [{ changes: [{ referenceName: utf8('refs/heads/main'), newOid: utf8(`oid-${index}`), newTarget: new Uint8Array(0) }] }],
    operations: [],
  });
  writeFileSync(join(directory, 'MANIFEST'), manifest, { mode: 0o400 });
  writeFileSync(join(directory, '1'), `payload-${index}`, { mode: 0o400 });
  if (raft !== undefined) writeFileSync(join(directory, 'RAFT'), raft, { mode: 0o400 });
}

/** The RAFT entry backfill must write for `index` with `term`. */
function backfilledEntry(index: number, term: number): Entry {
  return {
    type: EntryType.Normal,
    term,
    index,
    data: new Uint8Array(encodeRaftEntry({ id: 0, data: { localPath: utf8(`wal/${formatLsn(index)}`), packed: new Uint8Array(0) } })),
  };
}

function raftOf(dir: string, index: number): Entry {
  return decodeEntry(readFileSync(join(entryPath(dir, index), 'RAFT')));
}

/** Bytes and mtimes of MANIFEST and payload files, to prove backfill never touches them. */
function untouchedFiles(dir: string, indexes: number[]): string[] {
  return indexes.flatMap((index) =>
    ['MANIFEST', '1'].map((name) => {
      const path = join(entryPath(dir, index), name);
      return `${path} ${statSync(path).mtimeMs} ${readFileSync(path).toString('hex')}`;
    }),
  );
}

describe('backfill', () => {
  it('a fresh pre-Raft WAL: needs-backfill, raft reads and writes refused, then one RAFT per entry (term 0), with progress', async () => {
    const dir = makeTempDir();
    for (const index of [1, 2, 3]) writeGitalyEntry(dir, index);
    const before = untouchedFiles(dir, [1, 2, 3]);
    let store = await open(dir);
    expect([store.status, store.pendingBackfill, store.firstIndex(), store.lastIndex(), store.term(0)]).toEqual(['needs-backfill', 3, 1, 3, 0]);
    let message = '';
    try {
      store.entries(1, 2);
    } catch (error) {
      message = (error as Error).message;
      expect((error as { code: string }).code).toBe(ErrorCode.NeedsBackfill);
    }
    expect(message).toContain(`replicalog migrate ${dir}`);
    expect(message).toContain('store.backfill()');
    const refused: (() => unknown)[] = [
      () => store.term(2),
      () => store.append([{ type: EntryType.Normal, term: 1, index: 4 }]),
      () => store.setHardState({ term: 1, vote: 0, commit: 0 }),
      () => store.setConfState({ voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }),
      () => store.compact(1),
      () => store.createSnapshot(2),
      () => store.applySnapshot({ metadata: { index: 9, term: 1, confState: { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } }),
    ];
    for (const call of refused) expect(await codeOf(call)).toBe(ErrorCode.NeedsBackfill);

    const progress: [number, number][] = [];
    expect(await store.backfill({ onProgress: (done, total) => progress.push([done, total]) })).toEqual({ backfilled: 3 });
    expect(progress).toEqual([[0, 3], [1, 3], [2, 3], [3, 3]]);
    for (const index of [1, 2, 3]) {
      expect(raftOf(dir, index)).toEqual(backfilledEntry(index, 0));
      expect(decodeRaftEntry(raftOf(dir, index).data!).data!.localPath).toEqual(utf8(`wal/${formatLsn(index)}`));
      expect(statSync(join(entryPath(dir, index), 'RAFT')).mode & 0o777).toBe(0o400);
      expect(readdirSync(entryPath(dir, index)).sort()).toEqual(['1', 'MANIFEST', 'RAFT']);
    }
    expect(untouchedFiles(dir, [1, 2, 3])).toEqual(before);
    expect(store.pendingBackfill).toBe(0);
    expect(store.entries(1, 4)).toEqual([1, 2, 3].map((index) => backfilledEntry(index, 0)));
    await store.setHardState({ term: 1, vote: 0, commit: 3 });
    store = await reopen(store);
    expect([store.status, store.pendingBackfill, store.term(3)]).toEqual(['bootstrapped', 0, 0]);
  });

  it('idempotent: a second run (also after a reopen) writes nothing and reports no progress', async () => {
    const dir = makeTempDir();
    for (const index of [1, 2]) writeGitalyEntry(dir, index);
    let store = await open(dir);
    await store.backfill();
    const raftFiles = () => [1, 2].map((index) => statSync(join(entryPath(dir, index), 'RAFT')).mtimeMs + ':' + statSync(join(entryPath(dir, index), 'RAFT')).ino);
    const before = raftFiles();
    const progress: number[] = [];
    expect(await store.backfill({ onProgress: (done) => progress.push(done) })).toEqual({ backfilled: 0 });
    store = await reopen(store);
    expect([store.status, store.pendingBackfill]).toEqual(['needs-backfill', 0]);
    expect(await store.backfill({ onProgress: (done) => progress.push(done) })).toEqual({ backfilled: 0 });
    expect([raftFiles(), progress]).toEqual([before, []]);
  });

  it('opening a pre-Raft WAL does not pin its start: Gitaly may go on pruning it before the migration', async () => {
    const dir = makeTempDir();
    for (const index of [1, 2, 3]) writeGitalyEntry(dir, index);
    let store = await open(dir);
    expect(store.firstIndex()).toBe(1);
    await store.close();
    rmSync(entryPath(dir, 1), { recursive: true }); // pruned by Gitaly, Raft still off
    store = await open(dir);
    expect([store.firstIndex(), store.lastIndex(), store.pendingBackfill]).toEqual([2, 3, 2]);
  });

  it('a pruned pre-Raft WAL starting at LSN 5: firstIndex 5, entries backfilled from 5', async () => {
    const dir = makeTempDir();
    for (const index of [5, 6]) writeGitalyEntry(dir, index);
    const store = await open(dir);
    expect([store.firstIndex(), store.lastIndex(), store.term(4)]).toEqual([5, 6, 0]);
    expect(await store.backfill()).toEqual({ backfilled: 2 });
    expect(store.entries(5, 7)).toEqual([backfilledEntry(5, 0), backfilledEntry(6, 0)]);
  });

  // Each row: which entries already have a RAFT file (index → term), the saved hard state's
  // term (undefined: none), and the terms backfill must write.
  const termCases: { name: string; raft: Record<number, number>; hardStateTerm?: number; count: number; want: Record<number, number> }[] = [
    { name: 'from the nearest earlier entry', raft: { 1: 2, 2: 3 }, count: 4, want: { 3: 3, 4: 3 } },
    { name: 'from the nearest earlier entry, not a later one', raft: { 2: 5 }, count: 3, want: { 1: 0, 3: 5 } },
    { name: "from the hard state's term when no earlier entry has one", raft: {}, hardStateTerm: 4, count: 2, want: { 1: 4, 2: 4 } },
    { name: "the nearest earlier entry wins over the hard state's term", raft: { 1: 2 }, hardStateTerm: 4, count: 3, want: { 2: 2, 3: 2 } },
    { name: 'else 0', raft: {}, count: 2, want: { 1: 0, 2: 0 } },
  ];
  it.each(termCases)('terms: $name', async ({ raft, hardStateTerm, count, want }) => {
    const dir = makeTempDir();
    if (hardStateTerm !== undefined) {
      const seed = await ReplicaLogStore.open({ dir });
      await seed.setHardState({ term: hardStateTerm, vote: 0, commit: 0 });
      await seed.close();
    }
    for (let index = 1; index <= count; index++) {
      const term = raft[index];
      writeGitalyEntry(dir, index, term === undefined ? undefined : encodeEntry({ type: EntryType.Normal, term, index }));
    }
    const store = await open(dir);
    expect(store.status).toBe(hardStateTerm === undefined ? 'needs-backfill' : 'bootstrapped');
    expect(await store.backfill()).toEqual({ backfilled: Object.keys(want).length });
    for (const [index, term] of Object.entries(want)) expect(raftOf(dir, Number(index))).toEqual(backfilledEntry(Number(index), term));
    for (const [index, term] of Object.entries(raft)) expect(raftOf(dir, Number(index))).toEqual({ type: EntryType.Normal, term, index: Number(index) });
  });

  const damaged = [
    { name: 'a zero-length RAFT (Gitaly B7 torn write)', raft: new Uint8Array(0) },
    { name: 'an undecodable RAFT', raft: Uint8Array.of(0xff, 0xff) },
    { name: 'a RAFT whose index is not its LSN', raft: encodeEntry({ type: EntryType.Normal, term: 7, index: 9 }) },
  ];
  it.each(damaged)('$name is rewritten when the store is not bootstrapped', async ({ raft }) => {
    const dir = makeTempDir();
    writeGitalyEntry(dir, 1, encodeEntry({ type: EntryType.Normal, term: 2, index: 1 }));
    writeGitalyEntry(dir, 2, raft);
    const store = await open(dir);
    expect(store.pendingBackfill).toBe(1);
    expect(await store.backfill()).toEqual({ backfilled: 1 });
    expect(raftOf(dir, 2)).toEqual(backfilledEntry(2, 2));
  });

  it.each(damaged)('$name on a bootstrapped store is corruption: open fails with ERR_CORRUPT naming the directory', async ({ raft }) => {
    const dir = makeTempDir();
    const seed = await ReplicaLogStore.open({ dir });
    await seed.setHardState({ term: 1, vote: 0, commit: 0 });
    await seed.close();
    writeGitalyEntry(dir, 1, raft);
    const error = await ReplicaLogStore.open({ dir }).then(
      () => undefined,
      (reason: { code: string; path: string }) => reason,
    );
    expect([error?.code, error?.path]).toEqual([ErrorCode.Corrupt, entryPath(dir, 1)]);
  });

  it('entries appended without Raft to a bootstrapped store (Raft toggled off and on) are backfilled with the last term', async () => {
    const dir = makeTempDir();
    let store = await open(dir);
    await store.append([{ type: EntryType.Normal, term: 3, index: 1, data: utf8('raft') }]);
    await store.setHardState({ term: 5, vote: 1, commit: 1 });
    await store.close();
    writeGitalyEntry(dir, 2);
    store = await open(dir);
    expect([store.status, store.pendingBackfill, store.lastIndex(), store.term(1)]).toEqual(['bootstrapped', 1, 2, 3]);
    expect(await codeOf(() => store.term(2))).toBe(ErrorCode.NeedsBackfill);
    expect(await store.backfill()).toEqual({ backfilled: 1 });
    expect(store.entries(1, 3)).toEqual([{ type: EntryType.Normal, term: 3, index: 1, data: utf8('raft') }, backfilledEntry(2, 3)]);
  });

  const crashes: { point: CrashPointName; raftAfterCrash: 'absent' | 'complete' }[] = [
    { point: 'backfill-after-temp-write', raftAfterCrash: 'absent' },
    { point: 'backfill-before-rename', raftAfterCrash: 'absent' },
    { point: 'backfill-after-rename', raftAfterCrash: 'complete' },
  ];
  it.each(crashes)('B7: backfill is atomic (temp+rename): a crash at $point leaves RAFT $raftAfterCrash, never torn; a rerun resumes', async ({ point, raftAfterCrash }) => {
    const dir = makeTempDir();
    for (const index of [1, 2, 3]) writeGitalyEntry(dir, index);
    let hits = 0;
    let store = await open(dir, {
      crashPoint: (name) => {
        // Crash while backfilling the second entry.
        if (name === point && ++hits === 2) throw new Error(`simulated crash at ${name}`);
      },
    });
    expect(await codeOf(() => store.backfill())).toBe(ErrorCode.Io);
    expect(await codeOf(() => store.backfill())).toBe(ErrorCode.Io); // refused until reopened
    // Entries are rewritten concurrently, so which entry crashed is not fixed: every RAFT file
    // must be either absent or complete (never torn), and the crashed one is absent exactly when
    // the crash came before its rename.
    const states = [1, 2, 3].map((index) => {
      if (!existsSync(join(entryPath(dir, index), 'RAFT'))) return 'absent';
      expect(raftOf(dir, index)).toEqual(backfilledEntry(index, 0));
      return 'complete';
    });
    const absent = states.filter((state) => state === 'absent').length;
    if (raftAfterCrash === 'absent') expect(absent).toBeGreaterThan(0);
    store = await reopen(store);
    expect(store.pendingBackfill).toBe(absent);
    expect(await store.backfill()).toEqual({ backfilled: absent });
    for (const index of [1, 2, 3]) {
      expect(raftOf(dir, index)).toEqual(backfilledEntry(index, 0));
      expect(readdirSync(entryPath(dir, index)).sort()).toEqual(['1', 'MANIFEST', 'RAFT']); // no RAFT.tmp left
    }
  });

  it('a RAFT.tmp left by a crashed backfill (mode 0400) does not block the next run', async () => {
    const dir = makeTempDir();
    writeGitalyEntry(dir, 1);
    writeFileSync(join(entryPath(dir, 1), 'RAFT.tmp'), 'partial', { mode: 0o400 });
    const store = await open(dir);
    expect(await store.backfill()).toEqual({ backfilled: 1 });
    expect(readdirSync(entryPath(dir, 1)).sort()).toEqual(['1', 'MANIFEST', 'RAFT']);
    rmSync(dir, { recursive: true, force: true });
  });
});
