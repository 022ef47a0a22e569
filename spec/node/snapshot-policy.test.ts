/**
 * When a node takes a snapshot (lib/node/group.ts maybeSnapshot, issue 18): at a point of its
 * own grid (every `snapshotEvery` entries, nextSnapshotAt), and only once the entry data applied
 * since the last snapshot is at least `snapshotLogRatio` times that snapshot's size. A follower
 * group on a real store is fed entries one at a time; every snapshot it hands its store is
 * recorded and the schedule is checked against the entries' sizes:
 *
 *   - each snapshot is on the grid and was due (log since the previous >= ratio x its size);
 *   - none was skipped when due (at the grid point before it, and after the last one, the log
 *     was below the threshold);
 *   - ratio 0 (the old rule) and a state that does not grow snapshot at every grid point; a
 *     state that grows with every entry snapshots at roughly doubling indexes;
 *   - across a restart the log since the snapshot is counted again (raft replays it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bootstrapJoiningStore } from '../../lib/node/bootstrap.js';
import { nextSnapshotAt } from '../../lib/node/group.js';
import { encodeCommand } from '../../lib/node/state-machine.js';
import { newMessage } from '../../lib/raft/util.js';
import type { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType, MessageType, type Entry } from '../../lib/types.js';
import { openGroup, settingsFor, type TestGroup } from '../helpers/test-group.js';
import { waitFor } from '../helpers/wait-for.js';

const VOTERS = [1, 2, 3];
const TERM = 2;
const FOLLOWER = 2;
const EVERY = 4;

const roots: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

interface Taken {
  index: number;
  bytes: number;
}

/** Records every createSnapshot the group makes on `store` (then makes it). */
function recordSnapshots(store: ReplicaLogStore, taken: Taken[]): void {
  const real = store.createSnapshot.bind(store);
  const recorded: typeof store.createSnapshot = (index, confState, data) => {
    taken.push({ index, bytes: data === undefined ? 0 : data instanceof Uint8Array ? data.length : data.size });
    return real(index, confState, data);
  };
  Object.defineProperty(store, 'createSnapshot', { value: recorded, configurable: true, writable: true });
}

type KeyOf = (index: number) => string;

class Feeder {
  /** Entry data size per index (what the group counts). */
  readonly dataBytes = new Map<number, number>();
  readonly taken: Taken[] = [];
  member!: TestGroup;

  constructor(
    private readonly root: string,
    private readonly ratio: number,
    private readonly keyOf: KeyOf,
  ) {}

  async open(prepare: (store: ReplicaLogStore) => Promise<void>): Promise<void> {
    const settings = { ...settingsFor(true), snapshotEvery: EVERY, snapshotLogRatio: this.ratio, keepEntries: 2 };
    this.member = await openGroup(
      this.root,
      FOLLOWER,
      settings,
      async (store) => {
        await prepare(store);
        recordSnapshots(store, this.taken);
      },
      cleanups,
    );
  }

  /** Appends and commits entries `from`..`to` one at a time, each applied (and any snapshot saved) before the next. */
  async feed(from: number, to: number): Promise<void> {
    const { group } = this.member;
    for (let index = from; index <= to; index++) {
      const data = encodeCommand({ op: 'put', key: this.keyOf(index), value: 'v'.repeat(100), requestId: `leader-${index}` });
      this.dataBytes.set(index, data.length);
      const entry: Entry = { term: TERM, index, type: EntryType.Normal, data };
      group.receive(newMessage({ type: MessageType.MsgApp, to: FOLLOWER, from: 1, term: TERM, logTerm: index > 1 ? TERM : 0, index: index - 1, commit: index, entries: [entry] }), false);
      await waitFor(`entry ${index} applied`, () => group.stateMachine.applied >= index && group.applying === undefined && group.snapshotting === undefined);
    }
    expect(this.member.host.failures).toEqual([]);
  }

  async restart(): Promise<void> {
    const close = cleanups.pop()!;
    await close();
    await this.open(async () => {});
  }

  logBytes(after: number, through: number): number {
    let sum = 0;
    for (let index = after + 1; index <= through; index++) sum += this.dataBytes.get(index) ?? 0;
    return sum;
  }

  /** The properties in the header, over everything fed through `last`. */
  checkSchedule(last: number): void {
    let previous: Taken = { index: 0, bytes: 0 };
    for (const snapshot of this.taken) {
      const first = nextSnapshotAt(previous.index, EVERY, FOLLOWER);
      expect((snapshot.index - first) % EVERY, `snapshot at ${snapshot.index} on the grid`).toBe(0);
      expect(this.logBytes(previous.index, snapshot.index), `snapshot at ${snapshot.index} due`).toBeGreaterThanOrEqual(this.ratio * previous.bytes);
      if (snapshot.index - EVERY >= first) {
        expect(this.logBytes(previous.index, snapshot.index - EVERY), `not due at ${snapshot.index - EVERY}`).toBeLessThan(this.ratio * previous.bytes);
      }
      previous = snapshot;
    }
    for (let point = nextSnapshotAt(previous.index, EVERY, FOLLOWER); point <= last; point += EVERY) {
      expect(this.logBytes(previous.index, point), `not due at ${point} after the last snapshot at ${previous.index}`).toBeLessThan(this.ratio * previous.bytes);
    }
  }
}

async function feeder(ratio: number, keyOf: KeyOf): Promise<Feeder> {
  const root = mkdtempSync(join(tmpdir(), 'replicalog-snapshot-policy-'));
  roots.push(root);
  const fed = new Feeder(root, ratio, keyOf);
  await fed.open((store) => bootstrapJoiningStore(store, VOTERS));
  return fed;
}

const EVERY_GRID_POINT = Array.from({ length: 14 }, (_, position) => 5 + EVERY * position); // 5, 9, …, 57

describe('snapshot schedule', () => {
  it.each([
    { name: 'ratio 0: at every grid point', ratio: 0, keyOf: (index: number) => `k${index}` },
    { name: 'ratio 1, one key overwritten (the state does not grow): at every grid point', ratio: 1, keyOf: () => 'same' },
  ])('$name', async ({ ratio, keyOf }) => {
    const fed = await feeder(ratio, keyOf);
    await fed.feed(1, 60);
    expect(fed.taken.map((snapshot) => snapshot.index)).toEqual(EVERY_GRID_POINT);
    fed.checkSchedule(60);
  });

  it('ratio 1, a new key per entry (the state grows): only when the log since the last snapshot is as large as it', async () => {
    const fed = await feeder(1, (index) => `k${index}`);
    await fed.feed(1, 120);
    fed.checkSchedule(120);
    const indexes = fed.taken.map((snapshot) => snapshot.index);
    // Each snapshot about doubles the previous one's index: 5, 9, 17, 33, 65.
    expect(indexes.length).toBeGreaterThanOrEqual(4);
    expect(indexes.length).toBeLessThanOrEqual(6);
    for (let position = 2; position < indexes.length; position++) expect(indexes[position]! - indexes[position - 1]!).toBeGreaterThan(EVERY);
  });

  it('ratio 1 across a restart: the log since the snapshot is counted again from the replay', async () => {
    const fed = await feeder(1, (index) => `k${index}`);
    // Snapshots at 5, 9, 17, 29, 49, the next due at 85: stopped at 70, 21 entries past the last.
    await fed.feed(1, 70);
    const before = fed.taken.length;
    expect(fed.taken.at(-1)?.index).toBeLessThan(60);
    await fed.restart();
    await fed.feed(71, 130);
    // Without the replayed entries counted, the next snapshot would come 21 entries late (at 105).
    fed.checkSchedule(130);
    expect(fed.taken.length).toBeGreaterThan(before);
  });
});
