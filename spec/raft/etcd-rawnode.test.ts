/**
 * Port of etcd raft v3.6 rawnode_test.go (TestRawNodeStart, TestRawNodeRestart,
 * TestRawNodeRestartFromSnapshot, TestRawNodeCommitPaginationAfterRestart, TestRawNodeStep,
 * TestRawNodeProposeAddDuplicateNode, TestRawNodeReadIndex, TestRawNodeStatus,
 * TestRawNodeJointAutoLeave). Our MemoryStorage validates writes, so entries are
 * always persisted before the hard state that commits them.
 */
import { describe, expect, it } from 'vitest';
import { decodeConfChange, decodeConfChangeV2, encodeConfChange, encodeConfChangeV2, entrySize } from '../../lib/codec.js';
import { asV2, enterJoint, isConfChangeV2 } from '../../lib/raft/confchange.js';
import { MemoryStorage } from '../../lib/memory-storage.js';
import { RaftError } from '../../lib/raft/raft.js';
import { RawNode, decodeConfChangeEntry, type Ready } from '../../lib/raft/rawnode.js';
import { isLocalMsg, newMessage } from '../../lib/raft/util.js';
import {
  ConfChangeTransition,
  ConfChangeType,
  EntryType,
  MessageType,
  NO_LIMIT,
  emptyConfState,
  type ConfChange,
  type ConfChangeV2,
  type ConfState,
  type Entry,
  type Storage,
} from '../../lib/types.js';
import { snapshotAt } from './helpers.js';

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

function newTestRawNode(id: number, storage: Storage, extra: Partial<ConstructorParameters<typeof RawNode>[0]> = {}): RawNode {
  return new RawNode({ id, electionTick: 10, heartbeatTick: 1, storage, maxSizePerMsg: NO_LIMIT, maxInflightMsgs: 256, ...extra });
}

async function storageWithPeers(...voters: number[]): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  await storage.setConfState({ ...emptyConfState(), voters });
  return storage;
}

/** Persists a Ready's writes (snapshot, entries, hard state). */
async function persist(storage: MemoryStorage, rd: Ready): Promise<void> {
  if (rd.snapshot !== undefined) await storage.applySnapshot(rd.snapshot);
  if (rd.entries.length > 0) await storage.append(rd.entries);
  if (rd.hardState !== undefined) await storage.setHardState(rd.hardState);
}

/** Campaigns a single-voter node until it is leader, persisting every Ready. */
async function becomeLeader(rawNode: RawNode, storage: MemoryStorage): Promise<void> {
  rawNode.campaign();
  for (;;) {
    const rd = rawNode.ready();
    await persist(storage, rd);
    rawNode.advance(rd);
    if (rd.softState?.lead === rawNode.raft.id) return;
  }
}

describe('RawNode (rawnode_test.go)', () => {
  it('TestRawNodeStep: refuses local messages from the network', async () => {
    for (const type of Object.values(MessageType).filter((v): v is MessageType => typeof v === 'number')) {
      const storage = new MemoryStorage();
      await storage.applySnapshot({ metadata: { index: 1, term: 1, confState: { ...emptyConfState(), voters: [1] } } });
      await storage.setHardState({ term: 1, vote: 0, commit: 1 });
      const rawNode = newTestRawNode(1, storage);
      let error: unknown;
      try {
        rawNode.step(newMessage({ type }));
      } catch (e) {
        error = e;
      }
      if (isLocalMsg(type)) {
        expect(error, MessageType[type]).toBeInstanceOf(RaftError);
        expect((error as RaftError).code).toBe('ERR_STEP_LOCAL_MSG');
      }
    }
  });

  it('TestRawNodeStart: manual bootstrap from a snapshot at index 1', async () => {
    const entries: Entry[] = [
      { type: EntryType.Normal, term: 1, index: 2 },
      { type: EntryType.Normal, term: 1, index: 3, data: bytes('foo') },
    ];
    const storage = new MemoryStorage();
    // Go sets ents[0].Index = 1 directly; we get the same dummy (index 1, term 0) by
    // appending and compacting entry 1.
    await storage.append([{ type: EntryType.Normal, term: 0, index: 1 }]);
    await storage.compact(1);

    // The bootstrap recipe's preconditions.
    const first = storage.firstIndex();
    expect(first).toBeGreaterThanOrEqual(2);
    expect(() => storage.entries(first, first, NO_LIMIT)).toThrow();
    const last = storage.lastIndex();
    expect(() => storage.entries(last, last, NO_LIMIT)).toThrow();
    const { hardState, confState } = storage.initialState();
    expect(hardState).toEqual({ term: 0, vote: 0, commit: 0 });
    expect(confState.voters).toEqual([]);
    await storage.applySnapshot({ metadata: { index: 1, term: 0, confState: { ...emptyConfState(), voters: [1] } } });

    const rawNode = newTestRawNode(1, storage);
    expect(rawNode.hasReady()).toBe(false);
    rawNode.campaign();
    let rd = rawNode.ready();
    await persist(storage, rd);
    rawNode.advance(rd);
    rawNode.propose(bytes('foo'));
    expect(rawNode.hasReady()).toBe(true);

    rd = rawNode.ready();
    expect(rd.entries).toEqual(entries);
    await persist(storage, rd);
    rawNode.advance(rd);

    expect(rawNode.hasReady()).toBe(true);
    rd = rawNode.ready();
    expect(rd.entries).toEqual([]);
    expect(rd.mustSync).toBe(false);
    rawNode.advance(rd);

    expect(rd.hardState).toEqual({ term: 1, vote: 1, commit: 3 });
    expect(rd.committedEntries).toEqual(entries);
    expect(rd.snapshot).toBeUndefined();
    expect(rd.messages).toEqual([]);
    expect(rawNode.hasReady()).toBe(false);
  });

  it('TestRawNodeRestart', async () => {
    const entries: Entry[] = [
      { type: EntryType.Normal, term: 1, index: 1 },
      { type: EntryType.Normal, term: 1, index: 2, data: bytes('foo') },
    ];
    const storage = await storageWithPeers(1);
    await storage.append(entries);
    await storage.setHardState({ term: 1, vote: 0, commit: 1 });
    const rawNode = newTestRawNode(1, storage);
    const rd = rawNode.ready();
    expect(rd.hardState).toBeUndefined();
    expect(rd.committedEntries).toEqual(entries.slice(0, 1));
    expect(rd.entries).toEqual([]);
    expect(rd.mustSync).toBe(false);
    rawNode.advance(rd);
    expect(rawNode.hasReady()).toBe(false);
  });

  it('TestRawNodeRestartFromSnapshot', async () => {
    const entries: Entry[] = [{ type: EntryType.Normal, term: 1, index: 3, data: bytes('foo') }];
    const storage = new MemoryStorage();
    await storage.applySnapshot(snapshotAt(2, 1, [1, 2]));
    await storage.append(entries);
    await storage.setHardState({ term: 1, vote: 0, commit: 3 });
    const rawNode = newTestRawNode(1, storage);
    const rd = rawNode.ready();
    expect(rd.hardState).toBeUndefined();
    expect(rd.committedEntries).toEqual(entries);
    expect(rd.mustSync).toBe(false);
    rawNode.advance(rd);
    expect(rawNode.hasReady()).toBe(false);
  });

  it('TestRawNodeCommitPaginationAfterRestart: a storage ignoring maxSize leaves no gaps', async () => {
    const inner = await storageWithPeers(1);
    // Go's ignoreSizeHintMemStorage: entries() returns everything whatever maxSize says.
    const storage: Storage = {
      initialState: () => inner.initialState(),
      entries: (lo, hi) => inner.entries(lo, hi, NO_LIMIT),
      term: (i) => inner.term(i),
      firstIndex: () => inner.firstIndex(),
      lastIndex: () => inner.lastIndex(),
      snapshot: () => inner.snapshot(),
    };
    const entries: Entry[] = [];
    let size = 0;
    for (let i = 1; i <= 10; i++) {
      const entry: Entry = { type: EntryType.Normal, term: 1, index: i, data: bytes('a') };
      entries.push(entry);
      size += entrySize(entry);
    }
    const maxSizePerMsg = size - entrySize(entries[entries.length - 1]!) - 1;
    entries.push({ type: EntryType.Normal, term: 1, index: 11, data: bytes('boom') });
    await inner.append(entries);
    await inner.setHardState({ term: 1, vote: 1, commit: 10 });
    const rawNode = newTestRawNode(1, storage, { maxSizePerMsg });
    for (let highestApplied = 0; highestApplied !== 11; ) {
      const rd = rawNode.ready();
      const n = rd.committedEntries.length;
      expect(n, `stopped applying entries at index ${highestApplied}`).not.toBe(0);
      const next = rd.committedEntries[0]!.index;
      expect(highestApplied !== 0 && highestApplied + 1 !== next, `gap after ${highestApplied}`).toBe(false);
      highestApplied = rd.committedEntries[n - 1]!.index;
      rawNode.advance(rd);
      // Illegal (node 2 is not a member), but it gets the commit index to 11.
      rawNode.raft.step(newMessage({ type: MessageType.MsgHeartbeat, to: 1, from: 2, term: 1, commit: 11 }));
    }
  });

  it('TestRawNodeProposeAddDuplicateNode', async () => {
    const storage = await storageWithPeers(1);
    const rawNode = newTestRawNode(1, storage);
    let rd = rawNode.ready();
    await persist(storage, rd);
    rawNode.advance(rd);
    await becomeLeader(rawNode, storage);

    const proposeAndApply = async (nodeId: number) => {
      rawNode.proposeConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId });
      rd = rawNode.ready();
      await persist(storage, rd);
      for (const entry of rd.committedEntries) {
        if (entry.type === EntryType.ConfChange) rawNode.applyConfChange(decodeConfChange(entry.data!));
      }
      rawNode.advance(rd);
    };
    await proposeAndApply(1);
    await proposeAndApply(1); // the duplicate is proposed and applied as a no-op change
    await proposeAndApply(2);
    const last = storage.lastIndex();
    const stored = storage.entries(last - 2, last + 1, NO_LIMIT);
    expect(stored.length).toBe(3);
    expect([...stored[0]!.data!]).toEqual([...encodeConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId: 1 })]);
    expect([...stored[2]!.data!]).toEqual([...encodeConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId: 2 })]);
  });

  it('TestRawNodeReadIndex', async () => {
    const storage = await storageWithPeers(1);
    const rawNode = newTestRawNode(1, storage);
    const wantReadStates = [{ index: 1, requestCtx: bytes('somedata') }];
    rawNode.raft.readStates = wantReadStates;
    expect(rawNode.hasReady()).toBe(true);
    let rd = rawNode.ready();
    expect(rd.readStates).toEqual(wantReadStates);
    await persist(storage, rd);
    rawNode.advance(rd);
    expect(rawNode.raft.readStates).toEqual([]);

    await becomeLeader(rawNode, storage);
    // A single voter answers at once with its commit index.
    rawNode.readIndex(bytes('somedata2'));
    rd = rawNode.ready();
    expect(rd.readStates).toEqual([{ index: rawNode.raft.raftLog.committed, requestCtx: bytes('somedata2') }]);
    rawNode.advance(rd);
  });

  it('TestRawNodeStatus', async () => {
    const storage = await storageWithPeers(1);
    const rawNode = newTestRawNode(1, storage);
    expect(rawNode.status().progress.size).toBe(0);
    rawNode.campaign();
    const rd = rawNode.ready();
    await persist(storage, rd);
    rawNode.advance(rd);
    const status = rawNode.status();
    expect(status.lead).toBe(1);
    expect(status.raftState).toBe('StateLeader');
    const progress = status.progress.get(1)!;
    const live = rawNode.raft.trk.progress.get(1)!;
    expect([progress.match, progress.next, progress.state]).toEqual([live.match, live.next, live.state]);
    expect([...status.config.voters[0]]).toEqual([1]);
    expect(status.config.voters[1].size).toBe(0);
  });

  it('TestRawNodeJointAutoLeave: leaves the joint config automatically, even after losing leadership', async () => {
    const testCc: ConfChangeV2 = {
      transition: ConfChangeTransition.JointImplicit,
      changes: [{ type: ConfChangeType.AddLearnerNode, nodeId: 2 }],
    };
    const storage = await storageWithPeers(1);
    const rawNode = newTestRawNode(1, storage);
    rawNode.campaign();
    let proposed = false;
    let applied: ConfState | undefined;
    while (applied === undefined) {
      const rd = rawNode.ready();
      await storage.append(rd.entries);
      for (const entry of rd.committedEntries) {
        if (entry.type !== EntryType.ConfChangeV2) continue;
        // Lose leadership (a higher term) right before applying the joint change.
        rawNode.step(newMessage({ type: MessageType.MsgHeartbeatResp, from: 1, term: rawNode.raft.term + 1 }));
        applied = rawNode.applyConfChange(decodeConfChangeV2(entry.data ?? new Uint8Array()));
      }
      rawNode.advance(rd);
      if (!proposed && rd.softState?.lead === rawNode.raft.id) {
        rawNode.propose(bytes('somedata'));
        rawNode.proposeConfChange(testCc);
        proposed = true;
      }
    }
    const last = storage.lastIndex();
    const stored = storage.entries(last - 1, last + 1, NO_LIMIT);
    expect(stored.length).toBe(2);
    expect(new TextDecoder().decode(stored[0]!.data)).toBe('somedata');
    expect(stored[1]!.type).toBe(EntryType.ConfChangeV2);
    expect([...stored[1]!.data!]).toEqual([...encodeConfChangeV2(testCc)]);
    expect(applied).toEqual({ voters: [1], votersOutgoing: [1], learners: [2], learnersNext: [], autoLeave: true });
    // As a follower it did not propose leaving the joint config.
    expect(rawNode.raft.pendingConfIndex).toBe(0);
    expect(rawNode.raft.raftLog.nextUnstableEnts()).toEqual([]);
    // Once leader again and caught up, it proposes the leave-joint entry by itself.
    rawNode.campaign();
    let rd = rawNode.ready();
    for (let i = 0; i < 3; i++) {
      await storage.append(rd.entries);
      rawNode.advance(rd);
      rd = rawNode.ready();
    }
    await storage.append(rd.entries);
    expect(rd.entries.length).toBe(1);
    expect(rd.entries[0]!.type).toBe(EntryType.ConfChangeV2);
    const leave = decodeConfChangeV2(rd.entries[0]!.data ?? new Uint8Array());
    expect(leave.changes).toEqual([]);
    expect(leave.context).toBeUndefined();
    expect(rawNode.applyConfChange(leave)).toEqual({ voters: [1], votersOutgoing: [], learners: [2], learnersNext: [], autoLeave: false });
  });

  it('TestRawNodeBoundedLogGrowthWithPartition', async () => {
    const maxEntries = 16;
    const data = bytes('testdata');
    const maxEntrySize = maxEntries * data.length;
    const storage = await storageWithPeers(1);
    const rawNode = newTestRawNode(1, storage, { maxUncommittedEntriesSize: maxEntrySize });
    rawNode.campaign();
    for (;;) {
      const rd = rawNode.ready();
      await persist(storage, rd);
      rawNode.advance(rd);
      if (rd.committedEntries.length > 0) break;
    }
    // Simulate a partition: proposals pile up uncommitted, and the limit drops the excess.
    let dropped = 0;
    for (let i = 0; i < 1024; i++) {
      try {
        rawNode.propose(data);
      } catch (error) {
        expect((error as RaftError).code).toBe('ERR_PROPOSAL_DROPPED');
        dropped++;
      }
    }
    expect(dropped).toBe(1024 - maxEntries);
    expect(rawNode.raft.uncommittedSize).toBe(maxEntrySize);
    let rd = rawNode.ready();
    expect(rd.entries.length).toBe(maxEntries);
    await persist(storage, rd);
    rawNode.advance(rd);
    expect(rawNode.raft.uncommittedSize).toBe(maxEntrySize);
    rd = rawNode.ready();
    expect(rd.entries).toEqual([]);
    expect(rd.committedEntries.length).toBe(maxEntries);
    rawNode.advance(rd);
    expect(rawNode.raft.uncommittedSize).toBe(0);
  });

  it('TestRawNodeConsumeReady', async () => {
    const storage = await storageWithPeers(1);
    const rawNode = new RawNode({ id: 1, electionTick: 3, heartbeatTick: 1, storage, maxSizePerMsg: NO_LIMIT });
    const m1 = newMessage({ type: MessageType.MsgApp, context: bytes('foo') });
    const m2 = newMessage({ type: MessageType.MsgApp, context: bytes('bar') });
    rawNode.raft.msgs.push(m1);
    const rd = rawNode.ready();
    expect(rawNode.raft.msgs).toEqual([]);
    expect(rd.messages).toEqual([m1]);
    rawNode.raft.msgs.push(m2);
    rawNode.advance(rd);
    expect(rawNode.raft.msgs).toEqual([m2]);
  });

  it('refuses a second ready() before advance() (Go: "two accepted Ready structs")', async () => {
    const storage = await storageWithPeers(1);
    const rawNode = newTestRawNode(1, storage);
    rawNode.campaign();
    const rd = rawNode.ready(); // leaves the self-vote to be stepped on advance()
    let error: { code?: string; message: string } | undefined;
    try {
      rawNode.ready();
    } catch (caught) {
      error = caught as { code?: string; message: string };
    }
    expect(error?.code).toBe('ERR_READY_NOT_ADVANCED');
    expect(error?.message).toMatch(/two accepted Ready structs without call to Advance: .*call advance\(rd\)/);
    // A coded refusal, not a panic: the node is still usable and the loop goes on.
    expect(rawNode.stoppedBy()).toBeUndefined();
    rawNode.advance(rd);
    expect(rawNode.basicStatus().raftState).toBe('StateLeader');
  });

  it('bootstrap() fake-appends AddNode entries on fresh storage only', async () => {
    const storage = new MemoryStorage();
    const rawNode = newTestRawNode(1, storage);
    expect(() => rawNode.bootstrap([])).toThrow('must provide at least one peer to Bootstrap');
    rawNode.bootstrap([1, 2]);
    const rd = rawNode.ready();
    expect(rd.hardState).toEqual({ term: 1, vote: 0, commit: 2 });
    expect(rd.entries.map((x) => x.type)).toEqual([EntryType.ConfChange, EntryType.ConfChange]);
    expect(rd.committedEntries).toEqual(rd.entries);
    expect(rd.mustSync).toBe(true);
    await persist(storage, rd);
    rawNode.advance(rd);
    expect(() => newTestRawNode(1, storage).bootstrap([1])).toThrow(/can't bootstrap a nonempty Storage .*do not call bootstrap\(\)/);
    expect(() => newTestRawNode(1, storage).bootstrap([1])).toThrow(expect.objectContaining({ code: 'ERR_BOOTSTRAP' }));
  });

  it('stops with the storage error when storage fails (no silent continue)', async () => {
    const inner = await storageWithPeers(1);
    let failing = false;
    const broken = new Error('disk on fire');
    const storage: Storage = {
      initialState: () => inner.initialState(),
      entries: (lo, hi, maxSize) => {
        if (failing) throw broken;
        return inner.entries(lo, hi, maxSize);
      },
      term: (i) => {
        if (failing) throw broken;
        return inner.term(i);
      },
      firstIndex: () => inner.firstIndex(),
      lastIndex: () => inner.lastIndex(),
      snapshot: () => inner.snapshot(),
    };
    await inner.append([{ type: EntryType.Normal, term: 1, index: 1 }]);
    await inner.setHardState({ term: 1, vote: 0, commit: 1 });
    const rawNode = newTestRawNode(1, storage);
    failing = true;
    // The first Ready reads the committed entry: the storage error surfaces unchanged…
    expect(() => rawNode.ready()).toThrow(/disk on fire/);
    expect(rawNode.stoppedBy()).toBe(broken);
    // …and the node refuses to run on afterwards.
    expect(() => rawNode.tick()).toThrow(/raft: stopped \(disk on fire\)/);
    expect(() => rawNode.step(newMessage({ type: MessageType.MsgHeartbeat, from: 1, to: 1, term: 1 }))).toThrow(RaftError);
  });

  it('TestRawNodeProposeAndConfChange', async () => {
    const cs = (fields: Partial<ConfState>): ConfState => ({ ...emptyConfState(), ...fields });
    const add = (nodeId: number) => ({ type: ConfChangeType.AddNode, nodeId });
    const learner = (nodeId: number) => ({ type: ConfChangeType.AddLearnerNode, nodeId });
    const cases: Array<[ConfChange | ConfChangeV2, ConfState, ConfState | undefined]> = [
      [{ id: 0, type: ConfChangeType.AddNode, nodeId: 2 }, cs({ voters: [1, 2] }), undefined],
      [{ transition: ConfChangeTransition.Auto, changes: [add(2)] }, cs({ voters: [1, 2] }), undefined],
      [{ transition: ConfChangeTransition.Auto, changes: [learner(2)] }, cs({ voters: [1], learners: [2] }), undefined],
      [
        { transition: ConfChangeTransition.JointExplicit, changes: [learner(2)] },
        cs({ voters: [1], votersOutgoing: [1], learners: [2] }),
        cs({ voters: [1], learners: [2] }),
      ],
      [
        { transition: ConfChangeTransition.JointImplicit, changes: [learner(2)] },
        cs({ voters: [1], votersOutgoing: [1], learners: [2], autoLeave: true }),
        cs({ voters: [1], learners: [2] }),
      ],
      [
        { transition: ConfChangeTransition.Auto, changes: [add(2), learner(1), learner(3)] },
        cs({ voters: [2], votersOutgoing: [1], learners: [3], learnersNext: [1], autoLeave: true }),
        cs({ voters: [2], learners: [1, 3] }),
      ],
      [
        { transition: ConfChangeTransition.JointExplicit, changes: [add(2), learner(1), learner(3)] },
        cs({ voters: [2], votersOutgoing: [1], learners: [3], learnersNext: [1] }),
        cs({ voters: [2], learners: [1, 3] }),
      ],
      [
        { transition: ConfChangeTransition.JointImplicit, changes: [add(2), learner(1), learner(3)] },
        cs({ voters: [2], votersOutgoing: [1], learners: [3], learnersNext: [1], autoLeave: true }),
        cs({ voters: [2], learners: [1, 3] }),
      ],
    ];
    for (const [cc, want, want2] of cases) {
      const storage = await storageWithPeers(1);
      const rawNode = newTestRawNode(1, storage);
      rawNode.campaign();
      let proposed = false;
      let applied: ConfState | undefined;
      while (applied === undefined) {
        const rd = rawNode.ready();
        await storage.append(rd.entries);
        for (const entry of rd.committedEntries) {
          const change = decodeConfChangeEntry(entry);
          if (change !== undefined) applied = rawNode.applyConfChange(change);
        }
        rawNode.advance(rd);
        if (!proposed && rd.softState?.lead === rawNode.raft.id) {
          rawNode.propose(bytes('somedata'));
          rawNode.proposeConfChange(cc);
          proposed = true;
        }
      }
      const last = storage.lastIndex();
      const stored = storage.entries(last - 1, last + 1, NO_LIMIT);
      expect(stored.length).toBe(2);
      expect(new TextDecoder().decode(stored[0]!.data)).toBe('somedata');
      const isV2 = isConfChangeV2(cc);
      expect(stored[1]!.type).toBe(isV2 ? EntryType.ConfChangeV2 : EntryType.ConfChange);
      expect([...stored[1]!.data!]).toEqual([...(isV2 ? encodeConfChangeV2(cc) : encodeConfChange(cc))]);
      expect(applied).toEqual(want);
      // Auto-leave proposes the leave-joint entry right after applying.
      const autoLeave = enterJoint(asV2(cc));
      expect(rawNode.raft.pendingConfIndex).toBe(last + (autoLeave.ok && autoLeave.autoLeave ? 1 : 0));

      let rd = rawNode.ready();
      let context: Uint8Array | undefined;
      if (!want.autoLeave) {
        expect(rd.entries).toEqual([]);
        rawNode.advance(rd);
        if (want2 === undefined) continue;
        context = bytes('manual');
        rawNode.proposeConfChange({ transition: ConfChangeTransition.Auto, changes: [], context });
        rd = rawNode.ready();
      }
      expect(rd.entries.length).toBe(1);
      expect(rd.entries[0]!.type).toBe(EntryType.ConfChangeV2);
      const leave = decodeConfChangeV2(rd.entries[0]!.data ?? new Uint8Array());
      expect(leave.changes).toEqual([]);
      expect(leave.transition).toBe(ConfChangeTransition.Auto);
      expect(leave.context === undefined ? undefined : [...leave.context]).toEqual(context === undefined ? undefined : [...context]);
      expect(rawNode.applyConfChange(leave)).toEqual(want2);
      rawNode.advance(rd);
    }
  });
});
