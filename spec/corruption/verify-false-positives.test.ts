/**
 * Trees the store writes in normal operation, or leaves after a crash it repairs at open, must
 * verify clean (apart from the leftovers open removes). The kill tests (spec/crash) found the
 * cases below, where lib/verify.ts used to report a problem on such a tree; each is pinned
 * here now that it is fixed, and the kill tests tolerate no problem at all.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType, type Entry } from '../../lib/types.js';
import { verifyTree } from '../../lib/verify.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';

afterEach(() => removeTempDirs());

const entry = (index: number, term: number): Entry => ({ type: EntryType.Normal, term, index, data: Uint8Array.of(index) });
const voters = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

describe('verifyTree on trees the store writes itself', () => {
  it('control: a store after appends, a hard state and a compaction at the commit verifies clean', async () => {
    const store = await ReplicaLogStore.open({ dir: makeTempDir() });
    await store.append([entry(1, 1), entry(2, 1), entry(3, 2)]);
    await store.setHardState({ term: 2, vote: 1, commit: 2 });
    await store.compact(2);
    await store.close();
    expect(await verifyTree(store.dir)).toMatchObject({ ok: true, problems: [] });
  });

  // FIXED VERIFIER BUG: lib/verify.ts verifyScan reported COMMIT_BELOW_FIRST ("entries
  // compacted beyond the commit") when commit < firstIndex-1. But applySnapshot(s) with s.index
  // above the saved commit is legal (API.md; MemoryStorage accepts it; raft persists the
  // snapshot before the hard state that raises the commit, so a crash between them leaves this
  // tree), and so is compact(i) with commit < i <= lastIndex(). Now a notice, not a problem.
  it('applySnapshot above the saved commit leaves a tree that verifies clean', async () => {
    const store = await ReplicaLogStore.open({ dir: makeTempDir() });
    await store.append([entry(1, 1), entry(2, 1)]);
    await store.setHardState({ term: 1, vote: 1, commit: 1 });
    await store.applySnapshot({ metadata: { index: 5, term: 2, confState: voters } });
    await store.close();
    expect((await verifyTree(store.dir)).problems.map((problem) => problem.code)).toEqual([]);
  });

  // FIXED VERIFIER BUG: with applySnapshot's intent pending (a crash after its KV batch),
  // every entry directory is about to be dropped by the next open, yet verifyScan checks their
  // terms against the NEW anchor (`previousTerm` started from kv.anchor) and reported
  // TERM_REGRESSION on the retained entries above it (here entry 3, term 1 < 4). While the
  // intent is pending every entry directory is now reported as a leftover, not as damage.
  it('a crash right after applySnapshot\'s KV batch leaves a tree with no problem but leftovers', async () => {
    let armed = false;
    const store = await ReplicaLogStore.open({
      dir: makeTempDir(),
      crashPoint: (name) => {
        if (armed && name === 'between-kv-and-wal') throw new Error('simulated crash');
      },
    });
    await store.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
    await store.setHardState({ term: 1, vote: 1, commit: 2 });
    armed = true;
    await store.applySnapshot({ metadata: { index: 2, term: 4, confState: voters } }).catch(() => {});
    await store.close();
    const result = await verifyTree(store.dir);
    expect(result.notices.map((notice) => notice.code)).toContain('INTENT_PENDING');
    // Entries 1 and 2 are at or below the new anchor: leftovers open removes. Entry 3 is above it.
    expect(result.problems.filter((problem) => problem.code !== 'COMPACTION_LEFTOVER').map((problem) => problem.code)).toEqual([]);
  });

  // FIXED VERIFIER BUG (same cause): applySnapshot below the current first index is legal
  // (the v3.7 rule: any index above the stored snapshot's and at or above the commit). Crash
  // after its KV batch: the anchor is the snapshot's index and the old entries start above
  // anchor+1, so verifyScan reports a GAP (found by the kill tests, seed 102).
  it('a crash right after applySnapshot below the first index leaves no GAP problem', async () => {
    let armed = false;
    const store = await ReplicaLogStore.open({
      dir: makeTempDir(),
      crashPoint: (name) => {
        if (armed && name === 'between-kv-and-wal') throw new Error('simulated crash');
      },
    });
    await store.append([entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1), entry(5, 1), entry(6, 1)]);
    await store.setHardState({ term: 1, vote: 1, commit: 2 });
    await store.createSnapshot(2);
    await store.compact(5); // beyond the commit (allowed up to lastIndex): first index 6
    armed = true;
    // Above the stored snapshot (2), at or above the commit (2), below the first index (6).
    await store.applySnapshot({ metadata: { index: 3, term: 1, confState: voters } }).catch(() => {});
    await store.close();
    const result = await verifyTree(store.dir);
    expect(result.notices.map((notice) => notice.code)).toContain('INTENT_PENDING');
    expect(result.problems.map((problem) => problem.code)).not.toContain('GAP');
  });
});
