/**
 * Giving a set of stores their first shared configuration without raft's fake AddNode entries
 * (etcd's "manual bootstrap", TestRawNodeStart; reference/etcd-raft.md §3.9, §5.7).
 *
 * Seed node (the one holding the data): its log gets a snapshot at its last index whose data is
 * the state machine's state and whose conf state names every voter, a hard state committing that
 * index, and a compacted prefix. A store with no entries gets the snapshot at index 1 (term 1),
 * as in TestRawNodeStart.
 *
 * Joining nodes: an empty log whose only content is the conf state (an index-0 snapshot). Their
 * log is strictly less up to date than the seed's, so they can never out-vote it, and ReplicaNode
 * does not even tick a node whose log is empty: it waits for the leader's snapshot (the two
 * joining nodes could otherwise elect one of themselves with an empty log, and that leader
 * would try to overwrite the seed's committed entries).
 */
import type { ReplicaLogStore } from '../replica-log-store.js';
import { emptyConfState, type ConfState } from '../types.js';
import type { KvStateMachine } from './state-machine.js';

export function votersConfState(voters: readonly number[]): ConfState {
  return { ...emptyConfState(), voters: [...voters].sort((a, b) => a - b) };
}

export interface SeedBootstrapResult {
  snapshotIndex: number;
  snapshotTerm: number;
  firstIndex: number;
  lastIndex: number;
}

/**
 * Makes `store` (migrated or fresh, never bootstrapped) the seed of a cluster of `voters`,
 * holding `state` as of its last index. Keeps the last `keepEntries` entries in the log (they
 * are covered by the snapshot too).
 */
export async function bootstrapSeedStore(
  store: ReplicaLogStore,
  voters: readonly number[],
  state: KvStateMachine,
  keepEntries = 20,
): Promise<SeedBootstrapResult> {
  if (store.status === 'bootstrapped') throw new Error(`${store.dir} is already bootstrapped (it has a hard state)`);
  // 'needs-backfill' stays the status until the first hard state; what matters is whether
  // every entry has its RAFT file yet.
  if (store.pendingBackfill > 0) throw new Error(`${store.dir} holds a pre-Raft log: migrate it (backfill) first`);
  const confState = votersConfState(voters);
  const data = state.snapshot();
  if (store.lastIndex() === 0) {
    // An empty log: the TestRawNodeStart recipe, a snapshot at index 1, term 1.
    await store.applySnapshot({ metadata: { index: 1, term: 1, confState }, data });
    await store.setHardState({ term: 1, vote: 0, commit: 1 });
  } else {
    const last = store.lastIndex();
    if (state.applied !== last) throw new Error(`the state is as of index ${state.applied}, the log ends at ${last}`);
    const lastTerm = store.term(last);
    // The conf state first: createSnapshot records it in the snapshot, initialState() answers
    // the saved one, and both must name the voters.
    await store.setConfState(confState);
    await store.createSnapshot(last, confState, data);
    // The log is now raft's: everything up to `last` is committed (the entries are durable, so
    // a commit at lastIndex is accepted).
    await store.setHardState({ term: lastTerm, vote: 0, commit: last });
    // At least entry 1 goes: a joining store (log empty at 0) must then be sent the snapshot,
    // which holds the migrated state; the pre-Raft entries themselves carry no key-value command,
    // so a joiner replaying them from index 1 would end up empty (a log of <= keepEntries entries).
    const compactTo = Math.max(1, last - keepEntries);
    // Never past the snapshot (compactTo <= last); a no-op when the prefix is already gone.
    if (compactTo > store.firstIndex() - 1) await store.compact(compactTo);
  }
  const snapshot = store.snapshot();
  return {
    snapshotIndex: snapshot.metadata.index,
    snapshotTerm: snapshot.metadata.term,
    firstIndex: store.firstIndex(),
    lastIndex: store.lastIndex(),
  };
}

/** Gives a fresh, empty `store` the cluster's conf state (an index-0 snapshot carrying only it). */
export async function bootstrapJoiningStore(store: ReplicaLogStore, voters: readonly number[]): Promise<void> {
  if (store.status !== 'unbootstrapped' || store.lastIndex() !== 0) {
    throw new Error(`${store.dir} is not empty: only a fresh store can join with a bare conf state`);
  }
  await store.applySnapshot({ metadata: { index: 0, term: 0, confState: votersConfState(voters) } });
}
