/**
 * A tree that contradicts itself is refused with ERR_CORRUPT naming the path at fault, at open
 * or on the read that meets it — never a wrong entry served, never a raw ENOENT.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeEntry } from '../lib/codec.js';
import { ErrorCode } from '../lib/errors.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import { entryPath, formatLsn, walPath } from '../lib/wal/layout.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { closeTestStores, trackStore } from './helpers/stores.js';

afterEach(closeTestStores);

const entry = (index: number, term: number): Entry => ({ type: EntryType.Normal, term, index, data: Uint8Array.of(index) });

function replaceFile(path: string, content: Uint8Array): void {
  rmSync(path, { force: true });
  writeFileSync(path, content, { mode: 0o400 });
}

async function openError(dir: string): Promise<{ code?: string; path?: string; message: string }> {
  try {
    trackStore(await ReplicaLogStore.open({ dir }));
  } catch (error) {
    return error as { code?: string; path?: string; message: string };
  }
  return { message: 'opened' };
}

/** A closed store with entries 1..3 (term 1); bootstrapped (hard state, commit 1) unless told otherwise. */
async function closedStore(bootstrapped = true, commit = 1): Promise<string> {
  const store = await ReplicaLogStore.open({ dir: makeTempDir() });
  await store.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
  if (bootstrapped) await store.setHardState({ term: 1, vote: 0, commit });
  await store.close();
  return store.dir;
}

describe('corruption on open', () => {
  const cases: { name: string; commit?: number; damage: (dir: string) => void; names: (dir: string) => string }[] = [
    {
      name: 'a RAFT file that does not decode',
      damage: (dir) => replaceFile(join(entryPath(dir, 2), 'RAFT'), Uint8Array.of(0xff, 0xff, 0xff)),
      names: (dir) => entryPath(dir, 2),
    },
    {
      name: 'a zero-length RAFT file on a bootstrapped store (a torn write)',
      damage: (dir) => replaceFile(join(entryPath(dir, 2), 'RAFT'), new Uint8Array(0)),
      names: (dir) => entryPath(dir, 2),
    },
    {
      name: 'a RAFT file whose index differs from its LSN',
      damage: (dir) => replaceFile(join(entryPath(dir, 2), 'RAFT'), encodeEntry(entry(3, 1))),
      names: (dir) => entryPath(dir, 2),
    },
    {
      // At or below the commit: a gap that could hide committed data (above it, open repairs: see
      // spec/powerloss/findings.test.ts).
      name: 'a gap in the LSN sequence at or below the commit',
      commit: 2,
      damage: (dir) => rmSync(entryPath(dir, 2), { recursive: true }),
      names: (dir) => entryPath(dir, 2),
    },
    {
      name: 'the oldest entries removed from a store that never compacted (the anchor says 0)',
      damage: (dir) => rmSync(entryPath(dir, 1), { recursive: true }),
      names: (dir) => entryPath(dir, 1),
    },
    {
      name: 'a stray directory name in wal/',
      damage: (dir) => mkdirSync(join(walPath(dir), 'lost+found')),
      names: (dir) => join(walPath(dir), 'lost+found'),
    },
    {
      name: 'an upper-case LSN name in wal/',
      damage: (dir) => mkdirSync(join(walPath(dir), '000000000000A')),
      names: (dir) => join(walPath(dir), '000000000000A'),
    },
    {
      name: 'a file where an entry directory should be',
      damage: (dir) => writeFileSync(join(walPath(dir), formatLsn(4)), 'x'),
      names: (dir) => entryPath(dir, 4),
    },
    {
      name: 'a hard state whose commit is above the last index',
      commit: 3,
      damage: (dir) => rmSync(entryPath(dir, 3), { recursive: true }),
      names: (dir) => join(dir, 'kv'),
    },
  ];
  it.each(cases)('$name → ERR_CORRUPT naming the path', async ({ commit, damage, names }) => {
    const dir = await closedStore(true, commit);
    damage(dir);
    const error = await openError(dir);
    expect(error.code).toBe(ErrorCode.Corrupt);
    expect(error.path).toBe(names(dir));
    expect(error.message).toContain(names(dir));
    // The refused open released the lock: repairing the damage is enough to open again.
  });

  it('a refused open releases the lock and the database', async () => {
    const dir = await closedStore();
    replaceFile(join(entryPath(dir, 3), 'RAFT'), new Uint8Array(0));
    expect((await openError(dir)).code).toBe(ErrorCode.Corrupt);
    replaceFile(join(entryPath(dir, 3), 'RAFT'), encodeEntry(entry(3, 1)));
    const store = await ReplicaLogStore.open({ dir });
    trackStore(store);
    expect(store.entries(1, 4)).toEqual([entry(1, 1), entry(2, 1), entry(3, 1)]);
  });

  it('the same damage on a store without hard state is not corruption but a pending backfill', async () => {
    const dir = await closedStore(false);
    replaceFile(join(entryPath(dir, 2), 'RAFT'), new Uint8Array(0));
    const store = await ReplicaLogStore.open({ dir });
    trackStore(store);
    expect([store.status, store.pendingBackfill]).toEqual(['needs-backfill', 1]);
  });

  it('a missing snapshot data file → ERR_CORRUPT naming it', async () => {
    const store = await ReplicaLogStore.open({ dir: makeTempDir() });
    await store.append([entry(1, 1)]);
    await store.createSnapshot(1, undefined, Uint8Array.of(1, 2, 3));
    await store.close();
    const [name] = readdirSync(join(store.dir, 'snapshot'));
    rmSync(join(store.dir, 'snapshot', name!));
    const error = await openError(store.dir);
    expect([error.code, error.path]).toEqual([ErrorCode.Corrupt, join(store.dir, 'snapshot', name!)]);
  });
});

describe('corruption met by a read (cache miss)', () => {
  const cases: { name: string; damage: (dir: string) => void }[] = [
    { name: 'a RAFT file replaced by another index', damage: (dir) => replaceFile(join(entryPath(dir, 2), 'RAFT'), encodeEntry(entry(7, 1))) },
    { name: 'a RAFT file that does not decode', damage: (dir) => replaceFile(join(entryPath(dir, 2), 'RAFT'), Uint8Array.of(0x0a)) },
    { name: 'a RAFT file truncated to 0 bytes', damage: (dir) => replaceFile(join(entryPath(dir, 2), 'RAFT'), new Uint8Array(0)) },
    { name: 'an entry directory removed under the store', damage: (dir) => rmSync(entryPath(dir, 2), { recursive: true }) },
  ];
  it.each(cases)('$name → ERR_CORRUPT naming the entry, never a wrong entry or a raw ENOENT', async ({ damage }) => {
    const store = await ReplicaLogStore.open({ dir: makeTempDir(), cacheMaxEntries: 0 });
    trackStore(store);
    await store.append([entry(1, 1), entry(2, 1), entry(3, 1)]);
    damage(store.dir);
    let caught: { code?: string; path?: string; message: string } | undefined;
    try {
      store.entries(1, 4);
    } catch (error) {
      caught = error as typeof caught;
    }
    expect([caught?.code, caught?.path]).toEqual([ErrorCode.Corrupt, entryPath(store.dir, 2)]);
    expect(caught?.message).toContain(formatLsn(2));
    // Entries before the damage are still served.
    expect(store.entries(1, 2)).toEqual([entry(1, 1)]);
  });
});
