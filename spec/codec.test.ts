import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeConfChange,
  decodeConfChangeV2,
  decodeConfState,
  decodeEntry,
  decodeHardState,
  decodeLogEntry,
  decodeLsn,
  decodeMessage,
  decodeRaftEntry,
  decodeSnapshot,
  encodeConfChange,
  encodeConfChangeV2,
  encodeConfState,
  encodeEntry,
  encodeHardState,
  encodeLogEntry,
  encodeLsn,
  encodeMessage,
  encodeRaftEntry,
  encodeSnapshot,
  entrySize,
  GITALY_DIRECTORY_MODE,
  type LogEntry,
} from '../lib/codec.js';
import { ErrorCode } from '../lib/errors.js';
import {
  ConfChangeTransition,
  ConfChangeType,
  EntryType,
  MessageType,
  type ConfState,
  type Entry,
  type Message,
} from '../lib/types.js';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex').replace(/(..)(?!$)/g, '$1 ');
const fromHex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/ /g, ''), 'hex'));
const utf8 = (text: string) => new TextEncoder().encode(text);
const conf = (partial: Partial<ConfState> = {}): ConfState => ({
  voters: [],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
  ...partial,
});

function codeOf(action: () => unknown): string {
  try {
    action();
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? 'uncoded';
  }
}

// Every vector of reference/etcd-raft.md §4.3 (gogo v3.6.0 bytes).
describe('gogo byte vectors (etcd-raft.md §4.3)', () => {
  const vectors: { name: string; encode: () => Uint8Array; bytes: string }[] = [
    { name: 'Entry{}', encode: () => encodeEntry({ type: 0, term: 0, index: 0 }), bytes: '08 00 10 00 18 00' },
    { name: 'Entry{Term:1, Index:1} no-op', encode: () => encodeEntry({ type: 0, term: 1, index: 1 }), bytes: '08 00 10 01 18 01' },
    { name: 'Entry{Term:1, Index:1, Data:[]}', encode: () => encodeEntry({ type: 0, term: 1, index: 1, data: new Uint8Array(0) }), bytes: '08 00 10 01 18 01 22 00' },
    { name: 'Entry{Term:4, Index:4}', encode: () => encodeEntry({ type: 0, term: 4, index: 4 }), bytes: '08 00 10 04 18 04' },
    { name: 'Entry{Term:2, Index:300, Data:"foo"}', encode: () => encodeEntry({ type: 0, term: 2, index: 300, data: utf8('foo') }), bytes: '08 00 10 02 18 ac 02 22 03 66 6f 6f' },
    { name: 'ConfChange{AddNode, NodeID:1}', encode: () => encodeConfChange({ id: 0, type: ConfChangeType.AddNode, nodeId: 1 }), bytes: '08 00 10 00 18 01' },
    {
      name: 'bootstrap Entry{ConfChange, 1, 1, <ConfChange>}',
      encode: () => encodeEntry({ type: EntryType.ConfChange, term: 1, index: 1, data: encodeConfChange({ id: 0, type: 0, nodeId: 1 }) }),
      bytes: '08 01 10 01 18 01 22 06 08 00 10 00 18 01',
    },
    { name: 'HardState{}', encode: () => encodeHardState({ term: 0, vote: 0, commit: 0 }), bytes: '08 00 10 00 18 00' },
    { name: 'HardState{1,1,3}', encode: () => encodeHardState({ term: 1, vote: 1, commit: 3 }), bytes: '08 01 10 01 18 03' },
    { name: 'HardState{5,2,200}', encode: () => encodeHardState({ term: 5, vote: 2, commit: 200 }), bytes: '08 05 10 02 18 c8 01' },
    { name: 'ConfState{}', encode: () => encodeConfState(conf()), bytes: '28 00' },
    { name: 'ConfState{Voters:[1,2,3]}', encode: () => encodeConfState(conf({ voters: [1, 2, 3] })), bytes: '08 01 08 02 08 03 28 00' },
    {
      name: 'ConfState{all fields}',
      encode: () => encodeConfState({ voters: [1, 2, 3], learners: [4], votersOutgoing: [1], learnersNext: [5], autoLeave: true }),
      bytes: '08 01 08 02 08 03 10 04 18 01 20 05 28 01',
    },
    { name: 'Snapshot{} (empty)', encode: () => encodeSnapshot({ metadata: { confState: conf(), index: 0, term: 0 } }), bytes: '12 08 0a 02 28 00 10 00 18 00' },
    {
      name: 'Snapshot{Data:"data", 4/4, voters 1,2,3}',
      encode: () => encodeSnapshot({ data: utf8('data'), metadata: { confState: conf({ voters: [1, 2, 3] }), index: 4, term: 4 } }),
      bytes: '0a 04 64 61 74 61 12 0e 0a 08 08 01 08 02 08 03 28 00 10 04 18 04',
    },
    { name: 'ConfChangeV2{}', encode: () => encodeConfChangeV2({ transition: 0, changes: [] }), bytes: '08 00' },
    {
      name: 'ConfChangeV2{AddNode 2, AddLearnerNode 3}',
      encode: () =>
        encodeConfChangeV2({
          transition: ConfChangeTransition.Auto,
          changes: [
            { type: ConfChangeType.AddNode, nodeId: 2 },
            { type: ConfChangeType.AddLearnerNode, nodeId: 3 },
          ],
        }),
      bytes: '08 00 12 04 08 00 10 02 12 04 08 03 10 03',
    },
  ];
  it.each(vectors)('$name encodes to $bytes', ({ encode, bytes }) => {
    expect(hex(encode())).toBe(bytes);
  });

  it.each(vectors)('$name decodes and re-encodes to the same bytes', ({ name, bytes }) => {
    const wire = fromHex(bytes);
    const reencoded = name.startsWith('Entry') || name.startsWith('bootstrap')
      ? encodeEntry(decodeEntry(wire))
      : name.startsWith('HardState')
        ? encodeHardState(decodeHardState(wire))
        : name.startsWith('ConfState')
          ? encodeConfState(decodeConfState(wire))
          : name.startsWith('Snapshot')
            ? encodeSnapshot(decodeSnapshot(wire))
            : name.startsWith('ConfChangeV2')
              ? encodeConfChangeV2(decodeConfChangeV2(wire))
              : encodeConfChange(decodeConfChange(wire));
    expect(hex(reencoded)).toBe(bytes);
  });
});

describe('decoders', () => {
  it('return every field, with data absent for nil and present-empty for 22 00', () => {
    expect(decodeEntry(fromHex('08 00 10 01 18 01'))).toEqual({ type: 0, term: 1, index: 1 });
    expect('data' in decodeEntry(fromHex('08 00 10 01 18 01'))).toBe(false);
    const present = decodeEntry(fromHex('08 00 10 01 18 01 22 00'));
    expect(present.data).toBeInstanceOf(Uint8Array);
    expect(present.data!.length).toBe(0);
    expect(decodeHardState(new Uint8Array(0))).toEqual({ term: 0, vote: 0, commit: 0 });
    expect(decodeConfState(new Uint8Array(0))).toEqual(conf());
  });

  it('accept etcd raft v3.7 bytes with omitted zero fields', () => {
    // v3.7 no-op entry: Type omitted.
    expect(decodeEntry(fromHex('10 05 18 07'))).toEqual({ type: 0, term: 5, index: 7 });
    // v3.7 bootstrap ConfChange without id.
    expect(decodeConfChange(fromHex('10 00 18 01'))).toEqual({ id: 0, type: 0, nodeId: 1 });
  });

  it('accept packed repeated ids', () => {
    expect(decodeConfState(fromHex('0a 03 01 02 03 28 01'))).toEqual(conf({ voters: [1, 2, 3], autoLeave: true }));
  });

  it('skip unknown fields', () => {
    expect(decodeEntry(fromHex('08 00 10 01 18 01 78 05'))).toEqual({ type: 0, term: 1, index: 1 });
  });

  const corrupt: { name: string; decode: (bytes: Uint8Array) => unknown; bytes: string }[] = [
    { name: 'a truncated varint', decode: decodeEntry, bytes: '08 00 10 ff' },
    { name: 'a length past the end', decode: decodeEntry, bytes: '08 00 10 01 18 01 22 05 61' },
    { name: 'an invalid wire type', decode: decodeEntry, bytes: '0f 00' },
    { name: 'an unknown entry type', decode: decodeEntry, bytes: '08 07 10 01 18 01' },
    { name: 'an unknown message type', decode: decodeMessage, bytes: '08 63 10 01' },
    { name: 'an unknown conf change type', decode: decodeConfChange, bytes: '08 00 10 09 18 01' },
    { name: 'an unknown conf change transition', decode: decodeConfChangeV2, bytes: '08 05' },
    { name: 'a truncated hard state', decode: decodeHardState, bytes: '08' },
    { name: 'a snapshot with a truncated metadata', decode: decodeSnapshot, bytes: '12 08 0a 02' },
    { name: 'a message with a garbage entry', decode: decodeMessage, bytes: '3a 02 ff ff' },
    { name: 'a manifest that is not a LogEntry', decode: decodeLogEntry, bytes: '63 6f 72 72 75 70 74 65 64' },
  ];
  it.each(corrupt)('throw ERR_CORRUPT on $name', ({ decode, bytes }) => {
    expect(codeOf(() => decode(fromHex(bytes)))).toBe(ErrorCode.Corrupt);
  });

  it('throw ERR_OUT_OF_RANGE (a RangeError) on numbers above MAX_SAFE_INTEGER, never rounding', () => {
    // term = 2^53 (varint 80 80 80 80 80 80 80 10)
    const bytes = fromHex('08 00 10 80 80 80 80 80 80 80 10 18 01');
    expect(codeOf(() => decodeEntry(bytes))).toBe(ErrorCode.OutOfRange);
    expect(() => decodeEntry(bytes)).toThrow(RangeError);
    // 2^53 - 1 is fine.
    expect(decodeEntry(fromHex('08 00 10 ff ff ff ff ff ff ff 0f 18 01')).term).toBe(Number.MAX_SAFE_INTEGER);
    // uint64 max (a LocalAppendThread-style id) is refused, not rounded.
    expect(codeOf(() => decodeHardState(fromHex('10 ff ff ff ff ff ff ff ff ff 01')))).toBe(ErrorCode.OutOfRange);
  });

  it('encoders refuse values a uint64 field cannot hold exactly', () => {
    const table: [string, () => unknown][] = [
      ['term 2^53', () => encodeEntry({ type: 0, term: 2 ** 53, index: 1 })],
      ['negative index', () => encodeEntry({ type: 0, term: 1, index: -1 })],
      ['fractional commit', () => encodeHardState({ term: 1, vote: 0, commit: 0.5 })],
      ['voter id above MAX_SAFE', () => encodeConfState(conf({ voters: [2 ** 60] }))],
    ];
    for (const [name, action] of table) expect(codeOf(action), name).toBe(ErrorCode.OutOfRange);
  });
});

describe('entrySize', () => {
  it('equals the encoded length without encoding, across varint widths and data presence', () => {
    const widths = [0, 1, 127, 128, 16383, 16384, 2 ** 21, 2 ** 32, 2 ** 35, Number.MAX_SAFE_INTEGER];
    for (const value of widths) {
      for (const data of [undefined, new Uint8Array(0), new Uint8Array(127), new Uint8Array(128)]) {
        const entry: Entry = { type: EntryType.ConfChangeV2, term: value, index: value };
        if (data) entry.data = data;
        expect(entrySize(entry), `term/index ${value}, data ${data?.length}`).toBe(encodeEntry(entry).length);
      }
    }
    expect(entrySize({ type: 0, term: 4, index: 4 })).toBe(6);
  });
});

describe('round trips (property)', () => {
  const safe = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeNat());
  const bytesOrAbsent = fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined });
  const entry = fc.record({ type: fc.constantFrom(0, 1, 2), term: safe, index: safe, data: bytesOrAbsent }).map((value) => {
    const result: Entry = { type: value.type, term: value.term, index: value.index };
    if (value.data !== undefined) result.data = value.data;
    return result;
  });
  const ids = fc.array(safe, { maxLength: 5 });
  const confState = fc.record({ voters: ids, learners: ids, votersOutgoing: ids, learnersNext: ids, autoLeave: fc.boolean() });

  it('Entry: decode(encode(e)) = e and entrySize = encoded length', () => {
    fc.assert(
      fc.property(entry, (value) => {
        const bytes = encodeEntry(value);
        expect(decodeEntry(bytes)).toEqual(value);
        expect(entrySize(value)).toBe(bytes.length);
      }),
      { numRuns: 500, seed: 3 },
    );
  });

  it('ConfState, HardState and Snapshot round-trip', () => {
    fc.assert(
      fc.property(confState, safe, safe, safe, bytesOrAbsent, (cs, term, vote, commit, data) => {
        expect(decodeConfState(encodeConfState(cs))).toEqual(cs);
        expect(decodeHardState(encodeHardState({ term, vote, commit }))).toEqual({ term, vote, commit });
        const snapshot = data === undefined ? { metadata: { confState: cs, index: commit, term } } : { data, metadata: { confState: cs, index: commit, term } };
        expect(decodeSnapshot(encodeSnapshot(snapshot))).toEqual(snapshot);
      }),
      { numRuns: 300, seed: 4 },
    );
  });

  it('Message round-trips, including nested responses, snapshot and context presence', () => {
    const message: Message = {
      type: MessageType.MsgApp,
      to: 2,
      from: 1,
      term: 3,
      logTerm: 2,
      index: 10,
      entries: [{ type: 0, term: 3, index: 11, data: utf8('x') }, { type: 0, term: 3, index: 12 }],
      commit: 9,
      vote: 0,
      snapshot: { metadata: { confState: conf({ voters: [1, 2] }), index: 5, term: 1 } },
      reject: true,
      rejectHint: 7,
      context: new Uint8Array(0),
      responses: [
        { type: MessageType.MsgAppResp, to: 1, from: 2, term: 3, logTerm: 0, index: 12, entries: [], commit: 0, vote: 0, reject: false, rejectHint: 0, responses: [] },
      ],
    };
    expect(decodeMessage(encodeMessage(message))).toEqual(message);
    const { snapshot: _snapshot, context: _context, ...bare } = message;
    const decoded = decodeMessage(encodeMessage({ ...bare, responses: [] }));
    expect('snapshot' in decoded).toBe(false);
    expect('context' in decoded).toBe(false);
  });

  it('ConfChange and ConfChangeV2 round-trip with context presence', () => {
    expect(decodeConfChange(encodeConfChange({ id: 9, type: ConfChangeType.RemoveNode, nodeId: 3, context: utf8('c') }))).toEqual({
      id: 9,
      type: ConfChangeType.RemoveNode,
      nodeId: 3,
      context: utf8('c'),
    });
    const v2 = { transition: ConfChangeTransition.JointExplicit, changes: [{ type: ConfChangeType.UpdateNode, nodeId: 4 }], context: new Uint8Array(0) };
    expect(decodeConfChangeV2(encodeConfChangeV2(v2))).toEqual(v2);
  });
});

describe('Gitaly log codec', () => {
  it('a MANIFEST with no operations is 0 bytes and decodes from 0 bytes', () => {
    const empty: LogEntry = { relativePath: '', referenceTransactions: [], operations: [] };
    expect(encodeLogEntry(empty).length).toBe(0);
    expect(decodeLogEntry(new Uint8Array(0))).toEqual(empty);
  });

  it('the conf-change MANIFEST matches Gitaly\'s bytes: 52 <len> 22 <len> 0a 19 "raft/latest_config_change" 12 <len> 08 <lsn>', () => {
    const value = encodeLsn(5);
    expect(hex(value)).toBe('08 05');
    const manifest = encodeLogEntry({
      relativePath: '',
      referenceTransactions: [],
      operations: [{ setKey: { key: utf8('raft/latest_config_change'), value } }],
    });
    expect(hex(manifest)).toBe(hex(fromHex('52 21 22 1f 0a 19' + Buffer.from('raft/latest_config_change').toString('hex') + '12 02 08 05')));
  });

  it('every operation kind round-trips; CreateDirectory keeps Gitaly\'s mode value', () => {
    const logEntry: LogEntry = {
      relativePath: '@hashed/aa/bb/repo.git',
      referenceTransactions: [{ changes: [{ referenceName: utf8('refs/heads/main'), newOid: utf8('abc'), newTarget: new Uint8Array(0) }] }],
      housekeeping: { packRefs: {} },
      operations: [
        { createHardLink: { sourcePath: utf8('1'), sourceInStorage: false, destinationPath: utf8('objects/pack/p.pack') } },
        { removeDirectoryEntry: { path: utf8('refs/heads/old') } },
        { createDirectory: { path: utf8('objects/pack'), mode: GITALY_DIRECTORY_MODE } },
        { setKey: { key: utf8('k'), value: utf8('v') } },
        { deleteKey: { key: utf8('gone') } },
      ],
    };
    expect(decodeLogEntry(encodeLogEntry(logEntry))).toEqual(logEntry);
    expect(GITALY_DIRECTORY_MODE).toBe(2147484096);
  });

  it('RaftEntry and LSN round-trip', () => {
    const raftEntry = { id: 0, data: { localPath: utf8('wal/0000000000001'), packed: new Uint8Array(0) } };
    expect(decodeRaftEntry(encodeRaftEntry(raftEntry))).toEqual(raftEntry);
    expect(decodeLsn(encodeLsn(123456789))).toBe(123456789);
  });
});


function decodeCode(decode: () => unknown): string {
  try {
    decode();
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? 'uncoded';
  }
}

describe('as strict as gogo (issue 16): each class where the decoder used to accept or change a value', () => {
  it.each([
    ['an unknown ConfChangeType inside ConfChangeV2.changes (type 4 decoded as AddNode)', () => decodeConfChangeV2(fromHex('12 02 08 04'))],
    ['an unknown EntryType in an entry inside a Message (type 3 decoded as Normal)', () => decodeMessage(fromHex('08 03 3a 02 08 03'))],
    ['an unknown MessageType in Message.responses (type 24 decoded as MsgHup)', () => decodeMessage(fromHex('08 13 72 02 08 18'))],
    ['a known field with the wrong wire type (HardState 08 01 12 01 00: vote as bytes)', () => decodeHardState(fromHex('08 01 12 01 00'))],
    ['a bool varint longer than 10 bytes (gogo: integer overflow)', () => decodeMessage(fromHex('08 03 50 80 80 80 80 80 80 80 80 80 80 01'))],
    ['a truncated bool', () => decodeMessage(fromHex('08 03 50 80'))],
    ['a gitaly varint whose 10th byte is above 1 (google.golang.org/protobuf: overflow)', () => decodeLsn(fromHex('08 80 80 80 80 80 80 80 80 80 02'))],
    ['an unknown field holding an 11-byte varint', () => decodeHardState(fromHex('08 01 48 80 80 80 80 80 80 80 80 80 80 01'))],
    ['a field number 0', () => decodeHardState(fromHex('00 01'))],
    ['an unknown group (documented: refused, gogo skips it)', () => decodeHardState(fromHex('0b 0c'))],
    ['wire type 7', () => decodeHardState(fromHex('0f 00'))],
  ])('refuses %s with ERR_CORRUPT', (_name, decode) => {
    expect(decodeCode(decode)).toBe(ErrorCode.Corrupt);
  });

  it('still decodes the same bytes with known values, packed or not', () => {
    expect(decodeConfChangeV2(fromHex('12 04 08 01 10 02')).changes).toEqual([{ type: 1, nodeId: 2 }]);
    expect(decodeMessage(fromHex('08 03 3a 02 08 01')).entries[0]!.type).toBe(1);
    expect(decodeMessage(fromHex('08 03 50 01')).reject).toBe(true);
    expect(decodeHardState(fromHex('08 01 10 02 18 03 48 05'))).toEqual({ term: 1, vote: 2, commit: 3 });
  });

  // gogo: `v |= int(b&0x7F) << shift` for shift 0, 7, …, 63, then `v != 0`; of a 10th byte only
  // bit 63 survives. protobufjs alone counts every bit of the 10 bytes (bit 64 would be true).
  it.each([
    ['50 00', false],
    ['50 01', true],
    ['50 02', true],
    ['50 7f', true],
    ['50 80 00', false], // a padded 0
    ['50 81 00', true],
    ['50 80 80 80 80 10', true], // only bit 32 set
    ['50 80 80 80 80 80 80 80 80 40', true], // only bit 62
    ['50 80 80 80 80 80 80 80 80 80 01', true], // only bit 63
    ['50 80 80 80 80 80 80 80 80 80 02', false], // only bit 64: lost in gogo's 64 bits
    ['50 80 80 80 80 80 80 80 80 80 7e', false], // bits 64..69
    ['50 80 80 80 80 80 80 80 80 80 7f', true], // bit 63 and beyond
    ['50 ff ff ff ff ff ff ff ff 01', true],
  ])('Message.reject %s decodes as gogo does: %s', (hex, want) => {
    expect(decodeMessage(fromHex(`08 03 ${hex}`)).reject).toBe(want);
  });

  it.each([
    ['28 01', true],
    ['28 80 80 80 80 10', true],
    ['28 80 80 80 80 80 80 80 80 80 02', false],
  ])('ConfState.auto_leave %s decodes as gogo does: %s', (hex, want) => {
    expect(decodeConfState(fromHex(hex)).autoLeave).toBe(want);
  });

  it('a raftpb uint64 loses bits above 63 as gogo does; the same varint in gitaly is refused', () => {
    expect(decodeHardState(fromHex('08 80 80 80 80 80 80 80 80 80 02')).term).toBe(0);
    expect(decodeCode(() => decodeLsn(fromHex('08 80 80 80 80 80 80 80 80 80 02')))).toBe(ErrorCode.Corrupt);
    expect(decodeLsn(fromHex('08 80 80 80 80 80 80 80 80 00'))).toBe(0); // a padded 0 with a 10th byte 0: Go accepts it
  });

  it('nesting deeper than 100 levels: a coded error both ways', () => {
    let message = { type: 3, to: 1, from: 2, term: 0, logTerm: 0, index: 0, entries: [], commit: 0, vote: 0, reject: false, rejectHint: 0, responses: [] } as Parameters<typeof encodeMessage>[0];
    for (let level = 0; level < 100; level++) message = { ...message, responses: [message] };
    expect(decodeCode(() => encodeMessage(message))).toBe(ErrorCode.InvalidArgument);
    let bytes = fromHex('08 03');
    for (let level = 0; level < 101; level++) bytes = Uint8Array.from([0x08, 0x03, 0x72, ...varintBytes(bytes.length), ...bytes]);
    expect(decodeCode(() => decodeMessage(bytes))).toBe(ErrorCode.Corrupt);
  });
});

function varintBytes(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  out.push(value);
  return out;
}
