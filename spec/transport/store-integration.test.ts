/**
 * Leader → follower replication of entry directories through the transport into real
 * ReplicaLogStores: the follower adopts each staged directory with insertLogEntry, and never
 * looks at the leader's paths (gitaly.md B13).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { encodeRaftEntry } from '../../lib/codec.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { entryDirectoryAttachments } from '../../lib/transport/attachments.js';
import { Transport } from '../../lib/transport/transport.js';
import { EntryType, MessageType } from '../../lib/types.js';
import type { Entry, Message } from '../../lib/types.js';
import { entryPath, stagingPath } from '../../lib/wal/layout.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('a follower store adopts the leader entry directories staged by the transport', async () => {
  const root = await mkdtemp(join(tmpdir(), 'replicalog-transport-store-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const leader = await ReplicaLogStore.open({ dir: join(root, 'leader') });
  cleanups.push(() => leader.close());
  const follower = await ReplicaLogStore.open({ dir: join(root, 'follower') });
  cleanups.push(() => follower.close());

  // The leader's entries, written the way a proposal is: staged directory, then insertLogEntry.
  const payloads = new Map<number, Record<string, Buffer>>([
    [1, { MANIFEST: Buffer.alloc(0) }],
    [2, { MANIFEST: randomBytes(64), '1': randomBytes(2 * 1024 * 1024 + 3), '2': randomBytes(10) }],
  ]);
  const entries: Entry[] = [];
  for (const [index, files] of payloads) {
    const staged = join(root, `proposal-${index}`);
    await mkdir(staged);
    for (const [name, bytes] of Object.entries(files)) await writeFile(join(staged, name), bytes, { mode: 0o400 });
    const data = new Uint8Array(encodeRaftEntry({ id: index, data: { localPath: Buffer.from(staged), packed: new Uint8Array(0) } }));
    const entry: Entry = { type: EntryType.Normal, term: 1, index, data };
    await leader.insertLogEntry(entry, staged);
    entries.push(entry);
  }

  const adopted: number[] = [];
  const failures: Error[] = [];
  const receiver = new Transport({
    id: 2,
    clusterId: 'store-test',
    listen: { host: '127.0.0.1', port: 0 },
    // Started after the store opened: the store's open() clears staging/ of leftovers.
    stagingDir: stagingPath(follower.dir),
    acceptAttachments: true,
    onMessage: async (message, stagedDirs) => {
      for (const entry of message.entries) {
        await follower.insertLogEntry(entry, stagedDirs.get(entry.index)!);
        adopted.push(entry.index);
      }
    },
    onUnreachable: () => undefined,
    onError: (error) => failures.push(error),
  });
  cleanups.push(() => receiver.close());
  const address = await receiver.start();
  const sender = new Transport({
    id: 1,
    clusterId: 'store-test',
    listen: { host: '127.0.0.1', port: 0 },
    peers: new Map([[2, address]]),
    attachmentsFor: entryDirectoryAttachments(leader.dir),
    onMessage: () => undefined,
    onUnreachable: () => undefined,
    onError: (error) => failures.push(error),
  });
  cleanups.push(() => sender.close());
  await sender.start();

  const append: Message = {
    type: MessageType.MsgApp, to: 2, from: 1, term: 1, logTerm: 0, index: 0, entries: leader.entries(1, 3),
    commit: 0, vote: 0, reject: false, rejectHint: 0, responses: [],
  };
  sender.send([append]);
  const deadline = Date.now() + 4000;
  while (adopted.length < 2 && failures.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  expect(failures).toEqual([]);
  expect(adopted).toEqual([1, 2]);

  expect(follower.lastIndex()).toBe(2);
  // The entries (with the leader's local_path inside their data, passed through untouched).
  expect(follower.entries(1, 3).map((e) => ({ ...e, data: new Uint8Array(e.data!) }))).toEqual(entries);
  for (const [index, files] of payloads) {
    const dir = entryPath(follower.dir, index);
    expect((await readdir(dir)).sort()).toEqual([...Object.keys(files), 'RAFT'].sort());
    for (const [name, bytes] of Object.entries(files)) expect((await readFile(join(dir, name))).equals(bytes)).toBe(true);
  }
  // Every staged directory was adopted (renamed into wal/); none is left behind.
  expect(await readdir(stagingPath(follower.dir))).toEqual([]);
});
