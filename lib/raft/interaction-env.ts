/**
 * A harness that drives a set of RawNodes from etcd raft's datadriven interaction transcripts
 * (etcd raft v3.6 rafttest/interaction_env*.go is the reference for its behaviour and its
 * output). Each node has its own in-memory storage and an "appender" state machine whose
 * snapshots the harness records; messages between nodes sit in one in-flight list until a
 * command delivers them. All output, including raft's own log lines, goes to one buffer that
 * each command returns.
 *
 * The commands themselves are in interaction-env-handlers.ts.
 */
import { decodeConfChange, decodeConfChangeV2 } from '../codec.js';
import {
  EntryType,
  MessageType,
  cloneConfState,
  emptySnapshot,
  isEmptyHardState,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type Snapshot,
} from '../types.js';
import { InteractionStorage } from './interaction-storage.js';
import type { RaftLogger } from './logger.js';
import { RawNode } from './rawnode.js';
import { RaftError, type RaftConfig } from './raft.js';
import { jointConfigIds } from './quorum.js';
import { progressMapToString } from './tracker.js';
import { describeEntries, describeMessage, describeReady, isLocalMsgTarget, quoteBytes } from './util.js';

/** Log level names, in etcd's RedirectLogger order (NONE silences everything but errors returned by commands). */
export const LOG_LEVEL_NAMES = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL', 'NONE'] as const;
const LEVEL_NONE = LOG_LEVEL_NAMES.length - 1;

/**
 * Collects the harness's output and raft's log lines ("INFO message") in one buffer, filtered
 * by level (etcd's RedirectLogger).
 */
export class RedirectLogger implements RaftLogger {
  /** 0 = DEBUG … 5 = NONE. */
  level = 0;
  buffer = '';

  quiet(): boolean {
    return this.level === LEVEL_NONE;
  }

  /** Harness output: dropped when quiet. */
  write(text: string): void {
    if (!this.quiet()) this.buffer += text;
  }

  private print(level: number, message: string): void {
    if (this.level > level) return;
    this.write(`${LOG_LEVEL_NAMES[level]} ${message}`);
    if (message.length > 0 && !message.endsWith('\n')) this.write('\n');
  }

  debug(message: string): void {
    this.print(0, message);
  }
  info(message: string): void {
    this.print(1, message);
  }
  warn(message: string): void {
    this.print(2, message);
  }
  error(message: string): void {
    this.print(3, message);
  }
}

/** One node of the environment: the RawNode, its storage, its queued local work, its state machine history. */
export interface InteractionNode {
  rawNode: RawNode;
  storage: InteractionStorage;
  config: RaftConfig & { electionTick: number; heartbeatTick: number };
  /** MsgStorageAppend messages not yet processed (async storage writes only). */
  appendWork: Message[];
  /** MsgStorageApply messages not yet processed (async storage writes only). */
  applyWork: Message[];
  /** Snapshots of the "appender" state machine after each applied entry; never empty. */
  history: Snapshot[];
}

/** The config every node starts from (etcd's raftConfigStub). */
export function raftConfigStub(): Omit<RaftConfig, 'id' | 'storage'> & { electionTick: number; heartbeatTick: number } {
  return {
    electionTick: 3,
    heartbeatTick: 1,
    maxSizePerMsg: Number.POSITIVE_INFINITY,
    maxInflightMsgs: 2 ** 31 - 1,
    // Deterministic: the randomized election timeout equals electionTick unless a transcript
    // sets it (set-randomized-election-timeout).
    random: () => 0,
  };
}

/** etcd's defaultEntryFormatter: Go's %q. */
export const defaultEntryFormatter = quoteBytes;

/** A message to or from a local storage thread, or to oneself: never dropped by deliver-msgs. */
function isLocalMessage(message: Message): boolean {
  return message.from === message.to || isLocalMsgTarget(message.from) || isLocalMsgTarget(message.to);
}

/**
 * Splits `messages` (keeping their order) into those for `to` (of type `type`, or any type
 * when undefined) and the rest. When dropping, local messages are never taken.
 */
export function splitMessages(
  messages: readonly Message[],
  to: number,
  type: MessageType | undefined,
  drop: boolean,
): [Message[], Message[]] {
  const taken: Message[] = [];
  const rest: Message[] = [];
  for (const message of messages) {
    if (message.to === to && !(drop && isLocalMessage(message)) && (type === undefined || message.type === type)) {
      taken.push(message);
    } else {
      rest.push(message);
    }
  }
  return [taken, rest];
}

export interface Recipient {
  id: number;
  drop: boolean;
}

export class InteractionEnv {
  readonly nodes: InteractionNode[] = [];
  /** In-flight messages between nodes (and storage responses, with async writes). */
  messages: Message[] = [];
  readonly output = new RedirectLogger();

  /**
   * Runs `operation` with its output collected separately, then appends that output indented
   * by two spaces, line by line (like etcd's withIndent, raft's log lines included).
   */
  withIndent<T>(operation: () => T): T {
    const outer = this.output.buffer;
    this.output.buffer = '';
    try {
      return operation();
    } finally {
      const inner = this.output.buffer;
      this.output.buffer = outer;
      // bufio.Scanner's lines: split on "\n", no empty last line for a trailing "\n".
      const lines = inner.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      for (const line of lines) this.output.buffer += `  ${line.endsWith('\r') ? line.slice(0, -1) : line}\n`;
    }
  }

  /**
   * Creates `count` nodes with the next ids. A non-empty `snapshot` bootstraps each one's
   * storage with it (its index must be above 1); the state machine starts from it.
   */
  addNodes(count: number, config: ReturnType<typeof raftConfigStub>, snapshot: Snapshot): string | undefined {
    const bootstrap = !isEmptySnapshotValue(snapshot);
    for (let i = 0; i < count; i++) {
      const id = this.nodes.length + 1;
      const storage = new InteractionStorage(() => {
        // The newest state-machine snapshot (etcd's snapOverrideStorage).
        const history = this.nodes[id - 1]!.history;
        return history[history.length - 1]!;
      });
      const initial: Snapshot = { ...snapshot, metadata: { ...snapshot.metadata, confState: cloneConfState(snapshot.metadata.confState) } };
      if (bootstrap) {
        if (initial.metadata.index <= 1) return 'index must be specified as > 1 due to bootstrap';
        initial.metadata.term = 1;
        storage.applySnapshot(initial);
        const firstIndex = storage.firstIndex();
        if (firstIndex !== initial.metadata.index + 1) {
          return `failed to establish first index ${initial.metadata.index + 1}; got ${firstIndex}`;
        }
      }
      const nodeConfig = { ...config, id, storage, logger: this.output };
      let rawNode: RawNode;
      try {
        rawNode = new RawNode(nodeConfig);
      } catch (error) {
        // Go's NewRawNode returns the config error; the transcript prints it.
        if (error instanceof Error) return error.message;
        throw error;
      }
      this.nodes.push({ rawNode, storage, config: nodeConfig, appendWork: [], applyWork: [], history: [initial] });
    }
    return undefined;
  }

  /** Handles one Ready of node `index` (0-based): prints it, and in synchronous mode persists, applies and advances. */
  processReady(index: number): void {
    const node = this.nodes[index]!;
    const rd = node.rawNode.ready();
    this.output.write(describeReady(rd, defaultEntryFormatter));
    const asyncWrites = node.rawNode.asyncStorageWrites;
    if (!asyncWrites) {
      processAppend(node, rd.hardState, rd.entries, rd.snapshot);
      processApply(node, rd.committedEntries);
    }
    for (const message of rd.messages) {
      if (isLocalMsgTarget(message.to)) {
        if (!asyncWrites) throw new Error('unexpected local msg target');
        if (message.type === MessageType.MsgStorageAppend) node.appendWork.push(message);
        else if (message.type === MessageType.MsgStorageApply) node.applyWork.push(message);
        else throw new Error(`unexpected message type ${MessageType[message.type]}`);
      } else {
        this.messages.push(message);
      }
    }
    if (!asyncWrites) node.rawNode.advance(rd);
  }

  /** Processes the oldest queued MsgStorageAppend of node `index`; its responses join the in-flight messages. */
  processAppendThread(index: number): void {
    const node = this.nodes[index]!;
    const work = node.appendWork.shift();
    if (work === undefined) {
      this.output.write('no append work to perform');
      return;
    }
    const responses = work.responses;
    this.output.write('Processing:\n');
    this.output.write(`${describeMessage({ ...work, responses: [] }, defaultEntryFormatter)}\n`);
    processAppend(node, { term: work.term, vote: work.vote, commit: work.commit }, work.entries, work.snapshot);
    this.output.write('Responses:\n');
    for (const response of responses) this.output.write(`${describeMessage(response, defaultEntryFormatter)}\n`);
    this.messages.push(...responses);
  }

  /** Processes the oldest queued MsgStorageApply of node `index`; its responses join the in-flight messages. */
  processApplyThread(index: number): void {
    const node = this.nodes[index]!;
    const work = node.applyWork.shift();
    if (work === undefined) {
      this.output.write('no apply work to perform');
      return;
    }
    const responses = work.responses;
    this.output.write('Processing:\n');
    this.output.write(`${describeMessage({ ...work, responses: [] }, defaultEntryFormatter)}\n`);
    processApply(node, work.entries);
    this.output.write('Responses:\n');
    for (const response of responses) this.output.write(`${describeMessage(response, defaultEntryFormatter)}\n`);
    this.messages.push(...responses);
  }

  /**
   * Delivers (or drops) the in-flight messages of each recipient, of `type` only when given.
   * Returns how many messages were taken.
   */
  deliverMessages(type: MessageType | undefined, recipients: readonly Recipient[]): number {
    let count = 0;
    for (const recipient of recipients) {
      const [taken, rest] = splitMessages(this.messages, recipient.id, type, recipient.drop);
      this.messages = rest;
      count += taken.length;
      for (const message of taken) {
        if (recipient.drop) this.output.write('dropped: ');
        this.output.write(`${describeMessage(message, defaultEntryFormatter)}\n`);
        // Messages may be dropped for nodes that do not exist yet.
        if (recipient.drop) continue;
        try {
          this.nodes[message.to - 1]!.rawNode.step(message);
        } catch (error) {
          // Go's Step returns these errors; the harness prints them and goes on.
          if (error instanceof RaftError) {
            this.output.write(`${error.message}\n`);
          } else {
            throw error;
          }
        }
      }
    }
    return count;
  }

  /**
   * Processes Readys, delivers messages and runs the storage threads of the given nodes
   * (0-based; all when empty) until none of them has anything left to do.
   */
  stabilize(indexes: readonly number[]): void {
    const nodes = indexes.length > 0 ? indexes.map((index) => this.nodes[index]!) : this.nodes.slice();
    for (;;) {
      let done = true;
      for (const node of nodes) {
        if (node.rawNode.hasReady()) {
          const id = node.rawNode.raft.id;
          this.output.write(`> ${id} handling Ready\n`);
          this.withIndent(() => this.processReady(id - 1));
          done = false;
        }
      }
      for (const node of nodes) {
        const id = node.rawNode.raft.id;
        const [pending] = splitMessages(this.messages, id, undefined, false);
        if (pending.length > 0) {
          this.output.write(`> ${id} receiving messages\n`);
          this.withIndent(() => this.deliverMessages(undefined, [{ id, drop: false }]));
          done = false;
        }
      }
      for (const node of nodes) {
        const id = node.rawNode.raft.id;
        if (node.appendWork.length > 0) {
          this.output.write(`> ${id} processing append thread\n`);
          while (node.appendWork.length > 0) this.withIndent(() => this.processAppendThread(id - 1));
          done = false;
        }
      }
      for (const node of nodes) {
        const id = node.rawNode.raft.id;
        if (node.applyWork.length > 0) {
          this.output.write(`> ${id} processing apply thread\n`);
          while (node.applyWork.length > 0) this.withIndent(() => this.processApplyThread(id - 1));
          done = false;
        }
      }
      if (done) return;
    }
  }

  /** Prints node `index`'s stored log (raft-log). */
  raftLog(index: number): void {
    const storage = this.nodes[index]!.storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    if (last < first) {
      this.output.write(`log is empty: first index=${first}, last index=${last}`);
      return;
    }
    this.output.write(describeEntries(storage.entries(first, last + 1), defaultEntryFormatter));
  }

  /** Prints every node's role, voter status, term and leader (raft-state). */
  raftState(): void {
    for (const node of this.nodes) {
      const status = node.rawNode.status();
      const voter = jointConfigIds(status.config.voters).has(status.id) ? '(Voter)' : '(Non-Voter)';
      this.output.write(`${status.id}: ${status.raftState} ${voter} Term:${status.term} Lead:${status.lead}\n`);
    }
  }

  /** Prints node `index`'s view of its followers' progress (leaders only; nothing otherwise). */
  status(index: number): void {
    this.output.write(progressMapToString(this.nodes[index]!.rawNode.status().progress));
  }

  /** Queues a MsgSnap from node `fromIndex` to `toIndex` with the sender's newest snapshot. */
  sendSnapshot(fromIndex: number, toIndex: number): void {
    const from = this.nodes[fromIndex]!;
    const snapshot = from.storage.snapshot();
    const message: Message = {
      type: MessageType.MsgSnap,
      to: toIndex + 1,
      from: fromIndex + 1,
      term: from.rawNode.basicStatus().term,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      vote: 0,
      snapshot,
      reject: false,
      rejectHint: 0,
      responses: [],
    };
    this.messages.push(message);
    this.output.write(describeMessage(message));
  }
}

function isEmptySnapshotValue(snapshot: Snapshot): boolean {
  const m = snapshot.metadata;
  const cs = m.confState;
  return (
    m.index === 0 &&
    m.term === 0 &&
    cs.voters.length === 0 &&
    cs.learners.length === 0 &&
    cs.votersOutgoing.length === 0 &&
    cs.learnersNext.length === 0 &&
    !cs.autoLeave &&
    (snapshot.data === undefined || snapshot.data.length === 0)
  );
}

/** Writes a hard state, then a snapshot or entries, to the node's storage (etcd's processAppend). */
function processAppend(node: InteractionNode, hardState: HardState | undefined, entries: readonly Entry[], snapshot: Snapshot | undefined): void {
  const storage = node.storage;
  if (hardState !== undefined && !isEmptyHardState(hardState)) storage.setHardState(hardState);
  if (snapshot !== undefined && snapshot.metadata.index !== 0) {
    if (entries.length > 0) throw new Error("can't apply snapshot and entries at the same time");
    storage.applySnapshot(snapshot);
    return;
  }
  storage.append(entries);
}

/**
 * Applies committed entries to the node's "appender" state machine (each entry's data, or a
 * conf change's context, is appended to the previous snapshot's data) and applies conf changes
 * to raft; records a snapshot per entry.
 */
function processApply(node: InteractionNode, entries: readonly Entry[]): void {
  for (const entry of entries) {
    let update: Uint8Array | undefined;
    let confState: ConfState | undefined;
    if (entry.type === EntryType.ConfChange) {
      const cc = decodeConfChange(entry.data ?? new Uint8Array());
      update = cc.context;
      confState = node.rawNode.applyConfChange(cc);
    } else if (entry.type === EntryType.ConfChangeV2) {
      const cc = decodeConfChangeV2(entry.data ?? new Uint8Array());
      update = cc.context;
      confState = node.rawNode.applyConfChange(cc);
    } else {
      update = entry.data;
    }
    const last = node.history[node.history.length - 1]!;
    const data = new Uint8Array([...(last.data ?? []), ...(update ?? [])]);
    const snapshot: Snapshot = {
      ...emptySnapshot(),
      metadata: { index: entry.index, term: entry.term, confState: cloneConfState(confState ?? last.metadata.confState) },
    };
    if (data.length > 0) snapshot.data = data;
    node.history.push(snapshot);
  }
}
