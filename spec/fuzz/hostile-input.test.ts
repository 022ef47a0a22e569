/**
 * Untrusted input (issue priority 6): the write API fuzzed with random — including ill-typed
 * and hostile — arguments, against MemoryStorage as the model. After every call the outcome
 * (resolved, or the exact error code; a synchronous throw is an outcome of its own) and the
 * whole observable state must be the same on both. Valid writes are mixed in so the hostile
 * calls meet every kind of state. Then targeted cases: values that change between two reads
 * (getters), and proxies.
 */
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { MemoryStorage } from '../../lib/memory-storage.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType, type WritableStorage } from '../../lib/types.js';
import { applyOp, codeOfError, nextOp, observeStore, Random } from '../../scripts/crash-driver.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { closeTestStores, openTestStore } from '../helpers/stores.js';

afterEach(closeTestStores);

const openStore = (dir = makeTempDir('replicalog-hostile-')): Promise<ReplicaLogStore> => openTestStore({ dir });

// ---------------------------------------------------------------------------------------------
// Hostile values

// -0 is valid (equal to 0); both stores must store and answer it as +0 (cases below too).
const BAD_NUMBERS: unknown[] = [-0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, -Infinity, 2 ** 53, 2 ** 64, '1', null, undefined, {}, [], true, 1n, Number.MAX_SAFE_INTEGER];
const BAD_BYTES: unknown[] = [null, 'abc', [1, 2], new ArrayBuffer(2), new Uint16Array(2), new DataView(new ArrayBuffer(1)), { length: 1, 0: 1 }, 1, Buffer.from('buf'), new Uint8Array(0)];
const NOT_OBJECTS: unknown[] = [null, undefined, 0, 'x', true, 1n, Symbol('s')];
const throwing = (field: string) =>
  Object.defineProperty({ type: 0, term: 1, index: 1 }, field, {
    get() {
      throw new Error(`hostile getter ${field}`);
    },
    enumerable: true,
  });

function hostileEntry(random: Random, valid: { type: number; term: number; index: number; data?: Uint8Array }): unknown {
  switch (random.int(0, 6)) {
    case 0:
      return random.pick(NOT_OBJECTS);
    case 1:
      return { ...valid, type: random.pick([3, -1, 0.5, '0', null, 255]) };
    case 2:
      return { ...valid, term: random.pick(BAD_NUMBERS) };
    case 3:
      return { ...valid, index: random.pick(BAD_NUMBERS) };
    case 4:
      return { ...valid, data: random.pick(BAD_BYTES) };
    case 5:
      return { ...valid, extra: 'ignored', __proto__: { term: 99 } };
    default:
      return throwing(random.pick(['type', 'term', 'index', 'data']));
  }
}

function hostileConfState(random: Random): unknown {
  const base = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
  switch (random.int(0, 3)) {
    case 0:
      return random.pick(NOT_OBJECTS);
    case 1:
      return { ...base, [random.pick(['voters', 'learners', 'votersOutgoing', 'learnersNext'])]: random.pick([null, 'x', {}, 1, [random.pick(BAD_NUMBERS)]]) };
    case 2:
      return { ...base, autoLeave: random.pick([0, 1, 'true', null, undefined]) };
    default: {
      const { voters: _voters, ...rest } = base;
      return rest;
    }
    // Id lists with holes ([1, , 3]) are left to the targeted it.fails cases below (known bug).
  }
}

/** One call with hostile arguments: [description, the call]. */
function hostileCall(random: Random, storage: WritableStorage): [string, (target: WritableStorage) => unknown] {
  const last = storage.lastIndex();
  const term = storage.term(last);
  const valid = { type: EntryType.Normal, term, index: last + 1, data: Uint8Array.of(1) };
  switch (random.int(0, 9)) {
    case 0: {
      const entries = random.chance(0.3) ? random.pick([null, {}, 'entries', { length: 1, 0: valid }, 5]) : [valid, hostileEntry(random, { ...valid, index: last + 2 })];
      return ['append(hostile batch)', (target) => target.append(entries as never)];
    }
    case 1: {
      const entry = hostileEntry(random, valid);
      return ['append([hostile entry])', (target) => target.append([entry] as never)];
    }
    case 2: {
      // (Sparse arrays are left to the targeted it.fails cases below: known bug.)
      const batch = [valid, { ...valid, index: last + 3 }];
      return ['append(batch with a gap)', (target) => target.append(batch as never)];
    }
    case 3: {
      const hardState = random.chance(0.3) ? random.pick(NOT_OBJECTS) : { term, vote: 0, commit: 0, [random.pick(['term', 'vote', 'commit'])]: random.pick(BAD_NUMBERS) };
      return ['setHardState(hostile)', (target) => target.setHardState(hardState as never)];
    }
    case 4: {
      const confState = hostileConfState(random);
      return ['setConfState(hostile)', (target) => target.setConfState(confState as never)];
    }
    case 5: {
      const index = random.pick(BAD_NUMBERS);
      return ['compact(hostile)', (target) => target.compact(index as never)];
    }
    case 6: {
      // data: only what MemoryStorage also checks (a non-Uint8Array `data` is a known model bug, targeted below).
      const args = [random.chance(0.5) ? random.pick(BAD_NUMBERS) : last, random.chance(0.5) ? hostileConfState(random) : undefined, random.pick([undefined, Uint8Array.of(5), Buffer.from('b')])];
      return ['createSnapshot(hostile)', (target) => target.createSnapshot(...(args as [never, never, never]))];
    }
    case 7: {
      const metadata = { index: last + 1, term, confState: { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } };
      const snapshot = random.pick<unknown>([
        null,
        {},
        { metadata: null },
        { metadata: { ...metadata, index: random.pick(BAD_NUMBERS) } },
        { metadata: { ...metadata, term: random.pick(BAD_NUMBERS) } },
        { metadata: { ...metadata, confState: hostileConfState(random) } },
        { metadata, data: random.pick(BAD_BYTES) },
      ]);
      return ['applySnapshot(hostile)', (target) => target.applySnapshot(snapshot as never)];
    }
    case 8:
      return ['append() with no argument', (target) => (target.append as (...args: unknown[]) => unknown)()];
    default:
      return ['append([]) (empty batch)', (target) => target.append([])];
  }
}

async function outcome(call: () => unknown): Promise<string> {
  let result: unknown;
  try {
    result = call();
  } catch (error) {
    return `sync throw ${codeOfError(error)}`;
  }
  if (!(result instanceof Promise)) return `returned a non-promise ${typeof result}`;
  try {
    await result;
    return 'ok';
  } catch (error) {
    return codeOfError(error);
  }
}

describe('hostile arguments against MemoryStorage as the model', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8])('seed %i: 150 calls, half hostile: same outcome and same state after each', async (seed) => {
    const random = new Random(seed);
    const store = await openStore();
    const model = new MemoryStorage();
    const codes: Record<string, number> = {};
    for (let step = 0; step < 150; step++) {
      let description: string;
      let storeOutcome: string;
      let modelOutcome: string;
      if (random.chance(0.5)) {
        const op = nextOp(random, model);
        description = `valid ${op.kind}`;
        [storeOutcome, modelOutcome] = [await applyOp(store, op), await applyOp(model, op)];
      } else {
        const [what, call] = hostileCall(random, model);
        description = what;
        storeOutcome = await outcome(() => call(store));
        modelOutcome = await outcome(() => call(model));
        codes[storeOutcome] = (codes[storeOutcome] ?? 0) + 1;
      }
      const where = `seed ${seed} step ${step}: ${description}`;
      expect(storeOutcome, where).toBe(modelOutcome);
      expect(storeOutcome.startsWith('uncoded') && !storeOutcome.includes('hostile getter'), `${where}: uncoded error ${storeOutcome}`).toBe(false);
      expect(storeOutcome.startsWith('sync throw'), `${where}: a write threw synchronously`).toBe(false);
      expect(observeStore(store), where).toEqual(observeStore(model));
    }
    // The hostile calls were refused with the documented codes.
    expect(Object.keys(codes).some((code) => code === ErrorCode.InvalidArgument)).toBe(true);
    expect(Object.keys(codes).some((code) => code === ErrorCode.OutOfRange)).toBe(true);
  });
});

describe('targeted hostile inputs', () => {
  /** A value that is `first` on the first read and `then` on every later one. */
  function shifting<T extends object>(base: T, field: string, first: unknown, then: unknown): T {
    let reads = 0;
    return Object.defineProperty({ ...base }, field, {
      get: () => (reads++ === 0 ? first : then),
      enumerable: true,
    });
  }

  const rows: { name: string; call: (storage: WritableStorage) => Promise<unknown> }[] = [
    { name: 'hard state commit 0 then 5 (above last)', call: (s) => s.setHardState(shifting({ term: 1, vote: 0, commit: 0 }, 'commit', 0, 5)) },
    { name: 'hard state term 1 then "x"', call: (s) => s.setHardState(shifting({ term: 1, vote: 0, commit: 0 }, 'term', 1, 'x')) },
    { name: 'entry term 1 then 1.5', call: (s) => s.append([shifting({ type: 0, term: 1, index: 2 }, 'term', 1, 1.5)]) },
    { name: 'entry data bytes then a string', call: (s) => s.append([shifting({ type: 0, term: 1, index: 2 }, 'data', Uint8Array.of(1), 'zz')]) },
    { name: 'conf state voters [1] then ["x"]', call: (s) => s.setConfState(shifting({ voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }, 'voters', [1], ['x'])) },
  ];
  it.each(rows)('$name: validated once — refused, or stored exactly as validated and the same after a reopen', async ({ call }) => {
    const dir = makeTempDir('replicalog-hostile-');
    const store = await openStore(dir);
    await store.append([{ type: EntryType.Normal, term: 1, index: 1 }]);
    const code = await outcome(() => call(store));
    const visible = observeStore(store);
    await store.close();
    const reopened = await openStore(dir);
    // Whatever was accepted is well-formed and durable exactly as it is visible.
    expect(observeStore(reopened)).toEqual(visible);
    expect(code === 'ok' || code.startsWith('ERR_')).toBe(true);
    rmSync(dir, { recursive: true, force: true });
  });

  // Fixed (found by this suite): lib/validate.ts validated arrays with Array.prototype.forEach, which skips
  // holes. validateEntriesUntrusted lets a sparse batch through: ReplicaLogStore.append (and
  // MemoryStorage.append) then reject with an UNCODED TypeError ("Cannot read properties of
  // undefined (reading 'index')") from planAppend instead of ERR_INVALID_ARGUMENT.
  it('a sparse batch ([ , entry]) is refused with ERR_INVALID_ARGUMENT on both stores', async () => {
    const sparse: unknown[] = [];
    sparse[1] = { type: EntryType.Normal, term: 1, index: 1 };
    const store = await openStore();
    const model = new MemoryStorage();
    expect([await outcome(() => store.append(sparse as never)), await outcome(() => model.append(sparse as never))]).toEqual([ErrorCode.InvalidArgument, ErrorCode.InvalidArgument]);
  });

  // Fixed (found by this suite): the same forEach in checkIdList (lib/validate.ts) lets [1, , 3] through:
  // MemoryStorage.setConfState / applySnapshot accept it and store an undefined voter, while
  // ReplicaLogStore refuses it (ERR_INVALID_ARGUMENT from a later check) — the reference model
  // and the store disagree.
  it('a conf state with a hole in voters is refused by MemoryStorage as by the store', async () => {
    // eslint-disable-next-line no-sparse-arrays -- the hole is the hostile input under test
    const confState = { voters: [1, , 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
    const store = await openStore();
    const model = new MemoryStorage();
    expect([await outcome(() => store.setConfState(confState as never)), await outcome(() => model.setConfState(confState as never))]).toEqual([ErrorCode.InvalidArgument, ErrorCode.InvalidArgument]);
  });

  // Fixed (found by this suite): MemoryStorage.createSnapshot (lib/memory-storage.ts) never validates `data`:
  // createSnapshot(i, cs, 'abc') is accepted and snapshot().data is the string 'abc'.
  // ReplicaLogStore refuses it with ERR_INVALID_ARGUMENT (and checks it before the index rules).
  it('createSnapshot with non-bytes data is refused with ERR_INVALID_ARGUMENT by MemoryStorage as by the store', async () => {
    const store = await openStore();
    const model = new MemoryStorage();
    for (const target of [store, model]) await target.append([{ type: EntryType.Normal, term: 1, index: 1 }]);
    expect([await outcome(() => store.createSnapshot(1, undefined, 'abc' as never)), await outcome(() => model.createSnapshot(1, undefined, 'abc' as never))]).toEqual([ErrorCode.InvalidArgument, ErrorCode.InvalidArgument]);
  });

  // Fixed: validation accepts -0 (an integer equal to 0), and every copy a store keeps
  // normalises it (withoutNegativeZero), so no -0 is stored or answered, across a reopen too.
  const negativeZeroWrites: { name: string; write: (target: WritableStorage) => Promise<unknown>; read: (target: WritableStorage) => number[] }[] = [
    {
      name: 'applySnapshot at index -0, term -0, voter -0',
      write: (target) => target.applySnapshot({ metadata: { index: -0, term: -0, confState: { voters: [-0], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } }),
      read: (target) => [target.lastIndex(), target.snapshot().metadata.index, target.snapshot().metadata.term, target.initialState().confState.voters[0]!],
    },
    {
      name: 'an entry of term -0',
      write: (target) => target.append([{ type: EntryType.Normal, term: -0, index: 1 }]),
      read: (target) => [target.term(1), target.entries(1, 2)[0]!.term],
    },
    {
      name: 'a hard state of term, vote and commit -0',
      write: (target) => target.setHardState({ term: -0, vote: -0, commit: -0 }),
      read: (target) => Object.values(target.initialState().hardState),
    },
    {
      name: 'a conf state with learner -0',
      write: (target) => target.setConfState({ voters: [1], learners: [-0], votersOutgoing: [], learnersNext: [], autoLeave: false }),
      read: (target) => target.initialState().confState.learners,
    },
  ];
  it.each(negativeZeroWrites)('$name: both stores answer +0, as before and after a reopen', async ({ write, read }) => {
    const dir = makeTempDir('replicalog-hostile-');
    const store = await openStore(dir);
    const model = new MemoryStorage();
    for (const target of [store, model]) await write(target);
    const positive = (values: number[]) => values.every((value) => Object.is(value, 0));
    expect([positive(read(store)), positive(read(model))]).toEqual([true, true]);
    await store.close();
    expect(positive(read(await openStore(dir)))).toBe(true);
  });

  it('a Proxy batch whose length changes while it is read is refused or appended consistently', async () => {
    const store = await openStore();
    let lengthReads = 0;
    const entries = [{ type: EntryType.Normal, term: 1, index: 1 }, { type: EntryType.Normal, term: 1, index: 2 }];
    const proxy = new Proxy(entries, { get: (target, key, receiver) => (key === 'length' ? (lengthReads++ === 0 ? 1 : 2) : Reflect.get(target, key, receiver)) });
    const code = await outcome(() => store.append(proxy));
    expect(code === 'ok' || code.startsWith('ERR_')).toBe(true);
    const last = store.lastIndex();
    expect(store.entries(1, last + 1)).toHaveLength(last);
  });
});
