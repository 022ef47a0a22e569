/**
 * A seeded randomised simulation of a RawNode cluster over the test Network, checking Raft's
 * safety properties after every step:
 *   - election safety: at most one leader per term;
 *   - log matching / state machine safety: no two different entries are committed (handed
 *     to the application) at the same index, on any node;
 *   - every node's applied sequence is a prefix-consistent view of that single committed log,
 *     in increasing index order;
 *   - linearizable ReadIndex: a read's index is at least every index committed before it;
 * and, at the end, liveness after healing: every member of the final configuration converges to
 * the same applied state, and no joint configuration is left behind.
 *
 * Faults: message reordering, loss, duplication, partitions, crashes and restarts from the
 * store, log compaction with snapshot catch-up, leadership transfers, and (in half the seeds)
 * random membership changes, simple and joint.
 *
 * `runSimulation(seed)` runs one seed; `runSimulationSeeds(first, count)` a range (use it from
 * a script to run many more seeds than CI does).
 */
import { RaftError } from '../../lib/raft/raft.js';
import type { StoreFactory } from './network.js';
import { Network, encodeText, memoryStoreFactory } from './network.js';
import { seededRandom } from '../../lib/seeded-random.js';

export { seededRandom };
import { ConfChangeTransition, ConfChangeType, type ConfChange, type ConfChangeV2, type Entry } from '../../lib/types.js';


export interface SimulationOptions {
  /** Random steps per seed (default 500). */
  steps?: number;
  factory?: StoreFactory;
}

export interface SimulationResult {
  seed: number;
  nodes: number;
  /** Indexes committed in total / during the random phase (before healing). */
  committed: number;
  committedBeforeHeal: number;
  /** Terms that had a leader. */
  leaders: number;
  /** Log compactions performed. */
  snapshots: number;
  /** Membership changes proposed (dynamic seeds only). */
  confChanges: number;
  /** ReadIndex answers checked. */
  reads: number;
}

function entryKey(entry: Entry): string {
  const data = entry.data === undefined ? '-' : Buffer.from(entry.data).toString('hex');
  return `${entry.term}/${entry.type}/${data}`;
}

class SafetyViolation extends Error {}

/** Runs one seeded simulation; throws (with the seed in the message) on a safety violation. */
export async function runSimulation(seed: number, options: SimulationOptions = {}): Promise<SimulationResult> {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const size = random() < 0.6 ? 3 : 5;
  // In dynamic seeds, two spare nodes start outside the configuration and conf changes
  // (simple and joint, voters and learners, additions and removals) are proposed at random.
  const dynamic = random() < 0.5;
  const initialVoters = Array.from({ length: size }, (_, i) => i + 1);
  const ids = Array.from({ length: size + (dynamic ? 2 : 0) }, (_, i) => i + 1);
  const steps = options.steps ?? 500;

  /** index → key of the entry committed there (by any node). */
  const committedAt = new Map<number, string>();
  /** term → the node that was leader in it. */
  const leaderOfTerm = new Map<number, number>();
  /** read context → highest index known committed when the read was requested. */
  const readFloor = new Map<string, number>();
  let reads = 0;
  const fail = (message: string): never => {
    throw new SafetyViolation(`seed ${seed}: ${message}`);
  };

  const network = new Network({
    factory: options.factory ?? memoryStoreFactory,
    electionTick: 5,
    heartbeatTick: 1,
    preVote: random() < 0.5,
    checkQuorum: random() < 0.5,
    maxSizePerMsg: random() < 0.5 ? 64 : undefined,
    maxInflightMsgs: random() < 0.5 ? 2 : 256,
    random,
    onReady: (id, rd) => {
      // Linearizable reads: a read index covers every entry committed before the read began.
      for (const readState of rd.readStates) {
        const context = Buffer.from(readState.requestCtx).toString('latin1');
        const floor = readFloor.get(context);
        if (floor === undefined) fail(`node ${id} got a read state for unknown request ${context}`);
        else if (readState.index < floor) fail(`read ${context} on node ${id} got index ${readState.index} < ${floor} committed before it`);
        else reads++;
      }
    },
    onCommit: (id, entry) => {
      // State machine safety: one entry per index, cluster-wide.
      const key = entryKey(entry);
      const existing = committedAt.get(entry.index);
      if (existing === undefined) committedAt.set(entry.index, key);
      else if (existing !== key) fail(`node ${id} applied ${key} at index ${entry.index}, another node applied ${existing}`);
    },
  });
  for (const id of ids) await network.addNode(id, initialVoters.includes(id) ? initialVoters : undefined);

  const checkLeaders = () => {
    for (const node of network.nodes.values()) {
      if (!node.running) continue;
      const status = node.raw.basicStatus();
      if (status.raftState !== 'StateLeader') continue;
      const previous = leaderOfTerm.get(status.term);
      if (previous === undefined) leaderOfTerm.set(status.term, node.id);
      else if (previous !== node.id) fail(`two leaders in term ${status.term}: ${previous} and ${node.id}`);
    }
  };

  const checkApplied = () => {
    for (const node of network.nodes.values()) {
      let previousIndex = 0;
      for (const applied of node.app.applied) {
        if (applied.index <= previousIndex) fail(`node ${node.id} applied index ${applied.index} after ${previousIndex}`);
        previousIndex = applied.index;
        const key = committedAt.get(applied.index);
        const mine = `${applied.term}/0/${Buffer.from(encodeText(applied.data)).toString('hex')}`;
        if (key !== undefined && key !== mine) fail(`node ${node.id} holds ${mine} at ${applied.index}, committed was ${key}`);
      }
    }
  };

  /** Proposes a random membership change on the leader that keeps at least two voters. */
  const proposeRandomConfChange = () => {
    const leader = network.leader();
    if (leader === undefined) return;
    const raw = network.node(leader).raw;
    const cs = raw.raft.trk.confState();
    const target = pick(ids);
    const isVoter = cs.voters.includes(target);
    const roll = random();
    let cc: ConfChange | ConfChangeV2 | undefined;
    if (roll < 0.35) {
      cc = { id: 0, type: ConfChangeType.AddNode, nodeId: target };
    } else if (roll < 0.55) {
      // Adding a voter as a learner demotes it: only while enough voters remain.
      if (!isVoter || cs.voters.length > 2) cc = { id: 0, type: ConfChangeType.AddLearnerNode, nodeId: target };
    } else if (roll < 0.8) {
      if (!isVoter || cs.voters.length > 2) cc = { id: 0, type: ConfChangeType.RemoveNode, nodeId: target };
    } else {
      // A joint change: add one node as a voter and remove a voter.
      const removed = pick(cs.voters);
      if (cs.voters.length > 2 && removed !== target) {
        cc = {
          transition: random() < 0.8 ? ConfChangeTransition.Auto : ConfChangeTransition.JointImplicit,
          changes: [
            { type: ConfChangeType.AddNode, nodeId: target },
            { type: ConfChangeType.RemoveNode, nodeId: removed },
          ],
        };
      }
    }
    if (cc === undefined) return;
    try {
      raw.proposeConfChange(cc);
      confChanges++;
    } catch (error) {
      if (!(error instanceof RaftError) || error.code !== 'ERR_PROPOSAL_DROPPED') throw error;
    }
  };

  let confChanges = 0;
  let proposalCounter = 0;
  let snapshots = 0;
  const running = () => [...network.nodes.values()].filter((n) => n.running).map((n) => n.id);

  for (let step = 0; step < steps; step++) {
    const roll = random();
    if (roll < 0.15) {
      network.tickAll();
    } else if (roll < 0.47) {
      // Deliver a random batch of in-flight messages in random order (reordering).
      const batch = 1 + Math.floor(random() * Math.ceil(network.inFlight.length / 2));
      for (let i = 0; i < batch && network.inFlight.length > 0; i++) {
        network.deliverAt(Math.floor(random() * network.inFlight.length));
      }
    } else if (roll < 0.49) {
      // Lose a random message.
      if (network.inFlight.length > 0) network.dropAt(Math.floor(random() * network.inFlight.length));
    } else if (roll < 0.5) {
      // Duplicate a random message.
      if (network.inFlight.length > 0) network.inFlight.push(network.inFlight[Math.floor(random() * network.inFlight.length)]!);
    } else if (roll < 0.75) {
      const up = running();
      if (up.length > 0) await network.processReady(pick(up));
    } else if (roll < 0.86) {
      const up = running();
      if (up.length > 0) {
        try {
          network.node(pick(up)).raw.propose(encodeText(`s${seed}-p${proposalCounter++}`));
        } catch (error) {
          if (!(error instanceof RaftError) || error.code !== 'ERR_PROPOSAL_DROPPED') throw error;
        }
      }
    } else if (roll < 0.89) {
      // Crash a node (keeping a majority up), or restart a stopped one.
      const down = ids.filter((id) => !network.node(id).running);
      if (down.length > 0 && random() < 0.6) await network.restart(pick(down));
      else if (down.length < Math.floor((size - 1) / 2)) network.stop(pick(running()));
    } else if (roll < 0.91) {
      // Partition into two random groups, or heal.
      if (random() < 0.5) {
        const shuffled = ids.slice().sort(() => random() - 0.5);
        const cut = 1 + Math.floor(random() * (size - 1));
        network.partition(shuffled.slice(0, cut), shuffled.slice(cut));
      } else {
        network.heal();
      }
    } else if (roll < 0.95) {
      // Compact a node's log at its applied index (the leader then snapshots laggards).
      const node = network.node(pick(ids));
      const applied = node.app.appliedIndex;
      if (node.running && applied > size && applied > node.store.snapshot().metadata.index && applied >= node.store.firstIndex()) {
        await network.compact(node.id);
        snapshots++;
      }
    } else if (roll < 0.96) {
      const leader = network.leader();
      if (leader !== undefined) network.node(leader).raw.transferLeader(pick(ids));
    } else if (roll < 0.975) {
      const up = running();
      if (up.length > 0) {
        const context = `s${seed}-r${readFloor.size}`;
        readFloor.set(context, committedAt.size === 0 ? 0 : Math.max(...committedAt.keys()));
        network.node(pick(up)).raw.readIndex(Buffer.from(context, 'latin1'));
      }
    } else if (dynamic && roll < 0.99) {
      proposeRandomConfChange();
    } else {
      // Run every node's Ready loop once (keeps progress going between random deliveries).
      await network.processAllReadies();
    }
    checkLeaders();
    checkApplied();
  }

  const committedBeforeHeal = committedAt.size;
  // Heal everything and let the cluster converge.
  network.heal();
  for (const id of ids) if (!network.node(id).running) await network.restart(id);
  for (let round = 0; round < 200; round++) {
    network.tickAll();
    await network.stabilize();
    checkLeaders();
    const leader = network.leader();
    if (leader !== undefined && round % 50 === 25) {
      // Refresh the leader's snapshot so nodes added after its last one can catch up from it.
      const node = network.node(leader);
      const applied = node.app.appliedIndex;
      if (applied > node.store.snapshot().metadata.index && applied >= node.store.firstIndex()) await network.compact(leader);
    }
    if (round % 10 === 5) {
      // Reads in the healed cluster, on any node (followers forward them to the leader).
      const context = `s${seed}-r${readFloor.size}`;
      readFloor.set(context, committedAt.size === 0 ? 0 : Math.max(...committedAt.keys()));
      network.node(pick(ids)).raw.readIndex(Buffer.from(context, 'latin1'));
    }
    if (leader !== undefined && round % 10 === 0) {
      try {
        network.node(leader).raw.propose(encodeText(`s${seed}-final${round}`));
      } catch (error) {
        if (!(error instanceof RaftError) || error.code !== 'ERR_PROPOSAL_DROPPED') throw error;
      }
    }
  }
  await network.stabilize();
  checkApplied();
  // Only members of the final configuration must converge (removed nodes stop receiving).
  const reference = [...network.nodes.values()].map((n) => n.app).reduce((a, b) => (b.appliedIndex > a.appliedIndex ? b : a));
  const finalConfig = reference.confState;
  const members = ids.filter(
    (id) => finalConfig.voters.includes(id) || finalConfig.learners.includes(id) || finalConfig.votersOutgoing.includes(id),
  );
  if (finalConfig.votersOutgoing.length > 0) fail(`did not leave the joint configuration ${JSON.stringify(finalConfig)}`);
  for (const id of members) {
    const app = network.node(id).app;
    if (app.appliedIndex !== reference.appliedIndex) {
      if (process.env.SIM_DEBUG !== undefined) {
        for (const n of network.nodes.values()) {
          const st = n.raw.status();
          console.log(n.id, JSON.stringify({ st: { ...st, progress: [...st.progress].map(([k, p]) => [k, p.toString()]), config: st.config.toString() }, first: n.store.firstIndex(), last: n.store.lastIndex(), hs: n.store.initialState(), snap: n.store.snapshot().metadata }));
        }
      }
      fail(`no convergence: node ${id} applied ${app.appliedIndex}, the furthest node applied ${reference.appliedIndex}`);
    }
    if (JSON.stringify(app.applied) !== JSON.stringify(reference.applied)) fail(`node ${id} applied a different sequence`);
  }
  await network.close();
  return { seed, nodes: ids.length, committed: committedAt.size, committedBeforeHeal, leaders: leaderOfTerm.size, snapshots, confChanges, reads };
}

/** Runs seeds first..first+count-1; returns the results (throws on the first violation). */
export async function runSimulationSeeds(first: number, count: number, options: SimulationOptions = {}): Promise<SimulationResult[]> {
  const results: SimulationResult[] = [];
  for (let seed = first; seed < first + count; seed++) results.push(await runSimulation(seed, options));
  return results;
}
