/**
 * White-box helpers from etcd raft's raft_test.go: newTestRaft, readMessages,
 * advanceMessagesAfterAppend, nextEnts and the synchronous test `network` that delivers
 * messages straight into raft state machines (entries stay in the unstable log).
 */
import { MemoryStorage } from '../../lib/memory-storage.js';
import { Raft, type RaftConfig } from '../../lib/raft/raft.js';
import { newMessage } from '../../lib/raft/util.js';
import { MessageType, NO_LIMIT, emptyConfState, type Entry, type Message, type Storage } from '../../lib/types.js';

export function newTestConfig(id: number, election: number, heartbeat: number, storage: Storage): RaftConfig {
  return { id, electionTick: election, heartbeatTick: heartbeat, storage, maxSizePerMsg: NO_LIMIT, maxInflightMsgs: 256 };
}

export function newTestRaft(id: number, election: number, heartbeat: number, storage: Storage, extra: Partial<RaftConfig> = {}): Raft {
  return new Raft({ ...newTestConfig(id, election, heartbeat, storage), ...extra });
}

/** Go's newTestMemoryStorage(withPeers(...)): the ConfState holds the voters. */
export async function newTestMemoryStorage(voters: number[], learners: number[] = []): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  await storage.setConfState({ ...emptyConfState(), voters, learners });
  return storage;
}

export function idsBySize(size: number): number[] {
  return Array.from({ length: size }, (_, i) => i + 1);
}

/** Steps self-addressed post-append messages; others join r.msgs (Go's advanceMessagesAfterAppend). */
export function advanceMessagesAfterAppend(r: Raft): void {
  for (;;) {
    const msgs = r.msgsAfterAppend;
    r.msgsAfterAppend = [];
    if (msgs.length === 0) return;
    for (const m of msgs) {
      if (m.to === r.id) r.step(m);
      else r.msgs.push(m);
    }
  }
}

export function readMessages(r: Raft): Message[] {
  advanceMessagesAfterAppend(r);
  const msgs = r.msgs;
  r.msgs = [];
  return msgs;
}

/** Persists unstable entries, runs post-append steps, returns (and applies) committed entries. */
export async function nextEnts(r: Raft, storage: MemoryStorage): Promise<Entry[]> {
  await storage.append(r.raftLog.nextUnstableEnts());
  r.raftLog.stableTo(r.raftLog.lastEntryId());
  advanceMessagesAfterAppend(r);
  const entries = r.raftLog.nextCommittedEnts(true);
  r.raftLog.appliedTo(r.raftLog.committed, 0);
  return entries;
}

export function mustAppendEntry(r: Raft, ...entries: Entry[]): void {
  if (!r.appendEntry(entries)) throw new Error('entry unexpectedly dropped');
}

/** Sorts messages deterministically (Go sorts by their printed form). */
export function sortMessages(msgs: Message[]): Message[] {
  return msgs.slice().sort((a, b) => a.to - b.to || a.type - b.type || a.index - b.index);
}

export function msg(fields: Partial<Message> & { type: MessageType }): Message {
  return newMessage(fields);
}

/** A peer that swallows everything (Go's blackHole / nopStepper). */
export const BLACK_HOLE = 'blackhole' as const;

export class TestNetwork {
  readonly peers = new Map<number, Raft | typeof BLACK_HOLE>();
  readonly storage = new Map<number, MemoryStorage>();
  private dropRates = new Map<string, number>();
  private ignored = new Set<MessageType>();
  msgHook: ((m: Message) => boolean) | undefined;

  /** Go's newNetwork: undefined peers become fresh rafts over storages with all ids as voters. */
  static async create(peers: Array<Raft | typeof BLACK_HOLE | undefined>, configure?: (c: RaftConfig) => void): Promise<TestNetwork> {
    const network = new TestNetwork();
    const ids = idsBySize(peers.length);
    for (let j = 0; j < peers.length; j++) {
      const id = ids[j]!;
      const peer = peers[j];
      if (peer === undefined) {
        const storage = await newTestMemoryStorage(ids);
        network.storage.set(id, storage);
        const config = newTestConfig(id, 10, 1, storage);
        configure?.(config);
        network.peers.set(id, new Raft(config));
      } else {
        network.peers.set(id, peer);
      }
    }
    return network;
  }

  send(...messages: Message[]): void {
    const queue = messages.slice();
    while (queue.length > 0) {
      const m = queue.shift()!;
      const peer = this.peers.get(m.to);
      if (peer === undefined || peer === BLACK_HOLE) continue;
      peer.step(m);
      advanceMessagesAfterAppend(peer);
      queue.push(...this.filter(readMessages(peer)));
    }
  }

  drop(from: number, to: number, rate: number): void {
    this.dropRates.set(`${from}-${to}`, rate);
  }

  cut(one: number, other: number): void {
    this.drop(one, other, 2);
    this.drop(other, one, 2);
  }

  isolate(id: number): void {
    for (let i = 1; i <= this.peers.size; i++) {
      if (i !== id) {
        this.drop(id, i, 1);
        this.drop(i, id, 1);
      }
    }
  }

  ignore(type: MessageType): void {
    this.ignored.add(type);
  }

  recover(): void {
    this.dropRates.clear();
    this.ignored.clear();
  }

  private filter(msgs: Message[]): Message[] {
    return msgs.filter((m) => {
      if (this.ignored.has(m.type)) return false;
      if (m.type === MessageType.MsgHup) throw new Error('unexpected msgHup');
      const rate = this.dropRates.get(`${m.from}-${m.to}`) ?? 0;
      if (Math.random() < rate) return false;
      if (this.msgHook !== undefined && !this.msgHook(m)) return false;
      return true;
    });
  }
}
