/**
 * The CLI's errors name the real cause (issue 17): a table of real failure conditions, each run
 * against the real binary, checking the exit code and the first line of output.
 *
 * How each condition is made, as the tests may run as root (which ignores permission bits):
 *   - EACCES: the tree is handed to `nobody` and the CLI runs as `nobody` (setpriv) with the
 *     permission bits removed; as a user other than root, plain chmod does it.
 *   - EROFS: a read-only bind mount of the store in a private mount namespace (unshare -m as
 *     root, unshare -rm in a user namespace otherwise); nothing is mounted outside the child.
 *   - ENOSPC: a 2 MiB tmpfs in a private mount namespace, filled up after the tree is copied in.
 * A condition this machine cannot make is skipped with the reason in the test's name.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writePreRaftWal } from '../../lib/fixture.js';
import { ReplicaLogStore } from '../../lib/replica-log-store.js';
import { EntryType } from '../../lib/types.js';
import { entryPath, walPath } from '../../lib/wal/layout.js';
import { makeTempDir, removeTempDirs } from '../helpers/temp-dir.js';
import { BIN, ensureBuilt, REPO_ROOT, type CliResult } from './harness.js';

beforeAll(ensureBuilt, 180_000);

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

function works(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

const unshareArgs = isRoot ? ['-m'] : ['-rm'];
const techniques = {
  nobody: isRoot ? works('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'true']) : true,
  mountNamespace: works('unshare', [...unshareArgs, 'sh', '-c', 'mount -t tmpfs tmpfs /mnt 2>/dev/null || mount -t tmpfs tmpfs /tmp']),
};
const why: Record<keyof typeof techniques, string> = {
  nobody: 'setpriv cannot run a command as nobody here',
  mountNamespace: 'no private mount namespace here (unshare -m needs root or user namespaces)',
};

const quote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;
const cliCommand = (args: readonly string[]) => [process.execPath, BIN, ...args].map(quote).join(' ');

function shell(script: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The CLI as it is. */
const asIs = (args: readonly string[]) => shell(`exec ${cliCommand(args)}`);
/** The CLI as an unprivileged user: `nobody` when we are root (the tree was handed to it). */
const asUser = (args: readonly string[]) =>
  shell(isRoot ? `exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups ${cliCommand(args)}` : `exec ${cliCommand(args)}`);
/** The CLI with `dir` bind-mounted read-only over itself, in a private mount namespace. */
const readOnly = (dir: string, args: readonly string[]) =>
  shell(
    `exec unshare ${unshareArgs.join(' ')} sh -c ${quote(`mount --bind ${quote(dir)} ${quote(dir)} && mount -o remount,bind,ro ${quote(dir)} && exec ${cliCommand(args)}`)}`,
  );
/** The CLI on a copy of `source` in a full 2 MiB tmpfs mounted on `mountPoint`, in a private mount namespace. */
const fullDisk = (source: string, mountPoint: string, args: readonly string[]) =>
  shell(
    `exec unshare ${unshareArgs.join(' ')} sh -c ${quote(
      `mount -t tmpfs -o size=2m tmpfs ${quote(mountPoint)} && cp -a ${quote(source)}/. ${quote(mountPoint)}/ && ` +
        `{ dd if=/dev/zero of=${quote(join(mountPoint, 'fill'))} bs=4096 2>/dev/null; true; } && exec ${cliCommand(args)}`,
    )}`,
  );

let base = '';

/** A directory `nobody` can reach (mkdtemp makes 0700 ones). */
function newBase(): string {
  base = makeTempDir('replicalog-errors-');
  chmodSync(base, 0o755);
  return base;
}

/** Hands `dir` (recursively) to nobody when we are root, so permission bits apply to the CLI. */
function handToUser(dir: string): void {
  if (!isRoot) return;
  const walk = (path: string) => {
    chownSync(path, NOBODY, NOBODY);
    const entries = spawnSync('find', [path, '-mindepth', '1', '-maxdepth', '1'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    for (const entry of entries) walk(entry);
  };
  walk(dir);
}

function preRaftTree(name: string, entries = 30): string {
  const dir = join(base, name);
  writePreRaftWal({ dir, entries });
  chmodSync(dir, 0o755);
  return dir;
}

async function bootstrappedTree(name: string, damage: (dir: string) => void): Promise<string> {
  const dir = join(base, name);
  const store = await ReplicaLogStore.open({ dir });
  await store.append([1, 2, 3, 4].map((index) => ({ index, term: 1, type: EntryType.Normal, data: new Uint8Array([index]) })));
  await store.setHardState({ term: 1, vote: 0, commit: 4 });
  await store.close();
  damage(dir);
  return dir;
}

afterEach(() => {
  // Permission bits back (a non-root user could not remove the tree otherwise), then remove it.
  if (base !== '') spawnSync('chmod', ['-R', 'u+rwX', base]);
  removeTempDirs();
});

const firstLine = (text: string) => text.split('\n')[0] ?? '';
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Case {
  name: string;
  needs?: keyof typeof techniques;
  run: () => Promise<{ result: CliResult; dir: string }>;
  exitCode: number;
  /** Where the line to check is: stderr for errors, stdout for reports (inspect, verify). */
  stream: 'stderr' | 'stdout';
  /** The first line of that stream; `DIR` stands for the store directory. */
  firstLine: RegExp | ((dir: string) => RegExp);
  /** Text that must appear nowhere in the output (wrong advice, wrong cause). */
  never?: RegExp[];
}

const dirPattern = (template: string) => (dir: string) => new RegExp(template.replaceAll('DIR', escape(dir)));

const cases: Case[] = [
  // ---- EROFS
  {
    name: 'EROFS: migrate on a read-only mount names the read-only file system, not the lock',
    needs: 'mountNamespace',
    run: async () => {
      const dir = preRaftTree('ro');
      return { dir, result: await readOnly(dir, ['migrate', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR: cannot write to DIR: EROFS: read-only file system, access .* \\[ERR_IO\\]$'),
    never: [/Database failed to open/, /ENOENT/],
  },
  {
    name: 'EROFS: migrate --dry-run checks that it could write',
    needs: 'mountNamespace',
    run: async () => {
      const dir = preRaftTree('ro');
      return { dir, result: await readOnly(dir, ['migrate', '--dry-run', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR: cannot write to DIR \\(the store directory.*\\): EROFS: read-only file system'),
    never: [/would backfill/],
  },
  {
    name: 'EROFS: inspect reads a read-only mount (it writes nothing)',
    needs: 'mountNamespace',
    run: async () => {
      const dir = preRaftTree('ro');
      return { dir, result: await readOnly(dir, ['inspect', dir]) };
    },
    exitCode: 0,
    stream: 'stdout',
    firstLine: dirPattern('^DIR$'),
  },
  {
    name: 'EROFS: a bootstrapped store on a read-only mount: migrate names EROFS',
    needs: 'mountNamespace',
    run: async () => {
      const dir = await bootstrappedTree('ro-boot', () => {});
      return { dir, result: await readOnly(dir, ['migrate', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: /EROFS: read-only file system.*\[ERR_IO\]$/,
  },
  // ---- EACCES
  {
    name: 'EACCES: migrate in a store directory without write permission',
    needs: 'nobody',
    run: async () => {
      const dir = preRaftTree('no-write');
      handToUser(dir);
      chmodSync(dir, 0o500);
      return { dir, result: await asUser(['migrate', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR: cannot write to DIR: EACCES: permission denied, access .* \\[ERR_IO\\]$'),
    never: [/Database failed to open/],
  },
  {
    name: 'EACCES: migrate --dry-run in a store directory without write permission',
    needs: 'nobody',
    run: async () => {
      const dir = preRaftTree('no-write');
      handToUser(dir);
      chmodSync(dir, 0o500);
      return { dir, result: await asUser(['migrate', '--dry-run', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR: cannot write to DIR \\(the store directory.*\\): EACCES: permission denied'),
    never: [/would backfill/],
  },
  {
    name: 'EACCES: migrate --dry-run with entry directories without write permission',
    needs: 'nobody',
    run: async () => {
      const dir = preRaftTree('no-write-entries', 5);
      handToUser(dir);
      for (const index of [2, 4]) chmodSync(entryPath(dir, index), 0o500);
      return { dir, result: await asUser(['migrate', '--dry-run', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: (dir) => new RegExp(`^replicalog: ${escape(entryPath(dir, 2))}: cannot write to ${escape(entryPath(dir, 2))} and 1 other entry directory .*EACCES: permission denied`),
  },
  {
    name: 'EACCES on wal/: inspect says permission denied (exit 1), not "not a store"',
    needs: 'nobody',
    run: async () => {
      const dir = preRaftTree('no-read-wal');
      handToUser(dir);
      chmodSync(walPath(dir), 0o000);
      return { dir, result: await asUser(['inspect', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR/wal: cannot read DIR/wal: EACCES: permission denied, opendir .* \\[ERR_IO\\]$'),
    never: [/does not exist/, /not a replicalog or Gitaly state directory/],
  },
  {
    name: 'EACCES on wal/: verify reports UNREADABLE, not WAL_MISSING',
    needs: 'nobody',
    run: async () => {
      const dir = preRaftTree('no-read-wal');
      handToUser(dir);
      chmodSync(walPath(dir), 0o000);
      return { dir, result: await asUser(['verify', dir]) };
    },
    exitCode: 1,
    stream: 'stdout',
    firstLine: dirPattern('^UNREADABLE +- +cannot read DIR/wal: EACCES: permission denied'),
    never: [/WAL_MISSING/, /wal does not exist/],
  },
  {
    name: 'EACCES on wal/: migrate names the permission, not a missing WAL',
    needs: 'nobody',
    run: async () => {
      const dir = preRaftTree('no-read-wal');
      handToUser(dir);
      chmodSync(walPath(dir), 0o000);
      return { dir, result: await asUser(['migrate', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: /EACCES: permission denied/,
    never: [/does not exist/, /WAL_MISSING/],
  },
  {
    name: 'EACCES on the store directory itself: inspect names the permission (exit 1)',
    needs: 'nobody',
    run: async () => {
      const dir = preRaftTree('no-read-dir');
      handToUser(dir);
      chmodSync(dir, 0o000);
      return { dir, result: await asUser(['inspect', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR/wal: cannot read DIR/wal: EACCES: permission denied, lstat .* \\[ERR_IO\\]$'),
    never: [/does not exist/],
  },
  // ---- ENOSPC
  {
    name: 'ENOSPC: migrate on a full file system names it',
    needs: 'mountNamespace',
    run: async () => {
      const source = preRaftTree('source');
      const mountPoint = join(base, 'full');
      mkdirSync(mountPoint);
      return { dir: mountPoint, result: await fullDisk(source, mountPoint, ['migrate', mountPoint]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: /ENOSPC: .*No space left on device.*\[ERR_IO\]$/,
  },
  {
    name: 'ENOSPC: migrate --dry-run sees there is no room',
    needs: 'mountNamespace',
    run: async () => {
      const source = preRaftTree('source');
      const mountPoint = join(base, 'full');
      mkdirSync(mountPoint);
      return { dir: mountPoint, result: await fullDisk(source, mountPoint, ['migrate', '--dry-run', mountPoint]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR: ENOSPC: migrate needs about [0-9.]+ MiB on the file system of DIR, [0-9.]+ MiB is available$'),
  },
  // ---- damaged trees: advice that fits
  {
    name: 'a gap in a bootstrapped store: inspect exits 1, points at verify, advises restoring from a peer',
    run: async () => {
      const dir = await bootstrappedTree('gap', (dir) => rmSync(entryPath(dir, 2), { recursive: true }));
      return { dir, result: await asIs(['inspect', dir]) };
    },
    exitCode: 1,
    stream: 'stdout',
    firstLine: dirPattern('^DIR$'),
    never: [/replicalog migrate/],
  },
  {
    name: 'a gap in a bootstrapped store: migrate refuses and advises restoring from a peer, never migrating',
    run: async () => {
      const dir = await bootstrappedTree('gap', (dir) => rmSync(entryPath(dir, 2), { recursive: true }));
      return { dir, result: await asIs(['migrate', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: /^replicalog: .*gap in the WAL.*restore this replica from a peer \(`replicalog verify .*` lists every problem\) \[ERR_CORRUPT\]$/,
    never: [/run `?replicalog migrate/],
  },
  {
    name: 'a gap: verify lists it first',
    run: async () => {
      const dir = await bootstrappedTree('gap', (dir) => rmSync(entryPath(dir, 2), { recursive: true }));
      return { dir, result: await asIs(['verify', dir]) };
    },
    exitCode: 1,
    stream: 'stdout',
    firstLine: /^GAP +0000000000002 +gap in the WAL/,
  },
  {
    name: 'a corrupt RAFT file on a bootstrapped store: migrate refuses with the same advice',
    run: async () => {
      const dir = await bootstrappedTree('corrupt', (dir) => {
        const raft = join(entryPath(dir, 3), 'RAFT');
        rmSync(raft);
        writeFileSync(raft, Uint8Array.of(0xff, 0xff), { mode: 0o400 });
      });
      return { dir, result: await asIs(['migrate', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: /restore this replica from a peer.*\[ERR_CORRUPT\]$/,
    never: [/run `?replicalog migrate/],
  },
  {
    name: 'a corrupt RAFT file: inspect exits 1 and names it',
    run: async () => {
      const dir = await bootstrappedTree('corrupt', (dir) => {
        const raft = join(entryPath(dir, 3), 'RAFT');
        rmSync(raft);
        writeFileSync(raft, Uint8Array.of(0xff, 0xff), { mode: 0o400 });
      });
      return { dir, result: await asIs(['inspect', dir]) };
    },
    exitCode: 1,
    stream: 'stdout',
    firstLine: dirPattern('^DIR$'),
    never: [/replicalog migrate/],
  },
  {
    name: 'a pre-Raft tree with a gap: migrate --dry-run refuses, naming the gap',
    run: async () => {
      const dir = preRaftTree('pre-gap', 10);
      rmSync(entryPath(dir, 6), { recursive: true });
      return { dir, result: await asIs(['migrate', '--dry-run', dir]) };
    },
    exitCode: 1,
    stream: 'stderr',
    firstLine: (dir) => new RegExp(`^replicalog: ${escape(entryPath(dir, 6))}: gap in the WAL`),
  },
  // ---- not a store
  {
    name: 'no wal/: inspect is bad usage (exit 2)',
    run: async () => {
      const dir = join(base, 'empty');
      mkdirSync(dir);
      return { dir, result: await asIs(['inspect', dir]) };
    },
    exitCode: 2,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR: not a replicalog or Gitaly state directory \\(DIR/wal does not exist\\)$'),
  },
  {
    name: 'no wal/: verify reports WAL_MISSING (exit 1)',
    run: async () => {
      const dir = join(base, 'empty');
      mkdirSync(dir);
      return { dir, result: await asIs(['verify', dir]) };
    },
    exitCode: 1,
    stream: 'stdout',
    firstLine: dirPattern('^WAL_MISSING +- +DIR/wal does not exist'),
  },
  {
    name: 'no such directory: migrate is bad usage (exit 2)',
    run: async () => {
      const dir = join(base, 'nothing-here');
      return { dir, result: await asIs(['migrate', dir]) };
    },
    exitCode: 2,
    stream: 'stderr',
    firstLine: dirPattern('^replicalog: DIR: no such directory$'),
  },
];

describe('CLI errors name the real cause (exit code, first line)', () => {
  for (const testCase of cases) {
    const available = testCase.needs === undefined || techniques[testCase.needs];
    const name = available ? testCase.name : `${testCase.name} (SKIPPED: ${why[testCase.needs!]})`;
    (available ? it : it.skip)(name, async () => {
      newBase();
      const { result, dir } = await testCase.run();
      const output = testCase.stream === 'stderr' ? result.stderr : result.stdout;
      const pattern = typeof testCase.firstLine === 'function' ? testCase.firstLine(dir) : testCase.firstLine;
      expect({ code: result.code, line: firstLine(output) }, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toEqual({
        code: testCase.exitCode,
        line: expect.stringMatching(pattern),
      });
      for (const wrong of testCase.never ?? []) expect(result.stdout + result.stderr).not.toMatch(wrong);
    });
  }

  it.skipIf(!techniques.nobody)('--json: the error object carries the system code', async () => {
    newBase();
    const dir = preRaftTree('json');
    handToUser(dir);
    chmodSync(dir, 0o500);
    const result = await asUser(['migrate', '--json', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual({
      error: { code: 'ERR_IO', systemCode: 'EACCES', path: dir, message: expect.stringMatching(/^cannot write to .*: EACCES: permission denied/) },
    });
  });
});
