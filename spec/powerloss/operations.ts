/**
 * The write operations the power-loss enumerator covers, each from a small store state, the
 * check every crash state must pass, and the controls (spec/powerloss/enumerator.test.ts,
 * npm run powerloss).
 */
import { accessSync, constants, cpSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEntry, encodeLogEntry } from '../../lib/codec.js';
import { ErrorCode } from '../../lib/errors.js';
import { writePreRaftWal } from '../../lib/fixture.js';
import { ReplicaLogStore, type ReplicaLogStoreOptions } from '../../lib/replica-log-store.js';
import { EntryType, type Entry } from '../../lib/types.js';
import { entryPath, RAFT_FILE, stagingPath, walPath } from '../../lib/wal/layout.js';
import { encodeJournalRecord, JOURNAL_DIRECTORY, journalRecordName } from '../../lib/wal/journal.js';
import { describeSteps, enumerateCrashStates, recordOperation, type CrashCheck, type EnumerateOptions, type EnumerationReport, type RecordOptions } from './enumerator.js';

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new TextEncoder().encode(`${index}@${term}`) });
const run = (from: number, to: number, term: number) => Array.from({ length: to - from + 1 }, (_, k) => entry(from + k, term));
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** Everything a reader of the store can see. */
export interface Picture {
  first: number;
  last: number;
  /** Each retained entry's encoding (hex), or 'pending' while it awaits backfill. */
  entries: Map<number, string>;
  hardState: string;
  confState: string;
  snapshot: string;
}

export function picture(store: ReplicaLogStore): Picture {
  const first = store.firstIndex();
  const last = store.lastIndex();
  const entries = new Map<number, string>();
  if (store.pendingBackfill === 0) {
    if (last >= first) for (const read of store.entries(first, last + 1)) entries.set(read.index, hex(encodeEntry(read)));
  } else {
    for (let index = first; index <= last; index++) {
      try {
        store.term(index);
        entries.set(index, hex(readFileSync(join(entryPath(store.dir, index), RAFT_FILE))));
      } catch (error) {
        if ((error as { code?: string }).code !== ErrorCode.NeedsBackfill) throw error;
        entries.set(index, 'pending');
      }
    }
  }
  const { hardState, confState } = store.initialState();
  const snapshot = store.snapshot();
  return {
    first,
    last,
    entries,
    hardState: JSON.stringify(hardState),
    confState: JSON.stringify(confState),
    snapshot: JSON.stringify({ metadata: snapshot.metadata, data: snapshot.data === undefined ? null : hex(snapshot.data) }),
  };
}

/** What a store that was never opened shows. */
export const EMPTY: Picture = {
  first: 1,
  last: 0,
  entries: new Map(),
  hardState: JSON.stringify({ term: 0, vote: 0, commit: 0 }),
  confState: JSON.stringify({ voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }),
  snapshot: JSON.stringify({ metadata: { index: 0, term: 0, confState: { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } }, data: null }),
};

function describe(now: Picture): string {
  const entries = [...now.entries].map(([index, value]) => (value === 'pending' ? `${index}:pending` : `${index}`)).join(',');
  return `log ${now.first}..${now.last} [${entries}] hard state ${now.hardState} snapshot ${now.snapshot}`;
}

/**
 * Before the acknowledgement: every part (hard state, conf state, snapshot) is as before or as
 * after, and the log is a prefix of the one before or of the one after (the same first index,
 * every entry the same bytes), holding at least every entry the two agree on (the operation
 * does not touch those: losing one loses an acknowledged write). From the acknowledgement on:
 * exactly as after. `perIndex`: an operation made of independent atomic steps (backfill, one
 * entry at a time) may leave each entry as before or after on its own.
 */
export function checkAgainst(before: Picture, after: Picture, perIndex = false): CrashCheck {
  return (store, { acknowledged }) => {
    const now = picture(store);
    const candidates = acknowledged ? [after] : [before, after];
    const matches = (pick: (picture: Picture) => string) => candidates.some((candidate) => pick(candidate) === pick(now));
    if (!matches((p) => p.hardState) || !matches((p) => p.confState) || !matches((p) => p.snapshot)) {
      return `${describe(now)}; expected ${acknowledged ? 'the state after' : 'each part before or after'}`;
    }
    let logMatches: boolean;
    if (acknowledged) {
      logMatches = now.first === after.first && now.last === after.last && [...now.entries].every(([index, value]) => after.entries.get(index) === value);
    } else if (perIndex && now.first === before.first && now.last === before.last) {
      logMatches = [...now.entries].every(([index, value]) => before.entries.get(index) === value || after.entries.get(index) === value);
    } else {
      const stable = [...before.entries].filter(([index, value]) => after.entries.get(index) === value).map(([index]) => index);
      logMatches =
        candidates.some(
          (candidate) =>
            now.first === candidate.first && now.last <= candidate.last && [...now.entries].every(([index, value]) => candidate.entries.get(index) === value),
        ) && stable.every((index) => index < now.first || index <= now.last);
    }
    if (logMatches) return undefined;
    return `${describe(now)}; expected ${acknowledged ? 'the state after' : 'before, after or a prefix keeping every entry both hold'}`;
  };
}

export interface OperationCase {
  name: string;
  /** The store directory under the model root (default `store`); missing levels are created by the open. */
  storePath?: string;
  /** Writes files before the store is first opened. */
  prepare?: (dir: string) => void;
  /** The store's first open is the recorded operation's (no setup; the state before is an empty store). */
  openInTrace?: boolean;
  openOptions?: Partial<ReplicaLogStoreOptions>;
  setup?: (store: ReplicaLogStore) => Promise<void>;
  /** Changes the closed store before the operation (a torn state for open to repair). */
  damage?: (dir: string) => Promise<void> | void;
  operation?: (store: ReplicaLogStore) => Promise<unknown>;
  /**
   * Instead of `operation`: several writes on the one open store, each acknowledged in turn
   * (what one write cannot reach: a checkpoint reusing what an earlier compaction moved out).
   * A power cut between the acknowledgements of stages k and k+1 must leave the store as after
   * stage k, as after stage k+1, or a prefix (checkAgainst); the pictures after each stage come
   * from a dry run of the same stages on a copy of the setup.
   */
  stages?: ((store: ReplicaLogStore) => Promise<unknown>)[];
  /** Independent atomic steps: each entry before or after on its own (see checkAgainst). */
  perIndex?: boolean;
  /** Journal mode on record files (a file system without writeAt/syncData), not segments. */
  recordFiles?: boolean;
}

const voters = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const bytes = (text: string) => new TextEncoder().encode(text);

/** A store whose write stops (throws) at `point` during `write`, as a power cut there would, then closes. */
async function interrupted(dir: string, point: string, write: (store: ReplicaLogStore) => Promise<unknown>): Promise<void> {
  const store = await ReplicaLogStore.open({
    dir,
    crashPoint: (name) => {
      if (name === point) throw new Error(`stopped at ${point}`);
    },
  });
  await write(store).catch(() => undefined);
  await store.close();
}

/** A staged entry directory as a transport would leave it, inside the store directory's tree. */
function stageIncoming(store: ReplicaLogStore, index: number): void {
  const staged = join(store.dir, 'incoming', String(index));
  mkdirSync(staged, { recursive: true, mode: 0o700 });
  writeFileSync(join(staged, 'MANIFEST'), encodeLogEntry({ relativePath: 'r.git', referenceTransactions: [], operations: [] }), { mode: 0o400 });
  writeFileSync(join(staged, '1'), bytes(`payload of ${index}`), { mode: 0o400 });
}

export const cases: OperationCase[] = [
  {
    name: 'create a store (mkdir -p) and append',
    storePath: 'parent/store',
    openInTrace: true,
    operation: (store) => store.append(run(1, 3, 1)),
  },
  {
    name: 'append',
    setup: async (store) => {
      await store.append(run(1, 2, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 2 });
    },
    operation: (store) => store.append(run(3, 5, 1)),
  },
  {
    name: 'a write group (append + setHardState in one tick)',
    setup: async (store) => {
      await store.append(run(1, 3, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 3 });
    },
    operation: (store) => Promise.all([store.append(run(4, 5, 1)), store.setHardState({ term: 1, vote: 1, commit: 5 })]),
  },
  {
    name: 'a truncating append',
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 2 });
    },
    operation: (store) => store.append(run(3, 4, 2)),
  },
  {
    name: 'compact(3)',
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 5 });
    },
    operation: (store) => store.compact(3),
  },
  {
    name: 'compact(lastIndex)',
    setup: async (store) => {
      await store.append(run(1, 4, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 4 });
    },
    operation: (store) => store.compact(4),
  },
  {
    name: 'createSnapshot',
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 5 });
    },
    operation: (store) => store.createSnapshot(4, voters, bytes('state at 4')),
  },
  {
    name: 'createSnapshot of a file prepareSnapshotData wrote',
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 5 });
    },
    operation: async (store) => store.createSnapshot(4, voters, await store.prepareSnapshotData(4, bytes('state at 4'))),
  },
  {
    name: 'applySnapshot above the log',
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 5 });
    },
    operation: (store) => store.applySnapshot({ metadata: { index: 10, term: 2, confState: voters }, data: bytes('state at 10') }),
  },
  {
    name: 'applySnapshot inside the log (entries above it dropped)',
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 2 });
    },
    operation: (store) => store.applySnapshot({ metadata: { index: 3, term: 1, confState: voters }, data: bytes('state at 3') }),
  },
  {
    name: 'backfill of a pre-Raft tree',
    prepare: (dir) => writePreRaftWal({ dir, entries: 3 }),
    operation: (store) => store.backfill(),
    perIndex: true,
  },
  {
    name: "open's repair: a gap above the commit",
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 2 });
    },
    // A power cut kept the renames of 4 and 5 of an unacknowledged append, not that of 3.
    damage: (dir) => rmSync(entryPath(dir, 3), { recursive: true }),
    operation: async () => {},
  },
  {
    name: "open's repair: an interrupted applySnapshot (its intent redone)",
    setup: async (store) => {
      await store.append(run(1, 4, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 4 });
    },
    damage: (dir) => interrupted(dir, 'between-kv-and-wal', (store) => store.applySnapshot({ metadata: { index: 8, term: 2, confState: voters } })),
    operation: async () => {},
  },
  {
    name: "open's repair: an interrupted compaction (directories at or below the anchor)",
    setup: async (store) => {
      await store.append(run(1, 4, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 4 });
    },
    damage: (dir) => interrupted(dir, 'between-kv-and-wal', (store) => store.compact(3)),
    operation: async () => {},
  },
  {
    name: 'insertLogEntry (a staged directory adopted, truncating the tail)',
    setup: async (store) => {
      await store.append(run(1, 4, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 2 });
      stageIncoming(store, 3);
    },
    operation: (store) => store.insertLogEntry(entry(3, 2), join(store.dir, 'incoming', '3')),
  },
  {
    name: 'insertLogEntry (appending)',
    setup: async (store) => {
      await store.append(run(1, 2, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 2 });
      stageIncoming(store, 3);
    },
    operation: (store) => store.insertLogEntry(entry(3, 1), join(store.dir, 'incoming', '3')),
  },
  {
    name: 'setHardState',
    setup: async (store) => {
      await store.append(run(1, 2, 1));
    },
    operation: (store) => store.setHardState({ term: 2, vote: 1, commit: 2 }),
  },
  {
    name: 'setConfState',
    setup: async (store) => {
      await store.append(run(1, 2, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 1 });
    },
    operation: (store) => store.setConfState(voters),
  },
  {
    name: 'first open of a tree that has wal/ and staging/ (no kv/), then setHardState',
    openInTrace: true,
    prepare: (dir) => {
      mkdirSync(walPath(dir), { recursive: true, mode: 0o700 });
      mkdirSync(stagingPath(dir), { mode: 0o700 });
    },
    operation: (store) => store.setHardState({ term: 3, vote: 1, commit: 0 }),
  },
  {
    name: "a write group, then close's checkpoint",
    openOptions: { checkpointInterval: 2 },
    setup: async (store) => {
      await Promise.all([store.append(run(1, 4, 1)), store.setHardState({ term: 1, vote: 1, commit: 4 })]);
    },
    operation: (store) => Promise.all([store.append(run(5, 6, 1)), store.setHardState({ term: 1, vote: 1, commit: 6 })]),
  },
  {
    name: 'journal: an append (one record, written into wal/ by the checkpoint at close)',
    openOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    setup: async (store) => {
      await Promise.all([store.append(run(1, 2, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
    },
    operation: (store) => store.append(run(3, 5, 1)),
  },
  {
    name: 'journal on record files: an append (a file per record, as a partition writes it)',
    openOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    recordFiles: true,
    setup: async (store) => {
      await Promise.all([store.append(run(1, 2, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
    },
    operation: (store) => Promise.all([store.append(run(3, 5, 1)), store.setHardState({ term: 1, vote: 1, commit: 4 })]),
  },
  {
    name: 'journal: a truncating write group (the checkpoint at close cuts the tail in wal/)',
    openOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    setup: async (store) => {
      await Promise.all([store.append(run(1, 5, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
    },
    operation: (store) => Promise.all([store.append(run(3, 4, 2)), store.setHardState({ term: 2, vote: 1, commit: 2 })]),
  },
  {
    name: "journal: open's replay of records a crash left (a truncating one among them)",
    openOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    setup: async (store) => {
      await Promise.all([store.append(run(1, 2, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
    },
    // After the setup's close, raft/journal_through is 1: records 2 and 3 are acknowledged groups
    // whose checkpoint never ran.
    damage: (dir) => {
      writeFileSync(join(dir, JOURNAL_DIRECTORY, journalRecordName(2)), encodeJournalRecord({ entries: run(3, 5, 1), hardState: { term: 1, vote: 1, commit: 3 } }), { mode: 0o400 });
      writeFileSync(join(dir, JOURNAL_DIRECTORY, journalRecordName(3)), encodeJournalRecord({ entries: run(5, 6, 2), hardState: { term: 2, vote: 0, commit: 4 } }), { mode: 0o400 });
    },
    operation: async () => {},
  },
  {
    name: 'journal: a checkpoint reuses directories a compaction moved out (RAFT overwritten in place)',
    openOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    setup: async (store) => {
      await Promise.all([store.append(run(1, 4, 1)), store.setHardState({ term: 1, vote: 1, commit: 4 })]);
      await store.setConfState(voters);
    },
    stages: [
      // The setup's drain (setConfState waits for the journal) ran a checkpoint whose syncfs
      // shows syncfs works, which recycling and direct checkpoints need: 5 is written straight
      // into wal/ (a direct checkpoint).
      (store) => writeGroupThenDrain(store, 5, 5),
      // 1..3 stay in wal/ (at or below the durable anchor), offered for reuse.
      (store) => store.compact(3),
      // 6 reuses the directory that held 1 (RAFT overwritten, renamed within wal/)...
      (store) => writeGroupThenDrain(store, 6, 6),
      // ...7 and 8 those that held 2 and 3, 9 a new one.
      (store) => writeGroupThenDrain(store, 7, 9),
    ],
  },
  {
    name: "journal: a record replacing the tail below a waiting record's entries (checkpointed apart, in order)",
    openOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    setup: async (store) => {
      // 1..4 in wal/, only 1..2 committed; syncfs has worked (direct checkpoints from here on).
      await Promise.all([store.append(run(1, 4, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
      await store.setConfState(voters);
    },
    stages: [
      // Waits in the journal: 5..6 (a direct checkpoint would write them into wal/).
      (store) => store.append(run(5, 6, 1)),
      // A new leader's entries replace the log from 3: below the waiting record's first index.
      // One checkpoint of both would cut wal/ at 3 while the first record still needs 3..4.
      (store) => Promise.all([store.append(run(3, 4, 2)), store.setHardState({ term: 2, vote: 0, commit: 2 })]),
      // The drain: two checkpoints, 5..6 (direct) then 3..4 (staged, cutting the old tail).
      (store) => store.setConfState(voters),
    ],
  },
  {
    name: "journal: open's replay of a record replacing the tail below an earlier record's entries (two groups)",
    openOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    setup: async (store) => {
      await Promise.all([store.append(run(1, 4, 1)), store.setHardState({ term: 1, vote: 1, commit: 2 })]);
    },
    // After the setup's close, raft/journal_through is 1 and 1..4 are in wal/: record 2 appends
    // 5..6, record 3 replaces the log from 3 (below record 2's first index).
    damage: (dir) => {
      writeFileSync(join(dir, JOURNAL_DIRECTORY, journalRecordName(2)), encodeJournalRecord({ entries: run(5, 6, 1) }), { mode: 0o400 });
      writeFileSync(join(dir, JOURNAL_DIRECTORY, journalRecordName(3)), encodeJournalRecord({ entries: run(3, 3, 2), hardState: { term: 2, vote: 0, commit: 2 } }), { mode: 0o400 });
    },
    operation: async () => {},
  },
  {
    name: 'journal: createSnapshot and a compaction while a record waits (neither drains the journal)',
    openOptions: { journal: true, journalCheckpointDelayMs: 600_000 },
    setup: async (store) => {
      await writeGroupThenDrain(store, 1, 4);
    },
    stages: [
      // Durable in its record only: 5 and 6 are not in wal/ yet.
      (store) => Promise.all([store.append(run(5, 6, 1)), store.setHardState({ term: 1, vote: 1, commit: 6 })]),
      // KV names a snapshot at 5 while the entry is still in the journal.
      (store) => store.createSnapshot(5, voters, bytes('state at 5')),
      // 1..3 are below the waiting record: moved out of wal/ without waiting for it.
      (store) => store.compact(3),
    ],
  },
];

/** Entries from..to and the hard state committing them, then a drain that checkpoints them into wal/. */
async function writeGroupThenDrain(store: ReplicaLogStore, from: number, to: number): Promise<void> {
  await Promise.all([store.append(run(from, to, 1)), store.setHardState({ term: 1, vote: 1, commit: to })]);
  await store.setConfState(voters);
}

/** The controls: one barrier dropped, the enumerator must find failing states (the test of the test). */
export const controls: { name: string; operation: string; dropFsync: (path: string, occurrence: number, dir: string, root: string) => boolean }[] = [
  {
    name: "an append without its fsyncs of wal/ and staging/ after the renames",
    operation: 'append',
    dropFsync: (path, _occurrence, dir) => path === walPath(dir) || path === stagingPath(dir),
  },
  {
    name: 'an append without its fsync of staging/ (finding 6: the entry keeps both names, open empties it)',
    operation: 'append',
    dropFsync: (path, _occurrence, dir) => path === stagingPath(dir),
  },
  {
    name: 'a truncating append without the fsync of wal/ between the old tail and the new entries',
    operation: 'a truncating append',
    dropFsync: (path, occurrence, dir) => path === walPath(dir) && occurrence === 0,
  },
  {
    name: 'applySnapshot inside the log without the fsync of wal/ before its intent is cleared',
    operation: 'applySnapshot inside the log (entries above it dropped)',
    dropFsync: (path, _occurrence, dir) => path === walPath(dir),
  },
  {
    name: 'a first open without the fsync of the store directory (finding 1: kv/ can vanish)',
    operation: 'first open of a tree that has wal/ and staging/ (no kv/), then setHardState',
    dropFsync: (path, _occurrence, dir) => path === dir,
  },
  {
    name: "a journal segment's creation without the fsync of journal/ (its name, with acknowledged records in it, can vanish)",
    operation: 'journal: an append (one record, written into wal/ by the checkpoint at close)',
    dropFsync: (path, _occurrence, dir) => path === join(dir, JOURNAL_DIRECTORY),
  },
  {
    name: "a journal segment's record without its fdatasync (the acknowledged group can vanish)",
    operation: 'journal: an append (one record, written into wal/ by the checkpoint at close)',
    dropFsync: (path) => /\/journal\/[0-9]{20}\.seg$/.test(path),
  },
  {
    name: 'a journal record file without the fsync of journal/ (the acknowledged group can vanish)',
    operation: 'journal on record files: an append (a file per record, as a partition writes it)',
    dropFsync: (path, _occurrence, dir) => path === join(dir, JOURNAL_DIRECTORY),
  },
  {
    name: "a journal checkpoint without its syncfs before KV records it (journal_through covers entries not durable)",
    operation: 'journal: an append (one record, written into wal/ by the checkpoint at close)',
    dropFsync: (path) => path === 'syncfs',
  },
  {
    name: 'creating a store without the fsync of the first level mkdir -p created (finding 3)',
    operation: 'create a store (mkdir -p) and append',
    dropFsync: (path, _occurrence, _dir, root) => path === root,
  },
];

/**
 * Where to build crash states: a memory file system when there is one (/dev/shm), else the
 * temporary directory. The model decides what survives, not the disk, and every state is opened
 * (with its fsyncs): in memory that is several times faster.
 */
export function scratchBase(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    if (statSync('/dev/shm').isDirectory()) return '/dev/shm';
  } catch {
    // no /dev/shm here
  }
  return tmpdir();
}

export interface RunOptions extends EnumerateOptions {
  /** Drop these fsyncs (a control). */
  dropFsync?: (path: string, occurrence: number, dir: string, root: string) => boolean;
  /** Gets the recorded trace, one step a line (for a failure's report). */
  onTrace?: (trace: string) => void;
}

/** Records `operationCase` under `workspace` and enumerates its crash states. */
export async function enumerate(operationCase: OperationCase, workspace: string, options: RunOptions): Promise<EnumerationReport> {
  const root = join(workspace, 'model');
  const scratch = join(workspace, 'scratch');
  mkdirSync(root);
  mkdirSync(scratch);
  const storePath = operationCase.storePath ?? 'store';
  const dir = join(root, storePath);
  operationCase.prepare?.(dir);
  let before = EMPTY;
  if (operationCase.openInTrace !== true) {
    const store = await ReplicaLogStore.open({ ...operationCase.openOptions, dir });
    await operationCase.setup?.(store);
    before = picture(store);
    await store.close();
    await operationCase.damage?.(dir);
  }
  const record: RecordOptions = { openOptions: operationCase.openOptions ?? {}, ...(operationCase.recordFiles === true ? { recordFiles: true } : {}) };
  const dropFsync = options.dropFsync;
  if (dropFsync !== undefined) record.dropFsync = (path, occurrence) => dropFsync(path, occurrence, dir, root);
  const stages = operationCase.stages;
  if (stages !== undefined) return enumerateStages(operationCase.name, stages, { root, scratch, storePath, dir, before, record, openOptions: operationCase.openOptions ?? {} }, options);
  const operation = operationCase.operation!;
  const recorded = await recordOperation(operationCase.name, root, storePath, scratch, async (store) => {
    await operation(store);
  }, record);
  options.onTrace?.(describeSteps(recorded));
  const reopened = await ReplicaLogStore.open({ dir });
  const after = picture(reopened);
  await reopened.close();
  return enumerateCrashStates(recorded, scratch, checkAgainst(before, after, operationCase.perIndex === true), options);
}

/** enumerate() of a staged case: a dry run for each stage's picture, then the recorded run. */
async function enumerateStages(
  name: string,
  stages: NonNullable<OperationCase['stages']>,
  at: { root: string; scratch: string; storePath: string; dir: string; before: Picture; record: RecordOptions; openOptions: Partial<ReplicaLogStoreOptions> },
  options: RunOptions,
): Promise<EnumerationReport> {
  const dry = join(at.scratch, 'dry-run');
  cpSync(at.dir, dry, { recursive: true });
  const pictures = [at.before];
  const dryStore = await ReplicaLogStore.open({ ...at.openOptions, dir: dry });
  for (const stage of stages) {
    await stage(dryStore);
    pictures.push(picture(dryStore));
  }
  await dryStore.close();
  rmSync(dry, { recursive: true, force: true });
  const recorded = await recordOperation(name, at.root, at.storePath, at.scratch, async (store, acknowledge) => {
    for (const [position, stage] of stages.entries()) {
      await stage(store);
      acknowledge(`stage ${position + 1}`);
    }
  }, at.record);
  options.onTrace?.(describeSteps(recorded));
  // The last picture is the closed store's (close may write: its checkpoint).
  const reopened = await ReplicaLogStore.open({ dir: at.dir });
  pictures[stages.length] = picture(reopened);
  await reopened.close();
  return enumerateCrashStates(recorded, at.scratch, (store, context) => {
    let done = 0;
    while (done < stages.length && context.acknowledgedLabel(`stage ${done + 1}`)) done++;
    const last = done === stages.length;
    return checkAgainst(pictures[done]!, pictures[last ? done : done + 1]!)(store, { ...context, acknowledged: last });
  }, options);
}
