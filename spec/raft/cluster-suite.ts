/**
 * Multi-node RawNode tests over a StoreFactory, so the same suite runs over MemoryStorage
 * (cluster.test.ts) and over any other WritableStorage (e.g. ReplicaLogStore).
 */
import { describe, expect, it } from 'vitest';
import type { Ready } from '../../lib/raft/rawnode.js';
import { ConfChangeTransition, ConfChangeType, MessageType } from '../../lib/types.js';
import { Network, encodeText, type NetworkOptions, type StoreFactory } from './network.js';

export function defineClusterTests(name: string, factory: StoreFactory): void {
  const make = (ids: number[], options: NetworkOptions = {}) => Network.create(ids, { factory, ...options });

  /** Ticks until some node is leader (with randomized timeouts), returns it. */
  async function awaitLeader(net: Network, maxTicks = 200): Promise<number> {
    for (let i = 0; i < maxTicks; i++) {
      const leader = net.leader();
      if (leader !== undefined) return leader;
      net.tickAll();
      await net.stabilize();
    }
    throw new Error('no leader elected');
  }

  function expectSameApplied(net: Network, ids: number[], expected: string[]): void {
    for (const id of ids) expect(net.appliedData(id), `node ${id}`).toEqual(expected);
  }

  describe(`raft cluster (${name})`, () => {
    it('elects a leader, replicates and commits with 3 nodes', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      expect(net.leader()).toBe(1);
      for (const id of [1, 2, 3]) expect(net.node(id).raw.basicStatus().lead).toBe(1);
      await net.propose(1, 'a');
      await net.propose(2, 'b'); // forwarded by the follower
      expectSameApplied(net, [1, 2, 3], ['a', 'b']);
      // The stores hold the entries and a hard state with the commit.
      for (const id of [1, 2, 3]) {
        const store = net.node(id).store;
        expect(store.initialState().hardState.commit).toBe(store.lastIndex());
        expect(store.initialState().confState.voters).toEqual([1, 2, 3]);
      }
      await net.close();
    });

    it('elects through randomized election timeouts', async () => {
      const net = await make([1, 2, 3]);
      const leader = await awaitLeader(net);
      await net.propose(leader, 'x');
      expectSameApplied(net, [1, 2, 3], ['x']);
      await net.close();
    });

    it('elects with pre-vote and check-quorum', async () => {
      const net = await make([1, 2, 3], { preVote: true, checkQuorum: true });
      const leader = await awaitLeader(net);
      await net.propose(leader, 'x');
      expectSameApplied(net, [1, 2, 3], ['x']);
      // An isolated leader steps down after an election timeout without a quorum.
      net.isolate(leader);
      for (let i = 0; i < 30; i++) {
        net.tickAll();
        await net.stabilize();
      }
      expect(net.node(leader).raw.basicStatus().raftState).not.toBe('StateLeader');
      await net.close();
    });

    it('resolves conflicting uncommitted entries after a leader change', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'committed');
      // Leader 1 is cut off; its proposals never commit.
      net.isolate(1);
      net.node(1).raw.propose(encodeText('lost-1'));
      net.node(1).raw.propose(encodeText('lost-2'));
      await net.stabilize();
      expect(net.node(1).store.lastIndex()).toBeGreaterThan(net.node(2).store.lastIndex());
      await net.elect(2);
      expect(net.node(2).raw.basicStatus().raftState).toBe('StateLeader');
      await net.propose(2, 'new-1');
      await net.propose(2, 'new-2');
      net.heal();
      // Node 1 learns of the new term from heartbeats and its log is overwritten.
      await net.tickAndStabilize(3);
      expect(net.node(1).raw.basicStatus().raftState).toBe('StateFollower');
      expectSameApplied(net, [1, 2, 3], ['committed', 'new-1', 'new-2']);
      const s1 = net.node(1).store;
      const s2 = net.node(2).store;
      expect(s1.lastIndex()).toBe(s2.lastIndex());
      expect(s1.entries(s1.firstIndex(), s1.lastIndex() + 1)).toEqual(s2.entries(s2.firstIndex(), s2.lastIndex() + 1));
      await net.close();
    });

    it('restarts a follower from its store and catches it up', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'a');
      net.stop(3);
      await net.propose(1, 'b');
      await net.propose(1, 'c');
      const restarted = await net.restart(3);
      // The restarted node remembers its term and commit.
      expect(restarted.raw.basicStatus().term).toBe(net.node(1).raw.basicStatus().term);
      await net.tickAndStabilize(3);
      expectSameApplied(net, [1, 2, 3], ['a', 'b', 'c']);
      await net.close();
    });

    it('restarts the whole cluster and keeps the log', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'a');
      await net.propose(1, 'b');
      const term = net.node(1).raw.basicStatus().term;
      for (const id of [1, 2, 3]) net.stop(id);
      for (const id of [1, 2, 3]) await net.restart(id);
      for (const id of [1, 2, 3]) expect(net.node(id).raw.basicStatus().term).toBe(term);
      const leader = await awaitLeader(net);
      await net.propose(leader, 'c');
      expectSameApplied(net, [1, 2, 3], ['a', 'b', 'c']);
      await net.close();
    });

    it('re-applies committed entries after a restart that lost the application state', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'a');
      await net.propose(1, 'b');
      net.stop(2);
      // Forget the application state: raft re-delivers everything above firstIndex-1.
      net.node(2).app = { appliedIndex: 0, applied: [], confState: net.node(2).app.confState };
      await net.restart(2);
      await net.stabilize();
      expectSameApplied(net, [2], ['a', 'b']);
      await net.close();
    });

    it('catches up a lagging follower with a snapshot after compaction', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'a');
      net.stop(3);
      for (let i = 0; i < 10; i++) await net.propose(1, `v${i}`);
      // The leader snapshots its applied state and drops its log up to there.
      const snapshot = await net.compact(1);
      expect(net.node(1).store.firstIndex()).toBe(snapshot.metadata.index + 1);
      await net.restart(3);
      await net.tickAndStabilize(5);
      const expected = ['a', ...Array.from({ length: 10 }, (_, i) => `v${i}`)];
      expectSameApplied(net, [1, 2, 3], expected);
      // Node 3 installed the snapshot: its log starts after it.
      expect(net.node(3).store.snapshot().metadata.index).toBe(snapshot.metadata.index);
      expect(net.node(3).store.firstIndex()).toBe(snapshot.metadata.index + 1);
      // And it keeps replicating afterwards.
      await net.propose(1, 'after');
      expectSameApplied(net, [1, 2, 3], [...expected, 'after']);
      // The leader's progress for node 3 is back to replicating.
      const progress = net.node(1).raw.status().progress.get(3)!;
      expect(progress.match).toBe(net.node(1).store.lastIndex());
      await net.close();
    });

    it('retries a snapshot whose delivery failed', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      net.stop(3);
      for (let i = 0; i < 5; i++) await net.propose(1, `v${i}`);
      await net.compact(1);
      await net.restart(3);
      let dropped = 0;
      net.drop((m) => m.type === MessageType.MsgSnap && dropped++ === 0);
      await net.tickAndStabilize(10);
      expect(dropped).toBeGreaterThan(1);
      expectSameApplied(net, [1, 2, 3], ['v0', 'v1', 'v2', 'v3', 'v4']);
      await net.close();
    });

    it('adds and removes nodes', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'a');
      await net.addNode(4);
      net.node(1).raw.proposeConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId: 4 });
      await net.stabilize();
      await net.tickAndStabilize(3);
      await net.propose(1, 'b');
      expectSameApplied(net, [1, 2, 3, 4], ['a', 'b']);
      expect(net.node(1).app.confState.voters).toEqual([1, 2, 3, 4]);
      expect(net.node(4).app.confState.voters).toEqual([1, 2, 3, 4]);
      expect(net.node(4).store.initialState().confState.voters).toEqual([1, 2, 3, 4]);

      net.node(1).raw.proposeConfChange({ id: 0, type: ConfChangeType.RemoveNode, nodeId: 3 });
      await net.stabilize();
      expect(net.node(1).app.confState.voters).toEqual([1, 2, 4]);
      net.stop(3);
      // Two of three remaining voters suffice.
      net.stop(4);
      await net.propose(1, 'c');
      expectSameApplied(net, [1, 2], ['a', 'b', 'c']);
      await net.close();
    });

    it('adds a node that is caught up by a snapshot including it', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'a');
      net.node(1).raw.proposeConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId: 4 });
      await net.stabilize();
      await net.propose(1, 'b');
      await net.compact(1);
      await net.addNode(4);
      await net.tickAndStabilize(5);
      expectSameApplied(net, [1, 2, 3, 4], ['a', 'b']);
      expect(net.node(4).store.initialState().confState.voters).toEqual([1, 2, 3, 4]);
      await net.close();
    });

    it('adds a learner and promotes it', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.addNode(4);
      net.node(1).raw.proposeConfChange({ id: 0, type: ConfChangeType.AddLearnerNode, nodeId: 4 });
      await net.stabilize();
      await net.propose(1, 'a');
      await net.tickAndStabilize(2);
      expect(net.node(1).app.confState.learners).toEqual([4]);
      expectSameApplied(net, [1, 2, 3, 4], ['a']);
      net.node(1).raw.proposeConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId: 4 });
      await net.stabilize();
      expect(net.node(4).app.confState.voters).toEqual([1, 2, 3, 4]);
      expect(net.node(4).app.confState.learners).toEqual([]);
      await net.close();
    });

    it('changes membership through a joint configuration (ConfChangeV2, auto leave)', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.addNode(4);
      await net.addNode(5);
      net.node(1).raw.proposeConfChange({
        transition: ConfChangeTransition.Auto,
        changes: [
          { type: ConfChangeType.AddNode, nodeId: 4 },
          { type: ConfChangeType.AddNode, nodeId: 5 },
          { type: ConfChangeType.RemoveNode, nodeId: 3 },
        ],
      });
      await net.stabilize();
      await net.tickAndStabilize(3);
      const confState = net.node(1).app.confState;
      // Left the joint config automatically.
      expect(confState.voters).toEqual([1, 2, 4, 5]);
      expect(confState.votersOutgoing).toEqual([]);
      expect(confState.autoLeave).toBe(false);
      await net.propose(1, 'joint-done');
      expectSameApplied(net, [1, 2, 4, 5], ['joint-done']);
      await net.close();
    });

    it('transfers leadership', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'a');
      net.node(1).raw.transferLeader(2);
      await net.stabilize();
      expect(net.leader()).toBe(2);
      expect(net.node(1).raw.basicStatus().lead).toBe(2);
      await net.propose(2, 'b');
      expectSameApplied(net, [1, 2, 3], ['a', 'b']);
      // Transfer to a lagging follower: it is caught up first.
      net.stop(3);
      await net.propose(2, 'c');
      await net.restart(3);
      net.node(2).raw.transferLeader(3);
      await net.stabilize();
      await net.tickAndStabilize(2);
      expect(net.leader()).toBe(3);
      await net.close();
    });

    it('answers ReadIndex requests on the leader and on followers', async () => {
      const readStates = new Map<number, Array<{ index: number; ctx: string }>>();
      const onReady = (id: number, rd: Ready) => {
        for (const rs of rd.readStates) {
          const list = readStates.get(id) ?? [];
          list.push({ index: rs.index, ctx: new TextDecoder().decode(rs.requestCtx) });
          readStates.set(id, list);
        }
      };
      const net = await make([1, 2, 3], { onReady });
      await net.stabilize();
      await net.elect(1);
      await net.propose(1, 'a');
      const commit = net.node(1).raw.basicStatus().commit;
      net.node(1).raw.readIndex(encodeText('r1'));
      await net.stabilize();
      expect(readStates.get(1)).toEqual([{ index: commit, ctx: 'r1' }]);
      net.node(3).raw.readIndex(encodeText('r3'));
      await net.stabilize();
      expect(readStates.get(3)).toEqual([{ index: commit, ctx: 'r3' }]);
      await net.close();
    });

    it('forgets the leader on request', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      net.node(2).raw.forgetLeader();
      expect(net.node(2).raw.basicStatus().lead).toBe(0);
      await net.tickAndStabilize(1);
      expect(net.node(2).raw.basicStatus().lead).toBe(1);
      await net.close();
    });

    it('delays messages without losing safety', async () => {
      const net = await make([1, 2, 3]);
      await net.stabilize();
      await net.elect(1);
      net.delay(1, 3, 3);
      await net.propose(1, 'a');
      expectSameApplied(net, [1, 2], ['a']);
      expect(net.appliedData(3)).toEqual([]);
      await net.tickAndStabilize(4);
      expectSameApplied(net, [1, 2, 3], ['a']);
      await net.close();
    });
  });
}
