/**
 * Concurrency (issue priority 5):
 *   - writes issued without awaiting the previous one run in call order: a seeded sequence is
 *     fired all at once and every outcome (resolved, or the exact error code) and the final
 *     state equal the same sequence run one by one on MemoryStorage;
 *   - synchronous reads taken on every event-loop turn while those writes are in flight see
 *     exactly one of the states between two writes — never a torn one — and never go back;
 *     with the entry cache off, so truncations and compactions are read from disk mid-rename;
 *   - a second process opening the directory gets ERR_LOCKED (both ways round), and a
 *     SIGKILLed holder's lock does not block the next open.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { MemoryStorage } from '../../lib/memory-storage.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { applyOp, nextOp, observeStore, Random, type Observation, type Op } from '../../scripts/crash-driver.js';
import { checkCrashedDirectory, killAllChildren, replay, runChild } from '../../scripts/crash.js';
import { buildDriver, type BuiltDriver } from '../crash/build-driver.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'replicalog-concurrency-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  killAllChildren();
  for (const dir of dirs.splice(0)) {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.adopt`, { recursive: true, force: true }); // the driver's insertLogEntry staging
  }
});

/** A seeded sequence planned on a model, with each op's outcome and the state after it. */
async function plan(seed: number, length: number): Promise<{ ops: Op[]; codes: string[]; states: Observation[] }> {
  const random = new Random(seed);
  const model = new MemoryStorage();
  const ops: Op[] = [];
  const codes: string[] = [];
  const states: Observation[] = [observeStore(model)];
  for (let k = 0; k < length; k++) {
    const op = nextOp(random, model);
    ops.push(op);
    codes.push(await applyOp(model, op));
    states.push(observeStore(model));
  }
  return { ops, codes, states };
}

describe('writes not awaited one by one', () => {
  it.each([1, 2, 3, 4, 5, 6])('seed %i: 60 writes fired at once end exactly as one by one on MemoryStorage; every read in between is one of the states between two writes', async (seed) => {
    const { ops, codes, states } = await plan(seed, 60);
    const store = await ReplicaLogStore.open({ dir: tempDir(), cacheMaxEntries: 0 });
    try {
      let done = false;
      const seen: number[] = [];
      let torn: string | undefined;
      // A reader on every event-loop turn (setImmediate runs between I/O completions).
      const poll = () => {
        if (done) return;
        const got = observeStore(store);
        const position = states.findIndex((state, at) => at >= (seen[seen.length - 1] ?? 0) && isDeepStrictEqual(state, got));
        if (position < 0) torn ??= `read ${seen.length}: ${JSON.stringify(got).slice(0, 400)}`;
        else seen.push(position);
        setImmediate(poll);
      };
      setImmediate(poll);
      const outcomes = await Promise.all(ops.map((op) => applyOp(store, op)));
      done = true;
      expect(outcomes).toEqual(codes);
      expect(observeStore(store)).toEqual(states[states.length - 1]);
      expect(torn).toBeUndefined();
      // The reads really interleaved with the writes: several distinct intermediate states.
      expect(new Set(seen).size).toBeGreaterThan(3);
    } finally {
      await store.close();
    }
  });
});

describe('two processes, one directory', () => {
  let built: BuiltDriver;
  beforeAll(() => {
    built = buildDriver();
  });
  afterAll(() => built?.remove());

  it('a store open here makes the driver process fail with ERR_LOCKED', async () => {
    const dir = tempDir();
    const store = await ReplicaLogStore.open({ dir });
    try {
      const run = await runChild(built.driver, { dir, seed: 1, ops: 3, mode: 'ops' });
      expect(run.exitCode).toBe(3);
      expect(run.lines.find((line) => line.t === 'error')?.code).toBe(ErrorCode.Locked);
    } finally {
      await store.close();
    }
  });

  it('while the driver process holds the store, open here gets ERR_LOCKED; after SIGKILL the next open works and holds every acknowledged write', async () => {
    const dir = tempDir();
    let locked: Promise<string | undefined> | undefined;
    // Once the child reports "ready" it holds the lock: an open here must be refused.
    const child = runChild(built.driver, { dir, seed: 3, ops: 400, mode: 'ops' }, 150, 20_000, () => {
      locked = ReplicaLogStore.open({ dir }).then(
        async (store) => {
          await store.close();
          return 'opened';
        },
        (error: unknown) => (error as { code?: string }).code,
      );
    });
    const run = await child;
    const code = await locked;
    expect(code).toBe(ErrorCode.Locked);
    expect(run.signal).toBe('SIGKILL');
    const { variants, acknowledged } = await replay(observeStore(new MemoryStorage()), run.lines);
    expect(acknowledged).toBeGreaterThan(0);
    const result = await checkCrashedDirectory(dir, variants, { allowPrefix: true });
    expect(result.variant).toBeDefined();
  }, 60_000);
});
