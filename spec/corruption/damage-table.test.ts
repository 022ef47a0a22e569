/**
 * Corruption and bad trees (issue priority 3): the damage decision table. Each row damages a
 * closed, bootstrapped store in one way and states what open() must do — refuse with a coded
 * error naming the path, repair (only when provably safe), or open (damage the store never
 * reads) — and which problems verifyTree must list. Rows already covered by
 * spec/replica-log-store.corruption.test.ts (garbage / empty / mismatched RAFT, a gap, the
 * oldest entries removed, a stray or upper-case name in wal/, a file as an entry, commit above
 * last, a missing snapshot data file) are not repeated here.
 *
 * Rows whose `bug` is set describe the behaviour the store should have and currently lacks:
 * they run as `it.fails` (so the suite stays green) and are listed in the report to the lead.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeEntry, encodeHardState, encodeLogEntry } from '../../lib/codec.js';
import { ErrorCode } from '../../lib/errors.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType, type Entry } from '../../lib/types.js';
import { verifyTree } from '../../lib/verify.js';
import { entryPath, kvKey, walPath } from '../../lib/wal/layout.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { closeTestStores, trackStore } from '../helpers/stores.js';

afterEach(closeTestStores);

const bytes = (text: string) => new TextEncoder().encode(text);
const entry = (index: number, term: number, data?: string): Entry =>
  data === undefined ? { type: EntryType.Normal, term, index } : { type: EntryType.Normal, term, index, data: bytes(data) };
const ENTRIES = [entry(1, 1, 'one'), entry(2, 1, 'two'), entry(3, 2, 'three'), entry(4, 2, 'four')];
const raftOf = (dir: string, index: number) => join(entryPath(dir, index), 'RAFT');

/**
 * A closed bootstrapped store: entries 1..4 (terms 1,1,2,2), commit 2, a snapshot at 1 with
 * data. With `checkpoint`, KV also holds raft/log_checkpoint through the commit (V = 2).
 */
async function healthyStore(checkpoint = false): Promise<string> {
  const store = await ReplicaLogStore.open({ dir: makeTempDir('replicalog-damage-'), ...(checkpoint ? { checkpointInterval: 1 } : {}) });
  await store.append(ENTRIES);
  await store.setHardState({ term: 2, vote: 1, commit: 2 });
  await store.createSnapshot(1, { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }, bytes('snap'));
  await store.close();
  return store.dir;
}

function replaceFile(path: string, content: Uint8Array, mode = 0o400): void {
  rmSync(path, { force: true, recursive: true });
  writeFileSync(path, content, { mode });
}

async function putKv(dir: string, name: string, value: Uint8Array): Promise<void> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'kv'), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  await db.put(kvKey(undefined, name), value);
  await db.close();
}

function anchorBytes(index: number, term: number): Uint8Array {
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(index));
  view.setBigUint64(8, BigInt(term));
  return out;
}

type Outcome =
  | { open: 'refused'; code: string; path: (dir: string) => string }
  | { open: 'repaired' | 'opens'; check: (store: ReplicaLogStore, dir: string) => void };

interface Row {
  damage: string;
  /** The healthy store has a checkpoint in KV (open() then does not read RAFT files <= V). */
  checkpoint?: boolean;
  apply: (dir: string) => Promise<void> | void;
  outcome: Outcome;
  /** verifyTree problem codes, exactly (before any open). */
  verify: string[];
  why: string;
  /** The store (or verifier) does not do this yet: the row runs as it.fails. */
  bug?: string;
}

const servesAll = (store: ReplicaLogStore) => expect(store.entries(2, 5)).toEqual(ENTRIES.slice(1));
const kvPathOf = (dir: string) => join(dir, 'kv');

export const DAMAGE_TABLE: Row[] = [
  {
    damage: 'RAFT truncated inside its data field',
    apply: (dir) => replaceFile(raftOf(dir, 3), encodeEntry(ENTRIES[2]!).subarray(0, 9)),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => entryPath(dir, 3) },
    verify: ['RAFT_CORRUPT'],
    why: 'a length-delimited field runs past the end: the bytes cannot be an entry',
  },
  {
    damage: 'RAFT truncated inside its index field (tag without value)',
    apply: (dir) => replaceFile(raftOf(dir, 3), encodeEntry(ENTRIES[2]!).subarray(0, 3)),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => entryPath(dir, 3) },
    verify: ['RAFT_CORRUPT'],
    why: 'a varint cut short does not decode',
  },
  {
    damage: 'RAFT truncated right after its term field (index field dropped)',
    apply: (dir) => replaceFile(raftOf(dir, 3), encodeEntry(ENTRIES[2]!).subarray(0, 4)),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => entryPath(dir, 3) },
    verify: ['RAFT_INDEX_MISMATCH'],
    why: 'decodes to index 0 (field absent), not the LSN',
  },
  {
    damage: 'RAFT with trailing zero bytes (ext4 data=writeback tail)',
    apply: (dir) => replaceFile(raftOf(dir, 3), new Uint8Array([...encodeEntry(ENTRIES[2]!), 0, 0, 0, 0])),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => entryPath(dir, 3) },
    verify: ['RAFT_CORRUPT'],
    why: 'field number 0 is invalid protobuf',
  },
  {
    damage: 'RAFT of another store with the same index but another term',
    apply: (dir) => replaceFile(raftOf(dir, 3), encodeEntry(entry(3, 1, 'other'))),
    outcome: { open: 'opens', check: (store) => expect(store.entries(3, 4)).toEqual([entry(3, 1, 'other')]) },
    verify: [],
    why: 'undetectable: a well-formed entry with the right index and a non-decreasing term (no checksum in the Gitaly format)',
  },
  {
    damage: 'RAFT truncated exactly before its data field (data dropped)',
    apply: (dir) => replaceFile(raftOf(dir, 3), encodeEntry(entry(3, 2))),
    outcome: { open: 'opens', check: (store) => expect(store.entries(3, 4)).toEqual([entry(3, 2)]) },
    verify: [],
    why: 'undetectable: the prefix is itself a valid encoding of the entry without data (no length or checksum in the format)',
  },
  {
    damage: 'RAFT whose term is lower than the entry before it',
    apply: (dir) => replaceFile(raftOf(dir, 4), encodeEntry(entry(4, 1, 'four'))),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => entryPath(dir, 4) },
    verify: ['TERM_REGRESSION'],
    why: 'terms never decrease along a raft log; serving it breaks log matching',
  },
  {
    damage: 'RAFT is a directory',
    apply: (dir) => {
      rmSync(raftOf(dir, 3), { force: true });
      mkdirSync(raftOf(dir, 3));
    },
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => entryPath(dir, 3) },
    verify: ['NOT_A_FILE'],
    why: 'damage in the tree, not an I/O failure',
  },
  {
    damage: 'RAFT missing on a bootstrapped store (an entry Gitaly wrote while Raft was off: its MANIFEST holds its data)',
    apply: (dir) => {
      rmSync(raftOf(dir, 3));
      replaceFile(join(entryPath(dir, 3), 'MANIFEST'), encodeLogEntry({ relativePath: 'r.git', referenceTransactions: [], operations: [] }));
    },
    outcome: {
      open: 'opens',
      check: (store) => {
        // Decided (README, Migrating): Gitaly lets Raft be switched off and on, so entries written
        // meanwhile have no RAFT; they wait for backfill (reads of them: ERR_NEEDS_BACKFILL).
        expect([store.status, store.pendingBackfill]).toEqual(['bootstrapped', 1]);
      },
    },
    verify: ['RAFT_MISSING'],
    why: 'entries written while Raft was switched off (Gitaly allows toggling) are backfilled, not refused; verify flags them so an operator runs migrate',
  },
  {
    damage: 'MANIFEST does not decode',
    apply: (dir) => replaceFile(join(entryPath(dir, 2), 'MANIFEST'), Uint8Array.of(0xff, 0xff)),
    outcome: { open: 'opens', check: servesAll },
    verify: ['MANIFEST_CORRUPT'],
    why: 'the store never reads MANIFEST (Gitaly applies it); verify reports it',
  },
  {
    damage: 'MANIFEST missing',
    apply: (dir) => rmSync(join(entryPath(dir, 2), 'MANIFEST')),
    outcome: { open: 'opens', check: servesAll },
    verify: ['MANIFEST_MISSING'],
    why: 'as above',
  },
  {
    damage: 'two entry directories missing in the middle',
    apply: (dir) => {
      rmSync(entryPath(dir, 2), { recursive: true });
      rmSync(entryPath(dir, 3), { recursive: true });
    },
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => entryPath(dir, 2) },
    verify: ['GAP'],
    why: 'a hole can never be served; the error names the first missing LSN',
  },
  {
    damage: 'a regular file with a stray name in wal/',
    apply: (dir) => writeFileSync(join(walPath(dir), 'README'), 'x'),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => join(walPath(dir), 'README') },
    verify: ['STRAY_NAME'],
    why: 'wal/ holds only LSN directories',
  },
  {
    damage: 'an LSN name above Number.MAX_SAFE_INTEGER',
    apply: (dir) => mkdirSync(join(walPath(dir), 'zzzzzzzzzzzzz')),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => join(walPath(dir), 'zzzzzzzzzzzzz') },
    verify: ['STRAY_NAME'],
    why: 'not a representable index',
  },
  {
    damage: 'a stray file inside an entry directory',
    apply: (dir) => writeFileSync(join(entryPath(dir, 2), 'notes.txt'), 'x'),
    outcome: { open: 'opens', check: servesAll },
    verify: ['STRAY_NAME'],
    why: 'payload files are Gitaly\'s; the store reads only RAFT',
  },
  {
    damage: 'RAFT.tmp left in an entry of a bootstrapped store',
    apply: (dir) => writeFileSync(join(entryPath(dir, 2), 'RAFT.tmp'), 'x', { mode: 0o400 }),
    outcome: { open: 'opens', check: servesAll },
    verify: ['STRAY_NAME'],
    why: 'a migration leftover; the store ignores it (removing it at open would be safe)',
  },
  {
    damage: 'wrong modes: RAFT 0644, an entry directory 0755',
    apply: (dir) => {
      chmodSync(raftOf(dir, 2), 0o644);
      chmodSync(entryPath(dir, 3), 0o755);
    },
    outcome: { open: 'opens', check: servesAll },
    verify: ['BAD_MODE', 'BAD_MODE'],
    why: 'modes do not change what is read; verify reports them',
  },
  {
    damage: 'hard_state key does not decode',
    apply: (dir) => putKv(dir, 'raft/hard_state', Uint8Array.of(0x08)),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: kvPathOf },
    verify: ['KV_CORRUPT'],
    why: 'the vote and commit are unknown',
  },
  {
    damage: 'conf_state key does not decode',
    apply: (dir) => putKv(dir, 'raft/conf_state', Uint8Array.of(0x0a, 0x05)),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: kvPathOf },
    verify: ['KV_CORRUPT'],
    why: 'membership is unknown',
  },
  {
    damage: 'log_anchor key of the wrong length',
    apply: (dir) => putKv(dir, 'raft/log_anchor', Uint8Array.of(1, 2, 3)),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: kvPathOf },
    verify: ['KV_CORRUPT'],
    why: 'firstIndex is unknown',
  },
  {
    damage: 'intent key with an unknown value',
    apply: (dir) => putKv(dir, 'raft/intent', Uint8Array.of(7)),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: kvPathOf },
    verify: ['KV_CORRUPT'],
    why: 'an unknown pending operation cannot be redone',
  },
  {
    damage: 'commit above the last index after the tail was removed (hard state raised in KV)',
    apply: (dir) => putKv(dir, 'raft/hard_state', encodeHardState({ term: 2, vote: 1, commit: 9 })),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: kvPathOf },
    verify: ['COMMIT_ABOVE_LAST'],
    why: 'committed entries would be missing',
  },
  {
    damage: 'snapshot metadata beyond the log (snapshot at 9, last index 4)',
    apply: async (dir) => {
      const { encodeSnapshot } = await import('../../lib/codec.js');
      await putKv(dir, 'raft/snapshot', encodeSnapshot({ metadata: { index: 9, term: 3, confState: { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } }));
    },
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: kvPathOf },
    verify: ['SNAPSHOT_BEYOND_LOG'],
    why: 'a snapshot above the log without the anchor moved means the KV and the log disagree',
    bug: 'ReplicaLogStore.recover (lib/replica-log-store.ts l.403-413) checks the commit against the last index but never the snapshot metadata: the store opens, snapshot() answers index 9 while lastIndex() is 4, and createSnapshot(3) is refused ERR_SNAP_OUT_OF_DATE',
  },
  {
    damage: 'log anchor beyond the last entry, no intent pending (anchor 10, entries 1..4)',
    apply: (dir) => putKv(dir, 'raft/log_anchor', anchorBytes(10, 3)),
    outcome: {
      open: 'repaired',
      check: (store) => expect([store.firstIndex(), store.lastIndex(), store.term(10)]).toEqual([11, 10, 3]),
    },
    verify: ['ANCHOR_BEYOND_LOG'],
    why: 'a durable anchor is a compaction that happened: compact(lastIndex) records it, then renames the directories out, and a power cut may keep those renames in any order, the highest first. Open accepts an empty log at the anchor (issue 15, finding 4); verify still flags the tree before that open',
  },
  {
    damage: 'snapshot_data names a file outside snapshot/ (../kv/CURRENT)',
    apply: (dir) => putKv(dir, 'raft/snapshot_data', bytes('../kv/CURRENT')),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: kvPathOf },
    verify: ['KV_CORRUPT'],
    why: 'the name must be a snapshot file name; anything else reads (and serves as snapshot data) a file elsewhere in the tree',
  },
  {
    damage: 'with a checkpoint (V = 2): RAFT at V does not decode',
    checkpoint: true,
    apply: (dir) => replaceFile(raftOf(dir, 2), Uint8Array.of(0xff, 0xff, 0xff)),
    outcome: { open: 'refused', code: ErrorCode.Corrupt, path: (dir) => entryPath(dir, 2) },
    verify: ['RAFT_CORRUPT'],
    why: 'open cross-checks the checkpoint against the RAFT files at the first index and at V; a mismatch means the full scan, which refuses the damaged file. Damage strictly between them is met by the read of that entry (ERR_CORRUPT) and by verify, which reads every file (lib "Checkpoint")',
  },
  {
    damage: 'with a checkpoint: raft/log_checkpoint does not decode',
    checkpoint: true,
    apply: (dir) => putKv(dir, 'raft/log_checkpoint', Uint8Array.of(1, 2, 3)),
    outcome: { open: 'repaired', check: (store) => {
      expect(store.openStats.checkpoint).toBe('invalid');
      servesAll(store);
    } },
    verify: [],
    why: 'an accelerator only: an unusable record means a full scan of the RAFT files (safe)',
  },
  {
    damage: 'with a checkpoint: a well-formed raft/log_checkpoint with a wrong term (7 for entries 1..2, RAFT says 1)',
    checkpoint: true,
    apply: async (dir) => {
      const { encodeCheckpoint } = await import('../../lib/wal/raft-state.js');
      await putKv(dir, 'raft/log_checkpoint', encodeCheckpoint({ verifiedThrough: 2, starts: [1], terms: [7] }));
    },
    outcome: { open: 'repaired', check: (store) => {
      expect(store.openStats.checkpoint).toBe('invalid');
      servesAll(store);
    } },
    verify: [],
    why: 'an accelerator only: open cross-checks it against the RAFT files at the first index and at V, and a disagreeing record means a full scan (safe)',
  },
  {
    damage: 'an unreferenced file in snapshot/ (an older snapshot, a crashed .tmp)',
    apply: (dir) => writeFileSync(join(dir, 'snapshot', '0000000000000-abcdef.snap.tmp'), 'x'),
    outcome: {
      open: 'repaired',
      check: (store, dir) => {
        expect(store.snapshot().data).toEqual(bytes('snap'));
        expect(() => readFileSync(join(dir, 'snapshot', '0000000000000-abcdef.snap.tmp'))).toThrow();
      },
    },
    verify: [],
    why: 'nothing names it: removing it is safe (open prunes snapshot/ to the file KV names)',
  },
];

describe('damage decision table', () => {
  for (const row of DAMAGE_TABLE) {
    // DAMAGE_SHOW_BUGS=1 runs the bug rows as plain tests, to see how they fail today.
    const test = row.bug === undefined || process.env.DAMAGE_SHOW_BUGS ? it : it.fails;
    const verdict = row.outcome.open === 'refused' ? `refused with ${row.outcome.code}` : row.outcome.open;
    test(`${row.damage} → ${verdict}; verify lists [${row.verify.join(', ')}]`, async () => {
      const dir = await healthyStore(row.checkpoint === true);
      await row.apply(dir);
      const verified = await verifyTree(dir);
      expect(verified.problems.map((problem) => problem.code).sort()).toEqual([...row.verify].sort());
      let store: ReplicaLogStore | undefined;
      let error: { code?: string; path?: string; message: string } | undefined;
      try {
        store = await ReplicaLogStore.open({ dir });
        trackStore(store);
      } catch (caught) {
        error = caught as typeof error;
      }
      if (row.outcome.open === 'refused') {
        expect(store).toBeUndefined();
        expect(error?.code).toBe(row.outcome.code);
        expect(error?.path).toBe(row.outcome.path(dir));
        expect(error?.message).toContain(row.outcome.path(dir));
      } else {
        expect(error).toBeUndefined();
        row.outcome.check(store!, dir);
        // And it writes (after the backfill it asks for, if any): the damage it tolerates does not stop the log.
        if (store!.pendingBackfill > 0) await store!.backfill();
        const next = store!.lastIndex() + 1;
        await store!.append([entry(next, Math.max(2, store!.term(next - 1)), 'five')]);
      }
    });
  }
});
