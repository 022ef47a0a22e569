// A complete Ready loop on one node: bootstrap once, restart, campaign, propose, apply.
// (README "Using the Raft: the Ready loop" shows this file; spec/examples.test.ts runs it.)
import { EntryType, RawNode, ReplicaLogStore, decodeConfChangeEntry, isEmptySnap, type Ready } from '../index.js';

export async function runSingleNode(dir: string, values: string[]): Promise<string[]> {
  const store = await ReplicaLogStore.open({ dir });
  const fresh = store.lastIndex() === 0 && store.snapshot().metadata.index === 0;
  // The state machine: here, the values applied in order (a real one is restored from a snapshot).
  const applied: string[] = [];
  const node = new RawNode({ id: 1, storage: store, electionTick: 10, heartbeatTick: 1 });
  if (fresh) node.bootstrap([1]); // once, on an empty store; a restart reads everything back

  // The loop runs one Ready at a time. Ticks and proposals only queue work and kick it, so it
  // can never re-enter (two Readys without advance() are refused with ERR_READY_NOT_ADVANCED).
  let running: Promise<void> | undefined;
  const kick = (): Promise<void> => (running ??= loop().finally(() => (running = undefined)));
  async function loop(): Promise<void> {
    while (node.hasReady()) {
      const rd: Ready = node.ready();
      if (rd.snapshot !== undefined && !isEmptySnap(rd.snapshot)) await store.applySnapshot(rd.snapshot); // 1. persist
      await Promise.all([store.append(rd.entries), rd.hardState ? store.setHardState(rd.hardState) : undefined]);
      // 2. send rd.messages to the peers here (none on one node), only now that they are durable
      for (const entry of rd.committedEntries) {
        // 3. apply
        const change = entry.type === EntryType.Normal ? undefined : decodeConfChangeEntry(entry);
        if (change !== undefined) await store.setConfState(node.applyConfChange(change));
        else if (entry.data !== undefined && entry.data.length > 0) applied.push(new TextDecoder().decode(entry.data));
      }
      node.advance(rd); // 4. advance
    }
  }

  const ticker = setInterval(() => {
    node.tick();
    void kick();
  }, 10);
  try {
    await kick(); // apply what the log already holds (a node does not campaign with unapplied conf changes)
    node.campaign(); // one voter: it wins at once (with peers, the election timeout does this)
    await kick();
    for (const value of values) {
      node.propose(new TextEncoder().encode(value));
      await kick();
    }
    // Wait until every proposal is applied (a real node resolves each caller when its entry applies).
    for (let waited = 0; applied.length < values.length && waited < 5000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
    return applied;
  } finally {
    clearInterval(ticker);
    await running;
    await store.close();
  }
}
