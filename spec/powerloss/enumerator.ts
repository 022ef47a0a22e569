/**
 * A crash-state enumerator for power cuts (issue 15).
 *
 * The model (POSIX, as the README's durability section states it):
 *   - a new name (mkdir, a created file, the target of a rename) and a removed name survive a
 *     power cut for sure only once their directory was fsynced afterwards; before that they
 *     may or may not, independently of each other, in any order;
 *   - a rename is atomic: the entry is under its old name or its new one, never both or neither;
 *     it is sure once either directory was fsynced afterwards (the fsync makes that directory's
 *     side durable, and atomicity the other);
 *   - a file's data survives for sure only once the file was fsynced; before that it may be
 *     whole, lost (empty) or zeroed;
 *   - the KV (LevelDB) changes atomically at each synced batch (every KV write the store makes is
 *     one synced batch), so it is exactly as of the last batch that completed.
 *
 * How: a recording FileSystem runs an operation on a real store directory and writes down every
 * mutation and barrier (and a copy of kv/ after each KV batch, seen through the store's
 * 'before-kv-write' crash point and the next event). Then, for every prefix of that trace (a
 * power cut after step k), every choice of which unsynced mutations survive (all subsets while
 * there are few, seeded samples beyond) is built as a directory tree from the baseline (the
 * store as it was before the operation, closed: all of it durable) and opened with
 * ReplicaLogStore.open. `check` then says whether that state is acceptable, and after the store
 * closed, `verifyTree` must find no problem in it.
 */
import { cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { seededRandom } from '../../lib/seeded-random.js';
import { verifyTree } from '../../lib/verify.js';
import { nodeFileSystem, type FileSystem } from '../../lib/wal/file-system.js';
import { kvPath, LOCK_DATABASE } from '../../lib/wal/layout.js';

type TreeNode = { kind: 'dir'; mode: number; children: Map<string, TreeNode> } | { kind: 'file'; mode: number; data: Uint8Array; contentId: number };

/** One step of the recorded trace. */
type Step =
  | { kind: 'add'; path: string; node: TreeNode }
  | { kind: 'remove'; path: string }
  | { kind: 'rename'; from: string; to: string }
  | { kind: 'fsync'; path: string }
  | { kind: 'kv'; copy: string };

export interface RecordedOperation {
  name: string;
  steps: Step[];
  /** The store directory (the trace's paths are relative to it). */
  dir: string;
}

/** What a crash state opened to; `check` returns why it is not acceptable, or undefined. */
export type CrashCheck = (store: ReplicaLogStore, context: { step: number; steps: number; acknowledged: boolean }) => string | undefined;

export interface EnumerationReport {
  operation: string;
  states: number;
  failures: { step: number; survivors: string; reason: string }[];
}

let nextContentId = 1;

/** Reads a directory tree (files and directories, modes) into memory, skipping `skip` names at the top. */
function readTree(root: string, skip: ReadonlySet<string>): TreeNode {
  const read = (path: string, top: boolean): TreeNode => {
    const stat = lstatSync(path);
    if (stat.isDirectory()) {
      const children = new Map<string, TreeNode>();
      for (const name of readdirSync(path)) {
        if (top && skip.has(name)) continue;
        children.set(name, read(join(path, name), false));
      }
      return { kind: 'dir', mode: stat.mode & 0o7777, children };
    }
    return { kind: 'file', mode: stat.mode & 0o7777, data: readFileSync(path), contentId: 0 };
  };
  return read(root, true);
}

function cloneTree(node: TreeNode): TreeNode {
  if (node.kind === 'file') return { ...node };
  return { kind: 'dir', mode: node.mode, children: new Map([...node.children].map(([name, child]) => [name, cloneTree(child)])) };
}

function lookup(root: TreeNode, path: string): { parent: TreeNode & { kind: 'dir' }; name: string } | undefined {
  const parts = path.split('/').filter((part) => part !== '');
  let node: TreeNode = root;
  for (const part of parts.slice(0, -1)) {
    if (node.kind !== 'dir') return undefined;
    const next = node.children.get(part);
    if (next === undefined) return undefined;
    node = next;
  }
  return node.kind === 'dir' ? { parent: node, name: parts[parts.length - 1]! } : undefined;
}

function writeTree(node: TreeNode, path: string): void {
  if (node.kind === 'file') {
    writeFileSync(path, node.data, { mode: node.mode });
    return;
  }
  mkdirSync(path, { mode: node.mode });
  for (const [name, child] of node.children) writeTree(child, join(path, name));
}

/**
 * Runs `operation` on the store in `dir` (closed, durable) with a recording file system and
 * returns the trace. `operation` gets the open store and must leave it open (it is closed here).
 */
export async function recordOperation(
  name: string,
  dir: string,
  scratch: string,
  operation: (store: ReplicaLogStore) => Promise<void>,
  options: { dropFsync?: (path: string) => boolean } = {},
): Promise<RecordedOperation & { baseline: TreeNode; kvBefore: string }> {
  const baseline = readTree(dir, new Set(['kv', LOCK_DATABASE]));
  const kvBefore = join(scratch, 'kv-before');
  cpSync(kvPath(dir), kvBefore, { recursive: true });
  const steps: Step[] = [];
  const rel = (path: string) => relative(dir, path);
  let kvPending = false;
  let kvCopies = 0;
  const settleKv = () => {
    // The KV batch announced by 'before-kv-write' completed before this next event.
    if (!kvPending) return;
    kvPending = false;
    const copy = join(scratch, `kv-${kvCopies++}`);
    cpSync(kvPath(dir), copy, { recursive: true });
    steps.push({ kind: 'kv', copy });
  };
  const fileSystem: FileSystem = {
    ...nodeFileSystem,
    async mkdir(path, mode) {
      settleKv();
      const created = await nodeFileSystem.mkdir(path, mode);
      if (created) steps.push({ kind: 'add', path: rel(path), node: { kind: 'dir', mode, children: new Map() } });
      return created;
    },
    async mkdtemp(prefix) {
      settleKv();
      const path = await nodeFileSystem.mkdtemp(prefix);
      steps.push({ kind: 'add', path: rel(path), node: { kind: 'dir', mode: 0o700, children: new Map() } });
      return path;
    },
    async writeFile(path, data, mode) {
      settleKv();
      await nodeFileSystem.writeFile(path, data, mode);
      steps.push({ kind: 'add', path: rel(path), node: { kind: 'file', mode, data: Uint8Array.from(data), contentId: nextContentId++ } });
    },
    async fsync(path) {
      settleKv();
      if (options.dropFsync?.(path) === true) return;
      await nodeFileSystem.fsync(path);
      steps.push({ kind: 'fsync', path: rel(path) });
    },
    async rename(from, to) {
      settleKv();
      await nodeFileSystem.rename(from, to);
      steps.push({ kind: 'rename', from: rel(from), to: rel(to) });
    },
    async remove(path) {
      settleKv();
      await nodeFileSystem.remove(path);
      steps.push({ kind: 'remove', path: rel(path) });
    },
  };
  const store = await ReplicaLogStore.open({
    dir,
    fileSystem,
    crashPoint: (point) => {
      if (point === 'before-kv-write') {
        settleKv();
        kvPending = true;
      }
    },
  });
  // Opening may record too (a fresh anchor): that is part of the operation's trace.
  await operation(store);
  settleKv();
  await store.close();
  settleKv();
  return { name, steps, dir, baseline, kvBefore };
}

/**
 * The mutations not yet made durable after steps[0..k): a survivor mask over them picks a crash
 * state. Returns the tree for one mask.
 */
function buildState(
  baseline: TreeNode,
  steps: readonly Step[],
  upTo: number,
  survives: (stepIndex: number) => boolean,
  zeroUnsynced: boolean,
): { tree: TreeNode; kv: string | undefined } {
  const tree = cloneTree(baseline);
  let kv: string | undefined;
  // Which steps are durable: a later fsync of their directory (and of the file, for content).
  const durable = durableSteps(steps, upTo);
  const synced = syncedContent(steps, upTo);
  for (let index = 0; index < upTo; index++) {
    const step = steps[index]!;
    if (step.kind === 'kv') {
      kv = step.copy; // atomic and synced: as of the last completed batch
      continue;
    }
    if (step.kind === 'fsync') continue;
    if (!durable.has(index) && !survives(index)) continue;
    if (step.kind === 'add') {
      const place = lookup(tree, step.path);
      if (place === undefined) continue; // its directory did not survive
      let node = cloneTree(step.node);
      if (node.kind === 'file' && !synced.has(index)) {
        // Unsynced data: whole (survived), or lost: empty, or zeroed.
        if (!survives(-1 - index)) node = { ...node, data: zeroUnsynced ? new Uint8Array(node.data.length) : new Uint8Array(0) };
      }
      place.parent.children.set(place.name, node);
    } else if (step.kind === 'remove') {
      const place = lookup(tree, step.path);
      place?.parent.children.delete(place.name);
    } else {
      const from = lookup(tree, step.from);
      const to = lookup(tree, step.to);
      const node = from?.parent.children.get(from.name);
      if (from === undefined || node === undefined) continue;
      from.parent.children.delete(from.name);
      // A target directory whose own name did not survive: the entry left its old place (that
      // side is durable) and is unreachable now, which is how a removal through trash ends anyway.
      to?.parent.children.set(to.name, node);
    }
  }
  return { tree, kv };
}

/** Steps (< upTo) whose names are durable: a later fsync of the directory (either one, for a rename). */
function durableSteps(steps: readonly Step[], upTo: number): Set<number> {
  const durable = new Set<number>();
  for (let index = 0; index < upTo; index++) {
    const step = steps[index]!;
    const directories = step.kind === 'add' || step.kind === 'remove' ? [dirname(step.path)] : step.kind === 'rename' ? [dirname(step.from), dirname(step.to)] : [];
    if (directories.length === 0) continue;
    for (let later = index + 1; later < upTo; later++) {
      const barrier = steps[later]!;
      if (barrier.kind === 'fsync' && directories.includes(barrier.path === '' ? '.' : barrier.path)) {
        durable.add(index);
        break;
      }
    }
  }
  return durable;
}

/** File-creating steps (< upTo) whose data was fsynced later. */
function syncedContent(steps: readonly Step[], upTo: number): Set<number> {
  const synced = new Set<number>();
  for (let index = 0; index < upTo; index++) {
    const step = steps[index]!;
    if (step.kind !== 'add' || step.node.kind !== 'file') continue;
    for (let later = index + 1; later < upTo; later++) {
      const barrier = steps[later]!;
      if (barrier.kind === 'fsync' && barrier.path === step.path) {
        synced.add(index);
        break;
      }
    }
  }
  return synced;
}

/** Indexes of the steps (< upTo) a crash may keep or drop: neither durable nor barriers/KV. */
function uncertain(steps: readonly Step[], upTo: number): number[] {
  const durable = durableSteps(steps, upTo);
  const synced = syncedContent(steps, upTo);
  const out: number[] = [];
  for (let index = 0; index < upTo; index++) {
    const step = steps[index]!;
    if (step.kind === 'fsync' || step.kind === 'kv') continue;
    if (!durable.has(index)) out.push(index);
    if (step.kind === 'add' && step.node.kind === 'file' && !synced.has(index)) out.push(-1 - index);
  }
  return out;
}

/**
 * Enumerates the crash states of a recorded operation and opens each. `acknowledgedAt` is the
 * step count from which the operation had returned (its result must then be fully there).
 */
export async function enumerateCrashStates(
  recorded: RecordedOperation & { baseline: TreeNode; kvBefore: string },
  scratch: string,
  check: CrashCheck,
  options: { seed: number; samplesPerStep: number; exhaustiveUpTo: number },
): Promise<EnumerationReport> {
  const random = seededRandom(options.seed);
  const report: EnumerationReport = { operation: recorded.name, states: 0, failures: [] };
  const steps = recorded.steps;
  let stateNumber = 0;
  for (let upTo = 0; upTo <= steps.length; upTo++) {
    const open = uncertain(steps, upTo);
    const masks: Set<number>[] = [];
    if (open.length <= options.exhaustiveUpTo) {
      for (let bits = 0; bits < 2 ** open.length; bits++) masks.push(new Set(open.filter((_, position) => (bits >> position) & 1)));
    } else {
      masks.push(new Set(), new Set(open));
      for (let sample = 0; sample < options.samplesPerStep; sample++) masks.push(new Set(open.filter(() => random() < 0.5)));
    }
    for (const mask of masks) {
      for (const zero of mask.size === open.length ? [false] : [false, true]) {
        const { tree, kv } = buildState(recorded.baseline, steps, upTo, (index) => mask.has(index), zero);
        const target = join(scratch, `state-${stateNumber++}`);
        writeTree(tree, target);
        cpSync(kv ?? recorded.kvBefore, kvPath(target), { recursive: true });
        report.states++;
        const survivors = [...mask].map((index) => (index < 0 ? `data@${-1 - index}` : `#${index}`)).join(',');
        let store: ReplicaLogStore | undefined;
        try {
          store = await ReplicaLogStore.open({ dir: target });
          const reason = check(store, { step: upTo, steps: steps.length, acknowledged: upTo === steps.length });
          if (reason !== undefined) report.failures.push({ step: upTo, survivors, reason });
        } catch (error) {
          report.failures.push({ step: upTo, survivors, reason: `open failed: ${(error as Error).message}` });
        } finally {
          await store?.close().catch(() => undefined);
        }
        if (store !== undefined) {
          // After the open (and its repairs), the tree must be one verify finds nothing wrong with.
          const verified = await verifyTree(target);
          if (verified.problems.length > 0) {
            report.failures.push({ step: upTo, survivors, reason: `verify: ${verified.problems.map((problem) => `${problem.code} ${problem.message}`).join('; ')}` });
          }
        }
        rmSync(target, { recursive: true, force: true });
      }
    }
  }
  return report;
}

/** A short description of a trace, for failure messages. */
export function describeSteps(recorded: RecordedOperation): string {
  return recorded.steps
    .map((step, index) => `#${index} ${step.kind} ${'path' in step ? step.path : 'from' in step ? `${step.from} -> ${step.to}` : step.copy}`)
    .join('\n');
}
