/**
 * The `replicalog` command line (API.md "Command line"). `main(argv)` parses the user's
 * arguments (without `node` and the script), runs one command and resolves to the exit code:
 * 0 success, 1 a problem found in the data, 2 bad usage. It never calls process.exit, so the
 * bin shim sets process.exitCode and Node exits once output is flushed.
 *
 * Errors: one line on stderr, `replicalog: <path>: <cause> [CODE]`; `--debug` (anywhere on the
 * command line) adds the stack and the causes.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { HELP_WIDTH, helpParagraphs } from './help-text.js';
import { registerDemoCommand } from './demo-command.js';
import { runInspect } from './inspect.js';
import { errorObject, EXIT_OK, EXIT_USAGE, exitCodeOf, formatDebug, formatErrorLine, json, packageVersion, processIo, UsageError, type CliIo } from './io.js';
import { runMigrate } from './migrate.js';
import { registerNodeCommand } from './node-command.js';
import { registerCertsCommand } from './certs-command.js';
import { runVerifyAgainst } from './verify.js';
import { runTour } from './tour.js';
import { runVerify } from './verify.js';
import { runDiscardSnapshot } from './discard-snapshot.js';
import { runInspectStorage, runVerifyStorage } from './storage-verify.js';
import { isStorageDirectory, partitionOfStorage } from '../verify-storage.js';
import { ENTRIES_IN_FLIGHT, PARTITION_CONCURRENCY, runMigrateStorage } from './migrate-storage.js';

function parsePartitionId(value: string): number {
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError('must be a non-negative integer');
  }
  return Number(value);
}

const partitionOption = () =>
  new Option(
    '--partition <id>',
    'a storage: only partition <id>; a store: KV keys are prefixed by p/<id as 8 bytes big-endian>/ (a KV database shared by partitions)',
  ).argParser(parsePartitionId);

const storageNameOption = () =>
  new Option('--storage-name <name>', "a storage: the name in its partition directories' names (default: the one they carry, else \"default\")");

/** What these commands say about a storage directory (the same for migrate, inspect and verify). */
const STORAGE_HELP =
  'A storage directory (partitions/ and no wal/: one lock and one KV database shared by many partitions, lib/storage.ts) is worked on partition by partition (never all of them open at once), or only on the partition --partition names.';

interface DataCommandFlags {
  json?: boolean;
  partition?: number;
  storageName?: string;
  quiet?: boolean;
  /** false with --no-progress */
  progress?: boolean;
}

/** --storage-name means nothing for a single store: say so rather than ignore it. */
function rejectStorageName(flags: DataCommandFlags, dir: string): void {
  if (flags.storageName !== undefined) throw new UsageError('--storage-name is for a storage directory (partitions/ and no wal/)', dir);
}

/**
 * A partition directory of a storage is not a store: its KV and lock are the storage's, and
 * migrating it alone would create a LOCK.db and a kv/ inside it. Say what to run instead.
 */
function rejectPartitionDirectory(dir: string, command: string): void {
  const partition = partitionOfStorage(dir);
  if (partition !== undefined) {
    throw new UsageError(
      `this is partition ${partition.partitionId} of the storage ${partition.storageDir}: run \`replicalog ${command} ${partition.storageDir} --partition ${partition.partitionId}\``,
      dir,
    );
  }
}

/** --quiet and --no-progress both turn progress off. */
const quiet = (flags: DataCommandFlags) => flags.quiet === true || flags.progress === false;


function buildProgram(io: CliIo, finish: (exitCode: number, dir?: string) => void, setDirectory: (dir: string) => void): Command {
  const program = new Command('replicalog');
  program
    .description("A durable Raft log store over Gitaly's on-disk WAL format: migrate, inspect and verify store directories.")
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--debug', 'on error, print the stack trace (accepted anywhere on the command line)')
    .helpOption('-h, --help', 'print usage and exit')
    // One width for commander's columns and for the prose after them (help-text.ts); inherited by every command.
    .configureHelp({ helpWidth: HELP_WIDTH })
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout(text),
      writeErr: (text) => io.stderr(text),
      outputError: (text, write) => write(`replicalog: ${text.replace(/^error: /, '')}`),
    })
    .showHelpAfterError("(run 'replicalog --help' for usage)")
    .addHelpText(
      'after',
      helpParagraphs(
        'Exit status: 0 success; 1 a problem found in the data (verify found problems, a refused migration, a store locked by another process); 2 bad usage.',
        'Errors are one line on stderr: replicalog: <path>: <cause> [CODE]. --debug adds the stack.',
        `Run 'replicalog <command> --help' for a command's details.`,
      ),
    );

  program
    .command('migrate')
    .description('backfill a pre-Raft WAL: give every entry without a RAFT file one (progress on a TTY)')
    .argument('<dir>', 'the store directory (holding wal/), or a storage directory')
    .option('--dry-run', 'list what would change and write nothing (the store is not opened)')
    .option('--json', 'print one JSON object {dir, status, backfilled, dryRun, entries}')
    .addOption(partitionOption())
    .addOption(storageNameOption())
    .option('--quiet', 'no progress (a bar or lines): only the summary, and errors')
    .option('--no-progress', 'the same as --quiet')
    .addHelpText(
      'after',
      helpParagraphs(
        `Opens the store (taking its lock: fails with ERR_LOCKED while another process has it open) and runs ReplicaLogStore.backfill(): each entry's RAFT file is written atomically (temporary file, fsync, rename, directory fsync), so an interrupted migration is resumed by running the command again, and a second run backfills 0 entries. Backfilled entries are Normal entries with term = the nearest earlier entry's term (else the hard state's, else 0).`,
        'Progress: a bar on a terminal; plain "N/M entries" lines on stderr otherwise; none with --json or --quiet. Ctrl-C during the bar leaves the terminal as it was (the run resumes when repeated).',
        '--dry-run scans the tree read-only, prints the entries that would be written and the leftovers open would remove, and exits 1 if the store would refuse the tree (e.g. a gap, a stray name).',
        `${STORAGE_HELP} On a storage, migrate takes the storage's one lock and migrates up to ${PARTITION_CONCURRENCY} partitions at a time (fewer when they are large: ${ENTRIES_IN_FLIGHT.toLocaleString('en-US')} entries between them; fewer under a low descriptor limit: 4 at ulimit -n 256), each opened, backfilled and closed (memory stays bounded at any number of partitions), under ONE progress bar counting the entries of every partition. Partitions with nothing to write (already migrated, bootstrapped, empty) are skipped and reported, so a run killed midway finishes when run again. A partition the store refuses (ERR_CORRUPT) is reported and left as it was, and the others are migrated (exit 1). --json prints one summary per partition {partition, status, action, backfilled, entries}, never their entries; --dry-run walks the partitions read-only and prints how many entries each would get.`,
        'Exit status: 0 migrated (or nothing to do); 1 refused (corrupt tree, locked); 2 bad usage.',
      ),
    )
    .action(async (dir: string, flags: DataCommandFlags & { dryRun?: boolean }) => {
      setDirectory(dir);
      if (isStorageDirectory(dir)) {
        const options = { dryRun: flags.dryRun === true, json: flags.json === true, quiet: quiet(flags), partitionId: flags.partition, storageName: flags.storageName };
        finish(await runMigrateStorage(dir, options, io), dir);
        return;
      }
      rejectStorageName(flags, dir);
      rejectPartitionDirectory(dir, 'migrate');
      finish(await runMigrate(dir, { dryRun: flags.dryRun === true, json: flags.json === true, quiet: quiet(flags), partitionId: flags.partition }, io), dir);
    });

  program
    .command('inspect')
    .description('show status, first/last index, hard and conf state, snapshot metadata (works while the store is open)')
    .argument('<dir>', 'the store directory, or a storage directory')
    .option('--entries', 'add a table of entries: index, LSN, type, term, RAFT size, MANIFEST size, operations, payload files')
    .option('--json', 'print one JSON object (status, firstIndex, lastIndex, hardState, confState, snapshot, …)')
    .addOption(partitionOption())
    .addOption(storageNameOption())
    .option('--quiet', 'no progress while a large tree is scanned')
    .option('--no-progress', 'the same as --quiet')
    .addHelpText(
      'after',
      helpParagraphs(
        'inspect never opens the store and never takes its lock, so it works while the store is open in another process. It reads wal/ directly, and reads the KV database from a point-in-time COPY of <dir>/kv made in a temporary directory: opening LevelDB in place would write to it and hold the lock a starting store needs. While the store is running, the result is therefore a best-effort snapshot (the KV copy and the wal/ listing are taken at slightly different moments).',
        `${STORAGE_HELP} On a storage, inspect prints a summary: how many partitions are bootstrapped, migrated (RAFT files written, Raft not started), in need of migration or empty, the entries retained and the problems found (the ids of each kind, the first 1,000 under --json). With --partition ID it prints that partition's report, as for a store (--entries needs --partition on a storage). The KV is read from one copy of the storage's kv/.`,
      ),
    )
    .action(async (dir: string, flags: DataCommandFlags & { entries?: boolean }) => {
      setDirectory(dir);
      if (isStorageDirectory(dir)) {
        const options = { entries: flags.entries === true, json: flags.json === true, quiet: quiet(flags), partitionId: flags.partition, storageName: flags.storageName };
        finish(await runInspectStorage(dir, options, io), dir);
        return;
      }
      rejectStorageName(flags, dir);
      rejectPartitionDirectory(dir, 'inspect');
      finish(await runInspect(dir, { entries: flags.entries === true, json: flags.json === true, quiet: quiet(flags), partitionId: flags.partition }, io), dir);
    });

  program
    .command('verify')
    .description('check the tree and list every problem found (exit 1 if any)')
    .argument('<dir>', 'the store directory, or a storage directory')
    .option('--json', 'print one JSON object {ok, problems: [{code, path, lsn, index, message}], notices}')
    .option('--against <dir>', 'compare this replica\'s log with another replica\'s, entry by entry, instead')
    .addOption(partitionOption())
    .addOption(storageNameOption())
    .option('--quiet', 'no progress while a large tree is scanned')
    .option('--no-progress', 'the same as --quiet')
    .addHelpText(
      'after',
      helpParagraphs(
        'Read-only, independent of the store and of its status (it works on a pre-Raft WAL, a locked store, or one the store refuses to open). Checks: names in wal/ (STRAY_NAME), gaps in the LSN sequence (GAP), MANIFEST present and decodable as a gitaly.LogEntry (MANIFEST_MISSING, MANIFEST_CORRUPT; 0 bytes is valid), RAFT (RAFT_MISSING on a bootstrapped store, RAFT_EMPTY, RAFT_CORRUPT, RAFT_INDEX_MISMATCH), modes (BAD_MODE: directories 0700, MANIFEST/RAFT 0400, payload files at most 0500), payload files the MANIFEST links (PAYLOAD_MISSING), terms never decreasing (TERM_REGRESSION), the KV against the log (COMMIT_ABOVE_LAST, ANCHOR_BEYOND_LOG, SNAPSHOT_BEYOND_LOG, SNAPSHOT_DATA_MISSING, KV_CORRUPT, KV_UNREADABLE), leftovers (STAGING_LEFTOVER, COMPACTION_LEFTOVER), NOT_A_DIRECTORY, NOT_A_FILE, UNREADABLE, WAL_MISSING.',
        `Each problem names the entry's LSN directory where an entry is at fault.`,
        `Entries without RAFT on a store with no hard state are a log written before Raft: a notice (NEEDS_MIGRATION: run 'replicalog migrate'), not a problem. So is a commit below the first index (COMMIT_BELOW_FIRST: compacted or snapshotted beyond the commit, which is legal). The KV is read from a copy, as in inspect.`,
        'With --against OTHER, compares two replicas instead: every index both logs hold, RAFT and MANIFEST byte for byte, one entry at a time. A difference at or below both saved commits (two replicas committed different entries) is a problem; one above either commit is a notice (an uncommitted tail may be replaced after a leader change).',
        `${STORAGE_HELP} On a storage, verify checks every partition against its keys in the storage's kv/ (one copy), and each problem names its partition ("partition": ID under --json). The storage itself: STRAY_NAME (a name in partitions/ that is not a partition of the storage), KV_WITHOUT_PARTITION (keys under a partition's prefix and no directory for it), KV_UNREADABLE once for the whole database. Notices are counted per code; --json lists the first 1,000 (noticeCount, noticeCounts). --against compares two stores only.`,
        'Exit status: 0 no problem (notices allowed); 1 problems found; 2 bad usage.',
      ),
    )
    .action(async (dir: string, flags: DataCommandFlags & { against?: string }) => {
      setDirectory(dir);
      if (isStorageDirectory(dir)) {
        if (flags.against !== undefined) throw new UsageError('--against compares two stores, not two storages', dir);
        finish(await runVerifyStorage(dir, { json: flags.json === true, quiet: quiet(flags), partitionId: flags.partition, storageName: flags.storageName }, io), dir);
        return;
      }
      rejectStorageName(flags, dir);
      rejectPartitionDirectory(dir, 'verify');
      if (flags.against !== undefined) {
        finish(await runVerifyAgainst(dir, flags.against, { json: flags.json === true, partitionId: flags.partition }, io), dir);
        return;
      }
      finish(await runVerify(dir, { json: flags.json === true, quiet: quiet(flags), partitionId: flags.partition }, io), dir);
    });

  program
    .command('discard-snapshot')
    .description("rebuild a cluster member whose stored snapshot cannot be restored (the node says when): move it aside, rejoin empty")
    .argument('<dir>', 'the member\'s store directory (the node must be stopped)')
    .option('--dry-run', 'say what would be done, change nothing')
    .option('--json', 'print one JSON object {dir, snapshotIndex, problem, movedTo, hardState, voters, dryRun}')
    .addHelpText(
      'after',
      helpParagraphs(
        'Refuses (exit 1, ERR_SNAPSHOT_OK) when the stored snapshot restores fine, and (ERR_LOCKED) while a node runs on the directory. Otherwise renames <dir> to <dir>.discarded-<UTC time> (nothing is deleted) and creates a fresh store at <dir> with the old configuration, term and vote, an empty log and commit 0. Start the node again with the same flags: it waits for the leader\'s snapshot. The other members must hold the committed log: rebuild one at a time.',
      ),
    )
    .action(async (dir: string, flags: { dryRun?: boolean; json?: boolean }) => {
      setDirectory(dir);
      finish(await runDiscardSnapshot(dir, { dryRun: flags.dryRun === true, json: flags.json === true }, io), dir);
    });

  program
    .command('tour')
    .description('what replicalog is and what each command does (npm start)')
    .action(() => finish(runTour(io)));

  // The cluster commands (lib/node): `demo` is what `npm start` runs.
  registerDemoCommand(program);
  registerNodeCommand(program);
  registerCertsCommand(program);

  return program;
}

export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  // --debug is recognised anywhere (before or after the command) and removed before parsing,
  // so every command accepts it without declaring it.
  const debug = argv.includes('--debug');
  const args = argv.filter((argument) => argument !== '--debug');
  let exitCode = EXIT_OK;
  let directory: string | undefined;
  const program = buildProgram(
    io,
    (code) => {
      exitCode = code;
    },
    (dir) => {
      directory = dir;
    },
  );
  if (args.length === 0) {
    // No command: usage on stderr, bad usage.
    io.stderr(program.helpInformation());
    return EXIT_USAGE;
  }
  try {
    await program.parseAsync([...args], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end with a CommanderError too: they succeeded.
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0) return EXIT_OK;
      return EXIT_USAGE; // commander already printed the one-line reason
    }
    if (args.includes('--json')) {
      // Under --json the error is JSON too, on stdout where the result would have been.
      io.stdout(json({ error: errorObject(error, directory) }));
    } else {
      io.stderr(formatErrorLine(error, directory === undefined ? undefined : directory) + '\n');
    }
    if (debug) io.stderr(formatDebug(error));
    return exitCodeOf(error);
  }
}
