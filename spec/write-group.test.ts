/**
 * PendingLog (lib/write-group.ts): the log as a write group's accepted calls leave it, over the
 * durable log. Each case applies a sequence of plans and hard states and checks what the view
 * answers and what the group will write: the same as applying the calls one by one to
 * MemoryStorage.
 */
import { describe, expect, it } from 'vitest';
import { checkHardState, planAppend, type LogView } from '../lib/log-rules.js';
import { MemoryStorage } from '../lib/memory-storage.js';
import { EntryType, type Entry, type HardState } from '../lib/types.js';
import { PendingLog } from '../lib/write-group.js';

const entry = (index: number, term: number): Entry => ({ type: EntryType.Normal, term, index });
const terms = (start: number, ...values: number[]) => values.map((term, k) => entry(start + k, term));

type Call = { append: Entry[] } | { hardState: HardState };

/** The durable log: entries 1..5 of terms 1 1 2 2 2, commit 2. */
async function durable(): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  await storage.append(terms(1, 1, 1, 2, 2, 2));
  await storage.setHardState({ term: 2, vote: 1, commit: 2 });
  return storage;
}

function viewOf(storage: MemoryStorage): LogView {
  return {
    firstIndex: () => storage.firstIndex(),
    lastIndex: () => storage.lastIndex(),
    term: (index) => storage.term(index),
    hardState: () => storage.initialState().hardState,
  };
}

const cases: { name: string; calls: Call[]; planned: [number, number][]; hardState?: HardState }[] = [
  { name: 'appends after the durable log, one after the other', calls: [{ append: terms(6, 2) }, { append: terms(7, 3, 3) }], planned: [[6, 2], [7, 3], [8, 3]] },
  { name: 'a later append replaces the group\'s own tail', calls: [{ append: terms(6, 2, 2, 2) }, { append: terms(7, 3) }], planned: [[6, 2], [7, 3]] },
  { name: 'a later append cuts below the group\'s first entry (the durable tail too)', calls: [{ append: terms(6, 2, 2) }, { append: terms(4, 3) }], planned: [[4, 3]] },
  { name: 'a hard state whose commit covers the group\'s new entries', calls: [{ append: terms(6, 2, 2) }, { hardState: { term: 2, vote: 1, commit: 7 } }], planned: [[6, 2], [7, 2]], hardState: { term: 2, vote: 1, commit: 7 } },
  { name: 'a hard state then an append that re-sends the newly committed prefix (trimmed)', calls: [{ hardState: { term: 2, vote: 1, commit: 4 } }, { append: terms(3, 2, 2, 3) }], planned: [[5, 3]], hardState: { term: 2, vote: 1, commit: 4 } },
];

describe('PendingLog', () => {
  it.each(cases)('$name: what the group writes equals the calls applied one by one', async ({ calls, planned, hardState }) => {
    const base = await durable();
    const pending = new PendingLog(viewOf(base));
    const oneByOne = await durable();
    for (const call of calls) {
      if ('append' in call) {
        pending.append(planAppend(pending, call.append));
        await oneByOne.append(call.append);
      } else {
        checkHardState(pending, call.hardState);
        pending.setHardState(call.hardState);
        await oneByOne.setHardState(call.hardState);
      }
    }
    expect(pending.plannedEntries.map((e) => [e.index, e.term])).toEqual(planned);
    expect(pending.plannedHardState).toEqual(hardState);
    // The view answers what MemoryStorage answers after the same calls.
    expect(pending.lastIndex()).toBe(oneByOne.lastIndex());
    for (let index = 0; index <= oneByOne.lastIndex(); index++) expect(pending.term(index), `term(${index})`).toBe(oneByOne.term(index));
    expect(pending.hardState()).toEqual(oneByOne.initialState().hardState);
    // The durable log is untouched until the flush.
    expect([base.lastIndex(), base.initialState().hardState.commit]).toEqual([5, 2]);
  });
});
