/**
 * `replicalog verify DIR --against OTHER`: do two replicas hold the same log?
 *
 * Both `wal/` directories are listed (names only, streamed), then every index both hold is
 * compared one at a time: the RAFT files byte for byte (the raftpb Entry: term, type, data), and
 * the MANIFEST files byte for byte. Memory and open files stay bounded whatever the size of the
 * logs (two files open at a time). A difference at or below both replicas' saved commit is a
 * problem: two replicas committed different entries at the same index. A difference above either
 * commit is a notice: an uncommitted tail may legitimately be replaced after a leader change.
 */
import { opendir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { decodeEntry } from './codec.js';
import { ErrorCode, ReplicaLogError } from './errors.js';
import { readKvSnapshot } from './verify.js';
import { EntryType } from './types.js';
import { MANIFEST_FILE, RAFT_FILE, formatLsn, parseLsn, walPath } from './wal/layout.js';

/** One index where the replicas differ. */
export interface ReplicaDifference {
  index: number;
  lsn: string;
  /** At or below both replicas' commit: two different committed entries. */
  committed: boolean;
  /** What differs, e.g. "term 3 vs 4", "data (12 vs 12 bytes)", "MANIFEST", "RAFT missing on one side". */
  what: string;
}

export interface ReplicaComparison {
  dir: string;
  against: string;
  /** Index range each replica's wal/ holds (0..0 when empty). */
  range: { first: number; last: number };
  againstRange: { first: number; last: number };
  commit: number;
  againstCommit: number;
  /** The indexes compared: both hold them. Empty when the ranges do not overlap. */
  compared: { first: number; last: number } | undefined;
  /** Differences, lowest index first (at most `maxListed`; `differenceCount` counts all). */
  differences: ReplicaDifference[];
  differenceCount: number;
  /** True when no committed entry differs. */
  ok: boolean;
}

async function walRange(dir: string): Promise<{ first: number; last: number; count: number }> {
  let first = Number.MAX_SAFE_INTEGER;
  let last = 0;
  let count = 0;
  let directory;
  try {
    directory = await opendir(walPath(dir), { bufferSize: 4096 });
  } catch (error) {
    throw new ReplicaLogError(ErrorCode.InvalidArgument, `${walPath(dir)} cannot be listed: ${(error as Error).message}`, { path: walPath(dir), cause: error });
  }
  for await (const entry of directory) {
    const index = parseLsn(entry.name);
    if (index === undefined) continue;
    count++;
    if (index < first) first = index;
    if (index > last) last = index;
  }
  return count === 0 ? { first: 0, last: 0, count } : { first, last, count };
}

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** What differs between two RAFT files (already known to differ). */
function describeRaftDifference(ours: Buffer | undefined, theirs: Buffer | undefined): string {
  if (ours === undefined || theirs === undefined) return `RAFT missing on ${ours === undefined ? 'this' : 'the other'} replica`;
  let a;
  let b;
  try {
    a = decodeEntry(ours);
    b = decodeEntry(theirs);
  } catch {
    return 'RAFT bytes (one does not decode)';
  }
  if (a.term !== b.term) return `term ${a.term} vs ${b.term}`;
  if (a.type !== b.type) return `type ${EntryType[a.type] ?? a.type} vs ${EntryType[b.type] ?? b.type}`;
  if (a.index !== b.index) return `index field ${a.index} vs ${b.index}`;
  return `data (${a.data?.length ?? 0} vs ${b.data?.length ?? 0} bytes)`;
}

/** Compares the logs of two replicas entry by entry (see the module comment). */
export async function compareReplicas(dir: string, against: string, options: { maxListed?: number; partitionId?: number } = {}): Promise<ReplicaComparison> {
  const ours = resolve(dir);
  const theirs = resolve(against);
  const maxListed = options.maxListed ?? 20;
  const [range, againstRange, kv, againstKv] = await Promise.all([
    walRange(ours),
    walRange(theirs),
    readKvSnapshot(ours, options.partitionId),
    readKvSnapshot(theirs, options.partitionId),
  ]);
  const commit = kv.hardState?.commit ?? 0;
  const againstCommit = againstKv.hardState?.commit ?? 0;
  const first = Math.max(range.first, againstRange.first);
  const last = Math.min(range.last, againstRange.last);
  const compared = range.count > 0 && againstRange.count > 0 && first <= last ? { first, last } : undefined;
  const differences: ReplicaDifference[] = [];
  let differenceCount = 0;
  let committedDifference = false;
  if (compared !== undefined) {
    // One index at a time: bounded memory and descriptors, whatever the log's size.
    for (let index = compared.first; index <= compared.last; index++) {
      const lsn = formatLsn(index);
      const [ourRaft, theirRaft] = await Promise.all([readOptional(join(walPath(ours), lsn, RAFT_FILE)), readOptional(join(walPath(theirs), lsn, RAFT_FILE))]);
      const [ourManifest, theirManifest] = await Promise.all([readOptional(join(walPath(ours), lsn, MANIFEST_FILE)), readOptional(join(walPath(theirs), lsn, MANIFEST_FILE))]);
      const raftDiffers = !(ourRaft === undefined && theirRaft === undefined) && (ourRaft === undefined || theirRaft === undefined || !ourRaft.equals(theirRaft));
      const manifestDiffers = !(ourManifest === undefined && theirManifest === undefined) && (ourManifest === undefined || theirManifest === undefined || !ourManifest.equals(theirManifest));
      if (!raftDiffers && !manifestDiffers) continue;
      const committed = index <= commit && index <= againstCommit;
      committedDifference ||= committed;
      differenceCount++;
      if (differences.length < maxListed) {
        differences.push({ index, lsn, committed, what: raftDiffers ? describeRaftDifference(ourRaft, theirRaft) : 'MANIFEST bytes' });
      }
    }
  }
  return {
    dir: ours,
    against: theirs,
    range: { first: range.first, last: range.last },
    againstRange: { first: againstRange.first, last: againstRange.last },
    commit,
    againstCommit,
    compared,
    differences,
    differenceCount,
    ok: !committedDifference,
  };
}
