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
import { helpParagraphs } from './help-text.js';
import { bootstrapJoiningStore, bootstrapSeedStore } from '../node/bootstrap.js';
import { DEFAULT_KEEP_ENTRIES, DEFAULT_SNAPSHOT_EVERY, DEFAULT_SNAPSHOT_LOG_RATIO, MAX_PARTITIONS, ReplicaNode } from '../node/node.js';
import { ReplicaLogStorage } from '../storage.js';
import { deriveStateFromPreRaftWal, KvStateMachine } from '../node/state-machine.js';
import type { RaftLogger } from '../raft/logger.js';
import { ReplicaLogStore } from '../replica-log-store.js';
import type { PeerAddress } from '../transport/index.js';
import { UsageError } from './io.js';
import { readFileSync } from 'node:fs';
import type { ReplicaNodeOptions } from '../node/node.js';
import { isLoopbackHost, readTlsFiles } from '../transport/index.js';

/**
 * Without --bootstrap an empty directory has no configuration: the node would idle forever.
 * Say what to do instead (exit 2).
 */
async function refuseUnpreparedStore(dir: string): Promise<void> {
  const store = await ReplicaLogStore.open({ dir });
  try {
    // A joining member's store holds the configuration only (no hard state yet): that is ready.
    if (store.status !== 'bootstrapped' && store.initialState().confState.voters.length === 0) {
      throw new UsageError(
        `${dir} has no raft state yet (${store.status === 'needs-backfill' ? 'a pre-Raft log' : 'an empty store'}), and --bootstrap was not given: ` +
          'start every member of a new cluster once with --bootstrap (the lowest id seeds it, the others join; a pre-Raft log is migrated), ' +
          'or add --bootstrap --join to join a running cluster that already lists this node',
      );
    }
  } finally {
    await store.close();
  }
}

export interface NodeCommandFlags {
  id: number;
  dir: string;
  peers: Map<number, PeerAddress>;
  httpPort?: number;
  bootstrap?: boolean;
  clusterId: string;
  tickMs: number;
  snapshotEvery: number;
  /** --snapshot-log-ratio: see ReplicaNodeOptions.snapshotLogRatio. */
  snapshotLogRatio: number;
  keepEntries: number;
  /** --no-journal: the store's plain write path instead of its journal. */
  journal: boolean;
  /** --no-quiesce: idle groups keep ticking (to measure what quiescence saves). */
  quiesce: boolean;
  /** --no-async-writes: persist each Ready before the next (to measure what async storage writes save). */
  asyncWrites: boolean;
  /** --partitions N: `dir` is a storage and the node hosts raft groups 1..N (issue 19). */
  partitions?: number;
  /** With --bootstrap: join an existing cluster even on the lowest id (never seed). */
  join?: boolean;
  peerCert?: string;
  peerKey?: string;
  peerCa?: string;
  insecure?: boolean;
  clientCert?: string;
  clientKey?: string;
  clientCa?: string;
  authTokenFile?: string;
}

function parsePositiveInteger(value: string): number {
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) <= 0) {
    throw new InvalidArgumentError('must be a positive integer');
  }
  return Number(value);
}

/** A decimal number >= 0 and at most 1,000 (a ratio): `1`, `0.5`, `0`. */
export function parseRatio(value: string): number {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || Number(value) > 1000) throw new InvalidArgumentError('must be a number from 0 to 1000 (e.g. 1 or 0.5)');
  return Number(value);
}

function parsePartitions(value: string): number {
  const count = parsePositiveInteger(value);
  if (count > MAX_PARTITIONS) throw new InvalidArgumentError(`at most ${MAX_PARTITIONS}`);
  return count;
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
export async function prepareStore(dir: string, id: number, voters: readonly number[], join = false): Promise<string> {
  const store = await ReplicaLogStore.open({ dir });
  try {
    return await prepareOpenStore(store, id, voters, join);
  } finally {
    await store.close();
  }
}

/**
 * The `--bootstrap` preparation of every partition 1..`partitions` of the storage in `dir`
 * (created when missing); returns a sentence saying what was done (counts, not one line each).
 */
export async function prepareStorage(dir: string, partitions: number, id: number, voters: readonly number[], join = false): Promise<string> {
  const storage = await ReplicaLogStorage.open({ dir });
  const outcomes = new Map<string, number>();
  try {
    let next = 1;
    const worker = async (): Promise<void> => {
      while (next <= partitions) {
        const partitionId = next++;
        const store = await storage.openPartition(partitionId);
        try {
          const outcome = (await prepareOpenStore(store, id, voters, join)).replace(/[0-9]+/g, 'N');
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        } finally {
          await store.close();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, partitions) }, () => worker()));
  } finally {
    await storage.close();
  }
  return `${partitions} partitions: ${[...outcomes].map(([outcome, count]) => `${count} ${outcome}`).join('; ')}`;
}

/** Without --bootstrap: every partition must have raft state (or a joining conf state). */
async function refuseUnpreparedStorage(dir: string, partitions: number): Promise<void> {
  const storage = await ReplicaLogStorage.open({ dir });
  try {
    const unprepared: number[] = [];
    for (let partitionId = 1; partitionId <= partitions && unprepared.length < 5; partitionId++) {
      const store = await storage.openPartition(partitionId);
      if (store.status !== 'bootstrapped' && store.initialState().confState.voters.length === 0) unprepared.push(partitionId);
      await store.close();
    }
    if (unprepared.length > 0) {
      throw new UsageError(
        `partitions ${unprepared.join(', ')}${unprepared.length === 5 ? ' (and maybe more)' : ''} of the storage ${dir} have no raft state yet, and --bootstrap was not given: ` +
          'start every member once with --bootstrap --partitions N (the lowest id seeds every partition, the others join; pre-Raft logs are migrated)',
      );
    }
  } finally {
    await storage.close();
  }
}

async function prepareOpenStore(store: ReplicaLogStore, id: number, voters: readonly number[], join: boolean): Promise<string> {
  const dir = store.dir;
  {
    if (store.status === 'bootstrapped') return 'already bootstrapped';
    if (store.lastIndex() > 0 || store.pendingBackfill > 0) {
      const { backfilled } = await store.backfill();
      const state = deriveStateFromPreRaftWal(dir, store.lastIndex());
      const seeded = await bootstrapSeedStore(store, voters, state);
      return `migrated ${backfilled} entries and seeded the cluster: snapshot at ${seeded.snapshotIndex} with ${state.size} keys`;
    }
    if (!join && id === Math.min(...voters)) {
      await bootstrapSeedStore(store, voters, new KvStateMachine());
      return 'seeded the cluster with an empty state (snapshot at 1)';
    }
    await bootstrapJoiningStore(store, voters);
    return 'joining with the conf state only';
  }
}

/** The TLS and token flags, read and checked before anything starts (usage errors exit 2). */
function securityOptions(flags: NodeCommandFlags, log: (line: string) => void): Pick<ReplicaNodeOptions, 'peerTls' | 'insecure' | 'httpTls' | 'httpAuthToken'> {
  const peerFiles = [flags.peerCert, flags.peerKey, flags.peerCa];
  if (peerFiles.some((file) => file !== undefined) && peerFiles.some((file) => file === undefined)) {
    throw new UsageError('--peer-cert, --peer-key and --peer-ca go together');
  }
  const options: Pick<ReplicaNodeOptions, 'peerTls' | 'insecure' | 'httpTls' | 'httpAuthToken'> = {};
  if (flags.peerCert !== undefined) {
    options.peerTls = readTlsFiles({ cert: flags.peerCert, key: flags.peerKey!, ca: flags.peerCa! });
  } else {
    const remote = [...flags.peers].filter(([, address]) => !isLoopbackHost(address.host));
    if (remote.length > 0 && flags.insecure !== true) {
      throw new UsageError(
        `${remote.map(([peerId, address]) => `node ${peerId} (${address.host})`).join(', ')} not on loopback, and without TLS nothing authenticates peers: ` +
          'give --peer-cert, --peer-key and --peer-ca (see "replicalog certs"), or --insecure on a network you trust completely',
      );
    }
    if (remote.length > 0) log('WARNING: --insecure: raft traffic is plain TCP and unauthenticated; anyone who reaches these ports controls the cluster');
    if (flags.insecure === true) options.insecure = true;
  }
  if ((flags.clientCert === undefined) !== (flags.clientKey === undefined)) throw new UsageError('--client-cert and --client-key go together');
  if (flags.clientCa !== undefined && flags.clientCert === undefined) throw new UsageError('--client-ca needs --client-cert and --client-key');
  if (flags.clientCert !== undefined) {
    const files = readTlsFiles({ cert: flags.clientCert, key: flags.clientKey!, ca: flags.clientCa ?? flags.clientCert });
    options.httpTls = { cert: files.cert, key: files.key, ...(flags.clientCa === undefined ? {} : { ca: files.ca }) };
  }
  if (flags.authTokenFile !== undefined) {
    let token: string;
    try {
      token = readFileSync(flags.authTokenFile, 'utf8').trim();
    } catch (error) {
      throw new UsageError(`cannot read --auth-token-file ${flags.authTokenFile}: ${(error as Error).message}`);
    }
    if (token.length < 16) throw new UsageError(`the token in ${flags.authTokenFile} is shorter than 16 characters`);
    options.httpAuthToken = token;
  }
  return options;
}

/** Runs the node until SIGTERM/SIGINT; rejects when it failed. */
export async function runNode(flags: NodeCommandFlags): Promise<void> {
  if (!flags.peers.has(flags.id)) throw new UsageError(`--peers must include this node (${flags.id})`);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} [node ${flags.id}] ${line}\n`);
  const security = securityOptions(flags, log);
  const voters = [...flags.peers.keys()];
  if (flags.partitions !== undefined) {
    if (flags.bootstrap === true) log(`bootstrap: ${await prepareStorage(flags.dir, flags.partitions, flags.id, voters, flags.join === true)}`);
    else await refuseUnpreparedStorage(flags.dir, flags.partitions);
  } else if (flags.bootstrap === true) log(`bootstrap: ${await prepareStore(flags.dir, flags.id, voters, flags.join === true)}`);
  else await refuseUnpreparedStore(flags.dir);
  let failure: Error | undefined;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const node = await ReplicaNode.start({
    id: flags.id,
    dir: flags.dir,
    ...(flags.partitions === undefined ? {} : { partitions: flags.partitions }),
    quiesce: flags.quiesce,
    asyncStorageWrites: flags.asyncWrites,
    peers: flags.peers,
    clusterId: flags.clusterId,
    tickMs: flags.tickMs,
    snapshotEvery: flags.snapshotEvery,
    snapshotLogRatio: flags.snapshotLogRatio,
    keepEntries: flags.keepEntries,
    ...(flags.journal === false || flags.partitions === undefined ? { journal: flags.journal } : {}),
    httpPort: flags.httpPort ?? 0,
    log,
    raftLogger: stderrRaftLogger,
    ...security,
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
    .requiredOption('--dir <dir>', 'the store directory of this node (with --partitions: its storage directory)')
    .option('--partitions <n>', `host raft groups (partitions) 1..n on a storage in --dir, one group per partition (1..${MAX_PARTITIONS}); omitted: --dir is a single store, partition 1`, parsePartitions)
    .requiredOption('--peers <list>', 'every member, this node included: ID=HOST:PORT,… (raft traffic)', parsePeers)
    .option('--http-port <port>', 'HTTP API on 127.0.0.1 (0 or omitted: any free port, printed on stdout)', parsePort)
    .option('--bootstrap', 'prepare a store raft does not own yet: migrate + seed, seed empty (lowest id), or join')
    .option('--cluster-id <name>', 'only peers with the same cluster id are accepted', 'replicalog')
    .option('--tick-ms <ms>', 'milliseconds per raft tick (election after 10-20 ticks, heartbeat every tick)', parsePositiveInteger, 100)
    .option('--snapshot-every <n>', 'consider a snapshot every n applied entries', parsePositiveInteger, DEFAULT_SNAPSHOT_EVERY)
    .option(
      '--snapshot-log-ratio <r>',
      "take it once the entry data applied since the last snapshot is at least r times that snapshot's size (0: every --snapshot-every entries; the log kept and replayed at a restart is up to about r times the state)",
      parseRatio,
      DEFAULT_SNAPSHOT_LOG_RATIO,
    )
    .option('--keep-entries <n>', 'entries kept behind a snapshot when compacting', parsePositiveInteger, DEFAULT_KEEP_ENTRIES)
    .option('--no-quiesce', 'idle groups keep ticking and heartbeating (only to measure what quiescence saves)')
    .option('--no-async-writes', "persist each Ready before handling the next (etcd's synchronous loop: the leader does not tick while its disk is slow; only to compare with async storage writes)")
    .option('--no-journal', 'write each Ready into wal/ directly instead of through the journal (slower; see README "Cluster speed")')
    .option('--join', 'with --bootstrap: join a running cluster (conf state only) even on the lowest id')
    .option('--peer-cert <file>', 'this member\'s certificate (PEM; its URI SAN names the member: see "replicalog certs")')
    .option('--peer-key <file>', 'the private key of --peer-cert')
    .option('--peer-ca <file>', 'the cluster CA: peers must present a certificate it signed')
    .option('--insecure', 'allow plain TCP between members on non-loopback addresses (unauthenticated)')
    .option('--client-cert <file>', 'serve the HTTP API over HTTPS with this certificate')
    .option('--client-key <file>', 'the private key of --client-cert')
    .option('--client-ca <file>', 'HTTPS clients must present a certificate signed by this CA')
    .option('--auth-token-file <file>', 'HTTP clients must send "Authorization: Bearer <the token in this file>"')
    .addHelpText(
      'after',
      helpParagraphs(
        'HTTP API (127.0.0.1 only): PUT /kv/<key> (body = value; 200 once committed and applied here, 503 {lead} without a leader), DELETE /kv/<key>, GET /kv/<key>, GET /kv, GET /status, GET /metrics (Prometheus).',
        'With --partitions N: the same routes under /p/<partition>/ (kv/<key>, kv, status) for partitions 1..N; the routes without /p/ address partition 1; an unknown partition answers 404 ERR_NO_SUCH_PARTITION. /status adds groups {count, leading, quiesced, awake, withoutLeader}. All groups share one connection per peer; idle groups quiesce (stop ticking) and liveness is one heartbeat frame per peer per tick.',
        'Prints "ready id=… raft=… http=… pid=…" on stdout once serving. Stops cleanly on SIGTERM/SIGINT.',
        'Exit status: 0 clean stop; 1 the node failed; 2 bad usage.',
      ),
    )
    .action(async (flags: NodeCommandFlags) => {
      await runNode(flags);
    });
}
