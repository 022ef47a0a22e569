/**
 * Issue 15's findings, one test each, named after it. Under the POSIX model only what was
 * fsynced survives a power cut: a new name needs its directory fsynced. Findings 1-3 and 6 are
 * shown by recording the barriers an operation makes (the name must be covered by an fsync of
 * its parent before anything is acknowledged); findings 4, 5, 7 and 8 by building the disk state
 * a power cut may leave and opening it.
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeLogEntry } from '../../lib/codec.js';
import { ErrorCode } from '../../lib/errors.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType, type Entry } from '../../lib/types.js';
import { verifyTree } from '../../lib/verify.js';
import { nodeFileSystem, type FileSystem } from '../../lib/wal/file-system.js';
import { entryPath, kvPath, LOCK_DATABASE, stagingPath, walPath } from '../../lib/wal/layout.js';
import { KEEP_PREFIX } from '../../lib/wal/level-files.js';
import { closeTestStores, codeOf, trackStore } from '../helpers/stores.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { cases, enumerate } from './operations.js';

afterEach(async () => {
  await closeTestStores();
  removeTempDirs();
});

const entry = (index: number, term = 1): Entry => ({ index, term, type: EntryType.Normal, data: new TextEncoder().encode(`entry ${index}`) });

/** nodeFileSystem that records every fsync's path, in order. */
function recording(fsyncs: string[], renamesSkipped: (from: string) => boolean = () => false): FileSystem {
  return {
    ...nodeFileSystem,
    async fsync(path) {
      fsyncs.push(path);
      return nodeFileSystem.fsync(path);
    },
    async rename(from, to) {
      if (renamesSkipped(from)) return;
      return nodeFileSystem.rename(from, to);
    },
  };
}

async function open(dir: string, fileSystem?: FileSystem): Promise<ReplicaLogStore> {
  return trackStore(await ReplicaLogStore.open({ dir, ...(fileSystem === undefined ? {} : { fileSystem }) }));
}

describe('power-loss findings (issue 15)', () => {
  it('finding 1: kv/ is made durable in the store directory when wal/ and staging/ already exist (a pre-Raft tree)', async () => {
    const dir = makeTempDir();
    mkdirSync(walPath(dir), { mode: 0o700 });
    mkdirSync(stagingPath(dir), { mode: 0o700 });
    const fsyncs: string[] = [];
    await open(dir, recording(fsyncs));
    // kv/ exists by the time the store directory is fsynced, and that happens before open returns.
    expect(fsyncs).toContain(dir);
  });

  it('finding 2: a store directory that already exists gets its parent fsynced at every open', async () => {
    const parent = makeTempDir();
    const dir = join(parent, 'store');
    // An earlier open made the directory and died before fsyncing its parent.
    mkdirSync(dir, { mode: 0o700 });
    for (let run = 0; run < 2; run++) {
      const fsyncs: string[] = [];
      const store = await open(dir, recording(fsyncs));
      expect(fsyncs.slice(0, 1)).toEqual([parent]);
      expect(fsyncs).toContain(dir);
      await store.close();
    }
  });

  it('finding 3: mkdir -p of a nested store directory fsyncs the parent of every level it created', async () => {
    const root = makeTempDir();
    const dir = join(root, 'a', 'b', 'c');
    const fsyncs: string[] = [];
    await open(dir, recording(fsyncs));
    expect(fsyncs.slice(0, 3)).toEqual([root, join(root, 'a'), join(root, 'a', 'b')]);
  });

  it('finding 4: a gap above the commit (unacknowledged renames kept out of order) is cut, not refused', async () => {
    const dir = makeTempDir();
    const store = await open(dir);
    await store.append([entry(1), entry(2), entry(3), entry(4), entry(5)]);
    await store.setHardState({ term: 1, vote: 0, commit: 2 });
    await store.close();
    // The power cut kept the renames of 4 and 5 but not of 3.
    rmSync(entryPath(dir, 3), { recursive: true });
    const reopened = await open(dir);
    expect([reopened.firstIndex(), reopened.lastIndex()]).toEqual([1, 2]);
    expect(reopened.entries(1, 3)).toEqual([entry(1), entry(2)]);
    expect(reopened.repairs).toHaveLength(1);
    await reopened.close();
    expect((await verifyTree(dir)).problems).toEqual([]);
  });

  it('finding 4: a gap at or below the commit is still refused (it could hide committed data)', async () => {
    const dir = makeTempDir();
    const store = await open(dir);
    await store.append([entry(1), entry(2), entry(3)]);
    await store.setHardState({ term: 1, vote: 0, commit: 3 });
    await store.close();
    rmSync(entryPath(dir, 2), { recursive: true });
    expect(await codeOf(() => ReplicaLogStore.open({ dir }))).toBe(ErrorCode.Corrupt);
  });

  it('finding 4: after compact(lastIndex), an anchor above every remaining directory opens as an empty log at the anchor', async () => {
    const dir = makeTempDir();
    const store = await open(dir);
    await store.append([entry(1), entry(2), entry(3), entry(4)]);
    await store.setHardState({ term: 1, vote: 0, commit: 4 });
    await store.close();
    // compact(4): the anchor is durable, then the renames out of wal/; the power cut kept only
    // the rename of the highest directory.
    const compacting = await open(dir, recording([], (from) => from.startsWith(walPath(dir)) && !from.endsWith('4')));
    await compacting.compact(4);
    await compacting.close();
    const reopened = await open(dir);
    expect([reopened.firstIndex(), reopened.lastIndex(), reopened.term(4)]).toEqual([5, 4, 1]);
    await reopened.close();
    expect((await verifyTree(dir)).problems).toEqual([]);
  });

  it('finding 5: a fresh store records anchor (0, 0), so a lost first entry is detected, never a log starting at 2', async () => {
    const dir = makeTempDir();
    const store = await open(dir);
    await store.append([entry(1), entry(2), entry(3)]);
    await store.close();
    rmSync(entryPath(dir, 1), { recursive: true });
    const reopened = await open(dir);
    // Not firstIndex 2 with term(1) 0: the gap at 1 is found, and (nothing committed) cut.
    expect([reopened.firstIndex(), reopened.lastIndex()]).toEqual([1, 0]);
    expect(reopened.repairs).toHaveLength(1);
  });

  it('finding 6: an append fsyncs staging/ with wal/ (both names never survive together)', async () => {
    const dir = makeTempDir();
    const fsyncs: string[] = [];
    const store = await open(dir, recording(fsyncs));
    fsyncs.length = 0;
    await store.append([entry(1), entry(2)]);
    expect(fsyncs.slice(-2).sort()).toEqual([stagingPath(dir), walPath(dir)].sort());
  });

  it('finding 6 (enumerated): no crash state of an append keeps an acknowledged entry under both names; without the fsync of staging/ one does, and open empties it', async () => {
    const append = cases.find((operationCase) => operationCase.name === 'append')!;
    const options = { seed: 6, samplesPerStep: 2, exhaustiveUpTo: 3 };
    const fixed = await enumerate(append, makeTempDir(), options);
    expect(fixed.failures).toEqual([]);
    const unfixed = await enumerate(append, makeTempDir(), { ...options, dropFsync: (path, _occurrence, dir) => path === stagingPath(dir) });
    expect(unfixed.failures.map((failure) => failure.reason).join('\n')).toMatch(/expected the state after/);
  }, 60_000);

  it('finding 6: an entry emptied through its staging/ name (an unacknowledged append) is cut at open above the commit, not left to backfill', async () => {
    const dir = makeTempDir();
    const store = await open(dir);
    await store.append([entry(1), entry(2), entry(3)]);
    await store.setHardState({ term: 1, vote: 0, commit: 1 });
    await store.close();
    for (const name of readdirSync(entryPath(dir, 2))) rmSync(join(entryPath(dir, 2), name));
    const reopened = await open(dir);
    expect([reopened.firstIndex(), reopened.lastIndex(), reopened.pendingBackfill]).toEqual([1, 1, 0]);
    expect(reopened.repairs).toHaveLength(1);
    await reopened.close();
    expect((await verifyTree(dir)).problems).toEqual([]);
  });

  it('finding 6: the same emptied entry at or below the commit is not cut (it could be committed data)', async () => {
    const dir = makeTempDir();
    const store = await open(dir);
    await store.append([entry(1), entry(2)]);
    await store.setHardState({ term: 1, vote: 0, commit: 2 });
    await store.close();
    for (const name of readdirSync(entryPath(dir, 2))) rmSync(join(entryPath(dir, 2), name));
    const reopened = await open(dir);
    expect(reopened.repairs).toEqual([]);
    expect(reopened.lastIndex()).toBe(2);
    expect(await codeOf(() => reopened.backfill())).toBe(ErrorCode.Corrupt);
  });

  it('finding 7: backfill refuses an entry whose MANIFEST is empty (written by append, RAFT torn) and changes nothing', async () => {
    const dir = makeTempDir();
    const store = await open(dir);
    await store.append([entry(1), entry(2)]);
    await store.close();
    const raft = join(entryPath(dir, 2), 'RAFT');
    rmSync(raft);
    writeFileSync(raft, new Uint8Array(0), { mode: 0o400 });
    const reopened = await open(dir);
    expect(reopened.pendingBackfill).toBe(1);
    let error: { code?: string; path?: string } | undefined;
    await reopened.backfill().catch((caught: { code?: string; path?: string }) => (error = caught));
    expect(error?.code).toBe(ErrorCode.Corrupt);
    expect(error?.path).toBe(join(entryPath(dir, 2), 'MANIFEST'));
    expect(reopened.pendingBackfill).toBe(1);
  });

  it('finding 7 (control): an entry Gitaly wrote (its MANIFEST holds its data) is still backfilled', async () => {
    const dir = makeTempDir();
    mkdirSync(entryPath(dir, 1), { recursive: true, mode: 0o700 });
    writeFileSync(join(entryPath(dir, 1), 'MANIFEST'), encodeLogEntry({ relativePath: 'r.git', referenceTransactions: [], operations: [] }), { mode: 0o400 });
    const store = await open(dir);
    expect(await store.backfill()).toEqual({ backfilled: 1 });
  });

  /**
   * The state a power cut during LevelDB's open of kv/ can leave (level-files.ts): the files
   * after that open, except that CURRENT's rename was lost and the deletions of the old log and
   * MANIFEST were kept. `withSecondNames`: the second names the guard gave them before the open.
   */
  function tornLevelDatabaseOpen(kvBefore: string, kvAfter: string, target: string, withSecondNames: boolean, keepOldManifest: boolean): void {
    cpSync(kvAfter, target, { recursive: true });
    writeFileSync(join(target, 'CURRENT'), readFileSync(join(kvBefore, 'CURRENT')));
    for (const name of readdirSync(kvBefore)) {
      if (!/^(\d+\.log|MANIFEST-\d+)$/.test(name)) continue;
      rmSync(join(target, name), { force: true });
      if (keepOldManifest && name.startsWith('MANIFEST-')) cpSync(join(kvBefore, name), join(target, name));
      if (withSecondNames) cpSync(join(kvBefore, name), join(target, `${KEEP_PREFIX}${name}`));
    }
  }

  /**
   * A store whose hard state is term 2 / vote 2 (saved after a reopen), and copies of its kv/
   * just before and just after one more open: the two ends of a LevelDB open a power cut may cut.
   */
  async function kvAroundAnOpen(): Promise<{ dir: string; kvBefore: string; kvAfter: string }> {
    const root = makeTempDir();
    const dir = join(root, 'store');
    let store = await open(dir);
    await store.append([entry(1), entry(2)]);
    await store.setHardState({ term: 1, vote: 1, commit: 1 });
    await store.close();
    store = await open(dir);
    await store.setHardState({ term: 2, vote: 2, commit: 2 });
    await store.close();
    const kvBefore = join(root, 'kv-before');
    cpSync(kvPath(dir), kvBefore, { recursive: true });
    await (await open(dir)).close();
    const kvAfter = join(root, 'kv-after');
    cpSync(kvPath(dir), kvAfter, { recursive: true });
    return { dir, kvBefore, kvAfter };
  }

  it('finding 8: a LevelDB open cut by a power cut (CURRENT renamed, the old log deleted: only the deletion kept) reopens with the latest records', async () => {
    const { dir, kvBefore, kvAfter } = await kvAroundAnOpen();
    expect(readdirSync(kvAfter).filter((name) => name.startsWith(KEEP_PREFIX))).toEqual([]);

    for (const keepOldManifest of [true, false]) {
      rmSync(kvPath(dir), { recursive: true });
      tornLevelDatabaseOpen(kvBefore, kvAfter, kvPath(dir), true, keepOldManifest);
      const reopened = await open(dir);
      expect(reopened.initialState().hardState).toEqual({ term: 2, vote: 2, commit: 2 });
      expect(reopened.repairs.join('\n')).toMatch(/linked back/);
      await reopened.close();
      expect(readdirSync(kvPath(dir)).filter((name) => name.startsWith(KEEP_PREFIX))).toEqual([]);
    }
  });

  it('finding 8 (control): without the second names the same torn state rolls the hard state back to the open before (the hazard is real)', async () => {
    const { dir, kvBefore, kvAfter } = await kvAroundAnOpen();
    rmSync(kvPath(dir), { recursive: true });
    tornLevelDatabaseOpen(kvBefore, kvAfter, kvPath(dir), false, true);
    const reopened = await open(dir);
    // What every open did before the guard: term 2's vote is gone, so the node could vote again in term 2.
    expect(reopened.initialState().hardState).toEqual({ term: 1, vote: 1, commit: 1 });
  });

  it('finding 8: a lock database whose CURRENT names a MANIFEST that is gone starts afresh instead of refusing every open', async () => {
    const dir = makeTempDir();
    await (await open(dir)).close();
    const lock = join(dir, LOCK_DATABASE);
    for (const name of readdirSync(lock)) if (name.startsWith('MANIFEST-')) rmSync(join(lock, name));
    const reopened = await open(dir);
    expect(reopened.status).toBe('unbootstrapped');
  });

  it('finding 8: a KV that lost its records (LevelDB opened empty) under entries append() wrote is refused, not started over', async () => {
    const dir = makeTempDir();
    const store = await open(dir);
    await store.append([entry(1), entry(2)]);
    await store.setHardState({ term: 2, vote: 1, commit: 2 });
    await store.close();
    // The database opens with 0 keys (CURRENT's rename lost, the old log's deletion kept).
    rmSync(kvPath(dir), { recursive: true });
    const empty = new ClassicLevel(kvPath(dir));
    await empty.open();
    await empty.close();
    expect(await codeOf(() => ReplicaLogStore.open({ dir }))).toBe(ErrorCode.Corrupt);
  });
});
