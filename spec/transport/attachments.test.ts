import fc from 'fast-check';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  attachmentFromEntryDirectory,
  closePrepared,
  discardStagedDirectories,
  entryDirectoryAttachments,
  isAttachmentFileName,
  prepareAttachments,
  readPreparedFile,
  StagedAttachmentWriter,
} from '../../lib/transport/attachments.js';
import { TransportErrorCode } from '../../lib/transport/framing.js';
import type { StreamAttachmentHeader } from '../../lib/transport/wire.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'replicalog-attachments-'));
  dirs.push(dir);
  return dir;
}

function bytesOf(length: number, seed: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff));
}

describe('attachment file names', () => {
  it('accepts MANIFEST and canonical base-36 payload names only', () => {
    for (const name of ['MANIFEST', '1', '9', 'a', 'z', '10', 'zz', (2 ** 53 - 1).toString(36)]) expect(isAttachmentFileName(name)).toBe(true);
    for (const name of ['RAFT', 'RAFT.tmp', '0', '01', 'A', '..', '../1', 'a/b', '', '.hidden', '2gosa7pa2gw', 'zzzzzzzzzzzz']) {
      expect(isAttachmentFileName(name)).toBe(false);
    }
  });

  it('attachmentFromEntryDirectory lists MANIFEST then payloads in sequence order, without RAFT', async () => {
    const dir = await tempDir();
    for (const name of ['RAFT', 'RAFT.tmp', '10', 'a', '2', 'MANIFEST', '1', 'stray.txt']) await writeFile(join(dir, name), name);
    const attachment = await attachmentFromEntryDirectory(dir, 42);
    expect(attachment.index).toBe(42);
    expect(attachment.files.map((file) => file.name)).toEqual(['MANIFEST', '1', '2', 'a', '10']);
    expect(attachment.files[0]).toEqual({ name: 'MANIFEST', path: join(dir, 'MANIFEST') });
  });
});

describe('store helpers', () => {
  it('entryDirectoryAttachments attaches the wal/<LSN> directory of each selected entry', async () => {
    const store = await tempDir();
    for (const index of [35, 36]) {
      const dir = join(store, 'wal', index.toString(36).padStart(13, '0'));
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'MANIFEST'), '');
      await writeFile(join(dir, 'RAFT'), '');
    }
    const entries = [35, 36].map((index) => ({ type: 0, term: 1, index }));
    const message = { type: 3, to: 2, from: 1, term: 1, logTerm: 1, index: 34, entries, commit: 0, vote: 0, reject: false, rejectHint: 0, responses: [] };
    const all = await entryDirectoryAttachments(store)(message);
    expect(all.map((a) => [a.index, a.files.map((f) => ('path' in f ? f.path : ''))])).toEqual([
      [35, [join(store, 'wal', '000000000000z', 'MANIFEST')]],
      [36, [join(store, 'wal', '0000000000010', 'MANIFEST')]],
    ]);
    expect((await entryDirectoryAttachments(store, (e) => e.index === 36)(message)).map((a) => a.index)).toEqual([36]);
    await expect(entryDirectoryAttachments(store)({ ...message, entries: [{ type: 0, term: 1, index: 99 }] })).rejects.toThrow();
  });

  it('discardStagedDirectories removes them', async () => {
    const root = await tempDir();
    await mkdir(join(root, 'x'));
    await writeFile(join(root, 'x', '1'), 'a');
    await discardStagedDirectories(new Map([[1, join(root, 'x')], [2, join(root, 'missing')]]));
    expect(await readdir(root)).toEqual([]);
  });
});

describe('sender side', () => {
  it('reads path and byte sources in chunks, sizes fixed at open', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, '1'), bytesOf(2500, 1));
    const prepared = await prepareAttachments([
      { index: 3, files: [{ name: '1', path: join(dir, '1') }, { name: 'MANIFEST', bytes: bytesOf(10, 2) }] },
    ]);
    try {
      expect(prepared[0]!.files.map((file) => [file.name, file.size])).toEqual([
        ['1', 2500],
        ['MANIFEST', 10],
      ]);
      const pieces: Uint8Array[] = [];
      for await (const piece of readPreparedFile(prepared[0]!.files[0]!, 1000)) pieces.push(piece);
      expect(pieces.map((piece) => piece.length)).toEqual([1000, 1000, 500]);
      expect(Buffer.concat(pieces).equals(bytesOf(2500, 1))).toBe(true);
    } finally {
      await closePrepared(prepared);
    }
  });

  it('refuses a missing file with ERR_ATTACHMENT', async () => {
    const dir = await tempDir();
    await expect(prepareAttachments([{ index: 1, files: [{ name: '1', path: join(dir, 'gone') }] }])).rejects.toMatchObject({
      code: TransportErrorCode.Attachment,
    });
  });
});

describe('StagedAttachmentWriter', () => {
  const headers: StreamAttachmentHeader[] = [
    { index: 5, files: [{ name: 'MANIFEST', size: 7 }, { name: '1', size: 0 }, { name: '2', size: 3000 }] },
    { index: 6, files: [{ name: 'MANIFEST', size: 0 }] },
    { index: 7, files: [{ name: '1', size: 1 }, { name: '2', size: 0 }] },
  ];
  const contents = headers.map((attachment, a) => attachment.files.map((file, f) => bytesOf(file.size, a * 10 + f)));
  const all = Buffer.concat(contents.flat());

  it('writes any split of the byte stream into the right files (property), modes 0700/0400', async () => {
    const root = await tempDir();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: all.length }), { maxLength: 8 }), async (cuts) => {
        const staging = join(root, `run-${Math.random().toString(36).slice(2)}`);
        await mkdir(staging);
        const writer = new StagedAttachmentWriter(staging, headers);
        await writer.open();
        const points = [...new Set(cuts)].sort((x, y) => x - y);
        let from = 0;
        for (const point of [...points, all.length]) {
          await writer.write(all.subarray(from, point));
          from = point;
        }
        const staged = await writer.finish();
        expect([...staged.keys()]).toEqual([5, 6, 7]);
        for (const [a, attachment] of headers.entries()) {
          const dir = staged.get(attachment.index)!;
          expect((await stat(dir)).mode & 0o777).toBe(0o700);
          expect((await readdir(dir)).sort()).toEqual(attachment.files.map((file) => file.name).sort());
          for (const [f, file] of attachment.files.entries()) {
            expect((await readFile(join(dir, file.name))).equals(contents[a]![f]!)).toBe(true);
            expect((await stat(join(dir, file.name))).mode & 0o777).toBe(0o400);
          }
        }
        await rm(staging, { recursive: true, force: true });
      }),
      { numRuns: 25 },
    );
  });

  it('refuses a short stream and extra bytes; abort removes its directories', async () => {
    const staging = await tempDir();
    const short = new StagedAttachmentWriter(staging, headers);
    await short.open();
    await short.write(all.subarray(0, all.length - 1));
    await expect(short.finish()).rejects.toMatchObject({ code: TransportErrorCode.MalformedFrame });
    await short.abort();
    expect(await readdir(staging)).toEqual([]);

    const long = new StagedAttachmentWriter(staging, headers);
    await long.open();
    await expect(long.write(Buffer.concat([all, Buffer.from([1])]))).rejects.toMatchObject({ code: TransportErrorCode.MalformedFrame });
    await long.abort();
    expect(await readdir(staging)).toEqual([]);
  });

  it('reports a missing staging root with ERR_ATTACHMENT', async () => {
    const writer = new StagedAttachmentWriter(join(await tempDir(), 'missing'), headers);
    await expect(writer.open()).rejects.toMatchObject({ code: TransportErrorCode.Attachment });
    await writer.abort();
  });
});
