/**
 * A seeded randomised simulation of a cluster of RawNodes with asyncStorageWrites, where each
 * node's local append and apply "threads" run at random moments, interleaved with elections,
 * proposals, a lossy reordering network, crashes (which lose the threads' pending work) and
 * log compaction. Storage is the project's MemoryStorage, which refuses what a durable store
 * must never see (a commit above the stored log, a term or commit going backwards, a vote
 * changing within a term, a snapshot below the commit), so the async protocol is checked
 * against it on every write. After every action:
 *   - election safety: at most one leader per term;
 *   - state machine safety: no two different entries are applied at the same index, on any
 *     node, and each node applies in increasing index order;
 *   - applies follow durability: an entry handed to the apply thread is already in the
 *     node's storage (or compacted into its snapshot);
 * and at the end, after healing, every node has applied the same sequence, including a last
 * value proposed after the heal (liveness).
 */
import { MemoryStorage } from '../../lib/memory-storage.js';
import { RaftError, StateType } from '../../lib/raft/raft.js';
import { RawNode, SnapshotStatus } from '../../lib/raft/rawnode.js';
import { LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD } from '../../lib/raft/util.js';
import { seededRandom } from '../../lib/seeded-random.js';
import { EntryType, MessageType, type Entry, type Message, type Snapshot } from '../../lib/types.js';

export interface AsyncSimulationResult {
  seed: number;
  nodes: number;
  /** Highest index applied anywhere. */
  applied: number;
  /** Terms that had a leader. */
  leaders: number;
  crashes: number;
  compactions: number;
  /** MsgStorageAppend messages that carried a snapshot. */
  snapshotAppends: number;
  /** MsgStorageAppendResps raft ignored because the term changed meanwhile (the ABA guard). */
  staleAppendResponses: number;
}

interface SimNode {
  id: number;
  storage: MemoryStorage;
  raw?: RawNode;
  /** MsgStorageAppend / MsgStorageApply not yet processed (lost on a crash). */
  appendWork: Message[];
  applyWork: Message[];
  /** Responses addressed to this node, delivered in order (lost on a crash). */
  localInbox: Message[];
  /** The state machine: applied values (volatile, rebuilt from the snapshot on restart). */
  values: string[];
  appliedIndex: number;
  /** Index of the last snapshot installed from a MsgStorageAppend since the start. */
  restoredAt: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class SafetyViolation extends Error {}

function entryKey(entry: Entry): string {
  return `${entry.term}/${entry.type}/${entry.data === undefined ? '' : decoder.decode(entry.data)}`;
}

/** Runs one seed; throws (naming the seed) on a safety or liveness violation. */
export async function runAsyncSimulation(seed: number, steps = 1000): Promise<AsyncSimulationResult> {
  const random = seededRandom(seed);
  const chance = (p: number): boolean => random() < p;
  const size = chance(0.6) ? 3 : 5;
  const voters = Array.from({ length: size }, (_, i) => i + 1);
  const preVote = chance(0.5);
  const checkQuorum = chance(0.5);
  const fail = (message: string): never => {
    throw new SafetyViolation(`async simulation seed ${seed}: ${message}`);
  };

  const committedAt = new Map<number, string>();
  const leaderOfTerm = new Map<number, number>();
  let network: Message[] = [];
  let crashes = 0;
  let compactions = 0;
  let snapshotAppends = 0;
  let proposals = 0;
  let staleAppendResponses = 0;
  const logger = {
    debug: () => {},
    info: (message: string) => {
      if (message.includes('ignored entry appends from a MsgStorageAppendResp')) staleAppendResponses++;
    },
    warn: () => {},
    error: () => {},
  };

  const start = (node: SimNode): void => {
    const snapshot = node.storage.snapshot();
    node.values = snapshot.data === undefined || snapshot.data.length === 0 ? [] : (JSON.parse(decoder.decode(snapshot.data)) as string[]);
    node.appliedIndex = snapshot.metadata.index;
    node.restoredAt = 0;
    node.raw = new RawNode({
      id: node.id,
      storage: node.storage,
      electionTick: 10,
      heartbeatTick: 1,
      applied: snapshot.metadata.index,
      preVote,
      checkQuorum,
      maxSizePerMsg: 64,
      maxInflightMsgs: 4,
      asyncStorageWrites: true,
      random,
      logger,
    });
  };

  const nodes: SimNode[] = [];
  for (const id of voters) {
    const storage = new MemoryStorage();
    await storage.applySnapshot({ metadata: { index: 1, term: 1, confState: { voters, learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } } });
    const node: SimNode = { id, storage, appendWork: [], applyWork: [], localInbox: [], values: [], appliedIndex: 1, restoredAt: 0 };
    start(node);
    nodes.push(node);
  }
  const running = (): SimNode[] => nodes.filter((node) => node.raw !== undefined);
  const pick = <T>(items: readonly T[]): T | undefined => (items.length === 0 ? undefined : items[Math.floor(random() * items.length)]);

  /** Steps a message into its node; errors Go returns (RaftError) are ignored, as a transport would. */
  const step = (node: SimNode, message: Message): void => {
    try {
      node.raw!.step(message);
    } catch (error) {
      if (!(error instanceof RaftError)) throw error;
    }
  };

  const checkLeaders = (): void => {
    for (const node of running()) {
      const raft = node.raw!.raft;
      if (raft.state !== StateType.StateLeader) continue;
      const known = leaderOfTerm.get(raft.term);
      if (known !== undefined && known !== node.id) fail(`two leaders in term ${raft.term}: ${known} and ${node.id}`);
      leaderOfTerm.set(raft.term, node.id);
    }
  };

  const processReady = (node: SimNode): void => {
    const rd = node.raw!.ready();
    for (const message of rd.messages) {
      if (message.to === LOCAL_APPEND_THREAD) node.appendWork.push(message);
      else if (message.to === LOCAL_APPLY_THREAD) node.applyWork.push(message);
      else network.push(message);
    }
  };

  const route = (node: SimNode, responses: readonly Message[]): void => {
    for (const response of responses) {
      if (response.to === node.id) node.localInbox.push(response);
      else network.push(response);
    }
  };

  const processAppend = async (node: SimNode): Promise<void> => {
    const work = node.appendWork.shift()!;
    if (work.snapshot !== undefined && work.snapshot.metadata.index !== 0) {
      snapshotAppends++;
      await node.storage.applySnapshot(work.snapshot);
      // The state machine is replaced by the snapshot's (a real application does this as part
      // of the same durable write). Apply work queued before it covers only older entries.
      const data = work.snapshot.data;
      node.values = data === undefined || data.length === 0 ? [] : (JSON.parse(decoder.decode(data)) as string[]);
      node.appliedIndex = work.snapshot.metadata.index;
      node.restoredAt = work.snapshot.metadata.index;
    }
    await node.storage.append(work.entries);
    if (work.term !== 0 || work.vote !== 0 || work.commit !== 0) {
      await node.storage.setHardState({ term: work.term, vote: work.vote, commit: work.commit });
    }
    route(node, work.responses);
  };

  const processApply = (node: SimNode): void => {
    const work = node.applyWork.shift()!;
    for (const entry of work.entries) {
      // Already covered by a snapshot the append thread installed meanwhile.
      if (entry.index <= node.restoredAt) continue;
      if (entry.index !== node.appliedIndex + 1) fail(`node ${node.id} applies ${entry.index} after ${node.appliedIndex}`);
      // Only durable entries are applied with async writes.
      if (entry.index >= node.storage.firstIndex() && node.storage.term(entry.index) !== entry.term) {
        fail(`node ${node.id} applies ${entry.term}/${entry.index}, which its storage does not hold`);
      }
      const key = entryKey(entry);
      const known = committedAt.get(entry.index);
      if (known !== undefined && known !== key) fail(`index ${entry.index} applied as ${known} and as ${key} (node ${node.id})`);
      committedAt.set(entry.index, key);
      if (entry.type === EntryType.Normal && entry.data !== undefined && entry.data.length > 0) node.values.push(decoder.decode(entry.data));
      node.appliedIndex = entry.index;
    }
    route(node, work.responses);
  };

  /** Like a transport: the sender of a MsgSnap learns whether it arrived (else it waits for good). */
  const reportSnapshotOutcome = (message: Message, delivered: boolean): void => {
    if (message.type !== MessageType.MsgSnap) return;
    const sender = nodes[message.from - 1]!;
    sender.raw?.reportSnapshot(message.to, delivered ? SnapshotStatus.SnapshotFinish : SnapshotStatus.SnapshotFailure);
  };

  const crash = (node: SimNode): void => {
    crashes++;
    node.raw = undefined;
    node.appendWork = [];
    node.applyWork = [];
    node.localInbox = [];
    for (const message of network) if (message.to === node.id) reportSnapshotOutcome(message, false);
    network = network.filter((message) => message.to !== node.id);
  };

  /**
   * Snapshots the state machine and compacts the log below it. With async writes the apply
   * thread can run ahead of the durable commit index (the hard state carrying it may still be
   * queued for the append thread), and a snapshot above the durable commit would make the
   * restart fail ("state.commit is out of range"): snapshot only state that is applied AND
   * durably committed. Likewise raft still reads entries above the applied index it was told
   * about (the MsgStorageApplyResp may not be stepped yet); compacting above it makes raft fail
   * ("error scanning unapplied entries"). Here the state machine must be at the snapshot index
   * exactly, so compaction waits until both have caught up with it.
   */
  const compact = async (node: SimNode): Promise<void> => {
    const index = node.appliedIndex;
    if (index > node.storage.hardState().commit || index > node.raw!.status().applied) return;
    if (index <= node.storage.snapshot().metadata.index || index > node.storage.lastIndex()) return;
    const confState = node.raw!.raft.trk.confState();
    const data = encoder.encode(JSON.stringify(node.values));
    const snapshot: Snapshot = await node.storage.createSnapshot(index, confState, data);
    await node.storage.compact(snapshot.metadata.index);
    compactions++;
  };

  /** One random action. `heal`: no loss, no crashes. */
  const act = async (heal: boolean): Promise<void> => {
    const node = pick(running());
    const roll = random();
    if (node === undefined) return;
    if (roll < 0.015) {
      // A forced election (as after a leader's pause): terms change while appends are in flight.
      if (!heal) node.raw!.campaign();
    } else if (roll < 0.15) {
      node.raw!.tick();
    } else if (roll < 0.22) {
      if (heal) return; // only the final value is proposed after healing
      try {
        node.raw!.propose(encoder.encode(`v${proposals++}`));
      } catch (error) {
        if (!(error instanceof RaftError)) throw error;
      }
    } else if (roll < 0.4) {
      if (node.raw!.hasReady()) processReady(node);
    } else if (roll < 0.52) {
      if (node.appendWork.length > 0) await processAppend(node);
    } else if (roll < 0.6) {
      if (node.applyWork.length > 0) processApply(node);
    } else if (roll < 0.7) {
      const inbox = node.localInbox;
      node.localInbox = [];
      for (const message of inbox) step(node, message);
    } else if (roll < 0.97) {
      if (network.length === 0) return;
      const position = Math.floor(random() * network.length);
      const message = network[position]!;
      if (!heal && chance(0.1)) {
        network.splice(position, 1); // lost
        reportSnapshotOutcome(message, false);
        return;
      }
      if (heal || !chance(0.05)) network.splice(position, 1); // else duplicated: delivered and kept
      const target = nodes[message.to - 1]!;
      if (target.raw !== undefined) step(target, message);
      reportSnapshotOutcome(message, target.raw !== undefined);
    } else if (roll < 0.975) {
      if (!heal && running().length > Math.floor(size / 2) + 1) crash(node);
    } else if (roll < 0.985) {
      const down = pick(nodes.filter((candidate) => candidate.raw === undefined));
      if (down !== undefined) start(down);
    } else {
      await compact(node);
    }
    checkLeaders();
  };

  for (let i = 0; i < steps; i++) await act(false);

  // Heal: everyone back, nothing lost, until a value proposed now is applied everywhere.
  for (const node of nodes) if (node.raw === undefined) start(node);
  const finalValue = `final-${seed}`;
  let finalProposed = false;
  for (let i = 0; ; i++) {
    if (i > 200_000) {
      const describe = nodes
        .map((node) => {
          const raft = node.raw!.raft;
          const log = raft.raftLog;
          return `${node.id}: ${StateType[raft.state]} term=${raft.term} lead=${raft.lead} commit=${log.committed} applied=${log.applied} applying=${log.applying} appliedIndex=${node.appliedIndex} last=${log.lastIndex()} stored=${node.storage.firstIndex()}..${node.storage.lastIndex()} unstable=${log.unstable.offset}+${log.unstable.entries.length}/${log.unstable.offsetInProgress} snap=${log.unstable.snapshot?.metadata.index}/${log.unstable.snapshotInProgress} work=${node.appendWork.length}/${node.applyWork.length}/${node.localInbox.length} hasReady=${node.raw!.hasReady()} values=${node.values.length}\n${raft.state === StateType.StateLeader ? raft.trk.progress.size : ''}`;
        })
        .join('\n');
      fail(`no convergence after healing (final proposed: ${finalProposed})\n${describe}\nnetwork ${network.length}`);
    }
    if (nodes.every((node) => node.values.includes(finalValue))) break;
    const leader = running().find((node) => node.raw!.raft.state === StateType.StateLeader);
    if (!finalProposed && leader !== undefined && chance(0.01)) {
      try {
        leader.raw!.propose(encoder.encode(finalValue));
        finalProposed = true;
      } catch (error) {
        if (!(error instanceof RaftError)) throw error;
      }
    }
    // A proposal dropped during a leadership change is proposed again.
    if (finalProposed && i % 20_000 === 19_999) finalProposed = false;
    await act(true);
  }
  // State machine safety end to end: every node's values are a prefix of the longest one's.
  const longest = nodes.reduce((a, b) => (b.values.length > a.values.length ? b : a)).values;
  for (const node of nodes) {
    if (node.values.some((value, position) => longest[position] !== value)) fail(`node ${node.id} applied a different sequence`);
  }
  return {
    seed,
    nodes: size,
    applied: Math.max(...nodes.map((node) => node.appliedIndex)),
    leaders: leaderOfTerm.size,
    crashes,
    compactions,
    snapshotAppends,
    staleAppendResponses,
  };
}
