/**
 * lib/verify.ts (verifyTree) and lib/fixture.ts (writePreRaftWal), in process. Every kind of
 * damage is applied to a clean tree and must be reported with its code and the LSN directory
 * at fault; several damages at once must all be listed.
 */
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeLogEntry, encodeEntry, encodeHardState, GITALY_DIRECTORY_MODE } from '../lib/codec.js';
import { writePreRaftWal } from '../lib/fixture.js';
import { ReplicaLogStore } from '../lib/replica-log-store.js';
import { EntryType, type Entry } from '../lib/types.js';
import { verifyTree, type Problem } from '../lib/verify.js';
import { entryPath, formatLsn, KEY_HARD_STATE, kvKey, kvPath, stagingPath, walPath } from '../lib/wal/layout.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { closeTestStores, trackStore } from './helpers/stores.js';

afterEach(closeTestStores);

const TERMS = [1, 1, 2, 2, 3, 3];

/** A bootstrapped store: entries 1..6 (terms above), hard state {term 3, vote 1, commit 6}. */
async function bootstrappedStore(): Promise<string> {
  const dir = makeTempDir('replicalog-verify-');
  const store = await ReplicaLogStore.open({ dir });
  const entries: Entry[] = TERMS.map((term, offset) => ({ type: EntryType.Normal, term, index: offset + 1, data: new TextEncoder().encode(`e${offset + 1}`) }));
  await store.append(entries);
  await store.setHardState({ term: 3, vote: 1, commit: 6 });
  await store.close();
  return dir;
}

function replaceFile(path: string, bytes: Uint8Array | string, mode = 0o400): void {
  rmSync(path, { force: true });
  writeFileSync(path, bytes, { mode });
}

const raftOf = (dir: string, index: number) => join(entryPath(dir, index), 'RAFT');
const manifestOf = (dir: string, index: number) => join(entryPath(dir, index), 'MANIFEST');

function summary(problems: Problem[]): { code: string; lsn: string | undefined }[] {
  return problems.map(({ code, lsn }) => ({ code, lsn }));
}

describe('verifyTree on clean trees', () => {
  it('a bootstrapped store is ok, with no notice but none needed', async () => {
    const dir = await bootstrappedStore();
    const result = await verifyTree(dir);
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.notices).toEqual([]);
  });

  it('a pre-Raft WAL is ok with a NEEDS_MIGRATION notice naming the first entry', async () => {
    const dir = makeTempDir('replicalog-verify-');
    writePreRaftWal({ dir, entries: 20, seed: 7 });
    const result = await verifyTree(dir);
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.notices.map((notice) => notice.code).sort()).toEqual(['KV_ABSENT', 'NEEDS_MIGRATION']);
    const needs = result.notices.find((notice) => notice.code === 'NEEDS_MIGRATION')!;
    expect(needs.lsn).toBe(formatLsn(1));
    expect(needs.message).toContain('20 entries');
  });

  it('a pre-Raft WAL after backfill is ok without notice about migration', async () => {
    const dir = makeTempDir('replicalog-verify-');
    writePreRaftWal({ dir, entries: 15, seed: 3, firstLsn: 40 });
    const store = await ReplicaLogStore.open({ dir });
    trackStore(store);
    await store.backfill();
    // The store is open (and locked) while verify runs: the KV is read from a copy.
    const result = await verifyTree(dir);
    expect(result.problems).toEqual([]);
    expect(result.notices.map((notice) => notice.code)).not.toContain('NEEDS_MIGRATION');
  });
});

interface DamageCase {
  name: string;
  /** Damages the bootstrapped store (entries 1..6) in `dir`. */
  damage(dir: string): void;
  expected: { code: string; lsn?: number }[];
}

const damageCases: DamageCase[] = [
  { name: 'missing RAFT on a bootstrapped store', damage: (dir) => rmSync(raftOf(dir, 3)), expected: [{ code: 'RAFT_MISSING', lsn: 3 }] },
  { name: 'zero-length RAFT', damage: (dir) => replaceFile(raftOf(dir, 2), new Uint8Array(0)), expected: [{ code: 'RAFT_EMPTY', lsn: 2 }] },
  {
    name: 'garbage RAFT',
    damage: (dir) => replaceFile(raftOf(dir, 4), Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x0f)),
    expected: [{ code: 'RAFT_CORRUPT', lsn: 4 }],
  },
  {
    name: 'RAFT index different from its LSN',
    damage: (dir) => replaceFile(raftOf(dir, 5), encodeEntry({ type: EntryType.Normal, term: 3, index: 9 })),
    expected: [{ code: 'RAFT_INDEX_MISMATCH', lsn: 5 }],
  },
  {
    name: 'undecodable MANIFEST',
    damage: (dir) => replaceFile(manifestOf(dir, 1), Uint8Array.of(0x52, 0x7f, 0x01)),
    expected: [{ code: 'MANIFEST_CORRUPT', lsn: 1 }],
  },
  { name: 'missing MANIFEST', damage: (dir) => rmSync(manifestOf(dir, 6)), expected: [{ code: 'MANIFEST_MISSING', lsn: 6 }] },
  { name: 'a gap', damage: (dir) => rmSync(entryPath(dir, 3), { recursive: true }), expected: [{ code: 'GAP', lsn: 3 }] },
  {
    name: 'a gap of several entries names the first missing one',
    damage: (dir) => {
      rmSync(entryPath(dir, 2), { recursive: true });
      rmSync(entryPath(dir, 3), { recursive: true });
      rmSync(entryPath(dir, 4), { recursive: true });
    },
    expected: [{ code: 'GAP', lsn: 2 }],
  },
  { name: 'a stray name in wal/', damage: (dir) => writeFileSync(join(walPath(dir), 'notes.txt'), 'x'), expected: [{ code: 'STRAY_NAME' }] },
  { name: 'an upper-case LSN name in wal/', damage: (dir) => mkdirSync(join(walPath(dir), '000000000000A'), { mode: 0o700 }), expected: [{ code: 'STRAY_NAME' }] },
  { name: 'a stray file in an entry', damage: (dir) => writeFileSync(join(entryPath(dir, 2), 'core.dump'), 'x'), expected: [{ code: 'STRAY_NAME', lsn: 2 }] },
  { name: 'an entry directory with mode 0755', damage: (dir) => chmodSync(entryPath(dir, 4), 0o755), expected: [{ code: 'BAD_MODE', lsn: 4 }] },
  { name: 'a RAFT file with mode 0644', damage: (dir) => chmodSync(raftOf(dir, 1), 0o644), expected: [{ code: 'BAD_MODE', lsn: 1 }] },
  { name: 'a MANIFEST with mode 0600', damage: (dir) => chmodSync(manifestOf(dir, 6), 0o600), expected: [{ code: 'BAD_MODE', lsn: 6 }] },
  { name: 'an entry that is a file', damage: (dir) => {
      rmSync(entryPath(dir, 6), { recursive: true });
      writeFileSync(entryPath(dir, 6), 'x');
    }, expected: [{ code: 'NOT_A_DIRECTORY', lsn: 6 }] },
  {
    name: 'a term lower than the entry before',
    damage: (dir) => replaceFile(raftOf(dir, 4), encodeEntry({ type: EntryType.Normal, term: 1, index: 4 })),
    expected: [{ code: 'TERM_REGRESSION', lsn: 4 }],
  },
  {
    name: 'the hard state commit above the last index (tail lost)',
    damage: (dir) => rmSync(entryPath(dir, 6), { recursive: true }),
    expected: [{ code: 'COMMIT_ABOVE_LAST' }],
  },
  { name: 'a staging leftover', damage: (dir) => mkdirSync(join(stagingPath(dir), 'batch-abc123')), expected: [{ code: 'STAGING_LEFTOVER' }] },
];

describe('verifyTree reports each kind of damage, naming the entry', () => {
  it.each(damageCases)('$name', async ({ damage, expected }) => {
    const dir = await bootstrappedStore();
    damage(dir);
    const result = await verifyTree(dir);
    expect(result.ok).toBe(false);
    expect(summary(result.problems)).toEqual(expected.map(({ code, lsn }) => ({ code, lsn: lsn === undefined ? undefined : formatLsn(lsn) })));
    for (const problem of result.problems) {
      expect(problem.message.length).toBeGreaterThan(10);
      if (problem.lsn !== undefined) {
        expect(problem.path).toContain(problem.lsn);
        expect(problem.index).toBe(parseInt(problem.lsn, 36));
      }
    }
  });

  it('lists every problem at once (gaps first, then entry by entry)', async () => {
    const dir = await bootstrappedStore();
    replaceFile(raftOf(dir, 2), new Uint8Array(0));
    rmSync(entryPath(dir, 3), { recursive: true });
    replaceFile(manifestOf(dir, 4), Uint8Array.of(0xff, 0xff, 0xff));
    chmodSync(entryPath(dir, 5), 0o750);
    rmSync(raftOf(dir, 6));
    writeFileSync(join(walPath(dir), 'stray'), '');
    mkdirSync(join(stagingPath(dir), 'leftover'));
    const result = await verifyTree(dir);
    expect(summary(result.problems)).toEqual([
      { code: 'STRAY_NAME', lsn: undefined },
      { code: 'GAP', lsn: formatLsn(3) },
      { code: 'RAFT_EMPTY', lsn: formatLsn(2) },
      { code: 'MANIFEST_CORRUPT', lsn: formatLsn(4) },
      { code: 'BAD_MODE', lsn: formatLsn(5) },
      { code: 'RAFT_MISSING', lsn: formatLsn(6) },
      { code: 'STAGING_LEFTOVER', lsn: undefined },
    ]);
  });

  it('an undecodable hard state in the KV is KV_CORRUPT', async () => {
    const dir = await bootstrappedStore();
    const db = new ClassicLevel<Uint8Array, Uint8Array>(kvPath(dir), { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    await db.put(kvKey(undefined, KEY_HARD_STATE), Uint8Array.of(0x0a, 0xff));
    await db.close();
    const result = await verifyTree(dir);
    expect(summary(result.problems)).toEqual([{ code: 'KV_CORRUPT', lsn: undefined }]);
  });

  it('a commit below firstIndex-1 (compacted beyond the commit: legal) is the notice COMMIT_BELOW_FIRST, not a problem', async () => {
    const dir = await bootstrappedStore();
    const store = await ReplicaLogStore.open({ dir });
    await store.compact(4);
    await store.close();
    const db = new ClassicLevel<Uint8Array, Uint8Array>(kvPath(dir), { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    await db.put(kvKey(undefined, KEY_HARD_STATE), encodeHardState({ term: 3, vote: 1, commit: 2 }));
    await db.close();
    const result = await verifyTree(dir);
    expect(summary(result.problems)).toEqual([]);
    expect(result.notices.map((notice) => notice.code)).toEqual(['COMMIT_BELOW_FIRST']);
  });

  it('snapshot and compaction records against the log', async () => {
    const dir = await bootstrappedStore();
    const store = await ReplicaLogStore.open({ dir });
    await store.createSnapshot(6, undefined, new TextEncoder().encode('state'));
    const keep = join(makeTempDir(), 'entry-2');
    cpSync(entryPath(dir, 2), keep, { recursive: true });
    await store.compact(3);
    await store.close();
    expect((await verifyTree(dir)).problems).toEqual([]);

    cpSync(keep, entryPath(dir, 2), { recursive: true }); // a compaction that did not finish
    rmSync(entryPath(dir, 6), { recursive: true }); // the tail (and the snapshot's entry) lost
    for (const name of readdirSync(join(dir, 'snapshot'))) rmSync(join(dir, 'snapshot', name));
    mkdirSync(join(entryPath(dir, 4), 'RAFT.d'));
    rmSync(raftOf(dir, 5));
    mkdirSync(raftOf(dir, 5));
    const result = await verifyTree(dir);
    expect(summary(result.problems)).toEqual([
      { code: 'COMPACTION_LEFTOVER', lsn: formatLsn(2) },
      { code: 'STRAY_NAME', lsn: formatLsn(4) },
      { code: 'NOT_A_FILE', lsn: formatLsn(5) },
      { code: 'COMMIT_ABOVE_LAST', lsn: undefined },
      { code: 'SNAPSHOT_BEYOND_LOG', lsn: undefined },
      { code: 'SNAPSHOT_DATA_MISSING', lsn: undefined },
    ]);
  });

  it('damaged RAFT on a pre-Raft WAL is still a problem; missing RAFT is only a notice', async () => {
    const dir = makeTempDir('replicalog-verify-');
    writePreRaftWal({ dir, entries: 5 });
    replaceFile(raftOf(dir, 3), new Uint8Array(0));
    const result = await verifyTree(dir);
    expect(summary(result.problems)).toEqual([{ code: 'RAFT_EMPTY', lsn: formatLsn(3) }]);
    expect(result.notices.map((notice) => notice.code)).toContain('NEEDS_MIGRATION');
  });

  it('a payload file the MANIFEST links but that is gone is PAYLOAD_MISSING', async () => {
    const dir = makeTempDir('replicalog-verify-');
    writePreRaftWal({ dir, entries: 30, seed: 11 });
    const withPayload = readdirSync(walPath(dir)).find((name) => existsSync(join(walPath(dir), name, '1')))!;
    rmSync(join(walPath(dir), withPayload, '1'));
    const result = await verifyTree(dir);
    expect(summary(result.problems)).toEqual([{ code: 'PAYLOAD_MISSING', lsn: withPayload }]);
  });

  it('an empty directory has no WAL', async () => {
    const dir = makeTempDir('replicalog-verify-');
    const result = await verifyTree(dir);
    expect(summary(result.problems)).toEqual([{ code: 'WAL_MISSING', lsn: undefined }]);
  });
});

describe('writePreRaftWal', () => {
  function listing(dir: string): Map<string, string> {
    const files = new Map<string, string>();
    for (const name of readdirSync(walPath(dir))) {
      for (const file of readdirSync(join(walPath(dir), name))) {
        const path = join(walPath(dir), name, file);
        files.set(`${name}/${file}`, `${(statSync(path).mode & 0o777).toString(8)}:${readFileSync(path).toString('hex')}`);
      }
    }
    return files;
  }

  it('writes Gitaly entries: MANIFEST 0400 in 0700 directories, base-36 payload files <= 0500, no RAFT, no hard state', () => {
    const dir = makeTempDir('replicalog-fixture-');
    const summaryOfWrite = writePreRaftWal({ dir, entries: 60, seed: 5, payloadFilesPerEntry: 11 });
    expect(summaryOfWrite).toMatchObject({ firstIndex: 1, lastIndex: 60, entries: 60 });
    const names = readdirSync(walPath(dir)).sort();
    expect(names).toEqual(Array.from({ length: 60 }, (_, offset) => formatLsn(offset + 1)));
    expect(existsSync(kvPath(dir))).toBe(false);
    expect(readdirSync(stagingPath(dir))).toEqual([]);
    const operationKinds = new Set<string>();
    let sawReferenceTransaction = false;
    let sawElevenPayloads = false;
    for (const name of names) {
      const directory = join(walPath(dir), name);
      expect(lstatSync(directory).mode & 0o777).toBe(0o700);
      const files = readdirSync(directory);
      expect(files).not.toContain('RAFT');
      expect(statSync(join(directory, 'MANIFEST')).mode & 0o777).toBe(0o400);
      const manifest = decodeLogEntry(readFileSync(join(directory, 'MANIFEST')));
      expect(manifest.relativePath).toMatch(/^@hashed\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{64}\.git$/);
      if (manifest.referenceTransactions.length > 0) sawReferenceTransaction = true;
      const payloads = files.filter((file) => file !== 'MANIFEST').sort((a, b) => parseInt(a, 36) - parseInt(b, 36));
      // Names 1, 2, … in base 36 (the eleventh is "b"), each linked by exactly one operation.
      expect(payloads).toEqual(Array.from({ length: payloads.length }, (_, offset) => (offset + 1).toString(36)));
      if (payloads.includes('b')) sawElevenPayloads = true;
      const linked = manifest.operations.filter((operation) => operation.createHardLink).map((operation) => operation.createHardLink!);
      expect(linked.map((link) => new TextDecoder().decode(link.sourcePath)).sort()).toEqual([...payloads].sort());
      for (const link of linked) expect(link.sourceInStorage).toBe(false);
      for (const payload of payloads) expect(statSync(join(directory, payload)).mode & ~0o500 & 0o7777).toBe(0);
      for (const operation of manifest.operations) {
        operationKinds.add(Object.keys(operation)[0]!);
        if (operation.createDirectory) expect(operation.createDirectory.mode).toBe(GITALY_DIRECTORY_MODE);
      }
    }
    expect(sawReferenceTransaction).toBe(true);
    expect(sawElevenPayloads).toBe(true);
    expect([...operationKinds].sort()).toEqual(['createDirectory', 'createHardLink', 'deleteKey', 'removeDirectoryEntry', 'setKey']);
  });

  it('is deterministic from the seed', () => {
    const [a, b, c] = [makeTempDir(), makeTempDir(), makeTempDir()];
    writePreRaftWal({ dir: a, entries: 40, seed: 42 });
    writePreRaftWal({ dir: b, entries: 40, seed: 42 });
    writePreRaftWal({ dir: c, entries: 40, seed: 43 });
    expect(listing(a)).toEqual(listing(b));
    expect(listing(a)).not.toEqual(listing(c));
  });

  it('withKeys false writes no key operations; firstLsn shifts the names', () => {
    const dir = makeTempDir();
    writePreRaftWal({ dir, entries: 50, withKeys: false, firstLsn: 1000 });
    const names = readdirSync(walPath(dir)).sort();
    expect(names[0]).toBe(formatLsn(1000));
    expect(names[names.length - 1]).toBe(formatLsn(1049));
    for (const name of names) {
      const manifest = decodeLogEntry(readFileSync(join(walPath(dir), name, 'MANIFEST')));
      for (const operation of manifest.operations) expect(operation.setKey ?? operation.deleteKey).toBeUndefined();
    }
  });

  it('refuses a non-empty wal/', () => {
    const dir = makeTempDir();
    writePreRaftWal({ dir, entries: 2 });
    expect(() => writePreRaftWal({ dir, entries: 2 })).toThrow(/not empty/);
  });

  it('writes 1 000 entries quickly', () => {
    const dir = makeTempDir();
    const started = Date.now();
    writePreRaftWal({ dir, entries: 1000 });
    expect(Date.now() - started).toBeLessThan(5000);
    // Payload files are hard links of a staged source (link(2)), as Gitaly stages them: the
    // link count is back to 1 once the fixture removes its staging sources.
    const first = readdirSync(walPath(dir)).find((name) => existsSync(join(walPath(dir), name, '1')))!;
    expect(statSync(join(walPath(dir), first, '1')).nlink).toBe(1);
  });
});
