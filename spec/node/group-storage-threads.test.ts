/**
 * RaftGroup's storage threads (etcd raft's AsyncStorageWrites, group.ts) against its classic
 * synchronous loop, in-process: three groups on real ReplicaLogStores whose messages a test host
 * delivers, and stores whose writes can be held (the write is made, its promise is held: to the
 * group, a slow fsync).
 *
 *   - A leader whose write is held keeps ticking and heartbeating, steps its followers'
 *     acknowledgements, commits on them, and the followers apply; in the synchronous loop all of
 *     that waits for the leader's disk (the issue 18 stall and lost leases).
 *   - In both modes a follower acknowledges an append only once its store holds it.
 *   - A snapshot from the leader that overtakes committed entries the apply thread has not
 *     reached: they are not applied after it (an older conf change would overwrite the
 *     snapshot's configuration in raft and in the store).
 *   - A deferred commit is saved through the append thread, after the entries it covers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeConfChange } from '../../lib/codec.js';
import { bootstrapJoiningStore, bootstrapSeedStore } from '../../lib/node/bootstrap.js';
import type { RaftGroup } from '../../lib/node/group.js';
import { encodeCommand, KvStateMachine, type KvCommand } from '../../lib/node/state-machine.js';
import { newMessage } from '../../lib/raft/util.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { ConfChangeType, EntryType, MessageType, type Entry, type Message } from '../../lib/types.js';
import { openGroup, settingsFor, type TestGroup } from '../helpers/test-group.js';
import { waitFor } from '../helpers/wait-for.js';

const VOTERS = [1, 2, 3];

type HeldMethod = 'append' | 'setConfState' | 'applySnapshot' | 'createSnapshot' | 'compact';

/**
 * Holds `store[method]` until released. 'result': each call reaches the store at once (in order,
 * so the store's queue is what it would be) but its caller hears of it only after release() (to
 * the group, a slow fsync). 'call': the calls themselves wait, then reach the store in order.
 */
function holdStore(store: ReplicaLogStore, method: HeldMethod, what: 'result' | 'call' = 'result'): { calls: () => number; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const real = store[method].bind(store) as (...argumentList: never[]) => Promise<unknown>;
  let calls = 0;
  const held = (...argumentList: never[]): Promise<unknown> => {
    calls++;
    return what === 'call' ? gate.then(() => real(...argumentList)) : real(...argumentList).then((result) => gate.then(() => result));
  };
  Object.defineProperty(store, method, { value: held, configurable: true, writable: true });
  return {
    calls: () => calls,
    release: () => {
      Reflect.deleteProperty(store, method);
      release();
    },
  };
}

const roots: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Three groups: node 1 the seed, 2 and 3 joining; node 1 elected, the others caught up. */
async function startCluster(asyncStorageWrites: boolean): Promise<Map<number, TestGroup>> {
  const root = mkdtempSync(join(tmpdir(), 'replicalog-group-threads-'));
  roots.push(root);
  const settings = settingsFor(asyncStorageWrites);
  const members = new Map<number, TestGroup>();
  members.set(1, await openGroup(root, 1, settings, (store) => bootstrapSeedStore(store, VOTERS, KvStateMachine.from([], 0)).then(() => {}), cleanups));
  for (const id of [2, 3]) members.set(id, await openGroup(root, id, settings, (store) => bootstrapJoiningStore(store, VOTERS), cleanups));
  for (const member of members.values()) {
    member.host.deliver = (message) => {
      setImmediate(() => {
        const target = members.get(message.to);
        if (target === undefined || !target.host.running) return;
        target.group.receive(message, false);
        // What a transport reports once a snapshot is written to the peer.
        if (message.type === MessageType.MsgSnap) member.group.reportSnapshotStatus(message.to, true);
      });
    };
  }
  const leader = members.get(1)!;
  // Only the seed ticks (the joiners' logs are empty): it campaigns after an election timeout.
  // Ticks a few ms apart, as a timer gives them: faster ones time the candidate out before the
  // votes (written and fsynced first) come back.
  for (let tick = 0; !leader.group.isLeader; tick++) {
    if (tick > 1_000) throw new Error(`node 1 did not become the leader within 1,000 ticks: ${JSON.stringify(leader.group.raw.basicStatus())} ${leader.group.raftState} failures ${leader.host.failures.map(String)}`);
    leader.group.tick();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  // Caught up: both followers hold the leader's log (snapshot or entries) and know the leader.
  await put(leader.group, 'warm-up', 'x');
  await waitFor('the followers to apply the warm-up put', () => [2, 3].every((id) => members.get(id)!.group.stateMachine.get('warm-up') === 'x'));
  return members;
}

let requests = 0;
function put(group: RaftGroup, key: string, value: string): Promise<number> {
  const command: KvCommand = { op: 'put', key, value, requestId: `request-${++requests}` };
  return group.propose(command);
}

function expectNoFailures(members: Iterable<TestGroup>): void {
  for (const member of members) expect(member.host.failures, `node ${member.host.nodeId}`).toEqual([]);
}

describe.each([
  { mode: 'async storage writes', asyncStorageWrites: true },
  { mode: 'the synchronous loop', asyncStorageWrites: false },
])('$mode', ({ asyncStorageWrites }) => {
  it(`a leader whose write is held ${asyncStorageWrites ? 'keeps heartbeating and lets its followers commit and apply' : 'stops until its disk answers'}`, async () => {
    const members = await startCluster(asyncStorageWrites);
    const leader = members.get(1)!;
    const followers = [members.get(2)!, members.get(3)!];
    const hold = holdStore(leader.store, 'append');
    let applied = false;
    const proposal = put(leader.group, 'held', 'v').then((index) => {
      applied = true;
      return index;
    });
    await waitFor("the leader's append to reach its store", () => hold.calls() > 0);
    const heartbeatsBefore = leader.host.sentOf(MessageType.MsgHeartbeat).length;
    for (let tick = 0; tick < 5; tick++) {
      leader.group.tick();
      await nextTurn();
    }
    const followersApply = () => followers.every((follower) => follower.group.stateMachine.get('held') === 'v');
    if (asyncStorageWrites) {
      // Two followers are a quorum without the leader's own copy.
      await waitFor('the followers to apply the put while the leader waits for its disk', followersApply);
      expect(leader.host.sentOf(MessageType.MsgHeartbeat).length - heartbeatsBefore).toBeGreaterThanOrEqual(5 * 2);
    } else {
      // Let the followers' acknowledgements arrive: nobody steps them.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(followersApply()).toBe(false);
      expect(leader.host.sentOf(MessageType.MsgHeartbeat).length).toBe(heartbeatsBefore);
    }
    // raft hands out only durable entries with async writes: the leader applies after its write.
    expect(applied).toBe(false);
    expect(leader.group.stateMachine.get('held')).toBeUndefined();
    hold.release();
    const index = await proposal;
    expect(leader.group.stateMachine.get('held')).toBe('v');
    await waitFor('every node to apply the put', followersApply);
    expect(leader.store.lastIndex()).toBeGreaterThanOrEqual(index);
    expect(leader.group.isLeader).toBe(true);
    expectNoFailures(members.values());
  });

  it('a follower acknowledges an append only once its store holds it', async () => {
    const members = await startCluster(asyncStorageWrites);
    const leader = members.get(1)!;
    const follower = members.get(2)!;
    const hold = holdStore(follower.store, 'append');
    const lastBefore = leader.store.lastIndex();
    const proposal = put(leader.group, 'acknowledged', 'v');
    await waitFor("the follower's append to reach its store", () => hold.calls() > 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const acknowledgements = () => follower.host.sentOf(MessageType.MsgAppResp).filter((message) => !message.reject && message.index > lastBefore);
    expect(acknowledgements()).toEqual([]);
    hold.release();
    await waitFor("the follower's acknowledgement", () => acknowledgements().length > 0);
    await proposal;
    expectNoFailures(members.values());
  });

  it('a deferred commit is saved on request, after the entries it covers', async () => {
    const members = await startCluster(asyncStorageWrites);
    const leader = members.get(1)!;
    const follower = members.get(2)!;
    await put(leader.group, 'deferred', 'v');
    await waitFor('the follower to apply the put', () => follower.group.stateMachine.get('deferred') === 'v');
    // The follower learnt the commit after it wrote the entry: a commit-only change, not written.
    const commit = follower.group.raw.basicStatus().commit;
    expect(follower.store.initialState().hardState.commit).toBeLessThan(commit);
    await follower.group.saveDeferredCommit();
    expect(follower.store.initialState().hardState.commit).toBe(commit);
    expectNoFailures(members.values());
  });
});

// The append thread's loop ends once it finds its queue empty, and the group hears of it a few
// microtasks later: a save queued in between (a snapshot's saveDeferredCommit that resumes just
// then, while the node stops and no Ready kicks the thread again) waited forever, and the node's
// close with it (spec/node/cluster.test.ts hung under load). Each delay below lands the second
// save at another point of that window.
it.each([0, 1, 2, 3, 4, 5, 6, 7, 8])('a save queued %i microtasks after the previous one resolves is written, with nothing else to kick the append thread', async (delay) => {
  const members = await startCluster(true);
  const follower = members.get(2)!;
  // As at a node's stop: no Ready, tick or message wakes the group any more.
  for (const member of members.values()) member.host.running = false;
  const second = follower.group.saveDeferredCommit().then(async () => {
    for (let turn = 0; turn < delay; turn++) await Promise.resolve();
    return follower.group.saveDeferredCommit();
  });
  const outcome = await Promise.race([second.then(() => 'saved'), new Promise((resolve) => setTimeout(() => resolve('still waiting after 2 s'), 2_000))]);
  expect(outcome).toBe('saved');
});

describe.each([
  { mode: 'async storage writes', asyncStorageWrites: true },
  { mode: 'the synchronous loop', asyncStorageWrites: false },
])('$mode: a snapshot from the leader installed while the follower saves its own', ({ asyncStorageWrites }) => {
  it.each(['createSnapshot', 'compact'] as const)('its %s, refused as superseded, is skipped and the node goes on', async (method) => {
    const root = mkdtempSync(join(tmpdir(), 'replicalog-group-threads-'));
    roots.push(root);
    // A snapshot every 4 entries (node 2's grid: 5, 9, …), keeping 1 entry behind it.
    const settings = { ...settingsFor(asyncStorageWrites), snapshotEvery: 4, keepEntries: 1 };
    const follower = await openGroup(root, 2, settings, (store) => bootstrapJoiningStore(store, VOTERS), cleanups);
    const term = 2;
    const entries = [1, 2, 3, 4, 5, 6].map((index): Entry => ({
      term,
      index,
      type: EntryType.Normal,
      data: encodeCommand({ op: 'put', key: `k${index}`, value: String(index), requestId: `leader-${index}` }),
    }));
    const hold = holdStore(follower.store, method, 'call');
    follower.group.receive(newMessage({ type: MessageType.MsgApp, to: 2, from: 1, term, entries, commit: 6 }), false);
    await waitFor(`the follower's own snapshot to reach ${method}`, () => hold.calls() > 0);
    const conf = { voters: VOTERS, learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
    const data = KvStateMachine.from([['from-snapshot', 'yes']], 20).snapshot();
    follower.group.receive(newMessage({ type: MessageType.MsgSnap, to: 2, from: 1, term, snapshot: { metadata: { index: 20, term, confState: conf }, data } }), false);
    await waitFor("the leader's snapshot to be installed", () => follower.group.stateMachine.applied === 20);
    hold.release();
    await waitFor('the snapshot save to end', () => follower.group.snapshotting === undefined);
    expect(follower.host.failures).toEqual([]);
    expect(follower.store.snapshot().metadata.index).toBe(20);
    expect(follower.group.stateMachine.get('from-snapshot')).toBe('yes');
    // Still working: entries after the snapshot are written and applied.
    follower.group.receive(newMessage({ type: MessageType.MsgApp, to: 2, from: 1, term, logTerm: term, index: 20, commit: 21, entries: [{ ...entries[0]!, index: 21 }] }), false);
    await waitFor('the entry after the snapshot to apply', () => follower.group.stateMachine.applied === 21);
    expect(follower.host.failures).toEqual([]);
  });
});

describe('async storage writes: a snapshot that overtakes the apply thread', () => {
  it('entries it covers are not applied after it, so its configuration stays in raft and in the store', async () => {
    const root = mkdtempSync(join(tmpdir(), 'replicalog-group-threads-'));
    roots.push(root);
    const follower = await openGroup(root, 2, settingsFor(true), (store) => bootstrapJoiningStore(store, VOTERS), cleanups);
    const term = 2;
    const command = (index: number, key: string): Entry => ({
      term,
      index,
      type: EntryType.Normal,
      data: encodeCommand({ op: 'put', key, value: String(index), requestId: `leader-${index}` }),
    });
    const addLearner = (index: number, nodeId: number): Entry => ({
      term,
      index,
      type: EntryType.ConfChange,
      data: encodeConfChange({ id: index, type: ConfChangeType.AddLearnerNode, nodeId }),
    });
    const message = (fields: Partial<Message>): Message => newMessage({ type: MessageType.MsgApp, to: 2, from: 1, term, ...fields });
    // The apply thread stops at entry 2 (its conf state is being saved) with 3 and 4 still to go.
    const hold = holdStore(follower.store, 'setConfState');
    follower.group.receive(message({ entries: [command(1, 'a'), addLearner(2, 4), command(3, 'b'), addLearner(4, 5)], commit: 4 }), false);
    await waitFor('the apply thread to reach the conf change at index 2', () => hold.calls() > 0);
    expect(follower.group.stateMachine.get('a')).toBe('1');

    // The leader compacted past it meanwhile and sends a snapshot at 10 with its own
    // configuration. raft restores it at once; the append thread's write of it is held, so the
    // state machine still holds the old state when the apply thread goes on.
    const holdSnapshot = holdStore(follower.store, 'applySnapshot');
    const snapshotConf = { voters: VOTERS, learners: [6], votersOutgoing: [], learnersNext: [], autoLeave: false };
    const data = KvStateMachine.from([['from-snapshot', 'yes']], 10).snapshot();
    follower.group.receive(message({ type: MessageType.MsgSnap, snapshot: { metadata: { index: 10, term, confState: snapshotConf }, data } }), false);
    await waitFor("the snapshot's write to reach the store", () => holdSnapshot.calls() > 0);
    hold.release();
    await waitFor('the apply thread to finish its entries', () => follower.group.applying === undefined);
    holdSnapshot.release();
    await waitFor('the snapshot to be installed', () => follower.group.stateMachine.applied === 10);
    await follower.group.settled();

    expect(follower.group.stateMachine.get('from-snapshot')).toBe('yes');
    // Entry 3 and the conf change at 4 come after raft restored the snapshot: not applied.
    expect(follower.group.stateMachine.get('b')).toBeUndefined();
    expect(follower.store.snapshot().metadata.index).toBe(10);
    expect(follower.store.initialState().confState.learners).toEqual([6]);
    expect([...follower.group.raw.raft.trk.config.learners].sort()).toEqual([6]);
    expect(follower.host.failures).toEqual([]);
    // raft counts the snapshot as applied (the stale apply response did not move it back).
    expect(follower.group.raw.raft.raftLog.applied).toBe(10);
  });
});
