/**
 * The raft port's public surface: etcd raft v3.6's RawNode, with synchronous storage writes
 * (below) or, with `asyncStorageWrites: true`, etcd's asynchronous ones (see rawnode.ts).
 *
 *   const node = new RawNode({ id, storage, electionTick: 10, heartbeatTick: 1 });
 *   // fresh cluster: node.bootstrap([1, 2, 3]) (or a storage holding a snapshot with the ConfState)
 *   loop: node.tick() on a timer; node.step(msg) for network messages; then
 *     while (node.hasReady()) {
 *       const rd = node.ready();
 *       if (rd.snapshot) await store.applySnapshot(rd.snapshot);
 *       // one tick, one write group: entries, then the hard state
 *       await Promise.all([store.append(rd.entries), rd.hardState && store.setHardState(rd.hardState)]);
 *       send(rd.messages);                       // report MsgSnap outcomes with reportSnapshot
 *       apply(rd.committedEntries);              // conf changes: applyConfChange + setConfState
 *       node.advance(rd);
 *     }
 *
 * Deviations from Go, all deliberate: errors Go returns are thrown as RaftError (`code`);
 * panics are thrown as Error with Go's message and stop the node (later calls throw
 * ERR_STOPPED), as does any storage error other than etcd's sentinels. Omitted config options
 * get usable defaults (maxSizePerMsg: no limit, maxInflightMsgs: 256) where Go's zero values
 * are unusable; explicit values keep Go's meaning, and a config Go's validate refuses throws
 * RaftError ERR_CONFIG with Go's message. With asyncStorageWrites, advance() is refused
 * (ERR_ADVANCE_ASYNC, where Go panics) and the node stays usable. Malformed arguments (network
 * messages included) are refused with ERR_INVALID_ARGUMENT / ERR_OUT_OF_RANGE before anything
 * changes, and the node stays usable.
 */
export {
  RawNode,
  SnapshotStatus,
  ProgressType,
  decodeConfChangeEntry,
  isEmptySnap,
  mustSync,
  type Ready,
  type SoftState,
  type Peer,
  type RawNodeConfig,
} from './rawnode.js';
export {
  Raft,
  RaftError,
  StateType,
  raftStateToString,
  validateConfig,
  confChangeToMsg,
  DEFAULT_MAX_INFLIGHT_MSGS,
  ERR_PROPOSAL_DROPPED_MESSAGE,
  type RaftConfig,
  type RaftErrorCode,
} from './raft.js';
export { ReadOnlyOption, type ReadState } from './read-only.js';
export { getStatus, getBasicStatus, statusToJson, type Status, type BasicStatus } from './status.js';
export { silentLogger, consoleLogger, setDefaultLogger, getDefaultLogger, type RaftLogger } from './logger.js';
export {
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
  type EntryFormatter,
} from './util.js';
export { StateType as ProgressStateType, Progress, ProgressTracker, Inflights, Config as TrackerConfig } from './tracker.js';
export { confChangeAsV2, asV2, isConfChangeV2, type ConfChangeI } from './confchange.js';
