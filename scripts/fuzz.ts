/**
 * Fuzzing (issue priority 4): every decoder in lib/codec.ts and the open() path over mutated
 * inputs — bit flips, byte overwrites, truncations, extensions, splices of two valid encodings,
 * duplicated and deleted chunks, over-long varints. The rules:
 *   - a decoder returns or throws a coded replicalog error (isReplicaLogError), nothing else;
 *   - what a decoder returns re-encodes without throwing and decodes to the same value;
 *   - open() over a tree whose RAFT / MANIFEST files or KV values were mutated opens (and then
 *     every read answers or throws a coded error) or refuses with a coded error; the lock is
 *     released either way (the next open of the pristine copy works);
 *   - nothing hangs: every case is timed, the slowest is reported.
 *
 *   node dist/scripts/fuzz.js --cases 100000 [--seed 1] [--open-cases 2000]
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { ClassicLevel } from 'classic-level';
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
} from '../lib/codec.js';
import { isReplicaLogError } from '../lib/errors.js';
import { writePreRaftWal } from '../lib/fixture.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type ConfState, type Entry, type Message } from '../lib/types.js';
import { observeStore, Random } from './crash-driver.js';

// ---------------------------------------------------------------------------------------------
// Samples of every message type

function number(random: Random): number {
  const roll = random.next();
  if (roll < 0.3) return 0;
  if (roll < 0.6) return random.int(1, 200);
  if (roll < 0.8) return random.int(0, 0xffff_ffff);
  if (roll < 0.9) return Number.MAX_SAFE_INTEGER - random.int(0, 3);
  return random.int(0, 2 ** 40);
}

function maybeBytes(random: Random): Uint8Array | undefined {
  const roll = random.next();
  if (roll < 0.25) return undefined;
  if (roll < 0.35) return new Uint8Array(0);
  return random.bytes(random.int(1, roll < 0.9 ? 24 : 300));
}

function sampleEntry(random: Random): Entry {
  const entry: Entry = { type: random.int(0, 2) as EntryType, term: number(random), index: number(random) };
  const data = maybeBytes(random);
  if (data !== undefined) entry.data = data;
  return entry;
}

function sampleConfState(random: Random): ConfState {
  const ids = () => Array.from({ length: random.int(0, 4) }, () => number(random));
  return { voters: ids(), learners: ids(), votersOutgoing: ids(), learnersNext: ids(), autoLeave: random.chance(0.5) };
}

function sampleMessage(random: Random, depth = 0): Message {
  const message: Message = {
    type: random.int(0, 23),
    to: number(random),
    from: number(random),
    term: number(random),
    logTerm: number(random),
    index: number(random),
    entries: Array.from({ length: random.int(0, 3) }, () => sampleEntry(random)),
    commit: number(random),
    vote: number(random),
    reject: random.chance(0.3),
    rejectHint: number(random),
    responses: depth < 1 && random.chance(0.2) ? [sampleMessage(random, depth + 1)] : [],
  };
  if (random.chance(0.3)) message.snapshot = { metadata: { index: number(random), term: number(random), confState: sampleConfState(random) } };
  const context = maybeBytes(random);
  if (context !== undefined) message.context = context;
  return message;
}

export interface DecoderTarget {
  name: string;
  decode(bytes: Uint8Array): unknown;
  encode(value: unknown): Uint8Array;
  sample(random: Random): Uint8Array;
}

/** Valid MANIFEST bytes harvested from the pre-Raft fixture (realistic gitaly.LogEntry values). */
function harvestManifests(): Uint8Array[] {
  const dir = mkdtempSync(join(tmpdir(), 'replicalog-fuzz-manifests-'));
  try {
    writePreRaftWal({ dir, entries: 24, seed: 5 });
    const wal = join(dir, 'wal');
    return readdirSync(wal).map((name) => new Uint8Array(readFileSync(join(wal, name, 'MANIFEST'))));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let manifests: Uint8Array[] | undefined;

const as = <T>(encode: (value: T) => Uint8Array) => (value: unknown) => encode(value as T);

export function decoderTargets(): DecoderTarget[] {
  manifests ??= harvestManifests();
  const corpus = manifests;
  return [
    { name: 'decodeEntry', decode: decodeEntry, encode: as(encodeEntry), sample: (r) => encodeEntry(sampleEntry(r)) },
    { name: 'decodeHardState', decode: decodeHardState, encode: as(encodeHardState), sample: (r) => encodeHardState({ term: number(r), vote: number(r), commit: number(r) }) },
    { name: 'decodeConfState', decode: decodeConfState, encode: as(encodeConfState), sample: (r) => encodeConfState(sampleConfState(r)) },
    {
      name: 'decodeSnapshot',
      decode: decodeSnapshot,
      encode: as(encodeSnapshot),
      sample: (r) => {
        const data = maybeBytes(r);
        return encodeSnapshot({ metadata: { index: number(r), term: number(r), confState: sampleConfState(r) }, ...(data === undefined ? {} : { data }) });
      },
    },
    {
      name: 'decodeConfChange',
      decode: decodeConfChange,
      encode: as(encodeConfChange),
      sample: (r) => {
        const context = maybeBytes(r);
        return encodeConfChange({ id: number(r), type: r.int(0, 3), nodeId: number(r), ...(context === undefined ? {} : { context }) });
      },
    },
    {
      name: 'decodeConfChangeV2',
      decode: decodeConfChangeV2,
      encode: as(encodeConfChangeV2),
      sample: (r) => {
        const context = maybeBytes(r);
        return encodeConfChangeV2({
          transition: r.int(0, 2) as 0 | 1 | 2,
          changes: Array.from({ length: r.int(0, 4) }, () => ({ type: r.int(0, 3), nodeId: number(r) })),
          ...(context === undefined ? {} : { context }),
        });
      },
    },
    { name: 'decodeMessage', decode: decodeMessage, encode: as(encodeMessage), sample: (r) => encodeMessage(sampleMessage(r)) },
    { name: 'decodeLogEntry', decode: decodeLogEntry, encode: as(encodeLogEntry), sample: (r) => r.pick(corpus) },
    { name: 'decodeLsn', decode: decodeLsn, encode: as(encodeLsn), sample: (r) => encodeLsn(number(r)) },
    {
      name: 'decodeRaftEntry',
      decode: decodeRaftEntry,
      encode: as(encodeRaftEntry),
      sample: (r) => encodeRaftEntry({ id: number(r), data: { localPath: r.bytes(r.int(0, 20)), packed: r.bytes(r.int(0, 20)) } }),
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Mutations

export function mutate(random: Random, input: Uint8Array, other: Uint8Array): Uint8Array {
  let bytes: Uint8Array = new Uint8Array(input);
  const rounds = random.int(1, 3);
  for (let round = 0; round < rounds; round++) {
    const at = bytes.length === 0 ? 0 : random.int(0, bytes.length - 1);
    switch (random.int(0, 8)) {
      case 0: // bit flips
        if (bytes.length > 0) for (let k = random.int(1, 4); k > 0; k--) bytes[random.int(0, bytes.length - 1)]! ^= 1 << random.int(0, 7);
        break;
      case 1: // byte overwrite with an interesting value
        if (bytes.length > 0) bytes[at] = random.pick([0x00, 0xff, 0x7f, 0x80, 0x08, 0x0a, 0x12, 0x22, random.int(0, 255)]);
        break;
      case 2: // truncation
        bytes = bytes.subarray(0, random.int(0, bytes.length));
        break;
      case 3: // extension with random bytes
        bytes = concat(bytes, random.bytes(random.int(1, 16)));
        break;
      case 4: // splice: a prefix of this one and a suffix of another valid encoding
        bytes = concat(bytes.subarray(0, random.int(0, bytes.length)), other.subarray(random.int(0, other.length)));
        break;
      case 5: // duplicate a chunk
        if (bytes.length > 0) {
          const end = random.int(at, bytes.length);
          bytes = concat(bytes.subarray(0, end), bytes.subarray(at, end), bytes.subarray(end));
        }
        break;
      case 6: // delete a chunk
        bytes = concat(bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + random.int(1, 8))));
        break;
      case 7: // an over-long or maximal varint
        bytes = concat(bytes.subarray(0, at), random.pick([Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x0f)]), bytes.subarray(at));
        break;
      case 8: // a huge declared length
        bytes = concat(bytes.subarray(0, at), Uint8Array.of(random.pick([0x0a, 0x12, 0x1a, 0x22, 0x2a]), 0xff, 0xff, 0xff, 0xff, 0x07), bytes.subarray(at));
        break;
    }
  }
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoder fuzzing

export interface FuzzStats {
  cases: number;
  decoded: number;
  /** rejections per error code */
  codes: Record<string, number>;
  /** every rule broken: uncoded errors, re-encode failures, round-trip mismatches, slow cases */
  failures: string[];
  slowestMs: number;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const SLOW_MS = 250;

export function fuzzDecoders(seed: number, cases: number): FuzzStats {
  const random = new Random(seed);
  const targets = decoderTargets();
  const stats: FuzzStats = { cases: 0, decoded: 0, codes: {}, failures: [], slowestMs: 0 };
  for (let n = 0; n < cases; n++) {
    const target = targets[n % targets.length]!;
    const input = mutate(random, target.sample(random), target.sample(random));
    stats.cases++;
    const started = performance.now();
    let value: unknown;
    try {
      value = target.decode(input);
    } catch (error) {
      if (isReplicaLogError(error)) stats.codes[error.code] = (stats.codes[error.code] ?? 0) + 1;
      else stats.failures.push(`seed ${seed} case ${n}: ${target.name}(${hex(input)}) threw an uncoded ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
      continue;
    } finally {
      const elapsed = performance.now() - started;
      stats.slowestMs = Math.max(stats.slowestMs, elapsed);
      if (elapsed > SLOW_MS) stats.failures.push(`seed ${seed} case ${n}: ${target.name}(${hex(input).slice(0, 200)}) took ${elapsed.toFixed(0)} ms`);
    }
    stats.decoded++;
    try {
      const again = target.decode(target.encode(value));
      if (!isDeepStrictEqual(normalise(again), normalise(value))) {
        stats.failures.push(`seed ${seed} case ${n}: ${target.name}(${hex(input)}) does not survive decode→encode→decode`);
      }
    } catch (error) {
      stats.failures.push(`seed ${seed} case ${n}: ${target.name}(${hex(input)}) decoded, but re-encoding it threw ${(error as { code?: string }).code ?? ''} ${(error as Error).message}`);
    }
    if (stats.failures.length > 20) break;
  }
  return stats;
}

/** Plain data for comparisons (Uint8Array vs Buffer, class instances). */
function normalise(value: unknown): unknown {
  if (value instanceof Uint8Array) return `bytes:${hex(value)}`;
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(value)) if (field !== undefined) out[key] = normalise(field);
    return out;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// open() fuzzing

export interface OpenFuzzStats {
  cases: number;
  opened: number;
  refused: Record<string, number>;
  /** the first case refused with each code other than ERR_CORRUPT (what was mutated, the message) */
  examples: Record<string, string>;
  failures: string[];
  slowestMs: number;
}

const KV_NAMES = ['raft/hard_state', 'raft/conf_state', 'raft/snapshot', 'raft/snapshot_data', 'raft/log_anchor', 'raft/intent', 'raft/log_checkpoint'];

/**
 * A pristine bootstrapped store to copy per case: entries 1..6, commit 3, compacted to 1, a
 * snapshot with data, and a checkpoint in KV (checkpointInterval 1).
 */
export async function pristineStore(dir: string): Promise<void> {
  const store = await ReplicaLogStore.open({ dir, checkpointInterval: 1 });
  const entries: Entry[] = Array.from({ length: 6 }, (_, k) => ({ type: k === 2 ? EntryType.ConfChange : EntryType.Normal, term: 1 + (k >> 1), index: k + 1, data: Uint8Array.of(k, k, k) }));
  await store.append(entries);
  await store.setHardState({ term: 3, vote: 2, commit: 3 });
  await store.setConfState({ voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false });
  await store.createSnapshot(2, undefined, Uint8Array.of(7, 7));
  await store.compact(1);
  await store.close();
}

export async function fuzzOpen(seed: number, cases: number, scratch: string): Promise<OpenFuzzStats> {
  const random = new Random(seed);
  const pristine = join(scratch, 'pristine');
  await pristineStore(pristine);
  const stats: OpenFuzzStats = { cases: 0, opened: 0, refused: {}, examples: {}, failures: [], slowestMs: 0 };
  const entryNames = readdirSync(join(pristine, 'wal'));
  const kvValues = new Map<string, Uint8Array>();
  {
    const db = new ClassicLevel<Uint8Array, Uint8Array>(join(pristine, 'kv'), { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    for (const name of KV_NAMES) {
      const value = await db.get(new TextEncoder().encode(name));
      if (value !== undefined) kvValues.set(name, value);
    }
    await db.close();
  }
  const raftSamples = entryNames.map((name) => new Uint8Array(readFileSync(join(pristine, 'wal', name, 'RAFT'))));
  for (let n = 0; n < cases; n++) {
    const dir = join(scratch, `case-${n}`);
    cpSync(pristine, dir, { recursive: true });
    let what: string;
    const where = random.int(0, 2);
    if (where === 0 || where === 1) {
      const name = random.pick(entryNames);
      const file = where === 0 ? 'RAFT' : 'MANIFEST';
      const path = join(dir, 'wal', name, file);
      const original = new Uint8Array(readFileSync(path));
      const base = original.length > 0 ? original : random.pick(raftSamples);
      const mutated = mutate(random, base, random.pick(raftSamples));
      rmSync(path, { force: true });
      writeFileSync(path, mutated, { mode: 0o400 });
      what = `${file} of ${name} = ${hex(mutated)}`;
    } else {
      const name = random.pick(KV_NAMES);
      const original = kvValues.get(name) ?? random.bytes(random.int(1, 16));
      const mutated = mutate(random, original, random.pick([...kvValues.values()]));
      const db = new ClassicLevel<Uint8Array, Uint8Array>(join(dir, 'kv'), { keyEncoding: 'view', valueEncoding: 'view' });
      await db.open();
      await db.put(new TextEncoder().encode(name), mutated);
      await db.close();
      what = `KV ${name} = ${hex(mutated)}`;
    }
    stats.cases++;
    const started = performance.now();
    try {
      const store = await ReplicaLogStore.open({ dir });
      stats.opened++;
      try {
        observeStore(store); // every read answers or throws a coded error (observeStore records codes)
        for (let index = store.firstIndex(); index <= store.lastIndex(); index++) {
          try {
            store.entries(index, index + 1);
          } catch (error) {
            if (!isReplicaLogError(error)) throw error;
          }
        }
      } finally {
        await store.close();
      }
    } catch (error) {
      if (isReplicaLogError(error)) {
        stats.refused[error.code] = (stats.refused[error.code] ?? 0) + 1;
        if (error.code !== 'ERR_CORRUPT') stats.examples[error.code] ??= `${what}: ${error.message}`;
      } else stats.failures.push(`seed ${seed} case ${n} (${what}): uncoded ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
    }
    const elapsed = performance.now() - started;
    stats.slowestMs = Math.max(stats.slowestMs, elapsed);
    if (elapsed > 5_000) stats.failures.push(`seed ${seed} case ${n} (${what}): open took ${elapsed.toFixed(0)} ms`);
    // The lock was released: the directory opens again (or is refused again) without ERR_LOCKED.
    try {
      const again = await ReplicaLogStore.open({ dir });
      await again.close();
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_LOCKED') stats.failures.push(`seed ${seed} case ${n} (${what}): the lock was not released`);
    }
    rmSync(dir, { recursive: true, force: true });
    if (stats.failures.length > 20) break;
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------
// CLI

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const option = (name: string, fallback: number) => {
    const at = args.indexOf(`--${name}`);
    return at >= 0 ? Number(args[at + 1]) : fallback;
  };
  if (args.includes('--help')) {
    process.stdout.write('usage: node dist/scripts/fuzz.js [--cases 100000] [--seed 1] [--open-cases 2000]\n');
    return;
  }
  const cases = option('cases', 100_000);
  const seed = option('seed', 1);
  const openCases = option('open-cases', Math.max(100, Math.floor(cases / 50)));
  const started = performance.now();
  const decoders = fuzzDecoders(seed, cases);
  process.stdout.write(`decoders: ${decoders.cases} cases, ${decoders.decoded} decoded, refused ${JSON.stringify(decoders.codes)}, slowest ${decoders.slowestMs.toFixed(1)} ms, ${decoders.failures.length} failures\n`);
  const scratch = mkdtempSync(join(tmpdir(), 'replicalog-fuzz-open-'));
  let open: OpenFuzzStats;
  try {
    open = await fuzzOpen(seed, openCases, scratch);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  process.stdout.write(`open(): ${open.cases} cases, ${open.opened} opened, refused ${JSON.stringify(open.refused)}, slowest ${open.slowestMs.toFixed(1)} ms, ${open.failures.length} failures\n`);
  for (const [code, example] of Object.entries(open.examples)) process.stdout.write(`  first ${code}: ${example}\n`);
  for (const failure of [...decoders.failures, ...open.failures]) process.stdout.write(`FAIL ${failure}\n`);
  process.stdout.write(`${decoders.cases + open.cases} cases in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  if (decoders.failures.length + open.failures.length > 0) process.exitCode = 1;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invokedDirectly) {
  main().catch((error: unknown) => {
    process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
    process.exitCode = 2;
  });
}
