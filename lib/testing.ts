/**
 * `replicalog/testing`: test hooks and internals, for replicalog's own tests and tools and for
 * anyone testing against it. Nothing here is part of the product's contract: names and
 * signatures may change in any release. Build on the main entry (`replicalog`) instead.
 *
 * Importing this entry needs no test runner. The conformance suite (`storageConformance`,
 * `TempDirs`), which does need vitest and fast-check, stays its own entry: `replicalog/spec`.
 *
 * What is here, by kind:
 * - fixtures: writePreRaftWal (a realistic pre-Raft Gitaly tree), writePreRaftStorage (a storage of
 *   pre-Raft partitions), seededRandom;
 * - fault and crash injection: the FileSystem interface the WAL goes through (nodeFileSystem is
 *   the real one; wrap it to inject faults or record calls), CRASH_POINTS and the crashPoint
 *   hook, ReplicaLogStoreTestOptions (the store's options with both hooks);
 * - the log rules both stores share (planAppend, checkHardState, …) and the entry-size limit;
 * - the on-disk layout helpers (LSN names, paths, KV keys);
 * - the directory lock, error constructors, value-copy helpers;
 * - raft's internals (the Raft state machine, the progress tracker, config validation);
 * - the transport's frame codec;
 * - the tree scan behind `replicalog verify` and `inspect`, for a store and for a storage.
 */
export type { ReplicaLogStoreOptions as ReplicaLogStoreTestOptions } from './replica-log-store.js';
export { needsBackfillError, CHECKPOINT_INTERVAL } from './replica-log-store.js';
export {
  writePreRaftStorage,
  writePreRaftWal,
  type PreRaftStorageOptions,
  type PreRaftStorageSummary,
  type PreRaftWalOptions,
  type PreRaftWalSummary,
} from './fixture.js';
export { seededRandom } from './seeded-random.js';
export { nodeFileSystem, errorCode, type FileSystem, type FileStat } from './wal/file-system.js';
export { CRASH_POINTS, type CrashPoint, type CrashPointName } from './wal/log-manager.js';
export { planAppend, checkHardState, checkCompact, checkEntriesArguments, type LogView } from './log-rules.js';
export { limitSize } from './memory-storage.js';
export { DirectoryLock } from './lock.js';
export {
  corruptError,
  closedError,
  invalidArgumentError,
  checkSafeUnsigned,
  describeRootCause,
  rootSystemCode,
} from './errors.js';
export { copyBytes, withoutNegativeZero, hardStateCopy, cloneConfState, cloneSnapshot } from './types.js';
export { GITALY_DIRECTORY_MODE } from './codec.js';
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
export { scanTree, walkTree, logExtent, readKvSnapshot, type TreeScan, type TreeStatus, type LogExtent } from './verify.js';
export { KvCopy } from './verify.js';
export {
  isStorageDirectory,
  listStorage,
  verifyStorage,
  walkStorage,
  KV_WITHOUT_PARTITION,
  type StorageFinding,
  type StorageListing,
  type StorageVerifyResult,
} from './verify-storage.js';
export {
  Raft,
  validateConfig,
  confChangeToMsg,
  DEFAULT_MAX_INFLIGHT_MSGS,
  getStatus,
  getBasicStatus,
  Progress,
  ProgressTracker,
  Inflights,
  TrackerConfig,
} from './raft/index.js';
export { encodeFrame, FrameDecoder, FrameKind, isLoopbackHost, type Frame } from './transport/index.js';
export { deriveStateFromPreRaftWal, recoverStateFromStorage } from './node/state-machine.js';
