// Three nodes in one process: three RawNodes on three ReplicaLogStores, an in-memory network
// between them, one serialised Ready loop per node. They elect a leader, the leader takes the
// proposals, and every node applies them in the same order.
// (README "Using the Raft: the Ready loop" shows this file; spec/examples.test.ts runs it.)
import { EntryType, RawNode, ReplicaLogStore, decodeConfChangeEntry, isEmptySnap, type Message, type Ready } from '../index.js';

const PEERS = [1, 2, 3];

/** The network: delivers each message to its recipient later (never inside the sender's loop). */
class InMemoryNetwork {
  private readonly members = new Map<number, Member>();
  private stopped = false;
  join(member: Member): void {
    this.members.set(member.id, member);
  }
  send(messages: Message[]): void {
    for (const message of messages) setImmediate(() => this.stopped || this.members.get(message.to)?.receive(message));
  }
  /** Drops every message from now on (before the stores close). */
  stop(): void {
    this.stopped = true;
  }
}

/** One member: its store, its RawNode, its state machine (the values applied) and its Ready loop. */
class Member {
  readonly applied: string[] = [];
  private running: Promise<void> | undefined;

  private constructor(readonly id: number, readonly store: ReplicaLogStore, readonly node: RawNode, private readonly network: InMemoryNetwork) {}

  static async start(id: number, dir: string, network: InMemoryNetwork): Promise<Member> {
    const store = await ReplicaLogStore.open({ dir });
    const node = new RawNode({ id, storage: store, electionTick: 10, heartbeatTick: 1 });
    // A new cluster: every member bootstraps once with the same voters (a restart does not).
    if (store.lastIndex() === 0 && store.snapshot().metadata.index === 0) node.bootstrap(PEERS);
    const member = new Member(id, store, node, network);
    network.join(member);
    return member;
  }

  receive(message: Message): void {
    this.node.step(message);
    void this.kick();
  }

  tick(): void {
    this.node.tick();
    void this.kick();
  }

  /** Runs the loop unless it is running: one Ready at a time, it never re-enters. */
  kick(): Promise<void> {
    return (this.running ??= this.loop().finally(() => (this.running = undefined)));
  }

  private async loop(): Promise<void> {
    while (this.node.hasReady()) {
      const rd: Ready = this.node.ready();
      // 1. persist: snapshot, entries and hard state (one write group)
      if (rd.snapshot !== undefined && !isEmptySnap(rd.snapshot)) await this.store.applySnapshot(rd.snapshot);
      await Promise.all([this.store.append(rd.entries), rd.hardState ? this.store.setHardState(rd.hardState) : undefined]);
      // 2. send, now that what the messages promise is durable
      this.network.send(rd.messages);
      // 3. apply
      for (const entry of rd.committedEntries) {
        const change = entry.type === EntryType.Normal ? undefined : decodeConfChangeEntry(entry);
        if (change !== undefined) await this.store.setConfState(this.node.applyConfChange(change));
        else if (entry.data !== undefined && entry.data.length > 0) this.applied.push(new TextDecoder().decode(entry.data));
      }
      this.node.advance(rd); // 4. advance
    }
  }
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !condition(); await new Promise((resolve) => setTimeout(resolve, 10))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

/** Starts three members in `dirs`, elects a leader, proposes `values` there; answers what each applied. */
export async function runThreeNodes(dirs: string[], values: string[]): Promise<{ leader: number; applied: Map<number, string[]> }> {
  const network = new InMemoryNetwork();
  const members = await Promise.all(PEERS.map((id, i) => Member.start(id, dirs[i]!, network)));
  const ticker = setInterval(() => members.forEach((member) => member.tick()), 10);
  try {
    // Apply the bootstrap conf changes first (a node does not campaign with unapplied ones),
    // then let member 1 campaign at once rather than wait for an election timeout.
    await Promise.all(members.map((member) => member.kick()));
    members[0]!.node.campaign();
    await waitFor(() => members.some((member) => member.node.basicStatus().raftState === 'StateLeader'), 'a leader');
    const leader = members.find((member) => member.node.basicStatus().raftState === 'StateLeader')!;
    for (const value of values) {
      leader.node.propose(new TextEncoder().encode(value)); // a follower would forward it to the leader
      await leader.kick();
    }
    await waitFor(() => members.every((member) => member.applied.length >= values.length), 'every member to apply');
    return { leader: leader.id, applied: new Map(members.map((member) => [member.id, member.applied])) };
  } finally {
    network.stop();
    clearInterval(ticker);
    await Promise.all(members.map((member) => member.kick()));
    await Promise.all(members.map((member) => member.store.close()));
  }
}
