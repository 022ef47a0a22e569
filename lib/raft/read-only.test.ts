import { describe, expect, it } from 'vitest';
import { EntryType, MessageType } from '../types.js';
import { ReadOnly, ReadOnlyOption } from './read-only.js';
import { newMessage } from './util.js';

const request = (ctx: string) =>
  newMessage({ type: MessageType.MsgReadIndex, entries: [{ type: EntryType.Normal, term: 0, index: 0, data: new TextEncoder().encode(ctx) }] });
const ack = (ctx: string) => newMessage({ type: MessageType.MsgHeartbeatResp, context: new TextEncoder().encode(ctx) });

describe('ReadOnly (read_only.go)', () => {
  it('queues requests, counts acks and releases everything up to the acked context', () => {
    const ro = new ReadOnly(ReadOnlyOption.ReadOnlySafe);
    ro.addRequest(5, request('a'));
    ro.addRequest(6, request('b'));
    ro.addRequest(7, request('a')); // duplicate context: ignored
    expect(ro.readIndexQueue.length).toBe(2);
    expect(new TextDecoder().decode(ro.lastPendingRequestCtx())).toBe('b');
    expect(ro.recvAck(2, new TextEncoder().encode('b'))?.get(2)).toBe(true);
    expect(ro.recvAck(2, new TextEncoder().encode('zzz'))).toBeUndefined();
    const released = ro.advance(ack('b'));
    expect(released.map((s) => s.index)).toEqual([5, 6]);
    expect(ro.readIndexQueue).toEqual([]);
    expect(ro.pendingReadIndex.size).toBe(0);
    expect(ro.advance(ack('b'))).toEqual([]);
    expect(ro.lastPendingRequestCtx()).toBeUndefined();
  });
});
