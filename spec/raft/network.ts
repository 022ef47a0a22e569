/**
 * An in-process cluster of RawNodes for tests, over any WritableStorage (MemoryStorage here;
 * the lead runs the same tests over ReplicaLogStore by passing another StoreFactory).
 *
 * Each node runs the synchronous Ready loop of API.md: persist snapshot, entries, hard state
 * (awaiting the store), send messages, apply committed entries (conf changes via
 * applyConfChange, ConfState persisted with setConfState), then advance.
 *
 * The "application" state machine of a node is the list of committed normal entries with data
 * it has applied, plus the applied index and ConfState. It is kept by the harness across
 * restarts (as if the application persisted it atomically with its applied index); snapshots
 * carry it as JSON.
 *
 * Message delivery is explicit: messages queue in `inFlight` and are delivered by
 * `deliverAll`/`stabilize`/`deliverOne`. Filters can drop messages (partitions, isolation,
 * random loss) or delay them by a number of ticks.
 */
import { decodeConfChange, decodeConfChangeV2, decodeMessage, encodeMessage } from '../../lib/codec.js';
import { MemoryStorage } from '../../lib/memory-storage.js';
import { RaftError } from '../../lib/raft/raft.js';
import { describeMessage } from '../../lib/raft/util.js';
import { RawNode, SnapshotStatus, type Ready } from '../../lib/raft/rawnode.js';
import type { RaftConfig } from '../../lib/raft/raft.js';
import type { RaftLogger } from '../../lib/raft/logger.js';
import {
  EntryType,
  MessageType,
  emptyConfState,
  type ConfChange,
  type ConfChangeV2,
  type ConfState,
  type Entry,
  type Message,
  type Snapshot,
  type WritableStorage,
} from '../../lib/types.js';

/** How the harness obtains stores: a fresh one per node, and optionally a reopen on restart. */
export interface StoreFactory {
  create(id: number): Promise<WritableStorage>;
  /** Reopens the store after a crash (default: keep using the same object). */
  reopen?(id: number, store: WritableStorage): Promise<WritableStorage>;
  /** Releases a store when the network is closed. */
  close?(id: number, store: WritableStorage): Promise<void>;
}

export const memoryStoreFactory: StoreFactory = {
  create: async () => new MemoryStorage(),
};

/** One applied normal entry with data. */
export interface AppliedEntry {
  index: number;
  term: number;
  data: string;
}

/** The application's durable state (survives restarts; replaced by snapshots). */
export interface AppState {
  appliedIndex: number;
  applied: AppliedEntry[];
  confState: ConfState;
}

export interface NetworkOptions {
  factory?: StoreFactory;
  electionTick?: number;
  heartbeatTick?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  maxCommittedSizePerReady?: number;
  /** Random source for election timeouts and random drops (default Math.random). */
  random?: () => number;
  logger?: RaftLogger;
  /**
   * Round-trip every message through encodeMessage/decodeMessage, as a real transport would
   * (default true): catches codec mismatches and shared-object bugs between nodes.
   */
  wire?: boolean;
  /**
   * Replace an outgoing MsgSnap's snapshot by one of the sender's current applied state
   * (default true), as etcd server does; false sends the stored snapshot as raft chose it.
   */
  freshSnapshots?: boolean;
  /** Called for every Ready processed (for safety checks). */
  onReady?: (id: number, rd: Ready, node: ClusterNode) => void;
  /** Called for every committed entry a node applies (all types). */
  onCommit?: (id: number, entry: Entry) => void;
}

export class ClusterNode {
  raw: RawNode;
  running = true;
  constructor(
    readonly id: number,
    public store: WritableStorage,
    raw: RawNode,
    public app: AppState,
  ) {
    this.raw = raw;
  }
}

type DropFilter = (message: Message) => boolean;

interface DelayedMessage {
  message: Message;
  releaseAt: number;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export function encodeText(text: string): Uint8Array {
  return textEncoder.encode(text);
}

function encodeAppState(app: AppState): Uint8Array {
  return textEncoder.encode(JSON.stringify(app.applied));
}

function decodeAppState(snapshot: Snapshot): AppState {
  const applied = snapshot.data === undefined || snapshot.data.length === 0 ? [] : (JSON.parse(textDecoder.decode(snapshot.data)) as AppliedEntry[]);
  return { appliedIndex: snapshot.metadata.index, applied, confState: snapshot.metadata.confState };
}

export class Network {
  readonly nodes = new Map<number, ClusterNode>();
  /** Messages sent and not yet delivered, in send order. */
  inFlight: Message[] = [];
  private delayed: DelayedMessage[] = [];
  private dropFilters: DropFilter[] = [];
  private delayRules: Array<{ from: number; to: number; ticks: number }> = [];
  private partitionGroups: number[][] | undefined;
  private isolated = new Set<number>();
  private dropRate = 0;
  private clock = 0;
  readonly options: NetworkOptions;
  readonly factory: StoreFactory;
  private readonly random: () => number;

  constructor(options: NetworkOptions = {}) {
    this.options = options;
    this.factory = options.factory ?? memoryStoreFactory;
    this.random = options.random ?? Math.random;
  }

  /** A network of `ids`, bootstrapped with rawNode.bootstrap(ids) on fresh stores. */
  static async create(ids: number[], options: NetworkOptions = {}): Promise<Network> {
    const network = new Network(options);
    for (const id of ids) await network.addNode(id, ids);
    return network;
  }

  private config(id: number, store: WritableStorage, applied: number): RaftConfig {
    const o = this.options;
    const config: RaftConfig = {
      id,
      storage: store,
      electionTick: o.electionTick ?? 10,
      heartbeatTick: o.heartbeatTick ?? 1,
      applied,
      preVote: o.preVote ?? false,
      checkQuorum: o.checkQuorum ?? false,
      maxInflightMsgs: o.maxInflightMsgs ?? 256,
      random: this.random,
    };
    if (o.maxSizePerMsg !== undefined) config.maxSizePerMsg = o.maxSizePerMsg;
    if (o.maxCommittedSizePerReady !== undefined) config.maxCommittedSizePerReady = o.maxCommittedSizePerReady;
    if (o.logger !== undefined) config.logger = o.logger;
    return config;
  }

  /**
   * Adds a node on a fresh store. With `bootstrapPeers`, it is bootstrapped with them;
   * without, it starts empty (to be added by a conf change and caught up by the leader).
   */
  async addNode(id: number, bootstrapPeers?: number[]): Promise<ClusterNode> {
    const store = await this.factory.create(id);
    const raw = new RawNode(this.config(id, store, 0));
    if (bootstrapPeers !== undefined) raw.bootstrap(bootstrapPeers);
    const node = new ClusterNode(id, store, raw, { appliedIndex: 0, applied: [], confState: emptyConfState() });
    this.nodes.set(id, node);
    return node;
  }

  node(id: number): ClusterNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  // -------------------------------------------------------------------------------------------
  // The Ready loop

  /** Processes one Ready of node `id` if it has one; returns whether it did. */
  async processReady(id: number): Promise<boolean> {
    const node = this.node(id);
    if (!node.running || !node.raw.hasReady()) return false;
    const rd = node.raw.ready();
    this.options.onReady?.(id, rd, node);
    // 1. Persist: snapshot first, then entries, then the hard state (commit must not point
    //    past durable entries).
    if (rd.snapshot !== undefined) {
      await node.store.applySnapshot(rd.snapshot);
      node.app = decodeAppState(rd.snapshot);
    }
    if (rd.entries.length > 0) await node.store.append(rd.entries);
    if (rd.hardState !== undefined) await node.store.setHardState(rd.hardState);
    // 2. Send.
    for (const message of rd.messages) this.send(message.type === MessageType.MsgSnap ? this.freshSnapshotMessage(node, message) : message);
    // 3. Apply.
    for (const entry of rd.committedEntries) await this.apply(node, entry);
    // 4. Advance.
    node.raw.advance(rd);
    return true;
  }

  private async apply(node: ClusterNode, entry: Entry): Promise<void> {
    this.options.onCommit?.(node.id, entry);
    if (entry.type === EntryType.Normal) {
      if (entry.data !== undefined && entry.data.length > 0) {
        node.app.applied.push({ index: entry.index, term: entry.term, data: textDecoder.decode(entry.data) });
      }
    } else {
      const cc: ConfChange | ConfChangeV2 =
        entry.type === EntryType.ConfChange
          ? decodeConfChange(entry.data ?? new Uint8Array())
          : decodeConfChangeV2(entry.data ?? new Uint8Array());
      const confState = node.raw.applyConfChange(cc);
      node.app.confState = confState;
      await node.store.setConfState(confState);
    }
    node.app.appliedIndex = entry.index;
  }

  /**
   * Like etcd server's merged snapshot message: the stored snapshot may predate the
   * configuration that added the receiver (which would then ignore it), so the sender ships its
   * current applied state instead, with the ConfState as of its applied index.
   */
  private freshSnapshotMessage(sender: ClusterNode, message: Message): Message {
    const stored = message.snapshot;
    const index = sender.app.appliedIndex;
    if (this.options.freshSnapshots === false || stored === undefined || index <= stored.metadata.index) return message;
    const snapshot: Snapshot = {
      metadata: { index, term: sender.store.term(index), confState: sender.app.confState },
      data: encodeAppState(sender.app),
    };
    return { ...message, snapshot };
  }

  /** Queues `message` unless a filter drops it (or holds it back as delayed). */
  send(message: Message): void {
    if (this.shouldDrop(message)) {
      this.onDropped(message);
      return;
    }
    const rule = this.delayRules.find((r) => r.from === message.from && r.to === message.to);
    if (rule !== undefined && rule.ticks > 0) {
      this.delayed.push({ message, releaseAt: this.clock + rule.ticks });
      return;
    }
    this.inFlight.push(message);
  }

  private shouldDrop(message: Message): boolean {
    if (this.isolated.has(message.from) || this.isolated.has(message.to)) return true;
    if (this.partitionGroups !== undefined) {
      const groupOf = (id: number) => this.partitionGroups!.findIndex((g) => g.includes(id));
      const fromGroup = groupOf(message.from);
      const toGroup = groupOf(message.to);
      if (fromGroup !== toGroup) return true;
    }
    if (this.dropFilters.some((filter) => filter(message))) return true;
    if (this.dropRate > 0 && this.random() < this.dropRate) return true;
    return false;
  }

  /** A dropped snapshot is reported as failed to its sender (as a transport would). */
  private onDropped(message: Message): void {
    if (message.type === MessageType.MsgSnap) {
      const sender = this.nodes.get(message.from);
      if (sender !== undefined && sender.running) sender.raw.reportSnapshot(message.to, SnapshotStatus.SnapshotFailure);
    }
  }

  /** Steps `message` into its target (ignored if the target is down or unknown). */
  deliver(message: Message): void {
    const target = this.nodes.get(message.to);
    if (target === undefined || !target.running) {
      this.onDropped(message);
      return;
    }
    const delivered = this.options.wire === false ? message : decodeMessage(encodeMessage(message));
    try {
      target.raw.step(delivered);
    } catch (error) {
      // A removed peer's responses or an undeliverable forwarded proposal: what a real
      // transport would see and ignore.
      if (!(error instanceof RaftError) || (error.code !== 'ERR_STEP_PEER_NOT_FOUND' && error.code !== 'ERR_PROPOSAL_DROPPED')) {
        throw error;
      }
    }
    if (message.type === MessageType.MsgSnap) {
      // The snapshot reached the follower: report success to the leader (the harness applies
      // it with storage.applySnapshot when the follower's Ready carries it).
      const sender = this.nodes.get(message.from);
      if (sender !== undefined && sender.running) sender.raw.reportSnapshot(message.to, SnapshotStatus.SnapshotFinish);
    }
  }

  /** Delivers the oldest in-flight message; false if none. */
  deliverOne(): boolean {
    const message = this.inFlight.shift();
    if (message === undefined) return false;
    this.deliver(message);
    return true;
  }

  /** Delivers the in-flight message at `position` (for random reordering). */
  deliverAt(position: number): void {
    const [message] = this.inFlight.splice(position, 1);
    if (message !== undefined) this.deliver(message);
  }

  /** Loses the in-flight message at `position` (a lost MsgSnap is reported as failed). */
  dropAt(position: number): void {
    const [message] = this.inFlight.splice(position, 1);
    if (message !== undefined) this.onDropped(message);
  }

  /** Processes every node's Ready once; returns whether any had one. */
  async processAllReadies(): Promise<boolean> {
    let any = false;
    for (const id of [...this.nodes.keys()].sort((a, b) => a - b)) {
      if (await this.processReady(id)) any = true;
    }
    return any;
  }

  /** Runs Ready loops and delivers messages until nothing is left to do. */
  async stabilize(maxRounds = 10_000): Promise<void> {
    let batch: Message[] = [];
    for (let round = 0; round < maxRounds; round++) {
      const processed = await this.processAllReadies();
      batch = this.inFlight;
      this.inFlight = [];
      for (const message of batch) this.deliver(message);
      if (!processed && batch.length === 0) return;
    }
    const sample = batch.slice(0, 12).map((m) => describeMessage(m)).join('\n  ');
    throw new Error(`network did not stabilize in ${maxRounds} rounds; last messages:\n  ${sample}`);
  }

  // -------------------------------------------------------------------------------------------
  // Time and actions

  /** Ticks every running node once (and releases delayed messages that are due). */
  tickAll(): void {
    this.clock++;
    const due = this.delayed.filter((d) => d.releaseAt <= this.clock);
    this.delayed = this.delayed.filter((d) => d.releaseAt > this.clock);
    for (const d of due) this.inFlight.push(d.message);
    for (const node of this.nodes.values()) if (node.running) node.raw.tick();
  }

  /** Ticks `count` times, stabilizing after each tick. */
  async tickAndStabilize(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      this.tickAll();
      await this.stabilize();
    }
  }

  tick(id: number): void {
    this.node(id).raw.tick();
  }

  /** Makes `id` campaign and runs the cluster until it settles. */
  async elect(id: number): Promise<void> {
    this.node(id).raw.campaign();
    await this.stabilize();
  }

  async propose(id: number, data: string): Promise<void> {
    this.node(id).raw.propose(encodeText(data));
    await this.stabilize();
  }

  /** The id of the node that is leader in the highest term among running nodes, if any. */
  leader(): number | undefined {
    let best: { id: number; term: number } | undefined;
    for (const node of this.nodes.values()) {
      if (!node.running) continue;
      const status = node.raw.basicStatus();
      if (status.raftState === 'StateLeader' && (best === undefined || status.term > best.term)) {
        best = { id: node.id, term: status.term };
      }
    }
    return best?.id;
  }

  /** Stops node `id` (a crash: its RawNode and undelivered messages to it are lost). */
  stop(id: number): void {
    const node = this.node(id);
    node.running = false;
    const lost = this.inFlight.filter((m) => m.to === id);
    this.inFlight = this.inFlight.filter((m) => m.to !== id);
    for (const message of lost) this.onDropped(message);
  }

  /**
   * Restarts node `id` from its store (reopened if the factory says how), with the application
   * state it had (applied index, applied entries, ConfState).
   */
  async restart(id: number): Promise<ClusterNode> {
    const node = this.node(id);
    node.running = false;
    if (this.factory.reopen !== undefined) node.store = await this.factory.reopen(id, node.store);
    // Raft re-delivers committed entries above `applied`.
    const applied = Math.max(node.app.appliedIndex, node.store.firstIndex() - 1);
    node.raw = new RawNode(this.config(id, node.store, applied));
    node.running = true;
    return node;
  }

  /** Snapshots node `id`'s application state at its applied index and compacts its log there. */
  async compact(id: number): Promise<Snapshot> {
    const node = this.node(id);
    const index = node.app.appliedIndex;
    const snapshot = await node.store.createSnapshot(index, node.app.confState, encodeAppState(node.app));
    await node.store.compact(index);
    return snapshot;
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  /** Only nodes in the same group can talk. */
  partition(...groups: number[][]): void {
    this.partitionGroups = groups;
  }

  /** Cuts `id` off from everyone. */
  isolate(id: number): void {
    this.isolated.add(id);
  }

  /** Removes partitions, isolation, drop filters, delays and random loss. */
  heal(): void {
    this.partitionGroups = undefined;
    this.isolated.clear();
    this.dropFilters = [];
    this.delayRules = [];
    this.dropRate = 0;
  }

  /** Drops every message for which `filter` returns true. */
  drop(filter: DropFilter): void {
    this.dropFilters.push(filter);
  }

  /** Drops each message with probability `rate` (using the network's random source). */
  setDropRate(rate: number): void {
    this.dropRate = rate;
  }

  /** Holds messages from `from` to `to` back for `ticks` ticks. */
  delay(from: number, to: number, ticks: number): void {
    this.delayRules.push({ from, to, ticks });
  }

  /** Applied data strings of node `id`, in order. */
  appliedData(id: number): string[] {
    return this.node(id).app.applied.map((e) => e.data);
  }

  async close(): Promise<void> {
    if (this.factory.close === undefined) return;
    for (const node of this.nodes.values()) await this.factory.close(node.id, node.store);
  }
}
