/**
 * The commands of etcd raft's interaction transcripts (rafttest/interaction_env_handler*.go in
 * etcd raft v3.6 is the reference), run against an InteractionEnv. `handleCommand` returns a
 * command's output exactly as etcd's harness prints it: "ok" when there is none, a returned
 * error's message otherwise appended (alone when the log level is NONE).
 *
 * Misuse of a command (a malformed argument) throws: etcd fails the test there (t.Fatal).
 */
import { emptySnapshot, ConfChangeTransition, MessageType, type ConfChange, type ConfChangeV2, type Snapshot } from '../types.js';
import { confChangesFromString } from './confchange.js';
import { argUint, hasArg, type CmdArg, type TestData } from './datadriven.js';
import { InteractionEnv, LOG_LEVEL_NAMES, raftConfigStub, type Recipient } from './interaction-env.js';
import { RaftError } from './raft.js';
import { ReadOnlyOption } from './read-only.js';

/** Go's strconv.ParseBool. */
function parseGoBool(raw: string, pos: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(raw)) return false;
  throw new Error(`${pos}: strconv.ParseBool: parsing "${raw}": invalid syntax`);
}

function parseUint(raw: string, pos: string): number {
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw new Error(`${pos}: not an unsigned integer: ${raw}`);
  return Number(raw);
}

/** The first argument as a number (a node id or a count). */
function firstAsInt(d: TestData): number {
  const first = d.cmdArgs[0];
  if (first === undefined) throw new Error(`${d.pos}: ${d.cmd}: missing argument`);
  return parseUint(first.key, d.pos);
}

/** The first argument as a 0-based node index. */
function firstAsNodeIndex(d: TestData): number {
  return firstAsInt(d) - 1;
}

/** Every bare numeric argument (no values) as a 0-based node index. */
function nodeIndexes(d: TestData): number[] {
  return d.cmdArgs.filter((arg) => arg.vals.length === 0).map((arg) => parseUint(arg.key, d.pos) - 1);
}

/** Runs one transcript command and returns its output. */
export function handleCommand(env: InteractionEnv, d: TestData): string {
  env.output.buffer = '';
  let error: string | undefined;
  switch (d.cmd) {
    case '_breakpoint':
      break;
    case 'add-nodes':
      error = handleAddNodes(env, d);
      break;
    case 'campaign':
      error = returnedError(() => env.nodes[firstAsNodeIndex(d)]!.rawNode.campaign());
      break;
    case 'compact':
      error = handleCompact(env, d);
      break;
    case 'deliver-msgs':
      handleDeliverMessages(env, d);
      break;
    case 'process-ready':
      forEachNode(env, d, 'handling Ready', (index) => env.processReady(index));
      break;
    case 'process-append-thread':
      forEachNode(env, d, 'processing append thread', (index) => env.processAppendThread(index));
      break;
    case 'process-apply-thread':
      forEachNode(env, d, 'processing apply thread', (index) => env.processApplyThread(index));
      break;
    case 'log-level':
      error = setLogLevel(env, d.cmdArgs[0]?.key ?? '');
      break;
    case 'raft-log':
      env.raftLog(firstAsNodeIndex(d));
      break;
    case 'raft-state':
      env.raftState();
      break;
    case 'set-randomized-election-timeout': {
      const timeout = argUint(d, 'timeout');
      if (timeout === 0) throw new Error(`${d.pos}: timeout must not be zero`);
      env.nodes[firstAsNodeIndex(d)]!.rawNode.raft.randomizedElectionTimeout = timeout;
      break;
    }
    case 'stabilize':
      error = handleStabilize(env, d);
      break;
    case 'status':
      env.status(firstAsNodeIndex(d));
      break;
    case 'tick-election':
    case 'tick-heartbeat': {
      const node = env.nodes[firstAsNodeIndex(d)]!;
      const ticks = d.cmd === 'tick-election' ? node.config.electionTick : node.config.heartbeatTick;
      for (let i = 0; i < ticks; i++) node.rawNode.tick();
      break;
    }
    case 'transfer-leadership': {
      const from = argUint(d, 'from');
      const to = argUint(d, 'to');
      if (from === 0 || from > env.nodes.length) throw new Error(`${d.pos}: expected valid "from" argument`);
      if (to === 0 || to > env.nodes.length) throw new Error(`${d.pos}: expected valid "to" argument`);
      env.nodes[from - 1]!.rawNode.transferLeader(to);
      break;
    }
    case 'forget-leader':
      error = returnedError(() => env.nodes[firstAsNodeIndex(d)]!.rawNode.forgetLeader());
      break;
    case 'send-snapshot': {
      const indexes = nodeIndexes(d);
      if (indexes.length !== 2) throw new Error(`${d.pos}: send-snapshot needs exactly two nodes`);
      env.sendSnapshot(indexes[0]!, indexes[1]!);
      break;
    }
    case 'propose': {
      const index = firstAsNodeIndex(d);
      const data = d.cmdArgs[1];
      if (d.cmdArgs.length !== 2 || data === undefined || data.vals.length > 0) {
        throw new Error(`${d.pos}: expected exactly one key with no vals`);
      }
      error = returnedError(() => env.nodes[index]!.rawNode.propose(new TextEncoder().encode(data.key)));
      break;
    }
    case 'propose-conf-change':
      error = handleProposeConfChange(env, d);
      break;
    case 'report-unreachable': {
      const indexes = nodeIndexes(d);
      if (indexes.length !== 2) {
        error = 'must specify exactly two node indexes: node on which to report, and reported node';
        break;
      }
      env.nodes[indexes[0]!]!.rawNode.reportUnreachable(env.nodes[indexes[1]!]!.config.id);
      break;
    }
    default:
      error = 'unknown command';
  }
  // Errors are printed even when the log level is NONE (then alone).
  if (error !== undefined) {
    if (env.output.quiet()) return error;
    env.output.write(error);
  }
  return env.output.buffer === '' ? 'ok' : env.output.buffer;
}

/** Runs a RawNode call and returns the message of the error Go would return (RaftError), if any. */
function returnedError(operation: () => void): string | undefined {
  try {
    operation();
    return undefined;
  } catch (error) {
    if (error instanceof RaftError) return error.message;
    throw error;
  }
}

/** Runs `operation` for each node named; with several, each under a "> id <title>" header, indented. */
function forEachNode(env: InteractionEnv, d: TestData, title: string, operation: (index: number) => void): void {
  const indexes = nodeIndexes(d);
  for (const index of indexes) {
    if (indexes.length > 1) {
      env.output.write(`> ${index + 1} ${title}\n`);
      env.withIndent(() => operation(index));
    } else {
      operation(index);
    }
  }
}

function setLogLevel(env: InteractionEnv, name: string): string | undefined {
  const level = LOG_LEVEL_NAMES.findIndex((candidate) => candidate.toLowerCase() === name.toLowerCase());
  if (level < 0) return `log levels must be either of [${LOG_LEVEL_NAMES.join(' ')}]`;
  env.output.level = level;
  return undefined;
}

function handleAddNodes(env: InteractionEnv, d: TestData): string | undefined {
  const count = firstAsInt(d);
  const snapshot: Snapshot = emptySnapshot();
  const config = raftConfigStub();
  for (const arg of d.cmdArgs.slice(1)) {
    for (const value of arg.vals) {
      switch (arg.key) {
        case 'voters':
          snapshot.metadata.confState.voters.push(parseUint(value, d.pos));
          break;
        case 'learners':
          snapshot.metadata.confState.learners.push(parseUint(value, d.pos));
          break;
        case 'inflight':
          config.maxInflightMsgs = parseUint(value, d.pos);
          break;
        case 'index':
          snapshot.metadata.index = parseUint(value, d.pos);
          config.applied = snapshot.metadata.index;
          break;
        case 'content':
          snapshot.data = new TextEncoder().encode(value);
          break;
        case 'async-storage-writes':
          config.asyncStorageWrites = parseGoBool(value, d.pos);
          break;
        case 'prevote':
          config.preVote = parseGoBool(value, d.pos);
          break;
        case 'checkquorum':
          config.checkQuorum = parseGoBool(value, d.pos);
          break;
        case 'max-committed-size-per-ready':
          config.maxCommittedSizePerReady = parseUint(value, d.pos);
          break;
        case 'disable-conf-change-validation':
          config.disableConfChangeValidation = parseGoBool(value, d.pos);
          break;
        case 'read-only':
          if (value === 'safe') config.readOnlyOption = ReadOnlyOption.ReadOnlySafe;
          else if (value === 'lease-based') config.readOnlyOption = ReadOnlyOption.ReadOnlyLeaseBased;
          else return `invalid read-only option "${value}"`;
          break;
        case 'step-down-on-removal':
          config.stepDownOnRemoval = parseGoBool(value, d.pos);
          break;
        default:
          // etcd ignores unknown keys here.
          break;
      }
    }
  }
  return env.addNodes(count, config, snapshot);
}

function handleCompact(env: InteractionEnv, d: TestData): string | undefined {
  const index = firstAsNodeIndex(d);
  const newFirstIndex = parseUint(d.cmdArgs[1]?.key ?? '', d.pos);
  try {
    env.nodes[index]!.storage.compact(newFirstIndex);
  } catch (error) {
    // Storage sentinels (ERR_COMPACTED) are returned errors in Go.
    if (error instanceof Error && 'code' in error) return error.message;
    throw error;
  }
  env.raftLog(index);
  return undefined;
}

function handleDeliverMessages(env: InteractionEnv, d: TestData): void {
  let type: MessageType | undefined;
  const recipients: Recipient[] = [];
  for (const arg of d.cmdArgs) {
    if (arg.vals.length === 0) recipients.push({ id: parseUint(arg.key, d.pos), drop: false });
    for (const value of arg.vals) {
      if (arg.key === 'drop') {
        const id = parseUint(value, d.pos);
        if (recipients.some((recipient) => recipient.id === id)) {
          throw new Error(`${d.pos}: can't both deliver and drop msgs to ${id}`);
        }
        recipients.push({ id, drop: true });
      } else if (arg.key === 'type') {
        const parsed = (MessageType as unknown as Record<string, number | undefined>)[value];
        if (parsed === undefined) throw new Error(`${d.pos}: unknown message type ${value}`);
        type = parsed as MessageType;
      }
    }
  }
  if (env.deliverMessages(type, recipients) === 0) env.output.write('no messages\n');
}

function handleStabilize(env: InteractionEnv, d: TestData): string | undefined {
  const indexes = nodeIndexes(d);
  const previousLevel = env.output.level;
  try {
    for (const arg of d.cmdArgs) {
      for (const value of arg.vals) {
        if (arg.key === 'log-level') {
          const error = setLogLevel(env, value);
          if (error !== undefined) return error;
        }
      }
    }
    env.stabilize(indexes);
    return undefined;
  } finally {
    // The level applies to this command only (etcd restores it with a defer).
    if (hasArg(d, 'log-level')) env.output.level = previousLevel;
  }
}

function handleProposeConfChange(env: InteractionEnv, d: TestData): string | undefined {
  const index = firstAsNodeIndex(d);
  let v1 = false;
  let transition = ConfChangeTransition.Auto;
  for (const arg of d.cmdArgs.slice(1) as CmdArg[]) {
    for (const value of arg.vals) {
      if (arg.key === 'v1') {
        v1 = parseGoBool(value, d.pos);
      } else if (arg.key === 'transition') {
        if (value === 'auto') transition = ConfChangeTransition.Auto;
        else if (value === 'implicit') transition = ConfChangeTransition.JointImplicit;
        else if (value === 'explicit') transition = ConfChangeTransition.JointExplicit;
        else return `unknown transition ${value}`;
      } else {
        return `unknown command ${arg.key}`;
      }
    }
  }
  let changes;
  try {
    changes = confChangesFromString(d.input);
  } catch (error) {
    if (error instanceof Error) return error.message;
    throw error;
  }
  let cc: ConfChange | ConfChangeV2;
  if (v1) {
    if (changes.length > 1 || transition !== ConfChangeTransition.Auto) {
      return 'v1 conf change can only have one operation and no transition';
    }
    cc = { id: 0, type: changes[0]!.type, nodeId: changes[0]!.nodeId };
  } else {
    cc = { transition, changes };
  }
  return returnedError(() => env.nodes[index]!.rawNode.proposeConfChange(cc));
}
