/** Port of etcd raft v3.6 util_test.go and types_test.go, plus describe helpers. */
import { describe, expect, it } from 'vitest';
import { entrySize } from '../codec.js';
import { EntryType, MessageType, type Entry } from '../types.js';
import {
  describeEntry,
  describeHardState,
  describeMessage,
  entsSize,
  isLocalMsg,
  isResponseMsg,
  limitSize,
  logSliceLastEntryId,
  logSliceLastIndex,
  logSliceValid,
  newMessage,
  payloadSize,
  pbEntryId,
  type EntryId,
} from './util.js';

const e = (index: number, term: number): Entry => ({ type: EntryType.Normal, term, index });

describe('util (util_test.go, types_test.go)', () => {
  it('TestDescribeEntry', () => {
    const entry: Entry = { type: EntryType.Normal, term: 1, index: 2, data: new TextEncoder().encode('hello\x00world') };
    expect(describeEntry(entry)).toBe('1/2 EntryNormal "hello\\x00world"');
    const upper = (data: Uint8Array | undefined) => new TextDecoder().decode(data).toUpperCase();
    expect(describeEntry(entry, upper)).toBe('1/2 EntryNormal HELLO\x00WORLD');
  });

  it('TestLimitSize', () => {
    const ents = [e(4, 4), e(5, 5), e(6, 6)];
    const size = (i: number) => entrySize(ents[i]!);
    const cases: Array<[number, number]> = [
      [Number.POSITIVE_INFINITY, 3],
      [0, 1],
      [size(0) + size(1), 2],
      [size(0) + size(1) + size(2) / 2, 2],
      [size(0) + size(1) + size(2) - 1, 2],
      [size(0) + size(1) + size(2), 3],
    ];
    for (const [maxSize, count] of cases) {
      const got = limitSize(ents, maxSize);
      expect(got).toEqual(ents.slice(0, count));
      expect(got.length === 1 || entsSize(got) <= maxSize).toBe(true);
    }
  });

  it('TestIsLocalMsg and TestIsResponseMsg', () => {
    const local = [
      MessageType.MsgHup,
      MessageType.MsgBeat,
      MessageType.MsgUnreachable,
      MessageType.MsgSnapStatus,
      MessageType.MsgCheckQuorum,
      MessageType.MsgStorageAppend,
      MessageType.MsgStorageAppendResp,
      MessageType.MsgStorageApply,
      MessageType.MsgStorageApplyResp,
    ];
    const responses = [
      MessageType.MsgUnreachable,
      MessageType.MsgAppResp,
      MessageType.MsgVoteResp,
      MessageType.MsgHeartbeatResp,
      MessageType.MsgReadIndexResp,
      MessageType.MsgPreVoteResp,
      MessageType.MsgStorageAppendResp,
      MessageType.MsgStorageApplyResp,
    ];
    for (let type = MessageType.MsgHup; type <= MessageType.MsgStorageApplyResp; type++) {
      expect(isLocalMsg(type), MessageType[type]).toBe(local.includes(type));
      expect(isResponseMsg(type), MessageType[type]).toBe(responses.includes(type));
    }
  });

  it('TestPayloadSizeOfEmptyEntry', () => {
    expect(payloadSize(e(0, 0))).toBe(0);
  });

  it('TestEntryID', () => {
    expect(pbEntryId(e(0, 0))).toEqual({ term: 0, index: 0 });
    expect(pbEntryId({ type: 0, term: 1, index: 2, data: new Uint8Array([1]) })).toEqual({ term: 1, index: 2 });
    expect(pbEntryId(e(123, 10))).toEqual({ term: 10, index: 123 });
  });

  it('TestLogSlice', () => {
    const id = (index: number, term: number): EntryId => ({ term, index });
    const cases: Array<{ term?: number; prev?: EntryId; entries?: Entry[]; notOk?: boolean; last?: EntryId }> = [
      { last: id(0, 0) },
      { prev: id(123, 10), notOk: true },
      { term: 9, prev: id(123, 10), notOk: true },
      { term: 10, prev: id(123, 10), last: id(123, 10) },
      { term: 11, prev: id(123, 10), last: id(123, 10) },
      { term: 0, entries: [e(1, 1)], notOk: true },
      { term: 1, entries: [e(1, 1)], last: id(1, 1) },
      { term: 2, entries: [e(1, 1)], last: id(1, 1) },
      { term: 2, entries: [e(2, 1), e(3, 1), e(4, 2)], notOk: true },
      { term: 1, prev: id(1, 1), entries: [e(2, 1), e(3, 1), e(4, 2)], notOk: true },
      { term: 2, prev: id(1, 1), entries: [e(2, 1), e(3, 1), e(4, 2)], last: id(4, 2) },
      { term: 10, prev: id(123, 5), entries: [e(111, 5)], notOk: true },
      { term: 10, prev: id(123, 5), entries: [e(124, 4)], notOk: true },
      { term: 10, prev: id(123, 5), entries: [e(234, 6)], notOk: true },
      { term: 10, prev: id(123, 5), entries: [e(124, 6)], last: id(124, 6) },
      { term: 10, prev: id(12, 2), entries: [e(13, 2), e(12, 2)], notOk: true },
      { term: 10, prev: id(12, 2), entries: [e(13, 2), e(15, 2)], notOk: true },
      { term: 10, prev: id(12, 2), entries: [e(13, 2), e(14, 1)], notOk: true },
      { term: 10, prev: id(12, 2), entries: [e(13, 2), e(14, 3)], last: id(14, 3) },
    ];
    for (const c of cases) {
      const slice = { term: c.term ?? 0, prev: c.prev ?? id(0, 0), entries: c.entries ?? [] };
      expect(logSliceValid(slice) !== undefined).toBe(c.notOk ?? false);
      if (!c.notOk) {
        expect(logSliceLastEntryId(slice)).toEqual(c.last);
        expect(logSliceLastIndex(slice)).toBe(c.last!.index);
      }
    }
  });

  it('describes hard states and messages like Go', () => {
    expect(describeHardState({ term: 1, vote: 0, commit: 3 })).toBe('Term:1 Commit:3');
    expect(describeHardState({ term: 1, vote: 2, commit: 3 })).toBe('Term:1 Vote:2 Commit:3');
    const m = newMessage({ type: MessageType.MsgApp, from: 1, to: 2, term: 3, logTerm: 2, index: 5, commit: 5, entries: [e(6, 3)] });
    expect(describeMessage(m)).toBe('1->2 MsgApp Term:3 Log:2/5 Commit:5 Entries:[3/6 EntryNormal ""]');
  });
});
