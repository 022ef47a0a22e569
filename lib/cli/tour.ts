/** `replicalog tour`: a short overview of the commands (version, one line each, where to read on). */
import { EXIT_OK, packageVersion, type CliIo } from './io.js';

export function runTour(io: CliIo): number {
  io.stdout(`replicalog ${packageVersion()}: a durable, crash-safe Raft log store for Node
(etcd raft v3.6's Storage contract over Gitaly's on-disk WAL format).

Commands:
  replicalog migrate <dir> [--dry-run] [--json]   backfill a pre-Raft WAL (progress on a TTY)
  replicalog inspect <dir> [--entries] [--json]   status, first/last index, hard and conf state
  replicalog verify  <dir> [--json]               check the tree; list every problem found
  replicalog demo    [--nodes 3] [--dir D]        a local cluster on ReplicaLogStores (npm start)
  replicalog node    --id N --dir D --peers …      one node of a replicated key-value cluster

Try: node dist/scripts/make-fixture.js /tmp/wal --entries 1000
     replicalog verify /tmp/wal && replicalog migrate /tmp/wal && replicalog inspect /tmp/wal

'replicalog <command> --help' explains each command; README.md documents the library API.
`);
  return EXIT_OK;
}
