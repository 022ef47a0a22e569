/**
 * The replicalog Storage conformance suite: etcd raft v3.6's Storage contract (every
 * storage_test.go table row, with the byte-limit cut-offs), replicalog's validation rules and
 * durability across a reopen, runnable against any store with the write side of API.md.
 *
 *   import { storageConformance } from 'replicalog/spec';
 *   storageConformance('MyStore', {
 *     open: async ({ tempDir }) => MyStore.open(tempDir()),
 *     reopen: async (store) => { await store.close(); return MyStore.open(store.dir); },
 *     close: (store) => store.close(),
 *   });
 *
 * Case names carry the reference/conformance.md §8 group (A1, B3, …) and the etcd test they
 * come from. Capability: without `reopen`, the durability cases (group I) are skipped.
 *
 * Cleanup: after each case the suite closes every store it opened (through `close`), then
 * removes every directory `tempDir()` made for that case. `TempDirs` is the same helper for a
 * user's own tests. Failure messages name the case, the step and the operation, so they are
 * useful without source maps (the package ships JavaScript only).
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { entrySize } from '../lib/codec.js';
import { ErrorCode, invalidArgumentError, SentinelMessage } from '../lib/errors.js';
import { MemoryStorage } from '../lib/memory-storage.js';
import {
  EntryType,
  NO_LIMIT,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type WritableStorage,
} from '../lib/types.js';

/**
 * Temporary directories under os.tmpdir(), each made with mkdtemp and removed (recursively,
 * read-only files included) by `removeAll()`: call it in an afterEach.
 *
 *   const dirs = new TempDirs();
 *   afterEach(() => dirs.removeAll());
 *   it('…', async () => { const store = await MyStore.open(dirs.make()); … });
 */
export class TempDirs {
  private readonly created: string[] = [];

  /** A new empty directory `<os.tmpdir()>/<prefix>XXXXXX`. */
  make(prefix = 'replicalog-conformance-'): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.created.push(dir);
    return dir;
  }

  /** Removes every directory made since the last call. */
  removeAll(): void {
    for (const dir of this.created.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/** What the suite hands to `open`. */
export interface ConformanceContext {
  /** A new empty directory, removed after the case once its stores are closed. */
  tempDir(prefix?: string): string;
}

export interface ConformanceFactory<S extends WritableStorage = WritableStorage> {
  /** A fresh, empty store (`context.tempDir()` gives a directory the suite removes after the case). */
  open(context: ConformanceContext): Promise<S>;
  /** Closes `store` and opens the same data again. Enables the durability cases. */
  reopen?(store: S): Promise<S>;
  /** Releases a store at the end of a case. */
  close?(store: S): Promise<void>;
  /**
   * Number of random operation sequences in the model-based case (an integer >= 1; default 25).
   * A fixed sequence that reaches the successful path of every write runs in addition.
   */
  modelRuns?: number;
}

/** `index(i).terms(t0, t1, …)` from etcd's log_test.go: entries i/t0, i+1/t1, … with no data. */
export function indexTerms(first: number, ...terms: number[]): Entry[] {
  return terms.map((term, offset) => ({ type: EntryType.Normal, term, index: first + offset }));
}

const voters123: ConfState = { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const emptyConf: ConfState = { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const bytes = (text: string) => new TextEncoder().encode(text);

function snapshotAt(index: number, term: number, confState: ConfState = emptyConf, data?: Uint8Array): Snapshot {
  const snapshot: Snapshot = { metadata: { index, term, confState } };
  if (data !== undefined) snapshot.data = data;
  return snapshot;
}

/** The code of what `action` throws, or 'ok'. */
function codeOf(action: () => unknown): string {
  try {
    action();
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? `uncoded: ${(error as Error).message}`;
  }
}

async function asyncCodeOf(action: () => Promise<unknown>): Promise<string> {
  try {
    await action();
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? `uncoded: ${(error as Error).message}`;
  }
}

/** Everything a reader can see of a store, errors included, for before/after comparisons. */
export function observe(store: WritableStorage): Record<string, unknown> {
  const first = store.firstIndex();
  const last = store.lastIndex();
  const terms: Record<number, number | string> = {};
  for (let index = Math.max(0, first - 2); index <= last + 1; index++) {
    try {
      terms[index] = store.term(index);
    } catch (error) {
      terms[index] = (error as { code: string }).code;
    }
  }
  let entries: Entry[] | string;
  try {
    entries = store.entries(first, last + 1);
  } catch (error) {
    entries = (error as { code: string }).code;
  }
  let snapshot: Snapshot | string;
  try {
    snapshot = store.snapshot();
  } catch (error) {
    snapshot = (error as { code: string }).code;
  }
  return { first, last, terms, entries, initialState: store.initialState(), snapshot };
}

export function storageConformance<S extends WritableStorage>(name: string, factory: ConformanceFactory<S>): void {
  const modelRuns = factory.modelRuns ?? 25;
  if (!Number.isSafeInteger(modelRuns) || modelRuns < 1) {
    throw invalidArgumentError(`storageConformance(${JSON.stringify(name)}): modelRuns must be an integer >= 1, got ${String(factory.modelRuns)}`);
  }
  describe(`Storage conformance: ${name}`, () => {
    const opened: S[] = [];
    const tempDirs = new TempDirs();
    const context: ConformanceContext = { tempDir: (prefix) => tempDirs.make(prefix) };
    // Stores first (a store may flush on close), then their directories, even if a close fails.
    afterEach(async () => {
      try {
        for (const store of opened.splice(0)) await factory.close?.(store);
      } finally {
        tempDirs.removeAll();
      }
    });

    async function fresh(): Promise<S> {
      let store: S;
      try {
        store = await factory.open(context);
      } catch (error) {
        throw new Error(`storageConformance(${JSON.stringify(name)}): factory.open() failed: ${(error as Error).message}`, { cause: error });
      }
      opened.push(store);
      return store;
    }

    async function reopen(store: S): Promise<S> {
      const position = opened.indexOf(store);
      const next = await factory.reopen!(store);
      if (position >= 0) opened[position] = next;
      else opened.push(next);
      return next;
    }

    /** etcd's fixture: dummy 3/3 plus `terms` from index 4 (built through the public API). */
    async function fixture(...terms: number[]): Promise<S> {
      const store = await fresh();
      await store.applySnapshot(snapshotAt(3, 3));
      await store.append(indexTerms(4, ...terms));
      return store;
    }

    const itReopen = factory.reopen ? it : it.skip;

    // ---------------------------------------------------------------- A. Initial state
    describe('A. initial state', () => {
      it('A1: a fresh store is empty: firstIndex 1, lastIndex 0, term(0) 0, empty states', async () => {
        const store = await fresh();
        expect(store.firstIndex()).toBe(1);
        expect(store.lastIndex()).toBe(0);
        expect(store.term(0)).toBe(0);
        expect(store.initialState()).toEqual({ hardState: { term: 0, vote: 0, commit: 0 }, confState: emptyConf });
        expect(store.snapshot().metadata.index).toBe(0);
        expect(codeOf(() => store.term(1))).toBe(ErrorCode.Unavailable);
        // TestRawNodeStart: entries(first, first) on an empty log must fail.
        expect(codeOf(() => store.entries(1, 1))).toBe(ErrorCode.Unavailable);
      });

      it('A2: initialState returns the saved hard state and conf state', async () => {
        const store = await fresh();
        await store.append(indexTerms(1, 1, 1, 2));
        await store.setHardState({ term: 2, vote: 3, commit: 2 });
        await store.setConfState(voters123);
        expect(store.initialState()).toEqual({ hardState: { term: 2, vote: 3, commit: 2 }, confState: voters123 });
      });

      itReopen('A2/I1: initialState survives a reopen', async () => {
        let store = await fresh();
        await store.append(indexTerms(1, 1, 1, 2));
        await store.setHardState({ term: 2, vote: 3, commit: 2 });
        await store.setConfState({ ...voters123, learners: [4], autoLeave: true });
        store = await reopen(store);
        expect(store.initialState()).toEqual({
          hardState: { term: 2, vote: 3, commit: 2 },
          confState: { ...voters123, learners: [4], autoLeave: true },
        });
      });
    });

    // ---------------------------------------------------------------- B. Append
    describe('B. append', () => {
      it('B1: a single entry and a batch read back exactly', async () => {
        const store = await fresh();
        await store.append([{ type: EntryType.Normal, term: 1, index: 1, data: bytes('one') }]);
        await store.append([
          { type: EntryType.ConfChange, term: 1, index: 2, data: bytes('cc') },
          { type: EntryType.Normal, term: 2, index: 3 },
          { type: EntryType.ConfChangeV2, term: 2, index: 4, data: new Uint8Array(0) },
        ]);
        expect(store.entries(1, 5)).toEqual([
          { type: EntryType.Normal, term: 1, index: 1, data: bytes('one') },
          { type: EntryType.ConfChange, term: 1, index: 2, data: bytes('cc') },
          { type: EntryType.Normal, term: 2, index: 3 },
          { type: EntryType.ConfChangeV2, term: 2, index: 4, data: new Uint8Array(0) },
        ]);
        expect(store.lastIndex()).toBe(4);
      });

      it('B2: after a snapshot at 10 the log restarts at 11', async () => {
        const store = await fresh();
        await store.append(indexTerms(1, 1, 1));
        await store.applySnapshot(snapshotAt(10, 4));
        await store.append(indexTerms(11, 4, 5));
        expect(store.firstIndex()).toBe(11);
        expect(store.entries(11, 13)).toEqual(indexTerms(11, 4, 5));
        expect(store.term(10)).toBe(4);
      });

      // etcd TestStorageAppend: fixture dummy 3/3, 4/4, 5/5; result given as the full log (dummy first).
      const appendTable: { name: string; batch: Entry[]; log: Entry[] }[] = [
        { name: 'everything older than firstIndex is ignored', batch: indexTerms(1, 1, 2), log: indexTerms(3, 3, 4, 5) },
        { name: 'identical: compacted prefix dropped, rest rewritten', batch: indexTerms(3, 3, 4, 5), log: indexTerms(3, 3, 4, 5) },
        { name: 'conflicting terms replace from 4', batch: indexTerms(3, 3, 6, 6), log: indexTerms(3, 3, 6, 6) },
        { name: 'extends the log', batch: indexTerms(3, 3, 4, 5, 5), log: indexTerms(3, 3, 4, 5, 5) },
        { name: 'batch prefix trimmed, store truncated at 4', batch: indexTerms(2, 3, 3, 5), log: indexTerms(3, 3, 5) },
        { name: 'truncates 5/5 although nothing after 4 conflicts', batch: indexTerms(4, 5), log: indexTerms(3, 3, 5) },
        { name: 'direct append at lastIndex+1', batch: indexTerms(6, 5), log: indexTerms(3, 3, 4, 5, 5) },
      ];
      it.each(appendTable)('B3: TestStorageAppend: $name', async ({ batch, log }) => {
        const store = await fixture(4, 5);
        await store.append(batch);
        const [anchor, ...rest] = log;
        expect(store.firstIndex()).toBe(anchor!.index + 1);
        expect(store.term(anchor!.index)).toBe(anchor!.term);
        expect(store.lastIndex()).toBe(anchor!.index + rest.length);
        expect(store.entries(anchor!.index + 1, anchor!.index + 1 + rest.length)).toEqual(rest);
      });

      it('B3: an empty batch is a no-op', async () => {
        const store = await fixture(4, 5);
        const before = observe(store);
        await store.append([]);
        expect(observe(store)).toEqual(before);
      });

      it('TestStorageLastIndex: append 6/5 moves lastIndex from 5 to 6', async () => {
        const store = await fixture(4, 5);
        expect(store.lastIndex()).toBe(5);
        await store.append(indexTerms(6, 5));
        expect(store.lastIndex()).toBe(6);
      });

      // Refused with a coded error, and nothing changes.
      const refusals: { name: string; commit: number; batch: Entry[]; code: string }[] = [
        { name: 'a gap after lastIndex (etcd panics "missing log entry")', commit: 0, batch: indexTerms(7, 5), code: ErrorCode.NotContiguous },
        { name: 'a gap inside the batch', commit: 0, batch: [...indexTerms(6, 5), ...indexTerms(8, 5)], code: ErrorCode.NotContiguous },
        { name: 'indexes going backwards inside the batch', commit: 0, batch: [...indexTerms(6, 5), ...indexTerms(5, 5)], code: ErrorCode.NotContiguous },
        { name: 'a term below the entry before it (at lastIndex+1)', commit: 0, batch: indexTerms(6, 4), code: ErrorCode.TermRegression },
        { name: 'a term regression inside the batch', commit: 0, batch: indexTerms(6, 5, 4), code: ErrorCode.TermRegression },
        { name: 'a term below the anchor term', commit: 0, batch: indexTerms(4, 2), code: ErrorCode.TermRegression },
        { name: 'replacing the committed entry (Gitaly B6)', commit: 5, batch: indexTerms(5, 6), code: ErrorCode.Committed },
        { name: 'truncating below commit with a shorter matching batch', commit: 5, batch: indexTerms(4, 4), code: ErrorCode.Committed },
        { name: 'replacing an entry below commit', commit: 4, batch: indexTerms(4, 6, 6), code: ErrorCode.Committed },
      ];
      it.each(refusals)('B4: refuses $name with $code and changes nothing', async ({ commit, batch, code }) => {
        const store = await fixture(4, 5);
        await store.setHardState({ term: 5, vote: 0, commit });
        const before = observe(store);
        expect(await asyncCodeOf(() => store.append(batch))).toBe(code);
        expect(observe(store)).toEqual(before);
      });

      it('B4: re-appending identical committed entries is allowed and changes nothing', async () => {
        const store = await fixture(4, 5);
        await store.setHardState({ term: 5, vote: 0, commit: 5 });
        const before = observe(store);
        await store.append(indexTerms(4, 4, 5));
        expect(observe(store)).toEqual(before);
      });

      it('B5: appended entries are readable as soon as append resolves', async () => {
        const store = await fresh();
        for (let index = 1; index <= 20; index++) {
          await store.append([{ type: EntryType.Normal, term: 1, index, data: bytes(`e${index}`) }]);
          expect(store.lastIndex()).toBe(index);
          expect(store.entries(index, index + 1)[0]!.data).toEqual(bytes(`e${index}`));
        }
      });

      it('B6: large, zero-length, absent and binary payloads round-trip byte-exactly', async () => {
        const store = await fresh();
        const large = new Uint8Array(1 << 20);
        for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff;
        const binary = Uint8Array.from([0, 255, 0, 10, 13, 0x22, 0x80]);
        const batch: Entry[] = [
          { type: EntryType.Normal, term: 1, index: 1, data: large },
          { type: EntryType.Normal, term: 1, index: 2, data: new Uint8Array(0) },
          { type: EntryType.Normal, term: 1, index: 3 },
          { type: EntryType.Normal, term: 1, index: 4, data: binary },
        ];
        await store.append(batch);
        const read = store.entries(1, 5);
        // Compare the 1 MiB payload as a Buffer (fast), the rest structurally.
        expect(Buffer.compare(Buffer.from(read[0]!.data!), Buffer.from(large))).toBe(0);
        expect(read.slice(1)).toEqual(batch.slice(1));
        expect({ ...read[0], data: undefined }).toEqual({ ...batch[0], data: undefined });
        expect('data' in read[2]!).toBe(false);
        expect(read[1]!.data).toBeInstanceOf(Uint8Array);
        expect(read[1]!.data!.length).toBe(0);
      });
    });

    // ---------------------------------------------------------------- C. Reads
    describe('C. reads', () => {
      // etcd TestStorageEntries: dummy 3/3, 4/4, 5/5, 6/6; every entry is 6 bytes.
      const e = indexTerms(4, 4, 5, 6);
      const size = (entry: Entry) => entrySize(entry);
      const entriesTable: { lo: number; hi: number; maxSize: number; want: Entry[] | string }[] = [
        { lo: 2, hi: 6, maxSize: NO_LIMIT, want: ErrorCode.Compacted },
        { lo: 3, hi: 4, maxSize: NO_LIMIT, want: ErrorCode.Compacted },
        { lo: 4, hi: 5, maxSize: NO_LIMIT, want: [e[0]!] },
        { lo: 4, hi: 6, maxSize: NO_LIMIT, want: [e[0]!, e[1]!] },
        { lo: 4, hi: 7, maxSize: NO_LIMIT, want: e },
        { lo: 4, hi: 7, maxSize: 0, want: [e[0]!] },
        { lo: 4, hi: 7, maxSize: size(e[0]!) + size(e[1]!), want: [e[0]!, e[1]!] },
        { lo: 4, hi: 7, maxSize: size(e[0]!) + size(e[1]!) + size(e[2]!) / 2, want: [e[0]!, e[1]!] },
        { lo: 4, hi: 7, maxSize: size(e[0]!) + size(e[1]!) + size(e[2]!) - 1, want: [e[0]!, e[1]!] },
        { lo: 4, hi: 7, maxSize: size(e[0]!) + size(e[1]!) + size(e[2]!), want: e },
      ];
      it.each(entriesTable)('C2: TestStorageEntries entries($lo, $hi, $maxSize)', async ({ lo, hi, maxSize, want }) => {
        const store = await fixture(4, 5, 6);
        expect(size(e[0]!)).toBe(6);
        if (typeof want === 'string') expect(codeOf(() => store.entries(lo, hi, maxSize))).toBe(want);
        else expect(store.entries(lo, hi, maxSize)).toEqual(want);
      });

      it('C2 (Gitaly B1): maxSize is bytes, with at least one entry, for data-carrying entries', async () => {
        const store = await fresh();
        const batch = [1, 2, 3].map((index) => ({ type: EntryType.Normal, term: 1, index, data: new Uint8Array(100) }));
        await store.append(batch);
        const one = entrySize(batch[0]!);
        expect(store.entries(1, 4, 1)).toHaveLength(1);
        expect(store.entries(1, 4, one)).toHaveLength(1);
        expect(store.entries(1, 4, 2 * one)).toHaveLength(2);
        expect(store.entries(1, 4, 3 * one - 1)).toHaveLength(2);
        expect(store.entries(1, 4, Number.MAX_SAFE_INTEGER)).toHaveLength(3);
        expect(store.entries(1, 4)).toHaveLength(3);
      });

      it('C1: empty, exact and out-of-bound ranges', async () => {
        const store = await fixture(4, 5, 6);
        expect(store.entries(5, 5)).toEqual([]);
        expect(store.entries(7, 7)).toEqual([]);
        expect(store.entries(4, 7)).toHaveLength(3);
        expect(codeOf(() => store.entries(4, 8))).toBe(ErrorCode.Unavailable);
        expect(codeOf(() => store.entries(6, 5))).toBe(ErrorCode.InvalidArgument);
      });

      // etcd TestStorageTerm: dummy 3/3, 4/4, 5/5.
      const termTable: { index: number; want: number | string }[] = [
        { index: 2, want: ErrorCode.Compacted },
        { index: 3, want: 3 },
        { index: 4, want: 4 },
        { index: 5, want: 5 },
        { index: 6, want: ErrorCode.Unavailable },
      ];
      it.each(termTable)('C3: TestStorageTerm term($index)', async ({ index, want }) => {
        const store = await fixture(4, 5);
        if (typeof want === 'string') expect(codeOf(() => store.term(index))).toBe(want);
        else expect(store.term(index)).toBe(want);
      });

      it('C3: TestTerm: snapshot 100/1 and entries 101..199 with term i-100', async () => {
        const store = await fresh();
        await store.applySnapshot(snapshotAt(100, 1));
        await store.append(Array.from({ length: 99 }, (_, k) => ({ type: EntryType.Normal, term: k + 1, index: 101 + k })));
        expect(codeOf(() => store.term(99))).toBe(ErrorCode.Compacted);
        expect(store.term(100)).toBe(1);
        expect(store.term(150)).toBe(50);
        expect(store.term(199)).toBe(99);
        expect(codeOf(() => store.term(200))).toBe(ErrorCode.Unavailable);
      });

      it('C3 (Gitaly B3): term(firstIndex()-1) answers while entries are retained', async () => {
        const store = await fresh();
        await store.append(indexTerms(1, 1, 2, 3, 3));
        await store.compact(2);
        expect(store.firstIndex()).toBe(3);
        expect(store.term(2)).toBe(2);
      });

      it('C3 (Gitaly B4): the last term is the last entry\'s, not the hard state\'s', async () => {
        const store = await fresh();
        await store.append(indexTerms(1, 1, 3));
        await store.setHardState({ term: 4, vote: 0, commit: 2 });
        await store.compact(2);
        expect(store.lastIndex()).toBe(2);
        expect(store.term(store.lastIndex())).toBe(3);
      });

      it('C4: ranges touching compacted indexes fail with ERR_COMPACTED', async () => {
        const store = await fixture(4, 5, 6);
        await store.compact(4);
        expect(codeOf(() => store.entries(4, 6))).toBe(ErrorCode.Compacted);
        expect(codeOf(() => store.entries(3, 6))).toBe(ErrorCode.Compacted);
        expect(store.entries(5, 7)).toEqual(indexTerms(5, 5, 6));
      });

      it('C5: mutating returned arrays, entries and data, or the appended input, cannot change the store', async () => {
        const store = await fresh();
        const input: Entry[] = [{ type: EntryType.Normal, term: 1, index: 1, data: bytes('abc') }];
        await store.append(input);
        input[0]!.data![0] = 0x7a;
        input[0]!.term = 9;
        const first = store.entries(1, 2);
        first.push({ type: EntryType.Normal, term: 9, index: 2 });
        try {
          first[0]!.term = 7;
          first[0]!.data![1] = 0x7a;
        } catch {
          // frozen entries are fine too
        }
        expect(store.entries(1, 2)).toEqual([{ type: EntryType.Normal, term: 1, index: 1, data: bytes('abc') }]);
        expect(store.lastIndex()).toBe(1);
      });

      it('C5: a Buffer passed as data is copied, not aliased (Buffer.slice would alias it)', async () => {
        const store = await fresh();
        const data = Buffer.from('abc');
        await store.append([{ type: EntryType.Normal, term: 1, index: 1, data }]);
        const snapshotData = Buffer.from('snap');
        await store.createSnapshot(1, voters123, snapshotData);
        data[0] = 0x7a;
        snapshotData[0] = 0x7a;
        expect(store.entries(1, 2)[0]!.data).toEqual(bytes('abc'));
        expect(store.snapshot().data).toEqual(bytes('snap'));
      });

      it('sentinel errors carry etcd\'s exact messages', async () => {
        const store = await fixture(4, 5);
        const messageOf = (action: () => unknown) => {
          try {
            action();
          } catch (error) {
            return (error as Error).message;
          }
          return 'ok';
        };
        expect(messageOf(() => store.term(1))).toBe(SentinelMessage[ErrorCode.Compacted]);
        expect(messageOf(() => store.term(9))).toBe(SentinelMessage[ErrorCode.Unavailable]);
        await expect(store.createSnapshot(3)).rejects.toThrow(SentinelMessage[ErrorCode.SnapOutOfDate]);
      });
    });

    // ---------------------------------------------------------------- D. Truncation
    describe('D. truncating appends', () => {
      it('D1/D3: truncate in the middle and to the first entry, then append at the same index with a new term', async () => {
        const store = await fresh();
        await store.append(indexTerms(1, 1, 1, 1, 1, 1));
        await store.append(indexTerms(3, 2));
        expect(store.lastIndex()).toBe(3);
        expect(store.entries(1, 4)).toEqual(indexTerms(1, 1, 1, 2));
        await store.append(indexTerms(1, 3, 3));
        expect(store.entries(1, 3)).toEqual(indexTerms(1, 3, 3));
        expect(store.lastIndex()).toBe(2);
      });

      it('D2: truncate exactly at the compaction boundary', async () => {
        const store = await fixture(4, 5, 6);
        await store.compact(4);
        await store.append(indexTerms(5, 7));
        expect(store.firstIndex()).toBe(5);
        expect(store.entries(5, 6)).toEqual(indexTerms(5, 7));
        expect(store.term(4)).toBe(4);
      });
    });

    // ---------------------------------------------------------------- E. Compaction
    describe('E. compaction', () => {
      // etcd TestStorageCompact: dummy 3/3, 4/4, 5/5.
      const compactTable: { index: number; code: string; first: number; anchorTerm: number; last: number }[] = [
        { index: 2, code: ErrorCode.Compacted, first: 4, anchorTerm: 3, last: 5 },
        { index: 3, code: ErrorCode.Compacted, first: 4, anchorTerm: 3, last: 5 },
        { index: 4, code: 'ok', first: 5, anchorTerm: 4, last: 5 },
        { index: 5, code: 'ok', first: 6, anchorTerm: 5, last: 5 },
        { index: 6, code: ErrorCode.Unavailable, first: 4, anchorTerm: 3, last: 5 },
      ];
      it.each(compactTable)('E1/E2: TestStorageCompact compact($index) → $code', async ({ index, code, first, anchorTerm, last }) => {
        const store = await fixture(4, 5);
        expect(await asyncCodeOf(() => store.compact(index))).toBe(code);
        expect(store.firstIndex()).toBe(first);
        expect(store.lastIndex()).toBe(last);
        expect(store.term(first - 1)).toBe(anchorTerm);
        expect(codeOf(() => store.term(first - 2))).toBe(ErrorCode.Compacted);
      });

      it('TestStorageFirstIndex: firstIndex 4, compact(4) makes it 5', async () => {
        const store = await fixture(4, 5);
        expect(store.firstIndex()).toBe(4);
        await store.compact(4);
        expect(store.firstIndex()).toBe(5);
      });

      it('E3/E4: after compacting everything, reads fail below, term(last) answers, and appends continue', async () => {
        const store = await fixture(4, 5);
        await store.compact(5);
        expect(codeOf(() => store.entries(6, 6))).toBe(ErrorCode.Unavailable);
        expect(codeOf(() => store.entries(5, 6))).toBe(ErrorCode.Compacted);
        expect(store.term(5)).toBe(5);
        await store.append(indexTerms(6, 6));
        expect(store.entries(6, 7)).toEqual(indexTerms(6, 6));
      });
    });

    // ---------------------------------------------------------------- F. Hard state
    describe('F. hard state', () => {
      const hardStateTable: { name: string; saved: HardState; next: HardState; code: string }[] = [
        { name: 'term and commit move forward', saved: { term: 2, vote: 1, commit: 2 }, next: { term: 3, vote: 0, commit: 3 }, code: 'ok' },
        { name: 'the same hard state again', saved: { term: 2, vote: 1, commit: 2 }, next: { term: 2, vote: 1, commit: 2 }, code: 'ok' },
        { name: 'a first vote within the term', saved: { term: 2, vote: 0, commit: 2 }, next: { term: 2, vote: 3, commit: 2 }, code: 'ok' },
        { name: 'F2: the term goes backwards', saved: { term: 2, vote: 1, commit: 2 }, next: { term: 1, vote: 1, commit: 2 }, code: ErrorCode.HardState },
        { name: 'F2: the vote changes within a term', saved: { term: 2, vote: 1, commit: 2 }, next: { term: 2, vote: 2, commit: 2 }, code: ErrorCode.HardState },
        { name: 'F3 (Gitaly B5): commit goes backwards', saved: { term: 2, vote: 1, commit: 2 }, next: { term: 2, vote: 1, commit: 1 }, code: ErrorCode.HardState },
        { name: 'F3: commit above lastIndex', saved: { term: 2, vote: 1, commit: 2 }, next: { term: 2, vote: 1, commit: 4 }, code: ErrorCode.HardState },
      ];
      it.each(hardStateTable)('F1-F3: $name → $code', async ({ saved, next, code }) => {
        const store = await fresh();
        await store.append(indexTerms(1, 1, 2, 2));
        await store.setHardState(saved);
        expect(await asyncCodeOf(() => store.setHardState(next))).toBe(code);
        expect(store.initialState().hardState).toEqual(code === 'ok' ? next : saved);
      });
    });

    // ---------------------------------------------------------------- G. Conf state
    describe('G. conf state', () => {
      it('G1: setConfState round-trips every field', async () => {
        const store = await fresh();
        const confState: ConfState = { voters: [1, 2], learners: [3], votersOutgoing: [1, 4], learnersNext: [4], autoLeave: true };
        await store.setConfState(confState);
        expect(store.initialState().confState).toEqual(confState);
        await store.setConfState(voters123);
        expect(store.initialState().confState).toEqual(voters123);
      });
    });

    // ---------------------------------------------------------------- H. Snapshots
    describe('H. snapshots', () => {
      it.each([4, 5])('H1: TestStorageCreateSnapshot at %i carries term, conf state and data', async (index) => {
        const store = await fixture(4, 5);
        const snapshot = await store.createSnapshot(index, voters123, bytes('data'));
        const want = snapshotAt(index, index, voters123, bytes('data'));
        expect(snapshot).toEqual(want);
        expect(store.snapshot()).toEqual(want);
      });

      it('H1: createSnapshot at or below the current snapshot is ERR_SNAP_OUT_OF_DATE; above lastIndex ERR_UNAVAILABLE', async () => {
        const store = await fixture(4, 5);
        await store.createSnapshot(4, voters123, bytes('data'));
        expect(await asyncCodeOf(() => store.createSnapshot(4, voters123))).toBe(ErrorCode.SnapOutOfDate);
        expect(await asyncCodeOf(() => store.createSnapshot(3, voters123))).toBe(ErrorCode.SnapOutOfDate);
        expect(await asyncCodeOf(() => store.createSnapshot(6, voters123))).toBe(ErrorCode.Unavailable);
        expect(store.snapshot().metadata.index).toBe(4);
      });

      it('H1: createSnapshot without a conf state keeps the previous snapshot\'s, and leaves the log alone', async () => {
        const store = await fixture(4, 5);
        await store.createSnapshot(4, voters123);
        const snapshot = await store.createSnapshot(5);
        expect(snapshot.metadata.confState).toEqual(voters123);
        expect(snapshot.data).toBeUndefined();
        expect(store.firstIndex()).toBe(4);
      });

      it('H2: TestStorageApplySnapshot: apply 4/4, then 3/3 is out of date', async () => {
        const store = await fresh();
        await store.applySnapshot(snapshotAt(4, 4, voters123, bytes('data')));
        expect(store.firstIndex()).toBe(5);
        expect(store.lastIndex()).toBe(4);
        expect(store.term(4)).toBe(4);
        expect(store.snapshot()).toEqual(snapshotAt(4, 4, voters123, bytes('data')));
        expect(store.initialState().confState).toEqual(voters123);
        expect(await asyncCodeOf(() => store.applySnapshot(snapshotAt(3, 3, voters123, bytes('data'))))).toBe(
          ErrorCode.SnapOutOfDate,
        );
      });

      it('H2: a bootstrap snapshot at index 0 with only a conf state is accepted on a fresh store (v3.7 rule)', async () => {
        const store = await fresh();
        await store.applySnapshot(snapshotAt(0, 0, voters123, bytes('data')));
        expect(store.initialState().confState).toEqual(voters123);
        expect(store.firstIndex()).toBe(1);
        expect(store.lastIndex()).toBe(0);
      });

      it('H3: applying a snapshot drops every entry, even ones after it, and replaces the conf state', async () => {
        const store = await fresh();
        await store.append(indexTerms(1, 1, 1, 2, 2, 2));
        await store.setConfState({ ...emptyConf, voters: [9] });
        await store.applySnapshot(snapshotAt(3, 2, voters123));
        expect(store.firstIndex()).toBe(4);
        expect(store.lastIndex()).toBe(3);
        expect(codeOf(() => store.term(4))).toBe(ErrorCode.Unavailable);
        expect(store.initialState().confState).toEqual(voters123);
      });

      it('H3: applying a snapshot below the saved commit is refused with ERR_COMMITTED', async () => {
        const store = await fresh();
        await store.append(indexTerms(1, 1, 1, 2, 2));
        await store.setHardState({ term: 2, vote: 0, commit: 3 });
        const before = observe(store);
        expect(await asyncCodeOf(() => store.applySnapshot(snapshotAt(2, 1)))).toBe(ErrorCode.Committed);
        expect(observe(store)).toEqual(before);
      });

      it('H: snapshot().metadata.index stays >= firstIndex()-1 when compacting after a snapshot', async () => {
        const store = await fixture(4, 5, 6);
        await store.createSnapshot(5, voters123);
        await store.compact(5);
        expect(store.snapshot().metadata.index).toBeGreaterThanOrEqual(store.firstIndex() - 1);
      });
    });

    // ---------------------------------------------------------------- Edge validation
    describe('input validation at the edge', () => {
      const badCalls: { name: string; call: (store: WritableStorage) => Promise<unknown>; code: string }[] = [
        { name: 'an index above MAX_SAFE_INTEGER', call: (s) => s.append([{ type: 0, term: 1, index: 2 ** 53 }]), code: ErrorCode.OutOfRange },
        { name: 'a negative term', call: (s) => s.append([{ type: 0, term: -1, index: 1 }]), code: ErrorCode.OutOfRange },
        { name: 'a fractional index', call: (s) => s.append([{ type: 0, term: 1, index: 1.5 }]), code: ErrorCode.OutOfRange },
        { name: 'an unknown entry type', call: (s) => s.append([{ type: 7 as EntryType, term: 1, index: 1 }]), code: ErrorCode.InvalidArgument },
        { name: 'data that is not bytes', call: (s) => s.append([{ type: 0, term: 1, index: 1, data: 'x' as unknown as Uint8Array }]), code: ErrorCode.InvalidArgument },
        { name: 'entries that are not an array', call: (s) => s.append(null as unknown as Entry[]), code: ErrorCode.InvalidArgument },
        { name: 'a hard state with a string term', call: (s) => s.setHardState({ term: '1' as unknown as number, vote: 0, commit: 0 }), code: ErrorCode.InvalidArgument },
        { name: 'a conf state without voters', call: (s) => s.setConfState({} as ConfState), code: ErrorCode.InvalidArgument },
        { name: 'compact(NaN)', call: (s) => s.compact(Number.NaN), code: ErrorCode.OutOfRange },
        { name: 'a snapshot without metadata', call: (s) => s.applySnapshot({} as Snapshot), code: ErrorCode.InvalidArgument },
      ];
      it.each(badCalls)('refuses $name with $code and changes nothing', async ({ call, code }) => {
        const store = await fresh();
        await store.append(indexTerms(1, 1));
        const before = observe(store);
        expect(await asyncCodeOf(() => call(store))).toBe(code);
        expect(observe(store)).toEqual(before);
      });

      it('synchronous reads refuse out-of-range arguments with RangeError ERR_OUT_OF_RANGE', async () => {
        const store = await fresh();
        expect(codeOf(() => store.term(-1))).toBe(ErrorCode.OutOfRange);
        expect(codeOf(() => store.entries(1, 2 ** 54))).toBe(ErrorCode.OutOfRange);
        expect(() => store.term(-1)).toThrow(RangeError);
      });
    });

    // ---------------------------------------------------------------- I. Durability across reopen
    describe('I. reopen', () => {
      const writes: { name: string; run: (store: WritableStorage) => Promise<unknown> }[] = [
        { name: 'append', run: (s) => s.append(indexTerms(6, 5, 6)) },
        { name: 'truncating append', run: (s) => s.append(indexTerms(5, 7)) },
        { name: 'compact', run: (s) => s.compact(4) },
        { name: 'createSnapshot', run: (s) => s.createSnapshot(5, voters123, bytes('snap')) },
        { name: 'createSnapshot then compact', run: async (s) => { await s.createSnapshot(5, voters123); await s.compact(5); } },
        { name: 'applySnapshot', run: (s) => s.applySnapshot(snapshotAt(9, 6, voters123, bytes('applied'))) },
        { name: 'hard state', run: (s) => s.setHardState({ term: 6, vote: 2, commit: 5 }) },
        { name: 'conf state', run: (s) => s.setConfState({ ...voters123, learners: [7] }) },
      ];
      it.each(writes)('I1: after $name, a reopen shows identical observable state', async ({ run }) => {
        if (!factory.reopen) return;
        let store = await fixture(4, 5);
        await run(store);
        const before = observe(store);
        store = await reopen(store);
        expect(observe(store)).toEqual(before);
      });

      itReopen('I2: repeated reopen cycles with interleaved appends, commits, compactions and votes', async () => {
        let store = await fresh();
        let term = 1;
        for (let cycle = 0; cycle < 5; cycle++) {
          const last = store.lastIndex();
          await store.append(indexTerms(last + 1, term, term, term));
          await store.setHardState({ term, vote: 1, commit: last + 2 });
          if (cycle % 2 === 1) await store.compact(last + 1);
          const before = observe(store);
          store = await reopen(store);
          expect(observe(store)).toEqual(before);
          term++;
        }
      });
    });

    // ---------------------------------------------------------------- Model-based
    describe('model: random operation sequences behave like MemoryStorage', () => {
      // Positions are drawn relative to the model's current log (`back` = distance below
      // lastIndex()+1) so most operations are valid and every path, refusals included, is hit.
      type Operation =
        | { kind: 'append'; back: number; terms: number[] }
        | { kind: 'hardState'; termStep: number; vote: number; back: number }
        | { kind: 'compact'; back: number }
        | { kind: 'createSnapshot'; back: number }
        | { kind: 'applySnapshot'; ahead: number; termStep: number }
        | { kind: 'reopen' };
      const operation: fc.Arbitrary<Operation> = fc.oneof(
        { weight: 6, arbitrary: fc.record({ kind: fc.constant('append' as const), back: fc.integer({ min: -1, max: 4 }), terms: fc.array(fc.integer({ min: -1, max: 2 }), { minLength: 0, maxLength: 4 }) }) },
        { weight: 2, arbitrary: fc.record({ kind: fc.constant('hardState' as const), termStep: fc.integer({ min: -1, max: 1 }), vote: fc.integer({ min: 0, max: 2 }), back: fc.integer({ min: -1, max: 4 }) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.integer({ min: 0, max: 5 }) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('createSnapshot' as const), back: fc.integer({ min: 0, max: 5 }) }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('applySnapshot' as const), ahead: fc.integer({ min: -3, max: 4 }), termStep: fc.integer({ min: -1, max: 1 }) }) },
        { weight: factory.reopen ? 1 : 0, arbitrary: fc.constant({ kind: 'reopen' as const }) },
      );

      /** Resolves relative positions against the model, then runs the same call on `store`. */
      async function applyOperation(model: MemoryStorage, store: WritableStorage, op: Operation): Promise<string> {
        const next = model.lastIndex() + 1;
        const lastTerm = model.term(model.lastIndex());
        const saved = model.initialState().hardState;
        switch (op.kind) {
          case 'append': {
            const from = Math.max(0, next - op.back);
            let term = Math.max(0, (from > model.firstIndex() - 1 && from <= next ? model.term(from - 1) : lastTerm) + (op.terms[0] ?? 0));
            const batch = op.terms.map((step, offset) => {
              if (offset > 0) term = Math.max(0, term + step);
              return { type: EntryType.Normal, term, index: from + offset, data: bytes(`${from + offset}:${term}`) };
            });
            return asyncCodeOf(() => store.append(batch));
          }
          case 'hardState':
            return asyncCodeOf(() =>
              store.setHardState({ term: Math.max(0, saved.term + op.termStep), vote: op.vote, commit: Math.max(0, next - op.back) }),
            );
          case 'compact':
            return asyncCodeOf(() => store.compact(Math.max(0, next - op.back)));
          case 'createSnapshot': {
            const index = Math.max(0, next - op.back);
            return asyncCodeOf(() => store.createSnapshot(index, voters123, bytes(`s${index}`)));
          }
          case 'applySnapshot': {
            const index = Math.max(0, model.lastIndex() + op.ahead);
            const term = Math.max(0, lastTerm + op.termStep);
            return asyncCodeOf(() => store.applySnapshot(snapshotAt(index, term, voters123, bytes(`a${index}`))));
          }
          case 'reopen':
            return 'ok';
        }
      }

      /**
       * Runs before the random sequences, whatever modelRuns is: every write succeeds once on
       * the model (entries 1..4 at term 1, commit 4, snapshot at 3, compact to 2, a snapshot
       * applied at 6, a reopen when the store has one), so the successful path of each write is
       * compared to MemoryStorage even with modelRuns = 1.
       */
      const everyWriteSucceeds: Operation[] = [
        { kind: 'append', back: 0, terms: [1, 0, 0, 0] },
        { kind: 'hardState', termStep: 1, vote: 1, back: 1 },
        { kind: 'createSnapshot', back: 2 },
        { kind: 'compact', back: 3 },
        ...(factory.reopen ? [{ kind: 'reopen' as const }] : []),
        { kind: 'applySnapshot', ahead: 2, termStep: 0 },
        { kind: 'append', back: 0, terms: [0, 0] },
      ];

      const describeOperation = (op: Operation) => JSON.stringify(op);

      it('P/B/E/H: after every step, observable state and error codes equal the model\'s', async () => {
        const outcomes = new Map<string, number>();
        await fc.assert(
          fc.asyncProperty(fc.array(operation, { minLength: 1, maxLength: 25 }), async (operations) => {
            const model = new MemoryStorage();
            let store = await fresh();
            for (const [step, op] of operations.entries()) {
              const where = `${name}, model case, step ${step + 1} of ${operations.length} (${describeOperation(op)})`;
              if (op.kind === 'reopen') {
                store = await reopen(store);
              } else {
                const actual = await applyOperation(model, store, op);
                const expected = await applyOperation(model, model, op);
                outcomes.set(`${op.kind}:${expected}`, (outcomes.get(`${op.kind}:${expected}`) ?? 0) + 1);
                expect(actual, `${where}: the store's outcome (error code or 'ok') differs from MemoryStorage's`).toBe(expected);
              }
              expect(observe(store), `${where}: observable state differs from MemoryStorage's`).toEqual(observe(model));
            }
          }),
          { numRuns: modelRuns, seed: 20261123, examples: [[everyWriteSucceeds]] },
        );
        // The successful path of every write was compared, not only refusals.
        for (const kind of ['append', 'hardState', 'compact', 'createSnapshot', 'applySnapshot']) {
          expect(outcomes.get(`${kind}:ok`) ?? 0, `${name}, model case: ${kind} never succeeded on MemoryStorage (the fixed sequence should make it)`).toBeGreaterThan(0);
        }
      });
    });
  });
}
