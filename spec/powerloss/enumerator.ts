/**
 * A crash-state enumerator for power cuts (issue 15).
 *
 * The model (POSIX, as the README's durability section states it):
 *   - a directory entry changed by mkdir, creating a file, unlink/rm -r or one side of a rename
 *     is sure to survive a power cut only once THAT directory was fsynced afterwards (the
 *     directory object, whatever its name is by then); before that it may or may not survive,
 *     independently of every other change, so in any order;
 *   - a rename within one directory is atomic (the entry is under its old name or its new one);
 *     a rename between two directories changes two directories, each side durable with its own
 *     directory's fsync: after a power cut the entry may have both names (the same directory
 *     under two paths) or, when only the removal survived, neither. What is atomic is the
 *     entry itself: it moves whole, never half its files;
 *   - a file's data is sure once the file was fsynced (or fdatasynced); before that it may be
 *     whole, lost (empty) or zeroed; data written over an existing file in place (a reused entry
 *     directory's RAFT) may be the new data, the old, or zeroed, and so may bytes written at an
 *     offset into an existing file (a journal segment's record), range by range, independently;
 *   - rm -r is one step: when its removal survives, the directory's entries are gone with it
 *     (the same directory seen under another name is then empty);
 *   - the KV (LevelDB) changes atomically at each synced batch: it is exactly as of the last
 *     batch that completed. `kv/` itself is a name in the store directory like any other: until
 *     the store directory is fsynced after LevelDB created it, it may be gone (with every
 *     record). LevelDB's own file juggling at open is not modelled (finding 8 is tested apart).
 *
 * How: a recording FileSystem runs an operation on a real store (the store directory inside a
 * root directory, so that creating the store is recorded too) and writes down every mutation
 * and barrier against a shadow tree of directory objects (so an fsync names the directory it
 * reached, whatever its path), a copy of kv/ after each synced KV batch (classic-level's batch
 * is wrapped while recording), and the moment the operation's promise resolved (the
 * acknowledgement). Then, for every prefix of that trace (a power cut after step k), every
 * choice of which unsynced changes survive (all subsets while there are few, seeded samples
 * beyond) is built from the baseline (the root before the operation, all of it durable),
 * written out as a directory tree, and opened with ReplicaLogStore.open. Identical trees are
 * opened once. A directory left with two names is written twice, and opened through a file
 * system that keeps the copies one directory: removing the contents under one name removes
 * them under the other. `check` then says whether the state is acceptable (before the
 * acknowledgement: the state before, after, or a valid prefix; from it on: exactly after), and
 * after the store closed, `verifyTree` must find no problem.
 *
 * A storage (issue 19, storage-operations.ts) is recorded the same way through `recordWith`
 * and `enumerateCrashStatesWith`: its one `kv/` is the KV recorded, each partition's writes are
 * acknowledged by their own step (`ack` with a label), and a judge opens each state through
 * the storage and says, per label, whether the power cut came after that acknowledgement.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { ReplicaLogStore, type ReplicaLogStoreOptions } from '../../lib/replica-log-store.js';
import { seededRandom } from '../../lib/seeded-random.js';
import { verifyTree } from '../../lib/verify.js';
import { nodeFileSystem, type FileSystem } from '../../lib/wal/file-system.js';
import { kvPath, LOCK_DATABASE } from '../../lib/wal/layout.js';

type DirectoryNode = { kind: 'dir'; id: number; mode: number; children: Map<string, TreeNode> };
type FileNode = { kind: 'file'; id: number; mode: number; data: Uint8Array };
type TreeNode = DirectoryNode | FileNode;

/** One step of the recorded trace. Directories and files are named by their object id. */
export type Step =
  | { kind: 'add'; parent: number; name: string; node: TreeNode }
  | { kind: 'remove'; parent: number; name: string; node: number }
  | { kind: 'rename'; from: number; fromName: string; to: number; toName: string; node: number }
  | { kind: 'fsync'; node: number; path: string }
  /** syncfs(2): everything recorded before it is durable. */
  | { kind: 'syncfs' }
  /** A file's content replaced in place (the same object): until synced, old, new or zeroed. */
  | { kind: 'overwrite'; node: number; data: Uint8Array }
  /** Bytes written at `offset` into a file (a journal segment's record): until synced, that range new, old or zeroed. */
  | { kind: 'write-at'; node: number; offset: number; data: Uint8Array }
  | { kind: 'kv'; copy: string }
  | { kind: 'kv-created'; parent: number; copy: string }
  /** An acknowledgement: of the whole operation, or (a storage's operations) of the writes named `label`. */
  | { kind: 'ack'; label?: string };

export interface RecordedOperation {
  name: string;
  steps: Step[];
  /** The root holding the store directory (trace paths are relative to it). */
  root: string;
  /** The store directory's path relative to the root. */
  store: string;
  baseline: DirectoryNode;
  /** kv/ before the operation (undefined: there was none). */
  kvBefore: string | undefined;
}

/** What a crash state opened to; returns why it is not acceptable, or undefined. */
export type CrashCheck = (
  store: ReplicaLogStore,
  context: { step: number; steps: number; acknowledged: boolean; acknowledgedLabel: (label: string) => boolean },
) => string | undefined;

/** Which acknowledgements a crash state comes after. */
export interface JudgeContext {
  step: number;
  steps: number;
  /** Whether the operation's acknowledgement (no label) or the one named `label` came before the power cut. */
  acknowledged(label?: string): boolean;
}

/**
 * Opens a crash state written out at `storeDir` through `fileSystem` (which keeps a directory
 * left with two names one directory) and returns why it is not acceptable (empty: it is).
 */
export type CrashJudge = (storeDir: string, fileSystem: FileSystem, context: JudgeContext) => Promise<string[]>;

export interface EnumerationReport {
  operation: string;
  /** Steps in the trace (mutations, barriers, KV batches). */
  steps: number;
  /** Distinct crash states opened. */
  states: number;
  failures: { step: number; survivors: string; reason: string }[];
}

export interface RecordOptions {
  /** Options for the recorded open (dir and fileSystem are set here). */
  openOptions?: Partial<ReplicaLogStoreOptions>;
  /** The control: skip (do not perform, do not record) the fsync of `path`'s `occurrence`-th call (0-based). */
  dropFsync?: (path: string, occurrence: number) => boolean;
  /** A file system without writeAt/syncData: a journal store writes one file per record, not segments. */
  recordFiles?: boolean;
}

let nextNodeId = 1;

function readTree(path: string, skip: (path: string) => boolean): DirectoryNode {
  const read = (at: string): TreeNode => {
    const stat = lstatSync(at);
    if (stat.isDirectory()) {
      const children = new Map<string, TreeNode>();
      for (const name of readdirSync(at).sort()) {
        const child = join(at, name);
        if (!skip(child)) children.set(name, read(child));
      }
      return { kind: 'dir', id: nextNodeId++, mode: stat.mode & 0o7777, children };
    }
    return { kind: 'file', id: nextNodeId++, mode: stat.mode & 0o7777, data: readFileSync(at) };
  };
  return read(path) as DirectoryNode;
}

/** A copy with the same ids, every object registered in `objects`. */
function cloneTree(node: TreeNode, objects: Map<number, TreeNode>): TreeNode {
  const copy: TreeNode =
    node.kind === 'file'
      ? { kind: 'file', id: node.id, mode: node.mode, data: node.data }
      : { kind: 'dir', id: node.id, mode: node.mode, children: new Map([...node.children].map(([name, child]) => [name, cloneTree(child, objects)])) };
  objects.set(copy.id, copy);
  return copy;
}

/** The shadow tree's node at `path` (relative parts), or undefined. */
function walk(root: DirectoryNode, parts: readonly string[]): TreeNode | undefined {
  let node: TreeNode = root;
  for (const part of parts) {
    if (node.kind !== 'dir') return undefined;
    const next: TreeNode | undefined = node.children.get(part);
    if (next === undefined) return undefined;
    node = next;
  }
  return node;
}

/**
 * Runs `operation` on the store `store` (a path relative to `root`; it may not exist yet) with
 * a recording file system and returns the trace. The operation gets the open store; it is
 * closed here (close's own writes are part of the trace).
 */
export async function recordOperation(
  name: string,
  root: string,
  store: string,
  scratch: string,
  operation: (store: ReplicaLogStore, acknowledge: (label: string) => void) => Promise<void>,
  options: RecordOptions = {},
): Promise<RecordedOperation> {
  return recordWith(name, root, store, scratch, options, async (fileSystem, acknowledge) => {
    const opened = await ReplicaLogStore.open({ ...options.openOptions, dir: join(root, store), fileSystem });
    try {
      await operation(opened, acknowledge);
      acknowledge();
    } finally {
      await opened.close();
    }
  });
}

/**
 * The recorder under recordOperation: `run` gets the recording file system (to open the store,
 * or a storage, at `root`/`store` with) and `acknowledge`, which marks the moment a write
 * (named by `label`, or the whole operation) was acknowledged. `run` closes what it opened.
 * The KV recorded is the one at `<root>/<store>/kv` (a storage's one KV for all its partitions).
 */
export async function recordWith(
  name: string,
  root: string,
  store: string,
  scratch: string,
  options: Pick<RecordOptions, 'dropFsync' | 'recordFiles'>,
  run: (fileSystem: FileSystem, acknowledge: (label?: string) => void) => Promise<void>,
): Promise<RecordedOperation> {
  const dir = join(root, store);
  const kv = kvPath(dir);
  const skipped = new Set([kv, join(dir, LOCK_DATABASE)]);
  const baseline = readTree(root, (path) => skipped.has(path));
  const objects = new Map<number, TreeNode>();
  const live = cloneTree(baseline, objects) as DirectoryNode;
  let kvBefore: string | undefined;
  if (existsSync(kv)) {
    kvBefore = join(scratch, 'kv-before');
    cpSync(kv, kvBefore, { recursive: true });
  }
  const steps: Step[] = [];
  let kvCopies = 0;
  const copyKv = (): string => {
    const copy = join(scratch, `kv-${kvCopies++}`);
    cpSync(kv, copy, { recursive: true });
    return copy;
  };
  let kvSeen = kvBefore !== undefined;
  const partsOf = (path: string): string[] | undefined => {
    const relativePath = relative(root, path);
    if (relativePath.startsWith('..')) return undefined;
    return relativePath === '' ? [] : relativePath.split(sep);
  };
  const noticeKv = () => {
    // LevelDB made kv/ (outside the FileSystem): a new name in the store directory.
    if (kvSeen || !existsSync(kv)) return;
    kvSeen = true;
    const parent = walk(live, partsOf(dir)!);
    if (parent?.kind === 'dir') steps.push({ kind: 'kv-created', parent: parent.id, copy: copyKv() });
  };
  const parentOf = (path: string): DirectoryNode | undefined => {
    const parts = partsOf(path);
    if (parts === undefined || parts.length === 0) return undefined;
    const parent = walk(live, parts.slice(0, -1));
    return parent?.kind === 'dir' ? parent : undefined;
  };
  /** The live model's node at `path`, if the model has it. */
  const liveNode = (path: string): TreeNode | undefined => {
    const parts = partsOf(path);
    return parts === undefined ? undefined : walk(live, parts);
  };
  /** fsync and fdatasync alike: counted (a control may drop it), run, then a durability step. */
  const recordSync = async (path: string, sync: (path: string) => Promise<void>): Promise<void> => {
    noticeKv();
    const occurrence = fsyncCounts.get(path) ?? 0;
    fsyncCounts.set(path, occurrence + 1);
    if (options.dropFsync?.(path, occurrence) === true) return;
    await sync(path);
    const node = liveNode(path);
    if (node !== undefined) steps.push({ kind: 'fsync', node: node.id, path: relative(root, path) });
  };
  const addLive = (path: string, node: TreeNode) => {
    const parent = parentOf(path);
    if (parent === undefined) return;
    const template: TreeNode = node.kind === 'dir' ? { ...node, children: new Map() } : { ...node };
    steps.push({ kind: 'add', parent: parent.id, name: basename(path), node: template });
    parent.children.set(basename(path), node);
  };
  const fsyncCounts = new Map<string, number>();
  const fileSystem: FileSystem = {
    ...nodeFileSystem,
    async mkdir(path, mode) {
      noticeKv();
      const created = await nodeFileSystem.mkdir(path, mode);
      if (created) addLive(path, { kind: 'dir', id: nextNodeId++, mode, children: new Map() });
      return created;
    },
    async mkdtemp(prefix) {
      noticeKv();
      const path = await nodeFileSystem.mkdtemp(prefix);
      addLive(path, { kind: 'dir', id: nextNodeId++, mode: 0o700, children: new Map() });
      return path;
    },
    async writeFile(path, data, mode) {
      noticeKv();
      await nodeFileSystem.writeFile(path, data, mode);
      addLive(path, { kind: 'file', id: nextNodeId++, mode, data: Uint8Array.from(data) });
    },
    async overwriteFile(path, data, mode) {
      noticeKv();
      await nodeFileSystem.overwriteFile!(path, data, mode);
      const node = liveNode(path);
      if (node?.kind !== 'file') return;
      node.data = Uint8Array.from(data);
      steps.push({ kind: 'overwrite', node: node.id, data: node.data });
    },
    async writeAt(path, offset, data) {
      noticeKv();
      await nodeFileSystem.writeAt!(path, offset, data);
      const node = liveNode(path);
      if (node?.kind !== 'file') return;
      const next = new Uint8Array(Math.max(node.data.length, offset + data.length));
      next.set(node.data);
      next.set(data, offset);
      node.data = next;
      steps.push({ kind: 'write-at', node: node.id, offset, data: Uint8Array.from(data) });
    },
    // fdatasync: the file's data is sure from here on, like fsync (names are not: a file's sync
    // never makes its directory entry durable in this model, with either call).
    syncData: (path) => recordSync(path, (target) => nodeFileSystem.syncData!(target)),
    fsync: (path) => recordSync(path, (target) => nodeFileSystem.fsync(target)),
    async syncFileSystem(path) {
      noticeKv();
      // The model decides what survives: no real syncfs is needed to build the states. The
      // control may drop it (the store then believes everything is durable).
      const occurrence = fsyncCounts.get('syncfs') ?? 0;
      fsyncCounts.set('syncfs', occurrence + 1);
      if (options.dropFsync?.('syncfs', occurrence) === true) return true;
      void path;
      steps.push({ kind: 'syncfs' });
      return true;
    },
    async rename(from, to) {
      noticeKv();
      await nodeFileSystem.rename(from, to);
      const fromParent = parentOf(from);
      const toParent = parentOf(to);
      const node = fromParent?.children.get(basename(from));
      if (fromParent === undefined || toParent === undefined || node === undefined) return;
      steps.push({ kind: 'rename', from: fromParent.id, fromName: basename(from), to: toParent.id, toName: basename(to), node: node.id });
      fromParent.children.delete(basename(from));
      toParent.children.set(basename(to), node);
    },
    async remove(path) {
      noticeKv();
      await nodeFileSystem.remove(path);
      const parent = parentOf(path);
      const node = parent?.children.get(basename(path));
      if (parent === undefined || node === undefined) return;
      steps.push({ kind: 'remove', parent: parent.id, name: basename(path), node: node.id });
      parent.children.delete(basename(path));
    },
  };

  if (options.recordFiles === true) {
    delete fileSystem.writeAt;
    delete fileSystem.syncData;
  }

  // Every synced KV batch of the recorded store: a copy of kv/ once it completed.
  const prototype = ClassicLevel.prototype as unknown as { batch: (...args: unknown[]) => unknown };
  const ownBatch = Object.hasOwn(prototype, 'batch');
  const originalBatch = prototype.batch;
  prototype.batch = function (this: { location: string }, ...args: unknown[]) {
    const result = originalBatch.apply(this, args);
    if (args.length === 0 || this.location !== kv) return result;
    noticeKv();
    return (result as Promise<unknown>).then((value) => {
      steps.push({ kind: 'kv', copy: copyKv() });
      return value;
    });
  };
  try {
    await run(fileSystem, (label) => steps.push(label === undefined ? { kind: 'ack' } : { kind: 'ack', label }));
  } finally {
    if (ownBatch) prototype.batch = originalBatch;
    else delete (prototype as { batch?: unknown }).batch;
  }
  return { name, steps, root, store, baseline, kvBefore };
}

/** Keys of the changes a power cut after steps[0..upTo) may keep or lose, and what is sure. */
interface Uncertainty {
  /** `i` (the directory entry of add/remove/kv-created, or a rename within one directory), `i:from`/`i:to` (a rename's sides), `i:data`. */
  open: string[];
  sure: Set<string>;
  /** The open keys that take a name away (removals, the old side of renames; a rename within one directory is both). */
  removals: Set<string>;
}

function uncertainty(steps: readonly Step[], upTo: number): Uncertainty {
  // For each object: the positions of its fsyncs.
  const fsyncs = new Map<number, number[]>();
  for (let index = 0; index < upTo; index++) {
    const step = steps[index]!;
    if (step.kind === 'fsync') fsyncs.set(step.node, [...(fsyncs.get(step.node) ?? []), index]);
  }
  // syncfs: every change before the last one is durable, whatever its directory.
  let lastFileSystemSync = -1;
  for (let index = 0; index < upTo; index++) if (steps[index]!.kind === 'syncfs') lastFileSystemSync = index;
  const syncedAfter = (node: number, index: number) => index < lastFileSystemSync || (fsyncs.get(node) ?? []).some((position) => position > index);
  const open: string[] = [];
  const sure = new Set<string>();
  const removals = new Set<string>();
  const side = (key: string, directory: number, index: number, removal = false) => {
    if (syncedAfter(directory, index)) sure.add(key);
    else {
      open.push(key);
      if (removal) removals.add(key);
    }
  };
  for (let index = 0; index < upTo; index++) {
    const step = steps[index]!;
    if (step.kind === 'add' || step.kind === 'kv-created') side(`${index}`, step.parent, index);
    if (step.kind === 'remove') side(`${index}`, step.parent, index, true);
    if (step.kind === 'add' && step.node.kind === 'file' && step.node.data.length > 0) {
      if (syncedAfter(step.node.id, index)) sure.add(`${index}:data`);
      else open.push(`${index}:data`);
    }
    if (step.kind === 'overwrite' || step.kind === 'write-at') {
      if (syncedAfter(step.node, index)) sure.add(`${index}:data`);
      else open.push(`${index}:data`);
    }
    if (step.kind === 'rename') {
      if (step.from === step.to) side(`${index}`, step.from, index, true);
      else {
        side(`${index}:from`, step.from, index, true);
        side(`${index}:to`, step.to, index);
      }
    }
  }
  return { open, sure, removals };
}

interface CrashState {
  tree: DirectoryNode;
  kv: string | undefined;
}

/** The state a power cut after steps[0..upTo) leaves when exactly the `kept` uncertain changes survived. */
function buildState(recorded: RecordedOperation, upTo: number, survives: (key: string) => boolean, zeroLostData: boolean): CrashState {
  const objects = new Map<number, TreeNode>();
  const tree = cloneTree(recorded.baseline, objects) as DirectoryNode;
  let kv = recorded.kvBefore;
  let kvNamed = recorded.kvBefore !== undefined;
  const directory = (id: number): DirectoryNode | undefined => {
    const node = objects.get(id);
    return node?.kind === 'dir' ? node : undefined;
  };
  const clear = (node: TreeNode) => {
    if (node.kind !== 'dir') return;
    for (const child of node.children.values()) clear(child);
    node.children.clear();
  };
  for (let index = 0; index < upTo; index++) {
    const step = recorded.steps[index]!;
    switch (step.kind) {
      case 'fsync':
      case 'syncfs':
      case 'ack':
        break;
      case 'kv':
        kv = step.copy;
        break;
      case 'kv-created':
        if (kv === undefined) kv = step.copy;
        if (survives(`${index}`)) kvNamed = true;
        break;
      case 'add': {
        // Every object exists from its creation on; whether a name reaches it is the question.
        const node: TreeNode =
          step.node.kind === 'dir'
            ? { kind: 'dir', id: step.node.id, mode: step.node.mode, children: new Map() }
            : { kind: 'file', id: step.node.id, mode: step.node.mode, data: survives(`${index}:data`) || step.node.data.length === 0 ? step.node.data : zeroLostData ? new Uint8Array(step.node.data.length) : new Uint8Array(0) };
        objects.set(node.id, node);
        if (survives(`${index}`)) directory(step.parent)?.children.set(step.name, node);
        break;
      }
      case 'overwrite': {
        const node = objects.get(step.node);
        if (node?.kind !== 'file') break;
        // Lost: the old data stays, or (zeroed) the new length reads as zeros.
        if (survives(`${index}:data`)) node.data = step.data;
        else if (zeroLostData) node.data = new Uint8Array(step.data.length);
        break;
      }
      case 'write-at': {
        const node = objects.get(step.node);
        if (node?.kind !== 'file') break;
        // Lost: the range keeps its old bytes, or (zeroed) reads as zeros.
        const bytes = survives(`${index}:data`) ? step.data : zeroLostData ? new Uint8Array(step.data.length) : undefined;
        if (bytes === undefined) break;
        const next = new Uint8Array(Math.max(node.data.length, step.offset + bytes.length));
        next.set(node.data);
        next.set(bytes, step.offset);
        node.data = next;
        break;
      }
      case 'remove': {
        const parent = directory(step.parent);
        const node = objects.get(step.node);
        if (!survives(`${index}`) || parent === undefined || node === undefined) break;
        if (parent.children.get(step.name) === node) parent.children.delete(step.name);
        clear(node);
        break;
      }
      case 'rename': {
        const node = objects.get(step.node);
        if (node === undefined) break;
        const from = directory(step.from);
        const to = directory(step.to);
        const sameDirectory = step.from === step.to;
        const removed = sameDirectory ? survives(`${index}`) : survives(`${index}:from`);
        const added = sameDirectory ? survives(`${index}`) : survives(`${index}:to`);
        if (removed && from?.children.get(step.fromName) === node) from.children.delete(step.fromName);
        if (added) to?.children.set(step.toName, node);
        break;
      }
    }
  }
  return { tree, kv: kvNamed ? kv : undefined };
}

/**
 * Writes the tree under `target` (the root) and returns the groups of paths naming one
 * directory, and a fingerprint of the whole state.
 */
function writeState(state: CrashState, target: string, storeDir: string): { aliases: string[][]; fingerprint: string } {
  const hash = createHash('sha256');
  const paths = new Map<TreeNode, string[]>();
  const write = (node: TreeNode, path: string) => {
    const seen = paths.get(node);
    if (seen !== undefined) seen.push(path);
    else paths.set(node, [path]);
    hash.update(`${relative(target, path)}\0${node.kind}\0${node.mode}\0`);
    if (node.kind === 'file') {
      writeFileSync(path, node.data, { mode: node.mode });
      hash.update(node.data);
      return;
    }
    mkdirSync(path, { mode: node.mode });
    for (const [name, child] of [...node.children].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) write(child, join(path, name));
  };
  mkdirSync(target);
  for (const [name, child] of state.tree.children) write(child, join(target, name));
  const aliases = [...paths.entries()].filter(([node, names]) => node.kind === 'dir' && names.length > 1).map(([, names]) => names);
  for (const group of aliases) hash.update(`alias ${group.map((path) => relative(target, path)).join(' ')}`);
  hash.update(`kv ${state.kv ?? 'none'}`);
  if (state.kv !== undefined && existsSync(storeDir)) cpSync(state.kv, kvPath(storeDir), { recursive: true });
  return { aliases, fingerprint: hash.digest('hex') };
}

/**
 * The file system a crash state is opened with: node's, except that a directory written twice
 * (two names of one directory) stays one directory: what is removed, created or renamed inside
 * it under one name happens under the other too, and removing one name with its contents
 * (rm -r) leaves the other name empty.
 */
function aliasingFileSystem(groups: string[][]): FileSystem {
  const inside = (path: string, directory: string) => path.startsWith(directory + sep);
  const partners = (path: string): string[] => {
    const mirrored: string[] = [];
    for (const group of groups) {
      for (const member of group) {
        if (!inside(path, member)) continue;
        for (const other of group) if (other !== member) mirrored.push(join(other, relative(member, path)));
      }
    }
    return mirrored;
  };
  return {
    ...nodeFileSystem,
    async mkdir(path, mode) {
      const created = await nodeFileSystem.mkdir(path, mode);
      for (const other of partners(path)) await nodeFileSystem.mkdir(other, mode);
      return created;
    },
    async writeFile(path, data, mode) {
      await nodeFileSystem.writeFile(path, data, mode);
      for (const other of partners(path)) await nodeFileSystem.writeFile(other, data, mode);
    },
    async overwriteFile(path, data, mode) {
      await nodeFileSystem.overwriteFile!(path, data, mode);
      for (const other of partners(path)) await nodeFileSystem.overwriteFile!(other, data, mode);
    },
    async writeAt(path, offset, data) {
      await nodeFileSystem.writeAt!(path, offset, data);
      for (const other of partners(path)) await nodeFileSystem.writeAt!(other, offset, data);
    },
    async rename(from, to) {
      await nodeFileSystem.rename(from, to);
      const mirroredFrom = partners(from);
      const mirroredTo = partners(to);
      for (let position = 0; position < mirroredFrom.length && position < mirroredTo.length; position++) {
        await nodeFileSystem.rename(mirroredFrom[position]!, mirroredTo[position]!);
      }
      // A name of an aliased directory moved: the group follows it.
      for (const group of groups) {
        for (let position = 0; position < group.length; position++) {
          const member = group[position]!;
          if (member === from) group[position] = to;
          else if (inside(member, from)) group[position] = join(to, relative(from, member));
        }
      }
    },
    async remove(path) {
      await nodeFileSystem.remove(path);
      for (const other of partners(path)) await nodeFileSystem.remove(other);
      for (const group of groups) {
        const gone = group.filter((member) => member === path || inside(member, path));
        if (gone.length === 0) continue;
        // The directory's entries were unlinked with this name: every other name sees it empty.
        for (const other of group) {
          if (gone.includes(other)) continue;
          if (!existsSync(other)) continue;
          for (const name of readdirSync(other)) rmSync(join(other, name), { recursive: true, force: true });
        }
        for (const member of gone) group.splice(group.indexOf(member), 1);
      }
    },
  };
}

function describeKeys(keys: Iterable<string>): string {
  return [...keys].join(',');
}

export interface EnumerateOptions {
  seed: number;
  /** Sampled survivor sets per crash point once there are more than 2^exhaustiveUpTo. */
  samplesPerStep: number;
  /** Every subset of the uncertain changes while there are at most this many. */
  exhaustiveUpTo: number;
  /** Stop at the first failing state (a control only needs one). */
  stopAtFirstFailure?: boolean;
}

/** Enumerates the crash states of a recorded operation and opens each with ReplicaLogStore.open. */
export async function enumerateCrashStates(recorded: RecordedOperation, scratch: string, check: CrashCheck, options: EnumerateOptions): Promise<EnumerationReport> {
  return enumerateCrashStatesWith(recorded, scratch, options, async (storeDir, fileSystem, context) => {
    const reasons: string[] = [];
    let store: ReplicaLogStore | undefined;
    try {
      store = await ReplicaLogStore.open({ dir: storeDir, fileSystem });
      const reason = check(store, { step: context.step, steps: context.steps, acknowledged: context.acknowledged(), acknowledgedLabel: (label) => context.acknowledged(label) });
      if (reason !== undefined) reasons.push(reason);
    } catch (error) {
      reasons.push(`open failed: ${(error as Error).message}`);
    } finally {
      await store?.close().catch(() => undefined);
    }
    if (store !== undefined) {
      // After the open (and its repairs), the tree must be one verify finds nothing wrong with.
      const verified = await verifyTree(storeDir);
      if (verified.problems.length > 0) reasons.push(`verify: ${verified.problems.map((problem) => `${problem.code} ${problem.message}`).join('; ')}`);
    }
    return reasons;
  });
}

/** Enumerates the crash states of a recorded operation and has `judge` open and check each. */
export async function enumerateCrashStatesWith(recorded: RecordedOperation, scratch: string, options: EnumerateOptions, judge: CrashJudge): Promise<EnumerationReport> {
  const random = seededRandom(options.seed);
  const steps = recorded.steps;
  const report: EnumerationReport = { operation: recorded.name, steps: steps.length, states: 0, failures: [] };
  const seen = new Set<string>();
  let stateNumber = 0;
  for (let upTo = 0; upTo <= steps.length; upTo++) {
    const { open, sure, removals } = uncertainty(steps, upTo);
    const masks: Set<string>[] = [];
    if (open.length <= options.exhaustiveUpTo) {
      for (let bits = 0; bits < 2 ** open.length; bits++) masks.push(new Set(open.filter((_, position) => (bits >> position) & 1)));
    } else {
      // Nothing kept, everything kept, every new name but no removal (a renamed entry under both
      // names, an old entry beside a new one), every removal but no new name (renamed entries
      // under neither name), then seeded samples.
      masks.push(new Set(), new Set(open), new Set(open.filter((key) => !removals.has(key))), new Set(open.filter((key) => removals.has(key) || key.endsWith(':data'))));
      // Changes kept against their order: every change from the p-th uncertain one on, none before.
      for (let split = 1; split < open.length; split++) masks.push(new Set(open.slice(split)));
      for (let sample = 0; sample < options.samplesPerStep; sample++) masks.push(new Set(open.filter(() => random() < 0.5)));
    }
    // The acknowledgements before this power cut ('' stands for the operation's own).
    const acknowledgedLabels = new Set<string>();
    for (let index = 0; index < upTo; index++) {
      const step = steps[index]!;
      if (step.kind === 'ack') acknowledgedLabels.add(step.label ?? '');
    }
    const context: JudgeContext = { step: upTo, steps: steps.length, acknowledged: (label) => acknowledgedLabels.has(label ?? '') };
    // JSON: the operation's own acknowledgement ('') must differ from none.
    const acknowledgedKey = JSON.stringify([...acknowledgedLabels].sort());
    for (const mask of masks) {
      const dataLost = open.some((key) => key.endsWith(':data') && !mask.has(key));
      for (const zero of dataLost ? [false, true] : [false]) {
        const state = buildState(recorded, upTo, (key) => sure.has(key) || mask.has(key), zero);
        const target = join(scratch, `state-${stateNumber++}`);
        const storeDir = join(target, recorded.store);
        const { aliases, fingerprint } = writeState(state, target, storeDir);
        // The same tree is judged again only where the verdict can differ (once more is acknowledged).
        const key = `${fingerprint} ${acknowledgedKey}`;
        if (seen.has(key)) {
          rmSync(target, { recursive: true, force: true });
          continue;
        }
        seen.add(key);
        report.states++;
        const survivors = `${describeKeys(mask)}${zero ? ' (lost data zeroed)' : ''}`;
        for (const reason of await judge(storeDir, aliasingFileSystem(aliases), context)) report.failures.push({ step: upTo, survivors, reason });
        rmSync(target, { recursive: true, force: true });
        if (options.stopAtFirstFailure === true && report.failures.length > 0) return report;
      }
    }
  }
  return report;
}

/** The trace, one step a line, for failure messages. */
export function describeSteps(recorded: RecordedOperation): string {
  return recorded.steps
    .map((step, index) => {
      switch (step.kind) {
        case 'add':
          return `#${index} add ${step.node.kind} ${step.name} in dir#${step.parent} (${step.node.kind}#${step.node.id})`;
        case 'remove':
          return `#${index} remove ${step.name} from dir#${step.parent}`;
        case 'rename':
          return `#${index} rename dir#${step.from}/${step.fromName} -> dir#${step.to}/${step.toName}`;
        case 'fsync':
          return `#${index} fsync ${step.path || '.'} (#${step.node})`;
        case 'syncfs':
          return `#${index} syncfs`;
        case 'overwrite':
          return `#${index} overwrite file#${step.node} (${step.data.length} bytes)`;
        case 'write-at':
          return `#${index} write-at file#${step.node} offset ${step.offset} (${step.data.length} bytes)`;
        case 'kv':
          return `#${index} kv batch`;
        case 'kv-created':
          return `#${index} kv/ created in dir#${step.parent}`;
        case 'ack':
          return `#${index} acknowledged${step.label === undefined ? '' : ` ${step.label}`}`;
      }
    })
    .join('\n');
}
