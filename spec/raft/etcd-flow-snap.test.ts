/** Port of etcd raft v3.6 raft_flow_control_test.go and raft_snap_test.go. */
import { describe, expect, it } from 'vitest';
import type { Raft } from '../../lib/raft/raft.js';
import { EntryType, MessageType, emptyConfState, type Snapshot } from '../../lib/types.js';
import { msg, newTestMemoryStorage, newTestRaft, readMessages } from './raft-test-network.js';

const someData = new TextEncoder().encode('somedata');
const prop = () => msg({ from: 1, to: 1, type: MessageType.MsgProp, entries: [{ type: EntryType.Normal, term: 0, index: 0, data: someData }] });
const testingSnap = (): Snapshot => ({ metadata: { index: 11, term: 11, confState: { ...emptyConfState(), voters: [1, 2] } } });

async function leaderWithPeer2(): Promise<Raft> {
  const r = newTestRaft(1, 5, 1, await newTestMemoryStorage([1, 2]));
  r.becomeCandidate();
  r.becomeLeader();
  r.trk.progress.get(2)!.becomeReplicate();
  return r;
}

async function snapLeader(voters: number[]): Promise<Raft> {
  const sm = newTestRaft(1, 10, 1, await newTestMemoryStorage(voters));
  sm.restore(testingSnap());
  sm.becomeCandidate();
  sm.becomeLeader();
  return sm;
}

describe('flow control (raft_flow_control_test.go)', () => {
  it('TestMsgAppFlowControlFull', async () => {
    const r = await leaderWithPeer2();
    const pr2 = r.trk.progress.get(2)!;
    // Fill the inflights window.
    for (let i = 0; i < r.trk.maxInflight; i++) {
      r.step(prop());
      const ms = readMessages(r);
      expect(ms.map((m) => m.type)).toEqual([MessageType.MsgApp]);
    }
    expect(pr2.isPaused()).toBe(true);
    for (let i = 0; i < 10; i++) {
      r.step(prop());
      expect(readMessages(r)).toEqual([]);
    }
  });

  it('TestMsgAppFlowControlMoveForward', async () => {
    const r = await leaderWithPeer2();
    const pr2 = r.trk.progress.get(2)!;
    for (let i = 0; i < r.trk.maxInflight; i++) {
      r.step(prop());
      readMessages(r);
    }
    // 1 is the no-op, 2 the first proposal.
    for (let tt = 2; tt < r.trk.maxInflight; tt++) {
      r.step(msg({ from: 2, to: 1, type: MessageType.MsgAppResp, index: tt }));
      readMessages(r);
      // One slot freed: one more MsgApp, then full again.
      r.step(prop());
      const ms = readMessages(r);
      expect(ms.map((m) => m.type)).toEqual([MessageType.MsgApp]);
      expect(pr2.isPaused()).toBe(true);
      // Stale acks free nothing.
      for (let i = 0; i < tt; i++) {
        r.step(msg({ from: 2, to: 1, type: MessageType.MsgAppResp, index: i }));
        expect(pr2.isPaused()).toBe(true);
      }
    }
  });

  it('TestMsgAppFlowControlRecvHeartbeat', async () => {
    const r = await leaderWithPeer2();
    const pr2 = r.trk.progress.get(2)!;
    for (let i = 0; i < r.trk.maxInflight; i++) {
      r.step(prop());
      readMessages(r);
    }
    for (let tt = 1; tt < 5; tt++) {
      // Each heartbeat response unpauses for one (empty, window full) MsgApp.
      for (let i = 0; i < tt; i++) {
        expect(pr2.isPaused()).toBe(true);
        r.step(msg({ from: 2, to: 1, type: MessageType.MsgHeartbeatResp }));
        const ms = readMessages(r);
        expect(ms.length).toBe(1);
        expect(ms[0]!.type).toBe(MessageType.MsgApp);
        expect(ms[0]!.entries).toEqual([]);
      }
      for (let i = 0; i < 10; i++) {
        expect(pr2.isPaused()).toBe(true);
        r.step(prop());
        expect(readMessages(r)).toEqual([]);
      }
      r.step(msg({ from: 2, to: 1, type: MessageType.MsgHeartbeatResp }));
      readMessages(r);
    }
  });
});

describe('snapshots (raft_snap_test.go)', () => {
  it('TestSendingSnapshotSetPendingSnapshot', async () => {
    const sm = await snapLeader([1]);
    const pr = sm.trk.progress.get(2)!;
    pr.next = sm.raftLog.firstIndex();
    sm.step(msg({ from: 2, to: 1, type: MessageType.MsgAppResp, index: pr.next - 1, reject: true }));
    expect(sm.trk.progress.get(2)!.pendingSnapshot).toBe(11);
  });

  it('TestPendingSnapshotPauseReplication', async () => {
    const sm = await snapLeader([1, 2]);
    sm.trk.progress.get(2)!.becomeSnapshot(11);
    sm.step(prop());
    expect(readMessages(sm)).toEqual([]);
  });

  it('TestSnapshotFailure', async () => {
    const sm = await snapLeader([1, 2]);
    const pr = sm.trk.progress.get(2)!;
    pr.next = 1;
    pr.becomeSnapshot(11);
    sm.step(msg({ from: 2, to: 1, type: MessageType.MsgSnapStatus, reject: true }));
    expect(pr.pendingSnapshot).toBe(0);
    expect(pr.next).toBe(1);
    expect(pr.msgAppFlowPaused).toBe(true);
  });

  it('TestSnapshotSucceed', async () => {
    const sm = await snapLeader([1, 2]);
    const pr = sm.trk.progress.get(2)!;
    pr.next = 1;
    pr.becomeSnapshot(11);
    sm.step(msg({ from: 2, to: 1, type: MessageType.MsgSnapStatus, reject: false }));
    expect(pr.pendingSnapshot).toBe(0);
    expect(pr.next).toBe(12);
    expect(pr.msgAppFlowPaused).toBe(true);
  });

  it('TestSnapshotAbort', async () => {
    const sm = await snapLeader([1, 2]);
    const pr = sm.trk.progress.get(2)!;
    pr.next = 1;
    pr.becomeSnapshot(11);
    // An ack at the snapshot index leaves StateSnapshot even without MsgSnapStatus.
    sm.step(msg({ from: 2, to: 1, type: MessageType.MsgAppResp, index: 11 }));
    const after = sm.trk.progress.get(2)!;
    expect(after.pendingSnapshot).toBe(0);
    // The leader's no-op at 12 was sent right away.
    expect(after.next).toBe(13);
    expect(after.inflights.count()).toBe(1);
  });
});
