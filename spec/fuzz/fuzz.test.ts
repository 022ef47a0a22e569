/**
 * Fuzzing in CI (issue priority 4): a few thousand mutated inputs through every decoder and a
 * few hundred mutated trees through open(); see scripts/fuzz.ts for the rules and for the long
 * run (npm run fuzz -- --cases 100000).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeEntry } from '../../lib/codec.js';
import { isReplicaLogError } from '../../lib/errors.js';
import { Random } from '../../scripts/crash-driver.js';
import { decoderTargets, fuzzDecoders, fuzzOpen, mutate } from '../../scripts/fuzz.js';

const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

describe('decoders over mutated bytes', () => {
  it.each([1, 2, 3])('seed %i: 2000 cases, only coded errors, every decoded value round-trips', (seed) => {
    const stats = fuzzDecoders(seed, 2000);
    expect(stats.failures).toEqual([]);
    expect(stats.cases).toBe(2000);
    // Both outcomes occur: the mutations reach the error paths and still produce decodable inputs.
    expect(stats.decoded).toBeGreaterThan(100);
    expect(stats.cases - stats.decoded).toBeGreaterThan(100);
    expect(Object.keys(stats.codes).every((code) => code.startsWith('ERR_'))).toBe(true);
  });

  it('every decoder is covered and accepts its own samples unmutated', () => {
    const random = new Random(9);
    const targets = decoderTargets();
    expect(targets.map((target) => target.name).sort()).toEqual(
      ['decodeConfChange', 'decodeConfChangeV2', 'decodeConfState', 'decodeEntry', 'decodeHardState', 'decodeLogEntry', 'decodeLsn', 'decodeMessage', 'decodeRaftEntry', 'decodeSnapshot'],
    );
    for (const target of targets) for (let k = 0; k < 20; k++) expect(() => target.decode(target.sample(random))).not.toThrow();
  });

  it('the mutator is deterministic per seed and changes its input', () => {
    const input = Uint8Array.of(8, 0, 16, 1, 24, 1, 34, 3, 1, 2, 3);
    const run = (seed: number) => {
      const random = new Random(seed);
      return Array.from({ length: 50 }, () => Buffer.from(mutate(random, input, input)).toString('hex'));
    };
    expect(run(4)).toEqual(run(4));
    expect(run(4).filter((hex) => hex !== Buffer.from(input).toString('hex')).length).toBeGreaterThan(40);
  });

  const known: { name: string; bytes: number[] }[] = [
    { name: 'empty input is the zero entry, not an error', bytes: [] },
    { name: 'a 10-byte varint above 2^64', bytes: [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f] },
    { name: 'a length far beyond the input', bytes: [0x22, 0xff, 0xff, 0xff, 0xff, 0x07] },
    { name: 'wire type 7 (invalid)', bytes: [0x0f] },
    { name: 'a group start never ended', bytes: [0x0b] },
  ];
  it.each(known)('decodeEntry: $name → returns or throws a coded error', ({ bytes }) => {
    try {
      decodeEntry(Uint8Array.from(bytes));
    } catch (error) {
      expect(isReplicaLogError(error)).toBe(true);
    }
  });
});

describe('open() over mutated RAFT, MANIFEST and KV values', () => {
  it('300 cases: opens (every read coded) or refuses with a coded error, and releases the lock', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'replicalog-fuzz-'));
    scratch.push(dir);
    const stats = await fuzzOpen(5, 300, dir);
    expect(stats.failures).toEqual([]);
    expect(stats.cases).toBe(300);
    expect(stats.opened).toBeGreaterThan(10);
    expect(stats.refused.ERR_CORRUPT ?? 0).toBeGreaterThan(10);
  }, 60_000);
});
