/**
 * replicalog: a durable Raft log store with etcd raft v3.6's Storage contract over Gitaly's
 * on-disk WAL format. This file is the single public entry point.
 */
export * from './types.js';
export * from './errors.js';
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
  GITALY_DIRECTORY_MODE,
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
export { MemoryStorage, limitSize } from './memory-storage.js';
export { planAppend, checkHardState, checkCompact, checkEntriesArguments, type LogView } from './log-rules.js';
export {
  ReplicaLogStore,
  needsBackfillError,
  type ReplicaLogStoreOptions,
  type StoreStatus,
  type BackfillOptions,
} from './replica-log-store.js';
export { DirectoryLock } from './lock.js';
export type { StoreStats, Histogram } from './store-stats.js';
export { compareReplicas, type ReplicaComparison, type ReplicaDifference } from './verify-against.js';
export { nodeFileSystem, type FileSystem, type FileStat } from './wal/file-system.js';
export { CRASH_POINTS, type CrashPoint, type CrashPointName } from './wal/log-manager.js';
export {
  formatLsn,
  parseLsn,
  entryPath,
  entryRelativePath,
  walPath,
  stagingPath,
  kvPath,
  kvKey,
  partitionPrefix,
  KEY_HARD_STATE,
  KEY_CONF_STATE,
  KEY_LATEST_CONFIG_CHANGE,
} from './wal/layout.js';
export * from './transport/index.js';
export { verifyTree } from './verify.js';
export { writePreRaftWal } from './fixture.js';
export * from './raft/index.js';
export { ReplicaNode } from './node/node.js';
export { KvStateMachine, encodeCommand, decodeCommand, deriveStateFromPreRaftWal, recoverStateFromStorage } from './node/state-machine.js';
