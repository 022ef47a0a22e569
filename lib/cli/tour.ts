/**
 * `replicalog tour`: what `npm start` prints until the `demo` command exists (a later issue
 * replaces `npm start` with it). Until then `replicalog demo` exits 2 saying it is not
 * available, rather than pretending to run a cluster.
 */
import { EXIT_OK, packageVersion, type CliIo } from './io.js';

export function runTour(io: CliIo): number {
  io.stdout(`replicalog ${packageVersion()}: a durable, crash-safe Raft log store for Node
(etcd raft v3.6's Storage contract over Gitaly's on-disk WAL format).

Commands:
  replicalog migrate <dir> [--dry-run] [--json]   backfill a pre-Raft WAL (progress on a TTY)
  replicalog inspect <dir> [--entries] [--json]   status, first/last index, hard and conf state
  replicalog verify  <dir> [--json]               check the tree; list every problem found
  replicalog demo    [--nodes 3] [--dir D]        a local cluster (not yet available)

Try: node dist/scripts/make-fixture.js /tmp/wal --entries 1000
     replicalog verify /tmp/wal && replicalog migrate /tmp/wal && replicalog inspect /tmp/wal

'replicalog <command> --help' explains each command; README.md documents the library API.
`);
  return EXIT_OK;
}
