/**
 * Entry attachments: the files of a WAL entry directory (MANIFEST and base-36 payload files)
 * shipped together with the raft message that carries the entry.
 *
 * Sender side: the application's `attachmentsFor(message)` callback returns, per entry index,
 * the files to ship, either as bytes in memory or as paths to read (`attachmentFromEntryDirectory`
 * builds the latter from a store's `wal/<LSN>` directory). RAFT is never shipped: the receiver's
 * store writes its own RAFT file when it adopts the directory with `insertLogEntry`.
 *
 * Receiver side (`StagedAttachmentWriter`): every attachment gets a fresh directory
 * `<stagingRoot>/transport-XXXXXX` (mode 0700) and its files are written there (mode 0400) as
 * the bytes stream in. Gitaly's follower flow unpacked into the follower's `wal/<index>` and
 * then inserted from the *leader's* local_path (gitaly.md B13); here nothing outside the
 * staging root is touched and the leader's paths are never interpreted.
 *
 * Durability order on `finish()` (a staged directory handed to the application is durable):
 *   1. each file is fsynced and closed as soon as its last byte is written;
 *   2. then each entry directory is fsynced (makes the file names durable);
 *   3. then the staging root is fsynced (makes the entry directory names durable).
 * The store's insertLogEntry then renames the directory into wal/ and fsyncs wal/.
 */
import { mkdtemp, open, readdir, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Entry, Message } from '../types.js';
import { entryPath, FILE_MODE, MANIFEST_FILE } from '../wal/layout.js';
import { TransportError, TransportErrorCode, malformedFrameError } from './framing.js';
import type { StreamAttachmentHeader } from './wire.js';

/** One file of an attachment: its name inside the entry directory and where its bytes come from. */
export type AttachmentFile = { name: string; bytes: Uint8Array } | { name: string; path: string };

/** The files of the entry directory of `message.entries[k]` whose `index` is `index`. */
export interface EntryAttachment {
  index: number;
  files: AttachmentFile[];
}

/**
 * Called by the sending transport just before a message with entries is written to the wire
 * (not when `send` is called), so the files are read while they still exist. Return `[]` for
 * "nothing to attach". A throw or rejection drops the message (raft retransmits) and is
 * reported through `onError`.
 */
export type AttachmentsProvider = (message: Message) => EntryAttachment[] | Promise<EntryAttachment[]>;

/** Prefix of the staging directories the transport creates (so leftovers can be recognised). */
export const STAGED_DIRECTORY_PREFIX = 'transport-';

const PAYLOAD_NAME_PATTERN = /^[1-9a-z][0-9a-z]{0,10}$/;

/**
 * MANIFEST or a canonical base-36 payload name (1, 2, … 9, a, … z, 10, …: no leading zero, a
 * safe integer). Nothing else: no upper case, dots or separators, so RAFT, RAFT.tmp, ".." and
 * "a/b" are refused. (Any other lower-case alphanumeric word is a valid base-36 number.)
 */
export function isAttachmentFileName(name: string): boolean {
  return name === MANIFEST_FILE || (PAYLOAD_NAME_PATTERN.test(name) && Number.isSafeInteger(parseInt(name, 36)));
}

function attachmentError(message: string, cause?: unknown): TransportError {
  return new TransportError(TransportErrorCode.Attachment, message, cause === undefined ? {} : { cause });
}

/**
 * The attachment for a store entry directory: MANIFEST first, then the payload files in
 * sequence order, each as a path (read when the message is transmitted). RAFT and any other
 * name are left out.
 */
export async function attachmentFromEntryDirectory(entryDir: string, index: number): Promise<EntryAttachment> {
  const names = (await readdir(entryDir)).filter(isAttachmentFileName);
  names.sort((a, b) => (a === MANIFEST_FILE ? -1 : b === MANIFEST_FILE ? 1 : parseInt(a, 36) - parseInt(b, 36)));
  return { index, files: names.map((name) => ({ name, path: join(entryDir, name) })) };
}

/**
 * A ready-made `attachmentsFor` for a ReplicaLogStore directory: every entry of the message (or
 * those `include` selects) ships its `wal/<LSN>` directory. An entry directory that is gone
 * (compacted meanwhile) makes the provider reject, so the message is dropped and raft retries.
 */
export function entryDirectoryAttachments(storeDir: string, include: (entry: Entry) => boolean = () => true): AttachmentsProvider {
  return (message) =>
    Promise.all(
      message.entries.filter(include).map((entry) => attachmentFromEntryDirectory(entryPath(storeDir, entry.index), entry.index)),
    );
}

/** Removes staged directories the application decided not to adopt (errors ignored). */
export async function discardStagedDirectories(stagedDirs: ReadonlyMap<number, string>): Promise<void> {
  for (const dir of stagedDirs.values()) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

/** Validates attachments against the message and each other; throws ERR_ATTACHMENT (sender) or ERR_FRAME_MALFORMED (receiver). */
export function checkAttachmentHeaders(message: Message, attachments: readonly StreamAttachmentHeader[], side: 'send' | 'receive'): void {
  const fail = (text: string): never => {
    throw side === 'send' ? attachmentError(text) : malformedFrameError(`StreamBegin frame: ${text}`);
  };
  const entryIndexes = new Set(message.entries.map((entry) => entry.index));
  const seenIndexes = new Set<number>();
  for (const attachment of attachments) {
    if (!entryIndexes.has(attachment.index)) fail(`attachment for index ${attachment.index}, which is not an entry of the message`);
    if (seenIndexes.has(attachment.index)) fail(`two attachments for index ${attachment.index}`);
    seenIndexes.add(attachment.index);
    const seenNames = new Set<string>();
    for (const file of attachment.files) {
      // The name becomes a path component on the receiver: only MANIFEST and base-36 names pass,
      // so "..", "/", RAFT and hidden names can never be written.
      if (!isAttachmentFileName(file.name)) fail(`attachment ${attachment.index}: file name ${JSON.stringify(file.name)} is not MANIFEST or a base-36 payload name`);
      if (seenNames.has(file.name)) fail(`attachment ${attachment.index}: file ${file.name} appears twice`);
      seenNames.add(file.name);
      if (!Number.isSafeInteger(file.size) || file.size < 0) fail(`attachment ${attachment.index}: file ${file.name} has size ${file.size}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sender side

/** A file ready to stream: bytes in memory, or an open handle and the size fixed at open time. */
export interface PreparedFile {
  name: string;
  size: number;
  bytes?: Uint8Array;
  handle?: FileHandle;
}

export interface PreparedAttachment {
  index: number;
  files: PreparedFile[];
}

/** Opens path sources (their size is taken from the open handle). Close with `closePrepared`. */
export async function prepareAttachments(attachments: readonly EntryAttachment[]): Promise<PreparedAttachment[]> {
  const prepared: PreparedAttachment[] = [];
  try {
    for (const attachment of attachments) {
      const files: PreparedFile[] = [];
      prepared.push({ index: attachment.index, files });
      for (const file of attachment.files) {
        if ('bytes' in file) {
          files.push({ name: file.name, size: file.bytes.length, bytes: file.bytes });
        } else {
          let handle: FileHandle;
          try {
            handle = await open(file.path, 'r');
          } catch (error) {
            throw attachmentError(`cannot open attachment file ${file.path}`, error);
          }
          files.push({ name: file.name, size: 0, handle });
          files[files.length - 1]!.size = (await handle.stat()).size;
        }
      }
    }
  } catch (error) {
    await closePrepared(prepared);
    throw error;
  }
  return prepared;
}

export async function closePrepared(prepared: readonly PreparedAttachment[]): Promise<void> {
  for (const attachment of prepared) {
    for (const file of attachment.files) await file.handle?.close().catch(() => undefined);
  }
}

/**
 * Yields the bytes of one prepared file in pieces of at most `chunkBytes`. A file that became
 * shorter than announced throws ERR_ATTACHMENT (the stream is then broken off, never padded).
 */
export async function* readPreparedFile(file: PreparedFile, chunkBytes: number): AsyncGenerator<Uint8Array> {
  if (file.bytes) {
    for (let offset = 0; offset < file.bytes.length; offset += chunkBytes) {
      yield file.bytes.subarray(offset, Math.min(file.bytes.length, offset + chunkBytes));
    }
    return;
  }
  const handle = file.handle!;
  let position = 0;
  while (position < file.size) {
    const buffer = Buffer.allocUnsafe(Math.min(chunkBytes, file.size - position));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) throw attachmentError(`attachment file ${file.name} shrank while being sent`);
    position += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

// ---------------------------------------------------------------------------------------------
// Receiver side

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeFully(handle: FileHandle, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}

interface PlannedFile {
  directory: string;
  name: string;
  size: number;
}

/**
 * Writes the attachment bytes of one stream into fresh staging directories, in header order.
 * Use: `open()`, then `write()` for consecutive byte ranges, then `finish()` (all bytes came)
 * or `abort()` (anything else; removes every directory it created).
 */
export class StagedAttachmentWriter {
  private readonly directories = new Map<number, string>();
  private readonly plan: PlannedFile[] = [];
  /** Index into `plan` of the file being written; every file before it is fsynced and closed. */
  private cursor = 0;
  private current: FileHandle | undefined;
  private currentWritten = 0;

  constructor(
    private readonly stagingRoot: string,
    private readonly attachments: readonly StreamAttachmentHeader[],
  ) {}

  async open(): Promise<void> {
    try {
      for (const attachment of this.attachments) {
        const directory = await mkdtemp(join(this.stagingRoot, STAGED_DIRECTORY_PREFIX));
        this.directories.set(attachment.index, directory);
        for (const file of attachment.files) this.plan.push({ directory, name: file.name, size: file.size });
      }
    } catch (error) {
      throw attachmentError(`cannot create a staging directory under ${this.stagingRoot}`, error);
    }
  }

  /** Appends the next bytes of the attachment data (they may span several files). */
  async write(data: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < data.length) {
      await this.openNextFile();
      const file = this.plan[this.cursor];
      if (file === undefined || this.current === undefined) throw malformedFrameError('stream carries more attachment bytes than announced');
      const count = Math.min(file.size - this.currentWritten, data.length - offset);
      await writeFully(this.current, data.subarray(offset, offset + count));
      this.currentWritten += count;
      offset += count;
      if (this.currentWritten === file.size) await this.closeCurrent();
    }
  }

  /** All bytes have been written: creates trailing empty files, fsyncs directories, returns them. */
  async finish(): Promise<Map<number, string>> {
    await this.openNextFile();
    if (this.cursor < this.plan.length) throw malformedFrameError('stream ended before all attachment bytes arrived');
    // Files are already durable (closeCurrent fsyncs); now their names, then the directories' names.
    for (const directory of this.directories.values()) await fsyncPath(directory);
    if (this.directories.size > 0) await fsyncPath(this.stagingRoot);
    return new Map(this.directories);
  }

  async abort(): Promise<void> {
    await this.current?.close().catch(() => undefined);
    this.current = undefined;
    for (const directory of this.directories.values()) await rm(directory, { recursive: true, force: true }).catch(() => undefined);
    this.directories.clear();
  }

  /** Opens the file at the cursor when none is open; empty files are created and closed on the way. */
  private async openNextFile(): Promise<void> {
    while (this.current === undefined && this.cursor < this.plan.length) {
      const file = this.plan[this.cursor]!;
      // 'wx': the directory is fresh, so an existing name means a duplicate (refused earlier).
      // Mode 0400 applies to later opens; this descriptor may still write.
      this.current = await open(join(file.directory, file.name), 'wx', FILE_MODE);
      this.currentWritten = 0;
      if (file.size === 0) await this.closeCurrent();
      else return;
    }
  }

  private async closeCurrent(): Promise<void> {
    const handle = this.current!;
    this.current = undefined;
    this.cursor += 1;
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
