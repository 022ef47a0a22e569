import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeLogEntry, encodeLogEntry, encodeRaftEntry, type LogEntryOperation } from '../../lib/codec.js';
import { writePreRaftWal } from '../../lib/fixture.js';
import { bootstrapSeedStore } from '../../lib/node/bootstrap.js';
import {
  KvStateMachine,
  MAX_BATCH_ENTRY_CHARACTERS,
  MAX_COMMANDS_PER_ENTRY,
  commandEntries,
  decodeCommand,
  decodeCommands,
  deriveStateFromPreRaftWal,
  encodeCommand,
  encodeCommands,
  type KvCommand,
  recoverStateFromStorage,
  sortPairsInSlices,
} from '../../lib/node/state-machine.js';
import { seededRandom } from '../../lib/seeded-random.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType, type Entry } from '../../lib/types.js';
import { formatLsn } from '../../lib/wal/layout.js';

const root = mkdtempSync(join(tmpdir(), 'replicalog-sm-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const utf8 = (text: string) => new TextEncoder().encode(text);
const put = (index: number, key: string, value: string): Entry => ({
  type: EntryType.Normal,
  term: 1,
  index,
  data: encodeCommand({ op: 'put', key, value, requestId: `r${index}` }),
});

describe('commands', () => {
  it('round-trips and refuses what is not a command', () => {
    const command = { op: 'put', key: 'k', value: 'v ✓', requestId: 'id-1' } as const;
    expect(decodeCommand(encodeCommand(command))).toEqual(command);
    expect(decodeCommand(encodeCommand({ op: 'delete', key: 'k', requestId: 'x' }))).toEqual({ op: 'delete', key: 'k', requestId: 'x' });
    expect(decodeCommand(undefined)).toBeUndefined();
    expect(decodeCommand(new Uint8Array())).toBeUndefined();
    expect(decodeCommand(utf8('{not json'))).toBeUndefined();
    expect(decodeCommand(utf8('{"op":"put","key":"k"}'))).toBeUndefined();
    // A migrated entry's data is a gitaly.RaftEntry protobuf: not a command.
    expect(decodeCommand(encodeRaftEntry({ id: 0, data: { localPath: utf8('wal/0000000000001'), packed: new Uint8Array() } }))).toBeUndefined();
  });

  it('a batch of commands is one entry: round-trips in order, and one bad element makes it no command', () => {
    const commands: KvCommand[] = [
      { op: 'put', key: 'a', value: '1', requestId: 'r1' },
      { op: 'delete', key: 'a', requestId: 'r2' },
      { op: 'put', key: 'b', value: 'v ✓ "quoted"', requestId: 'r3' },
    ];
    expect(decodeCommands(encodeCommands(commands))).toEqual(commands);
    // One command is proposed alone, in the single form (the bytes a log written before had).
    expect(encodeCommands(commands.slice(0, 1))).toEqual(encodeCommand(commands[0]!));
    expect(decodeCommands(encodeCommand(commands[2]!))).toEqual([commands[2]]);
    // decodeCommand only knows single commands.
    expect(decodeCommand(encodeCommands(commands))).toBeUndefined();
    expect(() => encodeCommands([])).toThrow(RangeError);
    const batch = (elements: unknown) => utf8(JSON.stringify({ op: 'batch', commands: elements }));
    const notCommands: [string, Uint8Array | undefined][] = [
      ['absent data', undefined],
      ['an element that is not a command', batch([commands[0], { op: 'put', key: 'x' }])],
      ['an element that is an array', batch([commands[0], [commands[1]]])],
      ['an element that is null', batch([commands[0], null])],
      ['a nested batch', batch([commands[0], { op: 'batch', commands: [commands[1], commands[2]] }])],
      ['a batch of one', batch([commands[0]])],
      ['an empty batch', batch([])],
      ['commands that are not an array', batch({ 0: commands[0], 1: commands[1] })],
    ];
    for (const [name, data] of notCommands) expect(decodeCommands(data), name).toBeUndefined();
  });

  it.each([
    { name: 'one command: alone, in the single form', commands: 1, valueCharacters: 10, sizes: [1] },
    { name: 'a few small commands: one entry', commands: 64, valueCharacters: 1024, sizes: [64] },
    { name: 'more than MAX_COMMANDS_PER_ENTRY', commands: 2 * MAX_COMMANDS_PER_ENTRY + 3, valueCharacters: 10, sizes: [MAX_COMMANDS_PER_ENTRY, MAX_COMMANDS_PER_ENTRY, 3] },
    { name: 'large values: split by size', commands: 10, valueCharacters: MAX_BATCH_ENTRY_CHARACTERS / 4, sizes: [3, 3, 3, 1] },
    { name: 'a value above the size limit: alone', commands: 3, valueCharacters: MAX_BATCH_ENTRY_CHARACTERS + 1, sizes: [1, 1, 1] },
  ])('commandEntries: $name', ({ commands: count, valueCharacters, sizes }) => {
    const commands: KvCommand[] = Array.from({ length: count }, (_, i) => ({ op: 'put', key: `k${i}`, value: 'v'.repeat(valueCharacters), requestId: `r${i}` }));
    const entries = commandEntries(commands);
    const decoded = entries.map((data) => decodeCommands(data)!);
    expect(decoded.map((carried) => carried.length)).toEqual(sizes);
    // Every command once, in order.
    expect(decoded.flat()).toEqual(commands);
    // A lone command is in the single form.
    for (const [position, carried] of decoded.entries()) if (carried.length === 1) expect(entries[position]).toEqual(encodeCommand(carried[0]!));
  });

  it('applies a batch in order at its one index, to the same state and digest as one command per entry', () => {
    const commands: KvCommand[] = [
      { op: 'put', key: 'a', value: '1', requestId: 'r1' },
      { op: 'put', key: 'b', value: '2', requestId: 'r2' },
      { op: 'delete', key: 'a', requestId: 'r3' },
      { op: 'put', key: 'b', value: '3', requestId: 'r4' },
    ];
    const batched = new KvStateMachine();
    const result = batched.apply({ type: EntryType.Normal, term: 1, index: 1, data: encodeCommands(commands) });
    expect(result.commands?.map((command) => command.requestId)).toEqual(['r1', 'r2', 'r3', 'r4']);
    expect(batched.applied).toBe(1);
    expect(batched.entries()).toEqual([['b', '3']]);
    const single = new KvStateMachine();
    commands.forEach((command, position) => single.apply({ type: EntryType.Normal, term: 1, index: position + 1, data: encodeCommand(command) }));
    expect(batched.digest()).toEqual(single.digest());
    // A batch with a bad element changes nothing but the applied index.
    const bad = batched.apply({ type: EntryType.Normal, term: 1, index: 2, data: utf8(JSON.stringify({ op: 'batch', commands: [commands[0], { op: 'put' }] })) });
    expect(bad.commands).toBeUndefined();
    expect(batched.entries()).toEqual([['b', '3']]);
    expect(batched.applied).toBe(2);
  });

  it('applies puts and deletes in order; no-ops, conf changes and migrated entries only move applied', () => {
    const machine = new KvStateMachine();
    const results = [
      machine.apply(put(1, 'a', '1')),
      machine.apply({ type: EntryType.Normal, term: 2, index: 2 }), // a new leader's empty entry
      machine.apply(put(3, 'b', '2')),
      machine.apply({ type: EntryType.Normal, term: 2, index: 4, data: encodeCommand({ op: 'delete', key: 'a', requestId: 'd' }) }),
      machine.apply({ type: EntryType.ConfChange, term: 2, index: 5, data: new Uint8Array([8, 0]) }),
    ];
    expect(results.map((result) => result.commands?.map((command) => command.requestId))).toEqual([['r1'], undefined, ['r3'], ['d'], undefined]);
    expect(machine.entries()).toEqual([['b', '2']]);
    expect(machine.applied).toBe(5);
    // An entry already applied is skipped; a gap is refused.
    expect(machine.apply(put(3, 'b', 'changed')).commands).toBeUndefined();
    expect(machine.get('b')).toBe('2');
    expect(() => machine.apply(put(9, 'c', '3'))).toThrow(/gap/);
  });

  it('snapshots and restores the whole map and the applied index', () => {
    const machine = KvStateMachine.from([['z', '26'], ['a', '1']], 7);
    const data = machine.snapshot();
    const restored = KvStateMachine.fromSnapshot(data, 7);
    expect(restored.entries()).toEqual([['a', '1'], ['z', '26']]);
    expect(restored.applied).toBe(7);
    expect(restored.digest()).toBe(machine.digest());
    // Same state, same bytes, whatever the insertion order.
    expect(KvStateMachine.from([['a', '1'], ['z', '26']], 7).snapshot()).toEqual(data);
    expect(KvStateMachine.fromSnapshot(undefined, 3).size).toBe(0);
    expect(() => KvStateMachine.fromSnapshot(utf8('{"format":"other"}'), 1)).toThrow(/not a replicalog-kv/);
  });

  it('writes the binary format byte for byte: magic, then per pair varint key length, key, varint value length, value (UTF-8)', () => {
    const long = 'v'.repeat(200); // a two-byte varint length
    const machine = KvStateMachine.from([['é', 'ü€'], ['a', long], ['😀', '']], 1);
    const expected = Buffer.concat([
      Buffer.from([0x52, 0x4c, 0x4b, 0x56, 0x02]),
      Buffer.from([1]), Buffer.from('a'), Buffer.from([0xc8, 0x01]), Buffer.from(long),
      Buffer.from([2]), Buffer.from('é'), Buffer.from([5]), Buffer.from('ü€'),
      Buffer.from([4]), Buffer.from('😀'), Buffer.from([0]),
    ]);
    expect(Buffer.from(machine.snapshot()).equals(expected)).toBe(true);
  });

  it.each([
    { sliceBytes: 1, slicePairs: 1 },
    { sliceBytes: 7, slicePairs: 3 },
    { sliceBytes: 300, slicePairs: 64 },
    { sliceBytes: 1 << 20, slicePairs: 16_384 },
  ])('snapshotInSlices (slices of $sliceBytes bytes, sorted $slicePairs pairs at a time) gives the same bytes as snapshot(), of the state when it was called', async ({ sliceBytes, slicePairs }) => {
    const pairs: [string, string][] = Array.from({ length: 500 }, (_, k) => [`key-${k}${k % 7 === 0 ? '-ñ' : ''}`, k % 5 === 0 ? '值'.repeat(k) : 'x'.repeat(k)]);
    const machine = KvStateMachine.from(pairs, 9);
    const whole = machine.snapshot();
    const sliced = machine.snapshotInSlices(sliceBytes, slicePairs);
    machine.put('later', 'not in the snapshot');
    expect(Buffer.from(await sliced).equals(Buffer.from(whole))).toBe(true);
    expect(KvStateMachine.fromSnapshot(await sliced, 9).entries()).toEqual([...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
});

describe('sortPairsInSlices', () => {
  const random = seededRandom(18);
  const pick = (below: number) => Math.floor(random() * below);
  const keys = Array.from({ length: 1_000 }, (_, k) => `${['a', 'ab', 'b', 'é', '😀', 'z'][pick(6)]}${pick(100_000)}-${k}`);
  it.each([1, 2, 3, 5, 64, 999, 1_000, 5_000])('runs of %i: the order of a whole sort, pausing between slices', async (slicePairs) => {
    const pairs = keys.map((key): [string, string] => [key, `v-${key}`]);
    let pauses = 0;
    const sorted = await sortPairsInSlices([...pairs], async () => {
      pauses++;
    }, slicePairs);
    expect(sorted).toEqual([...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    // At least one pause per slice of work beyond the first.
    expect(pauses).toBeGreaterThanOrEqual(Math.ceil(pairs.length / slicePairs) - 1);
  });
});

describe('deriving the initial state from a pre-Raft WAL', () => {
  it('applies set_key / delete_key of every MANIFEST in LSN order', () => {
    const dir = join(root, 'hand-made');
    const operations: LogEntryOperation[][] = [
      [{ setKey: { key: utf8('k1'), value: utf8('first') } }],
      [], // an entry without key operations
      [{ setKey: { key: utf8('k2'), value: utf8('two') } }, { setKey: { key: utf8('k1'), value: utf8('second') } }],
      [{ deleteKey: { key: utf8('k2') } }, { setKey: { key: utf8('k3'), value: utf8('three') } }],
    ];
    for (const [offset, ops] of operations.entries()) {
      const entryDir = join(dir, 'wal', formatLsn(offset + 1));
      mkdirSync(entryDir, { recursive: true });
      writeFileSync(join(entryDir, 'MANIFEST'), encodeLogEntry({ relativePath: 'r.git', referenceTransactions: [], operations: ops }));
    }
    const state = deriveStateFromPreRaftWal(dir);
    expect(state.entries()).toEqual([['k1', 'second'], ['k3', 'three']]);
    expect(state.applied).toBe(4);
    expect(deriveStateFromPreRaftWal(dir, 2).entries()).toEqual([['k1', 'first']]);
  });

  it('derives the keys of a fixture, and a seeded store recovers the same state', async () => {
    const dir = join(root, 'fixture');
    const summary = writePreRaftWal({ dir, entries: 200, seed: 7 });
    const state = deriveStateFromPreRaftWal(dir);
    expect(state.applied).toBe(summary.lastIndex);
    expect(state.size).toBeGreaterThan(0);
    for (const [key] of state.entries()) expect(key.startsWith('kv/@hashed/')).toBe(true);

    const store = await ReplicaLogStore.open({ dir });
    try {
      await store.backfill();
      const result = await bootstrapSeedStore(store, [1, 2, 3], state, 20);
      expect(result).toEqual({ snapshotIndex: 200, snapshotTerm: 0, firstIndex: 181, lastIndex: 200 });
      expect(store.status).toBe('bootstrapped');
      expect(store.initialState().confState.voters).toEqual([1, 2, 3]);
      expect(recoverStateFromStorage(store).digest()).toBe(state.digest());
    } finally {
      await store.close();
    }
    // MANIFESTs are still readable by the decoder the derivation uses.
    expect(() => decodeLogEntry(new Uint8Array())).not.toThrow();
  });
});

describe('binary snapshots and the incremental digest (issue 14 item 10)', () => {
  it('88 values of 1 MiB of \\x01 snapshot and restore (JSON would escape them past V8\'s string limit)', () => {
    const machine = new KvStateMachine();
    const value = '\x01'.repeat(1024 * 1024);
    for (let i = 0; i < 88; i++) machine.put(`key-${i}`, value);
    const data = machine.snapshot();
    expect(data.length).toBeLessThan(89 * 1024 * 1024);
    const restored = KvStateMachine.fromSnapshot(data, 88);
    expect(restored.size).toBe(88);
    expect(restored.get('key-87')).toBe(value);
    expect(restored.digest()).toBe(machine.digest());
  });

  it('keeps the digest equal to one computed from scratch through puts, overwrites and deletes', () => {
    const machine = new KvStateMachine();
    machine.put('a', '1');
    machine.put('b', '2');
    machine.put('a', '3');
    machine.remove('b');
    machine.remove('missing');
    expect(machine.digest()).toBe(KvStateMachine.from([['a', '3']], 0).digest());
    expect(machine.digest()).not.toBe(KvStateMachine.from([['a', '1']], 0).digest());
    // The pair boundary is part of the hash: ("ab","c") and ("a","bc") differ.
    expect(KvStateMachine.from([['ab', 'c']], 0).digest()).not.toBe(KvStateMachine.from([['a', 'bc']], 0).digest());
    expect(new KvStateMachine().digest()).toBe(`${'0'.repeat(32)}-0`);
  });

  it.each([
    ['bad magic', Buffer.from('RLKV\x09')],
    ['a truncated key', Buffer.concat([Buffer.from('RLKV\x02'), Buffer.from([5]), Buffer.from('ab')])],
    ['a missing value', Buffer.concat([Buffer.from('RLKV\x02'), Buffer.from([1]), Buffer.from('a')])],
    ['invalid UTF-8', Buffer.concat([Buffer.from('RLKV\x02'), Buffer.from([1, 0xff, 0])])],
    ['a key twice', Buffer.concat([Buffer.from('RLKV\x02'), Buffer.from([1, 0x61, 0, 1, 0x61, 0])])],
    ['an over-long length', Buffer.concat([Buffer.from('RLKV\x02'), Buffer.alloc(9, 0xff)])],
    ['a value that is not UTF-8', Buffer.concat([Buffer.from('RLKV\x02'), Buffer.from([1, 0x61, 2, 0xc3, 0x28])])],
    ['a truncated value', Buffer.concat([Buffer.from('RLKV\x02'), Buffer.from([1, 0x61, 5, 0x62])])],
  ])('refuses snapshot data with %s, naming the index, and leaves the state as it was; checkSnapshot refuses it alike', (_name, data) => {
    const machine = KvStateMachine.from([['kept', 'yes']], 7);
    let restoreError: Error | undefined;
    try {
      machine.restore(data, 42);
    } catch (error) {
      restoreError = error as Error;
    }
    expect(restoreError?.message).toMatch(/snapshot data at index 42/);
    expect(machine.get('kept')).toBe('yes');
    expect(machine.applied).toBe(7);
    expect(() => KvStateMachine.checkSnapshot(data, 42)).toThrow(restoreError!.message);
  });

  it('checkSnapshot accepts what restore accepts', () => {
    for (const data of [undefined, new Uint8Array(0), KvStateMachine.from([['a', 'é'], ['b', '']], 3).snapshot()]) {
      expect(() => KvStateMachine.checkSnapshot(data, 3)).not.toThrow();
      expect(() => KvStateMachine.fromSnapshot(data, 3)).not.toThrow();
    }
  });

  it('still restores the older JSON format', () => {
    const legacy = new TextEncoder().encode(JSON.stringify({ format: 'replicalog-kv/1', applied: 3, entries: [['k', 'v']] }));
    expect(KvStateMachine.fromSnapshot(legacy, 3).get('k')).toBe('v');
  });
});
