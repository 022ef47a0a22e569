/**
 * In-process raft groups on real ReplicaLogStores for the node's tests: a host that records what
 * a group sends and hands it to `deliver`, the settings they run with, and a group opener.
 */
import { join } from 'node:path';
import type { GroupHost, GroupSettings, ReplicaNodeRefusals } from '../../lib/node/group.js';
import { RaftGroup } from '../../lib/node/group.js';
import type { NodeCounters } from '../../lib/node/metrics.js';
import { RateLimitedLog } from '../../lib/node/rate-limited-log.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import type { Message, MessageType } from '../../lib/types.js';

export function settingsFor(asyncStorageWrites: boolean): GroupSettings {
  return {
    tickMs: 10,
    electionTick: 10,
    heartbeatTick: 1,
    snapshotEvery: 1_000_000,
    snapshotLogRatio: 0,
    keepEntries: 100,
    proposalTimeoutMs: 20_000,
    maxUncommittedEntriesSize: 1 << 25,
    consistencyCheckEvery: 1_000_000_000,
    maxInboxLength: 10_000,
    maxInboxTotal: 100_000,
    maxPendingProposals: 1_000,
    narrate: false,
    multiGroup: false,
    quiesce: false,
    asyncStorageWrites,
  };
}

/** A node as a group sees it: records what is sent and hands it to `deliver`. */
export class TestHost implements GroupHost {
  readonly counters: NodeCounters = { leaderChanges: 0, proposals: new Map(), snapshots: 0, compactions: 0, quiesces: 0, wakes: 0 };
  readonly refusals: ReplicaNodeRefusals = { messages: 0, inboxFull: 0, proposalsOverLimit: 0, unknownGroups: 0 };
  readonly refusalLog = new RateLimitedLog(() => {}, 1_000);
  readonly raftLogger = undefined;
  inboxTotal = 0;
  pendingProposals = 0;
  running = true;
  readonly sent: Message[] = [];
  readonly failures: Error[] = [];
  deliver: (message: Message) => void = () => {};

  constructor(
    readonly nodeId: number,
    readonly settings: GroupSettings,
  ) {}

  log(): void {}
  send(_group: RaftGroup, messages: readonly Message[]): void {
    for (const message of messages) {
      this.sent.push(message);
      this.deliver(message);
    }
  }
  fail(error: Error): void {
    this.failures.push(error);
    this.running = false;
  }
  isConfiguredPeer(): boolean {
    return true;
  }
  isPeerLive(): boolean {
    return true;
  }
  quiesced(): void {}
  woke(): void {}

  sentOf(type: MessageType): Message[] {
    return this.sent.filter((message) => message.type === type);
  }
}

export interface TestGroup {
  host: TestHost;
  group: RaftGroup;
  store: ReplicaLogStore;
}

export async function openGroup(
  root: string,
  id: number,
  settings: GroupSettings,
  prepare: (store: ReplicaLogStore) => Promise<void>,
  /** Where the group's closing goes (run it after the test). */
  cleanups: (() => Promise<void>)[],
): Promise<TestGroup> {
  const store = await ReplicaLogStore.open({ dir: join(root, `node-${id}`) });
  await prepare(store);
  const host = new TestHost(id, settings);
  const group = await RaftGroup.open(host, 1, store);
  cleanups.push(async () => {
    host.running = false;
    await group.settled();
    await group.snapshotting;
    await store.close();
  });
  return { host, group, store };
}

