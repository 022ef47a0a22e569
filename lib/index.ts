/**
 * replicalog: a durable Raft log store with etcd raft v3.6's Storage contract over Gitaly's
 * on-disk WAL format. This file is the package's main entry (`import … from 'replicalog'`):
 * the product and nothing else: the stores, the codec and validators, RawNode, the errors,
 * the types, the transport and the cluster node.
 *
 * Test hooks and internals (fixture writers, crash points, fault-injecting file systems, the
 * log rules, layout helpers, raft's internals) are in lib/testing.ts (`replicalog/testing`),
 * with no stability promise. The conformance suite is `replicalog/spec` (it needs vitest).
 *
 * Names are listed one by one (no `export *` of a whole module) so that a helper added to a
 * module for internal use does not become public by accident: a new public name in lib/raft or
 * lib/transport must be added here too (their index.ts files list more than the product needs:
 * raft's internals and the transport's frame codec are in lib/testing.ts).
 */
import type { ReplicaLogStoreOptions as ReplicaLogStoreTestOptions } from './replica-log-store.js';

export {
  EntryType,
  ConfChangeType,
  ConfChangeTransition,
  MessageType,
  NO_LIMIT,
  emptyHardState,
  emptyConfState,
  emptySnapshot,
  isEmptyHardState,
  isEmptySnapshot,
  type Entry,
  type HardState,
  type ConfState,
  type SnapshotMetadata,
  type Snapshot,
  type ConfChange,
  type ConfChangeSingle,
  type ConfChangeV2,
  type Message,
  type Storage,
  type WritableStorage,
} from './types.js';
export {
  ErrorCode,
  SentinelMessage,
  ReplicaLogError,
  ReplicaLogRangeError,
  isReplicaLogError,
  isSentinelError,
  // etcd's four sentinels (ErrCompacted, …), for a Storage of your own that raft must understand.
  compactedError,
  unavailableError,
  snapOutOfDateError,
  snapshotTemporarilyUnavailableError,
  type ErrorDetails,
  type CodedError,
} from './errors.js';
export {
  encodeEntry,
  decodeEntry,
  entrySize,
  encodeHardState,
  decodeHardState,
  encodeConfState,
  decodeConfState,
  encodeSnapshot,
  decodeSnapshot,
  encodeConfChange,
  decodeConfChange,
  encodeConfChangeV2,
  decodeConfChangeV2,
  encodeMessage,
  decodeMessage,
  encodeLogEntry,
  decodeLogEntry,
  encodeLsn,
  decodeLsn,
  encodeRaftEntry,
  decodeRaftEntry,
  type LogEntry,
  type LogEntryOperation,
  type RaftEntry,
} from './codec.js';
export {
  validateEntryUntrusted,
  validateEntriesUntrusted,
  validateHardStateUntrusted,
  validateConfStateUntrusted,
  validateSnapshotUntrusted,
  validateConfChangeUntrusted,
  validateConfChangeV2Untrusted,
  validateMessageUntrusted,
} from './validate.js';
export { MemoryStorage } from './memory-storage.js';
export { ReplicaLogStore, type StoreStatus, type BackfillOptions, type OpenStats, type PreparedSnapshotData } from './replica-log-store.js';
/**
 * ReplicaLogStore.open's options. The two test hooks the store also accepts (`fileSystem` for
 * fault injection, `crashPoint` for crash injection) are not part of it: they are typed in
 * `replicalog/testing` (ReplicaLogStoreTestOptions) and carry no stability promise.
 */
export type ReplicaLogStoreOptions<K = string, V = string> = Omit<ReplicaLogStoreTestOptions<K, V>, 'fileSystem' | 'crashPoint'>;
export type { StoreStats, Histogram } from './store-stats.js';
export { ReplicaLogStorage, type StorageStats } from './storage.js';
/** ReplicaLogStorage.open's options, without the test hooks (as ReplicaLogStoreOptions). */
export type ReplicaLogStorageOptions = Omit<import('./storage.js').ReplicaLogStorageOptions, 'fileSystem' | 'crashPoint'>;
export type PartitionStoreOptions = Omit<import('./replica-log-store.js').PartitionStoreOptions, 'fileSystem' | 'crashPoint'>;
export { partitionPath, partitionsPath, parsePartitionName, DEFAULT_STORAGE_NAME } from './wal/storage-layout.js';
export { compareReplicas, type ReplicaComparison, type ReplicaDifference } from './verify-against.js';
export { verifyStorage, isStorageDirectory, KV_WITHOUT_PARTITION, type StorageVerifyResult, type StorageFinding } from './verify-storage.js';
export { verifyTree, ProblemCode, NoticeCode, type VerifyResult, type VerifyOptions, type Problem, type Notice, type Finding } from './verify.js';
export {
  Transport,
  backoffDelay,
  createClusterCertificates,
  memberIdOfCertificate,
  memberUri,
  readTlsFiles,
  attachmentFromEntryDirectory,
  discardStagedDirectories,
  entryDirectoryAttachments,
  isAttachmentFileName,
  STAGED_DIRECTORY_PREFIX,
  DEFAULT_MAX_FRAME_BYTES,
  TransportError,
  TransportErrorCode,
  type BackoffOptions,
  type GroupMessage,
  type PeerAddress,
  type PeerStatus,
  type SnapshotTransferStatus,
  type StagedSnapshotFile,
  type TransportPeerBytes,
  type TransportStats,
  type TransportOptions,
  type TransportRefusals,
  type TransportTlsOptions,
  type MemberTlsFiles,
  type AttachmentFile,
  type AttachmentsProvider,
  type EntryAttachment,
} from './transport/index.js';
export {
  RawNode,
  SnapshotStatus,
  ProgressType,
  decodeConfChangeEntry,
  isEmptySnap,
  mustSync,
  RaftError,
  StateType,
  raftStateToString,
  ERR_PROPOSAL_DROPPED_MESSAGE,
  ReadOnlyOption,
  statusToJson,
  silentLogger,
  consoleLogger,
  setDefaultLogger,
  getDefaultLogger,
  NONE,
  LOCAL_APPEND_THREAD,
  LOCAL_APPLY_THREAD,
  isLocalMsg,
  isResponseMsg,
  describeEntry,
  describeEntries,
  describeMessage,
  describeReady,
  describeHardState,
  describeSoftState,
  describeConfState,
  describeSnapshot,
  ProgressStateType,
  confChangeAsV2,
  asV2,
  isConfChangeV2,
  type Ready,
  type SoftState,
  type Peer,
  type RawNodeConfig,
  type RaftConfig,
  type RaftErrorCode,
  type ReadState,
  type Status,
  type BasicStatus,
  type RaftLogger,
  type EntryFormatter,
  type Progress,
  type ConfChangeI,
} from './raft/index.js';
export {
  ReplicaNode,
  ProposalError,
  DEFAULT_SNAPSHOT_EVERY,
  DEFAULT_SNAPSHOT_LOG_RATIO,
  DEFAULT_KEEP_ENTRIES,
  MAX_PARTITIONS,
  type ReplicaNodeGroups,
  type ReplicaNodeOptions,
  type ReplicaNodeStatus,
  type ReplicaNodeRefusals,
} from './node/node.js';
export { KvStateMachine, encodeCommand, decodeCommand, encodeCommands, decodeCommands, commandEntries, type KvCommand } from './node/state-machine.js';
