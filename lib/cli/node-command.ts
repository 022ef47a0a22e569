/**
 * `replicalog node`: runs one ReplicaNode (lib/node/node.ts) until SIGTERM or SIGINT.
 *
 *   replicalog node --id 1 --dir /tmp/c/node-1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \
 *                   [--http-port 8001] [--bootstrap] [--cluster-id demo]
 *
 * `--bootstrap` prepares a store that raft does not own yet (no hard state) before starting:
 *   - a pre-Raft WAL: migrate it (backfill), derive the key-value state from its MANIFESTs and
 *     make it the seed (snapshot at its last index, conf state = every peer);
 *   - an empty store, on the lowest peer id: the seed with an empty state (snapshot at 1);
 *   - an empty store, on any other id: join with the conf state only (catch up by snapshot).
 * A store that already has a hard state is started as it is (the flag is then a no-op).
 *
 * Prints `ready id=N raft=HOST:PORT http=HOST:PORT pid=P` on stdout once serving; narration and
 * raft's own log lines go to stderr. Exit status 0 after a clean stop, 1 when the node failed.
 */
import { Command, InvalidArgumentError } from 'commander';
import { bootstrapJoiningStore, bootstrapSeedStore } from '../node/bootstrap.js';
import { ReplicaNode } from '../node/node.js';
import { deriveStateFromPreRaftWal, KvStateMachine } from '../node/state-machine.js';
import type { RaftLogger } from '../raft/logger.js';
import { ReplicaLogStore } from '../replica-log-store.js';
import type { PeerAddress } from '../transport/index.js';
import { UsageError } from './io.js';

export interface NodeCommandFlags {
  id: number;
  dir: string;
  peers: Map<number, PeerAddress>;
  httpPort?: number;
  bootstrap?: boolean;
  clusterId: string;
  tickMs: number;
  snapshotEvery: number;
  keepEntries: number;
}

function parsePositiveInteger(value: string): number {
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) <= 0) {
    throw new InvalidArgumentError('must be a positive integer');
  }
  return Number(value);
}

function parsePort(value: string): number {
  if (!/^[0-9]+$/.test(value) || Number(value) > 65535) throw new InvalidArgumentError('must be a port number (0..65535)');
  return Number(value);
}

/** `1=127.0.0.1:7001,2=127.0.0.1:7002` → Map(1 → {host, port}, …). */
export function parsePeers(value: string): Map<number, PeerAddress> {
  const peers = new Map<number, PeerAddress>();
  for (const item of value.split(',')) {
    const match = /^([0-9]+)=([^:]+):([0-9]+)$/.exec(item.trim());
    if (match === null) throw new InvalidArgumentError(`"${item}" is not ID=HOST:PORT`);
    const id = Number(match[1]);
    if (id <= 0 || !Number.isSafeInteger(id)) throw new InvalidArgumentError(`"${item}": the id must be a positive integer`);
    if (peers.has(id)) throw new InvalidArgumentError(`node ${id} is listed twice`);
    peers.set(id, { host: match[2]!, port: parsePort(match[3]!) });
  }
  return peers;
}

export function formatPeers(peers: ReadonlyMap<number, PeerAddress>): string {
  return [...peers].map(([id, address]) => `${id}=${address.host}:${address.port}`).join(',');
}

const stderrRaftLogger: RaftLogger = {
  debug: () => {},
  info: (message) => process.stderr.write(`${new Date().toISOString()} raft INFO ${message}\n`),
  warn: (message) => process.stderr.write(`${new Date().toISOString()} raft WARN ${message}\n`),
  error: (message) => process.stderr.write(`${new Date().toISOString()} raft ERROR ${message}\n`),
};

/** The `--bootstrap` preparation (see the header); returns a sentence saying what was done. */
export async function prepareStore(dir: string, id: number, voters: readonly number[]): Promise<string> {
  const store = await ReplicaLogStore.open({ dir });
  try {
    if (store.status === 'bootstrapped') return 'already bootstrapped';
    if (store.lastIndex() > 0 || store.pendingBackfill > 0) {
      const { backfilled } = await store.backfill();
      const state = deriveStateFromPreRaftWal(dir, store.lastIndex());
      const seeded = await bootstrapSeedStore(store, voters, state);
      return `migrated ${backfilled} entries and seeded the cluster: snapshot at ${seeded.snapshotIndex} with ${state.size} keys`;
    }
    if (id === Math.min(...voters)) {
      await bootstrapSeedStore(store, voters, new KvStateMachine());
      return 'seeded the cluster with an empty state (snapshot at 1)';
    }
    await bootstrapJoiningStore(store, voters);
    return 'joining with the conf state only';
  } finally {
    await store.close();
  }
}

/** Runs the node until SIGTERM/SIGINT; rejects when it failed. */
export async function runNode(flags: NodeCommandFlags): Promise<void> {
  if (!flags.peers.has(flags.id)) throw new UsageError(`--peers must include this node (${flags.id})`);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} [node ${flags.id}] ${line}\n`);
  if (flags.bootstrap === true) log(`bootstrap: ${await prepareStore(flags.dir, flags.id, [...flags.peers.keys()])}`);
  let failure: Error | undefined;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const node = await ReplicaNode.start({
    id: flags.id,
    dir: flags.dir,
    peers: flags.peers,
    clusterId: flags.clusterId,
    tickMs: flags.tickMs,
    snapshotEvery: flags.snapshotEvery,
    keepEntries: flags.keepEntries,
    httpPort: flags.httpPort ?? 0,
    log,
    raftLogger: stderrRaftLogger,
    onFatal: (error) => {
      failure = error;
      wake();
    },
  });
  const own = flags.peers.get(flags.id)!;
  const http = node.httpAddress!;
  process.stdout.write(`ready id=${flags.id} raft=${own.host}:${own.port} http=${http.host}:${http.port} pid=${process.pid}\n`);
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping`);
    wake();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    await stopped;
    await node.close();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
  if (failure !== undefined) throw failure;
}

export function registerNodeCommand(program: Command): Command {
  return program
    .command('node')
    .description('run one node of a replicated key-value cluster on a ReplicaLogStore (until SIGTERM)')
    .requiredOption('--id <n>', 'this node id (> 0)', parsePositiveInteger)
    .requiredOption('--dir <dir>', 'the store directory of this node')
    .requiredOption('--peers <list>', 'every member, this node included: ID=HOST:PORT,… (raft traffic)', parsePeers)
    .option('--http-port <port>', 'HTTP API on 127.0.0.1 (0 or omitted: any free port, printed on stdout)', parsePort)
    .option('--bootstrap', 'prepare a store raft does not own yet: migrate + seed, seed empty (lowest id), or join')
    .option('--cluster-id <name>', 'only peers with the same cluster id are accepted', 'replicalog')
    .option('--tick-ms <ms>', 'milliseconds per raft tick (election after 10-20 ticks, heartbeat every tick)', parsePositiveInteger, 100)
    .option('--snapshot-every <n>', 'take a snapshot every n applied entries', parsePositiveInteger, 100)
    .option('--keep-entries <n>', 'entries kept behind a snapshot when compacting', parsePositiveInteger, 50)
    .addHelpText(
      'after',
      `
HTTP API (127.0.0.1 only): PUT /kv/<key> (body = value; 200 once committed and applied here,
503 {lead} without a leader), DELETE /kv/<key>, GET /kv/<key>, GET /kv, GET /status.
Prints "ready id=… raft=… http=… pid=…" on stdout once serving. Stops cleanly on SIGTERM/SIGINT.
Exit status: 0 clean stop; 1 the node failed; 2 bad usage.
`,
    )
    .action(async (flags: NodeCommandFlags) => {
      await runNode(flags);
    });
}
