/**
 * The write operations the power-loss enumerator covers, each from a small store state, and the
 * check every crash state must pass (spec/powerloss/enumerator.test.ts, npm run powerloss).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { encodeLogEntry } from '../../lib/codec.js';
import { writePreRaftWal } from '../../lib/fixture.js';
import { entryPath } from '../../lib/wal/layout.js';
import { join } from 'node:path';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType, type Entry, type HardState } from '../../lib/types.js';
import { enumerateCrashStates, recordOperation, type CrashCheck, type EnumerationReport } from './enumerator.js';

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new TextEncoder().encode(`${index}@${term}`) });
const run = (from: number, to: number, term: number) => Array.from({ length: to - from + 1 }, (_, k) => entry(from + k, term));

interface LogPicture {
  first: number;
  terms: Map<number, number>;
  hardState: HardState;
}

function picture(store: ReplicaLogStore): LogPicture {
  const terms = new Map<number, number>();
  // An entry that awaits backfill has no term yet: -1.
  for (let index = store.firstIndex(); index <= store.lastIndex(); index++) terms.set(index, store.pendingBackfill > 0 ? termOrPending(store, index) : store.term(index));
  return { first: store.firstIndex(), terms, hardState: store.initialState().hardState };
}

function termOrPending(store: ReplicaLogStore, index: number): number {
  try {
    return store.term(index);
  } catch {
    return -1;
  }
}

/**
 * The log is the one before or the one after, or a prefix of either (a write in flight), and the
 * hard state (one atomic KV batch) is the one before or after; once acknowledged, exactly after.
 */
function checkAgainst(before: LogPicture, after: LogPicture, perIndex = false): CrashCheck {
  return (store, { acknowledged }) => {
    const now = picture(store);
    const sameHardState = (a: HardState, b: HardState) => a.term === b.term && a.vote === b.vote && a.commit === b.commit;
    const candidates = acknowledged ? [after] : [before, after];
    // An operation made of independent atomic steps (backfill: one entry at a time) may leave
    // each index as before or after on its own.
    const eachIndex = perIndex && !acknowledged && now.first === before.first && now.terms.size === before.terms.size &&
      [...now.terms].every(([index, term]) => before.terms.get(index) === term || after.terms.get(index) === term);
    const logMatches = eachIndex || candidates.some(
      (candidate) =>
        now.first === candidate.first &&
        [...now.terms].every(([index, term]) => candidate.terms.get(index) === term) &&
        (!acknowledged || now.terms.size === candidate.terms.size),
    );
    const hardStateMatches = candidates.some((candidate) => sameHardState(now.hardState, candidate.hardState));
    if (logMatches && hardStateMatches) return undefined;
    return `log ${now.first}..${now.first + now.terms.size - 1} terms [${[...now.terms.values()]}] hard state ${JSON.stringify(now.hardState)}; expected ${acknowledged ? 'the state after' : 'before, after or a prefix'}`;
  };
}

export interface OperationCase {
  name: string;
  /** Writes files before the store is first opened (a pre-Raft tree). */
  prepare?: (dir: string) => void;
  setup: (store: ReplicaLogStore) => Promise<void>;
  /** Changes the closed store's files before the operation (a torn state for open to repair). */
  damage?: (dir: string) => void;
  operation: (store: ReplicaLogStore) => Promise<void>;
  /** Independent atomic steps: each index before or after on its own (see checkAgainst). */
  perIndex?: boolean;
}

const voters = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

export const cases: OperationCase[] = [
  { name: 'append to a fresh store', setup: async () => {}, operation: (store) => store.append(run(1, 3, 1)) },
  {
    name: 'a write group (append + setHardState in one tick)',
    setup: async (store) => {
      await store.append(run(1, 3, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 3 });
    },
    operation: async (store) => {
      await Promise.all([store.append(run(4, 5, 1)), store.setHardState({ term: 1, vote: 1, commit: 5 })]);
    },
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
    operation: async (store) => {
      await store.createSnapshot(4, voters, new TextEncoder().encode('state at 4'));
    },
  },
  {
    name: 'applySnapshot',
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 5 });
    },
    operation: (store) => store.applySnapshot({ metadata: { index: 10, term: 2, confState: voters }, data: new TextEncoder().encode('state at 10') }),
  },
  {
    name: 'backfill of a pre-Raft tree',
    prepare: (dir) => writePreRaftWal({ dir, entries: 4 }),
    setup: async () => {},
    operation: async (store) => {
      await store.backfill();
    },
    perIndex: true,
  },
  {
    name: "open's repair of a gap above the commit",
    setup: async (store) => {
      await store.append(run(1, 5, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 2 });
    },
    damage: (dir) => rmSync(entryPath(dir, 4), { recursive: true }),
    operation: async () => {},
  },
  {
    name: 'insertLogEntry (a staged directory adopted, truncating the tail)',
    setup: async (store) => {
      await store.append(run(1, 4, 1));
      await store.setHardState({ term: 1, vote: 1, commit: 2 });
      // The staged directory a transport would have received, on the store's file system.
      const staged = join(store.dir, 'incoming', '3');
      mkdirSync(staged, { recursive: true, mode: 0o700 });
      writeFileSync(join(staged, 'MANIFEST'), encodeLogEntry({ relativePath: 'r.git', referenceTransactions: [], operations: [] }), { mode: 0o400 });
    },
    operation: (store) => store.insertLogEntry(entry(3, 2), join(store.dir, 'incoming', '3')),
  },
  {
    name: 'setHardState',
    setup: async (store) => {
      await store.append(run(1, 2, 1));
    },
    operation: (store) => store.setHardState({ term: 2, vote: 1, commit: 2 }),
  },
];


export interface EnumerateOptions {
  seed: number;
  samplesPerStep: number;
  exhaustiveUpTo: number;
  /** Drop the fsync of these paths (the control). */
  dropFsync?: (path: string) => boolean;
}

/** Records `operationCase` in a fresh store under `root` and enumerates its crash states. */
export async function enumerate(operationCase: OperationCase, root: string, options: EnumerateOptions): Promise<EnumerationReport> {
  const dropFsync = options.dropFsync;
  const dir = join(root, 'store');
  const scratch = join(root, 'scratch');
  mkdirSync(scratch);
  operationCase.prepare?.(dir);
  const store = await ReplicaLogStore.open({ dir });
  await operationCase.setup(store);
  const before = picture(store);
  await store.close();
  operationCase.damage?.(dir);
  const recorded = await recordOperation(operationCase.name, dir, scratch, operationCase.operation, dropFsync === undefined ? {} : { dropFsync });
  const reopened = await ReplicaLogStore.open({ dir });
  const after = picture(reopened);
  await reopened.close();
  return enumerateCrashStates(recorded, scratch, checkAgainst(before, after, operationCase.perIndex === true), options);
}

