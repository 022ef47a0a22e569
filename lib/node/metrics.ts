/**
 * The node's Prometheus metrics (`GET /metrics`), with prom-client. Every value is read from the
 * node, its raft status, its store's stats() and its transport at scrape time (one registry per
 * node, never the process-wide default), so nothing on the hot path does more than add to a
 * counter.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { StoreStats } from '../store-stats.js';
import type { StorageStats } from '../storage.js';
import type { ReplicaNodeStatus } from './node.js';

/** What the node counts for its metrics (kept by ReplicaNode, read at scrape time). */
export interface NodeCounters {
  leaderChanges: number;
  /** Proposals made through this node, by outcome: 'ok' or a ProposalError code. */
  proposals: Map<string, number>;
  snapshots: number;
  compactions: number;
  /** Groups that quiesced, and that woke up again (issue 19). */
  quiesces: number;
  wakes: number;
}

export interface MetricsSource {
  status(): ReplicaNodeStatus;
  counters(): NodeCounters;
  storeStats(): StoreStats;
  /** The storage's shared pipeline, when the node runs on a storage. */
  storageStats(): StorageStats | undefined;
}

function setCounter(counter: Counter, value: number, labels?: Record<string, string>): void {
  if (labels === undefined) {
    counter.reset();
    counter.inc(value);
  } else {
    counter.inc(labels, value);
  }
}

/** A registry whose metrics read `source` when scraped. */
export function nodeMetrics(source: MetricsSource): Registry {
  const registry = new Registry();
  const gauge = (name: string, help: string, read: (status: ReplicaNodeStatus) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(source.status()));
      },
    });
  gauge('replicalog_raft_term', "raft's current term", (status) => status.term);
  gauge('replicalog_raft_commit_index', 'the highest log index known to be committed', (status) => status.commit);
  gauge('replicalog_applied_index', 'the highest log index applied to the state machine', (status) => status.applied);
  gauge('replicalog_apply_lag_entries', 'committed entries not yet applied here', (status) => Math.max(0, status.commit - status.applied));
  gauge('replicalog_raft_is_leader', '1 on the leader, 0 elsewhere', (status) => (status.raftState === 'StateLeader' ? 1 : 0));
  gauge('replicalog_log_first_index', "the store's first index", (status) => status.firstIndex);
  gauge('replicalog_log_last_index', "the store's last index", (status) => status.lastIndex);
  gauge('replicalog_state_keys', 'keys in the state machine', (status) => status.keys);
  gauge('replicalog_consistency_alarms', 'replicas found to disagree with this one (see /status)', (status) => status.consistency.alarms.length);

  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        setCounter(this, read());
      },
    });
  counter('replicalog_raft_leader_changes_total', 'times the known leader changed', () => source.counters().leaderChanges);
  counter('replicalog_snapshots_total', 'state-machine snapshots taken', () => source.counters().snapshots);
  counter('replicalog_compactions_total', 'log compactions', () => source.counters().compactions);
  counter('replicalog_store_appends_total', 'append() calls made durable', () => source.storeStats().appends);
  counter('replicalog_store_entries_written_total', 'entries written to the log', () => source.storeStats().entriesWritten);
  counter('replicalog_store_bytes_written_total', 'bytes of entries written to the log', () => source.storeStats().bytesWritten);
  counter('replicalog_store_write_groups_total', 'write groups flushed (each one wal/ fsync and one KV batch at most)', () => source.storeStats().writeGroupSizes.count);
  counter('replicalog_store_fsyncs_total', 'fsync calls made by the log', () => source.storeStats().fsyncSeconds.count);
  counter('replicalog_store_fsync_seconds_total', 'time spent in the log\'s fsync calls', () => source.storeStats().fsyncSeconds.sum);
  counter('replicalog_store_cache_hits_total', 'entries served from the entry cache', () => source.storeStats().cacheHits);
  counter('replicalog_store_cache_misses_total', 'entries read from their RAFT file', () => source.storeStats().cacheMisses);
  counter('replicalog_store_journal_checkpoints_total', 'journal checkpoints (entries written into wal/ behind the acknowledgements)', () => source.storeStats().journalCheckpoints);
  counter('replicalog_store_entries_recycled_total', 'entries written into a reused compacted directory (no inode created or freed)', () => source.storeStats().entriesRecycled);
  gauge('replicalog_store_recycle_pool_directories', 'compacted entry directories waiting to be reused', () => source.storeStats().recyclePoolSize);
  gauge('replicalog_store_journal_entries_waiting', 'acknowledged entries in the journal only, not yet in wal/', () => source.storeStats().journalEntriesWaiting);

  new Counter({
    name: 'replicalog_proposals_total',
    help: 'proposals made through this node, by result (ok, or the ProposalError code)',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [result, count] of source.counters().proposals) setCounter(this, count, { result });
    },
  });
  new Counter({
    name: 'replicalog_refused_total',
    help: 'what this node refused from the network, by kind (message guard, inbox, transport limits)',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      this.reset();
      const refused = source.status().refused;
      setCounter(this, refused.messages, { kind: 'message' });
      setCounter(this, refused.inboxFull, { kind: 'inbox_full' });
      setCounter(this, refused.proposalsOverLimit, { kind: 'proposals_over_limit' });
      setCounter(this, refused.unknownGroups, { kind: 'unknown_group' });
      for (const [kind, count] of Object.entries(refused.transport)) setCounter(this, count, { kind: `transport_${kind}` });
    },
  });
  new Counter({
    name: 'replicalog_transport_bytes_total',
    help: 'bytes the raft transport sent to and received from each peer (frames on the socket)',
    labelNames: ['direction', 'peer'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { peer, sent, received } of source.status().transport.peers) {
        setCounter(this, sent, { direction: 'sent', peer: String(peer) });
        setCounter(this, received, { direction: 'received', peer: String(peer) });
      }
    },
  });
  // Multi-raft (issue 19): node-wide figures only, never one series per group.
  gauge('replicalog_groups', 'raft groups (partitions) hosted here', (status) => status.groups.count);
  gauge('replicalog_groups_leading', 'groups whose leader is this node', (status) => status.groups.leading);
  gauge('replicalog_groups_quiesced', 'groups that stopped ticking (idle and caught up)', (status) => status.groups.quiesced);
  gauge('replicalog_groups_without_leader', 'groups that know no leader', (status) => status.groups.withoutLeader);
  gauge('replicalog_live_peers', 'peers whose node-level heartbeats arrive', (status) => status.livePeers.length);
  counter('replicalog_group_quiesces_total', 'times a group quiesced', () => source.counters().quiesces);
  counter('replicalog_group_wakes_total', 'times a quiesced group woke up', () => source.counters().wakes);
  new Counter({
    name: 'replicalog_group_batches_total',
    help: 'GroupBatch frames (one per peer per loop turn or tick) and the raft messages they carried, by direction',
    labelNames: ['direction', 'what'],
    registers: [registry],
    collect() {
      this.reset();
      const batches = source.status().transport.groupBatches;
      setCounter(this, batches.framesSent, { direction: 'sent', what: 'frames' });
      setCounter(this, batches.messagesSent, { direction: 'sent', what: 'messages' });
      setCounter(this, batches.framesReceived, { direction: 'received', what: 'frames' });
      setCounter(this, batches.messagesReceived, { direction: 'received', what: 'messages' });
    },
  });
  counter('replicalog_storage_kv_batches_total', "synced KV batches of the storage's shared pipeline (0 on a single store)", () => source.storageStats()?.kvBatches ?? 0);
  counter('replicalog_storage_kv_writes_total', 'partition KV writes those batches carried', () => source.storageStats()?.kvWrites ?? 0);
  counter('replicalog_storage_syncfs_total', 'syncfs passes shared by the partitions appending at the same time', () => source.storageStats()?.fileSystemSyncs ?? 0);
  gauge('replicalog_transport_staged_bytes', 'bytes staged on disk by inbound streams in flight (snapshot files, attachments)', (status) => status.transport.stagedBytes);
  gauge('replicalog_transport_buffered_frame_bytes', 'received frames waiting to be processed, over every connection', (status) => status.transport.bufferedFrameBytes);
  return registry;
}
