/** `replicalog tour`: a short overview of the commands (version, one line each, where to read on), within 80 columns. */
import { EXIT_OK, packageVersion, type CliIo } from './io.js';

export function runTour(io: CliIo): number {
  io.stdout(`replicalog ${packageVersion()}: a durable, crash-safe Raft log store for Node
(etcd raft v3.6's Storage contract over Gitaly's on-disk WAL format).

Commands:
  replicalog migrate <dir> [--dry-run] [--json]  backfill a pre-Raft WAL
  replicalog inspect <dir> [--entries] [--json]  show a store's status and state
  replicalog verify  <dir> [--json]              check the tree, list problems
  replicalog verify  <dir> --against <other>     compare two replicas' logs
  (migrate, inspect and verify also take a storage: every partition in it,
  or --partition ID)
  replicalog discard-snapshot <dir> [--dry-run]  rebuild a member (bad snapshot)
  replicalog demo    [--nodes 3] [--dir D]       a local cluster (npm start)
  replicalog node    --id N --dir D --peers …    run one cluster member
  replicalog certs   --ids 1,2,3 --out DIR       mutual TLS certificates
  replicalog tour                                this overview

Try (in a clone of the repository, where the command is npx replicalog):
  npm run make-fixture -- /tmp/wal --entries 1000
  npx replicalog verify /tmp/wal && npx replicalog migrate /tmp/wal
  npx replicalog inspect /tmp/wal
  npm run make-fixture -- /tmp/storage --partitions 100 --entries 10
  npx replicalog migrate /tmp/storage && npx replicalog inspect /tmp/storage

'replicalog <command> --help' explains each command; README.md documents the
library API.
`);
  return EXIT_OK;
}
