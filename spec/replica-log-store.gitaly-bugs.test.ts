/**
 * Gitaly's ReplicaLogStore / log manager bugs (reference/gitaly.md §1.13, §3.5), each pinned by
 * a test named after it. Where the fix changes a Gitaly test expectation, the test says so.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { entrySize } from '../lib/codec.js';
import { ErrorCode } from '../lib/errors.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, NO_LIMIT, type Entry } from '../lib/types.js';
import { nodeFileSystem, type FileSystem } from '../lib/wal/file-system.js';
import { entryPath, formatLsn, walPath } from '../lib/wal/layout.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { closeTestStores, codeOf, openTestStore, reopenTestStore } from './helpers/stores.js';

afterEach(closeTestStores);

const open = openTestStore;
const reopen = reopenTestStore;

const entry = (index: number, term: number, size = 0): Entry => ({ type: EntryType.Normal, term, index, data: new Uint8Array(size).fill(index) });
const terms = (first: number, ...values: number[]) => values.map((term, offset) => entry(first + offset, term));

describe('Gitaly bugs, fixed', () => {
  // Gitaly read maxSize as an entry count: lo+maxSize-1 overflowed for MaxUint64 and returned
  // zero entries for lo >= 2 (etcd's scan then panics). Divergence from Gitaly's "limit" cases.
  const one = entrySize(entry(2, 1, 100));
  const limits = [
    { maxSize: 0, want: 1 },
    { maxSize: 1, want: 1 },
    { maxSize: one, want: 1 },
    { maxSize: one + 1, want: 1 },
    { maxSize: 2 * one, want: 2 },
    { maxSize: 3 * one - 1, want: 2 },
    { maxSize: 3 * one, want: 3 },
    { maxSize: Number.MAX_SAFE_INTEGER, want: 3 },
    { maxSize: NO_LIMIT, want: 3 },
  ];
  for (const cached of [true, false]) {
    it.each(limits)(
      `B1: maxSize is bytes and at least one entry is returned (${cached ? 'cached' : 'read from RAFT files'}): maxSize $maxSize → $want`,
      async ({ maxSize, want }) => {
        let store = await open({ cacheMaxEntries: cached ? undefined : 0 });
        await store.append([entry(1, 1, 100), entry(2, 1, 100), entry(3, 1, 100), entry(4, 1, 100)]);
        if (!cached) store = await reopen(store, { cacheMaxEntries: 0 });
        const read = store.entries(2, 5, maxSize);
        expect(read.map((e) => e.index)).toEqual([2, 3, 4].slice(0, want));
        expect(read[0]!.data).toEqual(new Uint8Array(100).fill(2));
      },
    );
  }

  it('B2: a RAFT file missing below the low-water mark maps to ERR_COMPACTED (not raw ENOENT), during and after pruning', async () => {
    const dir = makeTempDir();
    let gate: Promise<void> | undefined;
    let release!: () => void;
    let reached!: () => void;
    const atGate = new Promise<void>((resolve) => (reached = resolve));
    const fileSystem: FileSystem = {
      ...nodeFileSystem,
      async rename(from, to) {
        // Pause the compaction after its first directory left wal/.
        const result = await nodeFileSystem.rename(from, to);
        if (gate && from.startsWith(walPath(dir))) {
          reached();
          await gate;
        }
        return result;
      },
    };
    const store = await open({ dir, fileSystem, cacheMaxEntries: 0 });
    await store.append(terms(1, 1, 1, 2, 2, 2));
    gate = new Promise<void>((resolve) => (release = resolve));
    const compaction = store.compact(3);
    await atGate;
    try {
      // Mid-pruning: entry 1 is gone, 2 and 3 are still on disk, the anchor is durable.
      expect([existsSync(entryPath(dir, 1)), existsSync(entryPath(dir, 2))]).toEqual([false, true]);
      for (const lo of [1, 2, 3]) expect(await codeOf(() => store.entries(lo, 6))).toBe(ErrorCode.Compacted);
      for (const index of [0, 1, 2]) expect(await codeOf(() => store.term(index))).toBe(ErrorCode.Compacted);
      expect([store.firstIndex(), store.term(3), store.entries(4, 6).map((e) => e.index)]).toEqual([4, 2, [4, 5]]);
    } finally {
      release();
      await compaction;
    }
    expect(readdirSync(walPath(dir))).toEqual([formatLsn(4), formatLsn(5)]);
    expect(await codeOf(() => store.entries(2, 6))).toBe(ErrorCode.Compacted);
  });

  const anchorCases = [
    { name: 'after compact', run: (s: ReplicaLogStore) => s.compact(2), first: 3, anchorTerm: 2 },
    { name: 'after compacting everything', run: (s: ReplicaLogStore) => s.compact(4), first: 5, anchorTerm: 3 },
    {
      name: 'after applySnapshot',
      run: (s: ReplicaLogStore) => s.applySnapshot({ metadata: { index: 9, term: 7, confState: { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } }),
      first: 10,
      anchorTerm: 7,
    },
  ];
  it.each(anchorCases)('B3: term(firstIndex()-1) answers $name, and after a reopen', async ({ run, first, anchorTerm }) => {
    let store = await open();
    await store.append(terms(1, 1, 2, 3, 3));
    await run(store);
    for (let round = 0; round < 2; round++) {
      expect(store.firstIndex()).toBe(first);
      expect(store.term(first - 1)).toBe(anchorTerm);
      expect(await codeOf(() => store.term(first - 2))).toBe(ErrorCode.Compacted);
      store = await reopen(store);
    }
  });

  it("B4: the last term is the last entry's, not the hard state's, including after compacting everything and a reopen", async () => {
    let store = await open();
    await store.append(terms(1, 1, 3));
    await store.setHardState({ term: 4, vote: 0, commit: 2 });
    expect(store.term(store.lastIndex())).toBe(3);
    await store.compact(2);
    expect(readdirSync(walPath(store.dir))).toEqual([]);
    store = await reopen(store);
    // Gitaly's "query term of pruned entries after a restart" expected 4 (the hard state's term).
    expect([store.lastIndex(), store.term(store.lastIndex()), store.initialState().hardState.term]).toEqual([2, 3, 4]);
  });

  it('B5: positions never go backwards: commit, term and the first index refuse to regress, across reopen', async () => {
    let store = await open();
    await store.append(terms(1, 1, 1, 2, 2));
    await store.setHardState({ term: 2, vote: 1, commit: 3 });
    await store.compact(2);
    store = await reopen(store);
    const refusals: [string, () => Promise<unknown>, string][] = [
      ['commit backwards', () => store.setHardState({ term: 2, vote: 1, commit: 2 }), ErrorCode.HardState],
      ['term backwards', () => store.setHardState({ term: 1, vote: 1, commit: 3 }), ErrorCode.HardState],
      ['compact at the anchor', () => store.compact(2), ErrorCode.Compacted],
      ['compact below the anchor', () => store.compact(1), ErrorCode.Compacted],
    ];
    for (const [, call, code] of refusals) expect(await codeOf(call)).toBe(code);
    store = await reopen(store);
    expect([store.initialState().hardState, store.firstIndex()]).toEqual([{ term: 2, vote: 1, commit: 3 }, 3]);
  });

  it('B6: the committed entry is never truncated or replaced (Gitaly allowed lsn == committedLSN)', async () => {
    let store = await open();
    await store.append(terms(1, 1, 1, 1));
    await store.setHardState({ term: 2, vote: 0, commit: 2 });
    expect(await codeOf(() => store.append(terms(2, 2)))).toBe(ErrorCode.Committed);
    expect(await codeOf(() => store.append(terms(1, 1)))).toBe(ErrorCode.Committed);
    expect(await codeOf(() => store.insertLogEntry(entry(2, 2), makeTempDir()))).toBe(ErrorCode.Committed);
    await store.append(terms(3, 2)); // replacing above the commit is raft's normal overwrite
    store = await reopen(store);
    expect(store.entries(1, 4).map((e) => [e.index, e.term])).toEqual([[1, 1], [2, 1], [3, 2]]);
  });

  it('B6: a batch that repeats committed entries never rewrites them on disk (a crash mid-rewrite could lose them)', async () => {
    const dir = makeTempDir();
    const store = await open({ dir });
    await store.append(terms(1, 1, 1, 1));
    await store.setHardState({ term: 2, vote: 0, commit: 2 });
    const inodesBefore = [1, 2].map((index) => statSync(entryPath(dir, index)).ino);
    // Entries 1..2 match the committed ones; 3 is replaced with a newer term.
    await store.append(terms(1, 1, 1, 2));
    expect([1, 2].map((index) => statSync(entryPath(dir, index)).ino)).toEqual(inodesBefore);
    expect(store.entries(1, 4).map((e) => [e.index, e.term])).toEqual([[1, 1], [2, 1], [3, 2]]);
  });

  it('B8: a truncating append fsyncs wal/ (not its parent) after moving the old tail out, before renaming the new entries in', async () => {
    const dir = makeTempDir();
    const calls: string[] = [];
    const relative = (path: string) => (path === dir ? '.' : path.slice(dir.length + 1).replace(/batch-\w+/, 'batch'));
    const store = await open({
      dir,
      fileSystem: {
        ...nodeFileSystem,
        async fsync(path) {
          calls.push(`fsync ${relative(path)}`);
          return nodeFileSystem.fsync(path);
        },
        async rename(from, to) {
          calls.push(`rename ${relative(from)} -> ${relative(to)}`);
          return nodeFileSystem.rename(from, to);
        },
      },
    });
    await store.append(terms(1, 1, 1, 1, 1));
    calls.length = 0;
    await store.append(terms(3, 2));
    const sequence = calls.filter((call) => call.startsWith('rename') || call === 'fsync wal' || call === 'fsync .');
    expect(sequence).toEqual([
      // newest first, so a crash part-way leaves a prefix without holes
      `rename wal/${formatLsn(4)} -> staging/batch/old-${formatLsn(4)}`,
      `rename wal/${formatLsn(3)} -> staging/batch/old-${formatLsn(3)}`,
      'fsync wal',
      `rename staging/${formatLsn(3)} -> wal/${formatLsn(3)}`,
      'fsync wal',
    ]);
  });

  it('B9: an uncommitted tail survives a restart and is served (it was acknowledged durable; raft resolves conflicts)', async () => {
    let store = await open();
    await store.append(terms(1, 1, 1, 2, 2, 2));
    await store.setHardState({ term: 2, vote: 1, commit: 2 });
    store = await reopen(store);
    expect([store.lastIndex(), store.initialState().hardState.commit]).toEqual([5, 2]);
    expect(store.entries(3, 6).map((e) => [e.index, e.term])).toEqual([[3, 2], [4, 2], [5, 2]]);
    // A new leader's conflicting entries then replace them through the ordinary append.
    await store.append(terms(3, 3));
    expect(store.lastIndex()).toBe(3);
  });
});
