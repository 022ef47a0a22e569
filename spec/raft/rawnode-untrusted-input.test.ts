/**
 * RawNode's methods take values from the network (step) and from the application: a malformed
 * one is refused with a coded error, changes nothing, and does not stop the node (only raft
 * panics and storage errors do).
 */
import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../../lib/memory-storage.js';
import { RawNode, SnapshotStatus } from '../../lib/raft/rawnode.js';
import { newMessage } from '../../lib/raft/util.js';
import { ConfChangeTransition, ConfChangeType, MessageType, emptyConfState, type ConfChange, type ConfChangeV2, type Message } from '../../lib/types.js';

async function newNode(): Promise<RawNode> {
  const storage = new MemoryStorage();
  await storage.setConfState({ ...emptyConfState(), voters: [1, 2] });
  return new RawNode({ id: 1, storage, electionTick: 10, heartbeatTick: 1 });
}

function nested(levels: number): Message {
  let message = newMessage({ type: MessageType.MsgApp, from: 2, to: 1 });
  for (let level = 1; level < levels; level++) message = newMessage({ type: MessageType.MsgApp, from: 2, to: 1, responses: [message] });
  return message;
}

function cyclic(): Message {
  const message = newMessage({ type: MessageType.MsgApp, from: 2, to: 1 });
  message.responses.push(message);
  return message;
}

function errorCode(operation: () => void): string {
  try {
    operation();
    return 'accepted';
  } catch (error) {
    return (error as { code?: string }).code ?? `uncoded ${String(error)}`;
  }
}

describe('RawNode.step with untrusted messages', () => {
  it.each([
    ['an unknown type', 'ERR_INVALID_ARGUMENT', () => ({ ...newMessage({ type: MessageType.MsgApp, from: 2, to: 1 }), type: 999 }) as unknown as Message],
    ['a negative term', 'ERR_OUT_OF_RANGE', () => newMessage({ type: MessageType.MsgApp, from: 2, to: 1, term: -1 })],
    ['a fractional index', 'ERR_OUT_OF_RANGE', () => newMessage({ type: MessageType.MsgApp, from: 2, to: 1, index: 1.5 })],
    ['a non-boolean reject', 'ERR_INVALID_ARGUMENT', () => ({ ...newMessage({ type: MessageType.MsgAppResp, from: 2, to: 1 }), reject: 1 }) as unknown as Message],
    ['responses nested 101 levels deep', 'ERR_INVALID_ARGUMENT', () => nested(101)],
    ['responses in a cycle', 'ERR_INVALID_ARGUMENT', cyclic],
    ['not an object', 'ERR_INVALID_ARGUMENT', () => null as unknown as Message],
  ])('%s: %s, nothing changes, the node keeps running', async (_label, code, make) => {
    const node = await newNode();
    const before = node.status();
    expect(errorCode(() => node.step(make()))).toBe(code);
    expect(node.stoppedBy()).toBeUndefined();
    expect(node.status()).toEqual(before);
    // The next valid message is processed: a heartbeat from 2 makes it the leader we follow.
    node.step(newMessage({ type: MessageType.MsgHeartbeat, from: 2, to: 1, term: 1 }));
    expect(node.status().lead).toBe(2);
  });

  it('100 levels of responses are still accepted (the codec decodes that deep)', async () => {
    const node = await newNode();
    expect(errorCode(() => node.step(nested(100)))).toBe('accepted');
  });

  const asConfChange = (value: unknown) => value as ConfChange;
  const asConfChangeV2 = (value: unknown) => value as ConfChangeV2;
  it.each([
    ['propose(a string)', 'ERR_INVALID_ARGUMENT', (node: RawNode) => node.propose('abc' as unknown as Uint8Array)],
    ['proposeConfChange(an unknown type)', 'ERR_INVALID_ARGUMENT', (node: RawNode) => node.proposeConfChange(asConfChange({ id: 0, type: 99, nodeId: 2 }))],
    ['proposeConfChange(a negative node id)', 'ERR_OUT_OF_RANGE', (node: RawNode) => node.proposeConfChange(asConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId: -2 }))],
    ['proposeConfChange(V2 with an unknown transition)', 'ERR_INVALID_ARGUMENT', (node: RawNode) => node.proposeConfChange(asConfChangeV2({ transition: 9, changes: [] }))],
    ['applyConfChange(V2 with an unknown transition)', 'ERR_INVALID_ARGUMENT', (node: RawNode) => node.applyConfChange(asConfChangeV2({ transition: 9, changes: [] }))],
    ['applyConfChange(V2 with a fractional node id)', 'ERR_OUT_OF_RANGE', (node: RawNode) => node.applyConfChange(asConfChangeV2({ transition: ConfChangeTransition.Auto, changes: [{ type: ConfChangeType.AddNode, nodeId: 0.5 }] }))],
    ['readIndex(a string)', 'ERR_INVALID_ARGUMENT', (node: RawNode) => node.readIndex('ctx' as unknown as Uint8Array)],
    ['transferLeader(-1)', 'ERR_OUT_OF_RANGE', (node: RawNode) => node.transferLeader(-1)],
    ['reportUnreachable(a string)', 'ERR_INVALID_ARGUMENT', (node: RawNode) => node.reportUnreachable('2' as unknown as number)],
    ['reportSnapshot(2, an unknown status)', 'ERR_INVALID_ARGUMENT', (node: RawNode) => node.reportSnapshot(2, 7 as SnapshotStatus)],
  ])('%s: %s, nothing changes, the node keeps running', async (_label, code, operation) => {
    const node = await newNode();
    const before = node.status();
    expect(errorCode(() => operation(node))).toBe(code);
    expect(node.stoppedBy()).toBeUndefined();
    expect(node.status()).toEqual(before);
    expect(node.hasReady()).toBe(false);
    node.step(newMessage({ type: MessageType.MsgHeartbeat, from: 2, to: 1, term: 1 }));
    expect(node.status().lead).toBe(2);
  });

  it.each([
    ['a negative id', [1, -2], 'ERR_OUT_OF_RANGE'],
    ['a string id', ['1'], 'ERR_INVALID_ARGUMENT'],
    ['a peer without id', [{ context: new Uint8Array(1) }], 'ERR_INVALID_ARGUMENT'],
    ['a context that is not bytes', [{ id: 1, context: 'x' }], 'ERR_INVALID_ARGUMENT'],
    ['null', [null], 'ERR_INVALID_ARGUMENT'],
  ])('bootstrap with %s: %s, the fresh node is unchanged and can still bootstrap', async (_label, peers, code) => {
    const storage = new MemoryStorage();
    const node = new RawNode({ id: 1, storage, electionTick: 10, heartbeatTick: 1 });
    const before = node.status();
    expect(errorCode(() => node.bootstrap(peers as never))).toBe(code);
    expect(node.status()).toEqual(before);
    expect(node.hasReady()).toBe(false);
    node.bootstrap([1]);
    expect(node.ready().entries).toHaveLength(1);
  });
});
