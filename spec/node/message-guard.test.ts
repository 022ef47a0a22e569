/**
 * The node's message guard on crafted messages (issue 14): every kind of refusal, and the
 * messages a healthy cluster sends passing through.
 */
import { describe, expect, it } from 'vitest';
import { dropCommitPastLog, MAX_NETWORK_TERM, refuseInboundMessage, type MessageGuardView } from '../../lib/node/message-guard.js';
import { LOCAL_APPEND_THREAD } from '../../lib/raft/util.js';
import { EntryType, MessageType, type Message } from '../../lib/types.js';

const view: MessageGuardView = {
  localId: 2,
  isMember: (id) => id === 1 || id === 3,
  lastIndex: 10,
  leader: 1,
  checkSnapshotData: (data) => (data !== undefined && data[0] === 0xff ? 'not restorable' : undefined),
};
const message = (fields: Partial<Message> & Pick<Message, 'type'>): Message => ({
  from: 1, to: 2, term: 5, logTerm: 0, index: 0, entries: [], commit: 0, vote: 0, reject: false, rejectHint: 0, responses: [], ...fields,
});
const entry = (index: number, term: number) => ({ index, term, type: EntryType.Normal, data: new Uint8Array(0) });
const voters = { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };

describe('refuseInboundMessage', () => {
  it.each([
    ['a local message type', message({ type: MessageType.MsgHup }), /local message type/],
    ['a storage response', message({ type: MessageType.MsgStorageAppendResp }), /local message type/],
    ['the append thread as sender', message({ type: MessageType.MsgHeartbeat, from: LOCAL_APPEND_THREAD }), /storage thread/],
    ['a non-member', message({ type: MessageType.MsgHeartbeat, from: 99 }), /not a member/],
    ['another addressee', message({ type: MessageType.MsgHeartbeat, to: 3 }), /addressed to 3/],
    ['a term above the cap', message({ type: MessageType.MsgVote, from: 3, term: MAX_NETWORK_TERM + 1 }), /above the cap/],
    ['a heartbeat committing past the log', message({ type: MessageType.MsgHeartbeat, commit: 11 }), /above this node's last index/],
    ['a MsgApp whose entries skip an index', message({ type: MessageType.MsgApp, index: 4, logTerm: 5, entries: [entry(5, 5), entry(7, 5)] }), /expected 6/],
    ['a MsgApp whose terms go down', message({ type: MessageType.MsgApp, index: 4, logTerm: 5, entries: [entry(5, 4)] }), /below the 5 before it/],
    ['a MsgApp with an entry above the message term', message({ type: MessageType.MsgApp, index: 4, logTerm: 5, entries: [entry(5, 6)] }), /above the message term/],
    ['a snapshot the state machine cannot restore', message({ type: MessageType.MsgSnap, snapshot: { metadata: { index: 20, term: 5, confState: voters }, data: Uint8Array.of(0xff) } }), /not restorable/],
    ['a snapshot without voters', message({ type: MessageType.MsgSnap, snapshot: { metadata: { index: 20, term: 5, confState: { ...voters, voters: [] } } } }), /no voters/],
    ['a MsgTimeoutNow from a member that is not the leader', message({ type: MessageType.MsgTimeoutNow, from: 3 }), /not the leader/],
  ])('refuses %s', (_name, crafted, reason) => {
    expect(refuseInboundMessage(crafted, view)).toMatch(reason);
  });

  it.each([
    ['a heartbeat from the leader', message({ type: MessageType.MsgHeartbeat, commit: 10 })],
    ['an append that follows its index', message({ type: MessageType.MsgApp, index: 4, logTerm: 4, commit: 1000, entries: [entry(5, 4), entry(6, 5)] })],
    ['a vote request from a member', message({ type: MessageType.MsgPreVote, from: 3, term: 6, index: 10, logTerm: 5 })],
    ['a forwarded proposal', message({ type: MessageType.MsgProp, from: 3, entries: [entry(0, 0)] })],
    ['a restorable snapshot', message({ type: MessageType.MsgSnap, snapshot: { metadata: { index: 20, term: 5, confState: voters }, data: Uint8Array.of(1) } })],
    ['a MsgTimeoutNow from the leader', message({ type: MessageType.MsgTimeoutNow })],
  ])('lets %s through', (_name, crafted) => {
    expect(refuseInboundMessage(crafted, view)).toBeUndefined();
  });
});

describe('dropCommitPastLog', () => {
  it('steps a heartbeat committing past the log with commit 0, and says so', () => {
    const heartbeat = message({ type: MessageType.MsgHeartbeat, commit: 27 });
    const adjusted = dropCommitPastLog(heartbeat, { lastIndex: 0 });
    expect(adjusted.message).toEqual({ ...heartbeat, commit: 0 });
    expect(adjusted.refusal).toMatch(/commit 27 is above this node's last index 0/);
    expect(heartbeat.commit).toBe(27);
    expect(refuseInboundMessage(adjusted.message, { ...view, lastIndex: 0 })).toBeUndefined();
  });

  it.each([
    ['a heartbeat within the log', message({ type: MessageType.MsgHeartbeat, commit: 10 })],
    ['an append (its commit is checked against its own entries by raft)', message({ type: MessageType.MsgApp, index: 10, logTerm: 5, commit: 11, entries: [entry(11, 5)] })],
  ])('leaves %s as it is', (_name, inbound) => {
    expect(dropCommitPastLog(inbound, { lastIndex: 10 })).toEqual({ message: inbound });
  });
});
