/**
 * The node's check of every message that arrives from the network, before raft sees it.
 *
 * raft trusts its peers: a forged or corrupted message can panic it (a heartbeat committing past
 * the log), push its term out of range for good (a term near 2^53), or make it step a message
 * only its own storage threads may send. The transport already proved who is talking (TLS, the
 * Hello id, `from` equal to the connection's peer); this guard checks what is said. A refused
 * message is dropped (raft tolerates loss), logged and counted: it never stops the node.
 */
import { LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD } from '../raft/util.js';
import { MessageType } from '../types.js';
import type { Message } from '../types.js';

/**
 * The highest term a message may carry. An election every millisecond for 30 years stays below
 * it, and raft can still count up from it for longer than anyone will run it (2^53 is far away),
 * so a forged high term can no longer leave a cluster unable to elect (issue: term 2^53-1).
 */
export const MAX_NETWORK_TERM = 2 ** 40;

/** The message types peers send each other. Every other type is raft's own (local) business. */
const NETWORK_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set([
  MessageType.MsgProp,
  MessageType.MsgApp,
  MessageType.MsgAppResp,
  MessageType.MsgVote,
  MessageType.MsgVoteResp,
  MessageType.MsgSnap,
  MessageType.MsgHeartbeat,
  MessageType.MsgHeartbeatResp,
  MessageType.MsgTransferLeader,
  MessageType.MsgTimeoutNow,
  MessageType.MsgReadIndex,
  MessageType.MsgReadIndexResp,
  MessageType.MsgPreVote,
  MessageType.MsgPreVoteResp,
]);

/** What the guard needs to know about this node. */
export interface MessageGuardView {
  readonly localId: number;
  /** A voter or learner of the current (or joint) configuration, or a configured peer while joining. */
  isMember(id: number): boolean;
  /** The last index of this node's log (raft's, including entries not yet persisted). */
  readonly lastIndex: number;
  /** The leader this node follows (0: none known). */
  readonly leader: number;
  /** Checks snapshot data the state machine would restore; returns why it cannot, or undefined. */
  checkSnapshotData(data: Uint8Array | undefined, index: number): string | undefined;
}

/** Why `message` must not reach raft, or undefined when it may. */
export function refuseInboundMessage(message: Message, view: MessageGuardView): string | undefined {
  const type = MessageType[message.type] ?? String(message.type);
  if (!NETWORK_MESSAGE_TYPES.has(message.type)) return `${type} is raft's local message type, never sent by a peer`;
  if (message.from === LOCAL_APPEND_THREAD || message.from === LOCAL_APPLY_THREAD) return `from ${message.from} is a local storage thread's id`;
  if (message.from === 0 || message.from === view.localId) return `from ${message.from} is not a peer`;
  if (message.to !== view.localId) return `addressed to ${message.to}, not to this node (${view.localId})`;
  if (!view.isMember(message.from)) return `node ${message.from} is not a member`;
  if (message.term > MAX_NETWORK_TERM) return `term ${message.term} is above the cap of ${MAX_NETWORK_TERM}`;
  if (message.logTerm > MAX_NETWORK_TERM) return `log term ${message.logTerm} is above the cap of ${MAX_NETWORK_TERM}`;
  for (const entry of message.entries) {
    if (entry.term > MAX_NETWORK_TERM) return `entry ${entry.index} has term ${entry.term}, above the cap of ${MAX_NETWORK_TERM}`;
  }
  switch (message.type) {
    case MessageType.MsgHeartbeat:
      // The leader sends min(the follower's match, its commit): never beyond our log. raft
      // panics on a commit past the last index.
      if (message.commit > view.lastIndex) return `heartbeat commit ${message.commit} is above this node's last index ${view.lastIndex}`;
      return undefined;
    case MessageType.MsgApp:
      return refuseAppend(message);
    case MessageType.MsgTimeoutNow:
      // Only the leader hands over leadership (etcd's sendTimeoutNow); raft itself does not check
      // who sent it, so any member could otherwise move the leadership at will.
      if (message.from !== view.leader) return `MsgTimeoutNow from node ${message.from}, which is not the leader (${view.leader || 'none known'})`;
      return undefined;
    case MessageType.MsgSnap:
      return refuseSnapshot(message, view);
    default:
      return undefined;
  }
}

/**
 * A heartbeat whose commit is past this node's log: the leader believes this node holds entries
 * it does not (its log was lost and rebuilt, e.g. by `replicalog discard-snapshot`), or the
 * heartbeat is forged. raft panics on it, and the guard refuses it; but dropping it keeps a
 * rebuilt member silent for good (a leader probing it waits for a heartbeat response before it
 * sends anything). So the node steps such a heartbeat with commit 0 instead (raft never lowers a
 * commit): the node answers, the leader probes and sends a snapshot, and nothing is committed on
 * the message's word. Returns the message to step, and why its commit was dropped.
 */
export function dropCommitPastLog(message: Message, view: Pick<MessageGuardView, 'lastIndex'>): { message: Message; refusal?: string } {
  if (message.type !== MessageType.MsgHeartbeat || message.commit <= view.lastIndex) return { message };
  return {
    message: { ...message, commit: 0 },
    refusal: `heartbeat commit ${message.commit} is above this node's last index ${view.lastIndex}: stepped without its commit`,
  };
}

/** A MsgApp's entries follow its index, with terms that never go down nor pass the message's. */
function refuseAppend(message: Message): string | undefined {
  if (message.logTerm > message.term) return `log term ${message.logTerm} is above the message term ${message.term}`;
  let previousTerm = message.logTerm;
  for (let position = 0; position < message.entries.length; position++) {
    const entry = message.entries[position]!;
    if (entry.index !== message.index + 1 + position) return `entry ${position} has index ${entry.index}, expected ${message.index + 1 + position}`;
    if (entry.term < previousTerm) return `entry ${entry.index} has term ${entry.term}, below the ${previousTerm} before it`;
    if (entry.term > message.term) return `entry ${entry.index} has term ${entry.term}, above the message term ${message.term}`;
    previousTerm = entry.term;
  }
  return undefined;
}

/** A snapshot must be one this node can restore, before raft hands it to storage (never after). */
function refuseSnapshot(message: Message, view: MessageGuardView): string | undefined {
  const snapshot = message.snapshot;
  if (snapshot === undefined) return 'MsgSnap without a snapshot';
  const { index, term, confState } = snapshot.metadata;
  if (index === 0) return 'a snapshot at index 0';
  if (term > message.term) return `snapshot term ${term} is above the message term ${message.term}`;
  if (confState.voters.length === 0) return `snapshot ${index} has no voters`;
  return view.checkSnapshotData(snapshot.data, index);
}
