/**
 * Snapshot data received over the transport, written to a file under the staging directory as
 * the chunks arrive: a snapshot is never held whole in the transport's memory, whatever its
 * size. The file is temporary (no fsync: the application persists the snapshot itself, through
 * its store) and always removed by the transport: when the stream breaks, when the connection
 * dies or the transport closes, and after the application's `onMessage` settled. A crash leaves
 * it behind in `staging/`, which a ReplicaLogStore empties when it opens.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TransportError, TransportErrorCode } from './framing.js';
import type { StagedSnapshotFile } from './options.js';
import { STAGED_DIRECTORY_PREFIX } from './attachments.js';

/** Name prefix of staged snapshot files (under the transport's staging prefix). */
export const STAGED_SNAPSHOT_PREFIX = `${STAGED_DIRECTORY_PREFIX}snapshot-`;

function stagingError(message: string, cause?: unknown): TransportError {
  return new TransportError(TransportErrorCode.Attachment, message, cause === undefined ? {} : { cause });
}

export class StagedSnapshotWriter implements StagedSnapshotFile {
  readonly path: string;
  private handle: FileHandle | undefined;
  private written = 0;
  private removed = false;

  constructor(
    stagingRoot: string,
    readonly length: number,
  ) {
    this.path = join(stagingRoot, `${STAGED_SNAPSHOT_PREFIX}${randomBytes(8).toString('hex')}`);
  }

  async open(): Promise<void> {
    try {
      // 'wx': a fresh random name; 0600: snapshot data is the whole state, for this user only.
      this.handle = await open(this.path, 'wx', 0o600);
    } catch (error) {
      throw stagingError(`cannot create the snapshot staging file ${this.path}`, error);
    }
  }

  /** Appends the next bytes of snapshot data (the caller never passes more than announced). */
  async write(data: Uint8Array): Promise<void> {
    const handle = this.handle;
    if (handle === undefined) throw stagingError(`snapshot staging file ${this.path} is not open`);
    let offset = 0;
    while (offset < data.length) {
      const { bytesWritten } = await handle.write(data, offset, data.length - offset);
      offset += bytesWritten;
    }
    this.written += data.length;
  }

  get bytesWritten(): number {
    return this.written;
  }

  /** All bytes came: closes the file (it stays until remove()). */
  async finish(): Promise<void> {
    if (this.written !== this.length) throw stagingError(`snapshot staging file ${this.path} holds ${this.written} of ${this.length} bytes`);
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }

  async read(): Promise<Uint8Array> {
    if (this.removed) throw stagingError(`snapshot staging file ${this.path} was already removed (read it inside onMessage)`);
    const data = await readFile(this.path);
    if (data.length !== this.length) throw stagingError(`snapshot staging file ${this.path} holds ${data.length} bytes, not ${this.length}`);
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  }

  /** Closes and removes the file (errors ignored; idempotent). */
  async remove(): Promise<void> {
    this.removed = true;
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close().catch(() => undefined);
    await rm(this.path, { force: true }).catch(() => undefined);
  }
}
