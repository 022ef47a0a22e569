/**
 * The published package (issue 17): `npm pack` builds (prepack) and ships what a user needs and
 * nothing else (no dev scripts, no source maps without their sources, a LICENSE); installed into
 * a scratch consumer project, `import 'replicalog'` opens a store, appends and reads back,
 * `replicalog/testing` writes a fixture tree the main entry's store then reports, and
 * `replicalog/spec` loads. The split holds: test hooks and internals are in `replicalog/testing`
 * only, and a TypeScript consumer type-checks against both entries' declarations. Dependencies
 * come from npm's cache when they are there.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { makeTempDir, removeTempDirs } from './helpers/temp-dir.js';
import { REPO_ROOT } from './cli/harness.js';

afterAll(removeTempDirs);

it('npm pack ships dist, bin, schemas, README and LICENSE only, and a consumer project can use it', () => {
  const scratch = makeTempDir('replicalog-pack-');
  const output = execFileSync('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [packed] = JSON.parse(output.slice(output.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  const paths = packed!.files.map((file) => file.path);
  expect(paths).toContain('LICENSE');
  expect(paths).toContain('dist/index.js');
  expect(paths).toContain('dist/testing.js');
  expect(paths).toContain('dist/testing.d.ts');
  expect(paths).toContain('dist/spec/conformance.js');
  expect(paths).toContain('bin/replicalog.js');
  expect(paths.filter((path) => path.endsWith('.map') || path.startsWith('dist/scripts/') || path.endsWith('.ts') && !path.endsWith('.d.ts'))).toEqual([]);

  const consumer = join(scratch, 'consumer');
  mkdirSync(consumer);
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
  // The conformance suite's optional peers come along, as a user of replicalog/spec installs them.
  execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(scratch, packed!.filename), 'vitest', 'fast-check'], { cwd: consumer, stdio: 'ignore' });
  writeFileSync(
    join(consumer, 'main.js'),
    `import * as replicalog from 'replicalog';
import * as testing from 'replicalog/testing';
const { ReplicaLogStore, EntryType } = replicalog;
const store = await ReplicaLogStore.open({ dir: process.argv[2] });
await store.append([{ index: 1, term: 1, type: EntryType.Normal, data: new TextEncoder().encode('hello') }]);
const spec = await import('replicalog/spec');
testing.writePreRaftWal({ dir: process.argv[3], entries: 5 });
const fixture = await ReplicaLogStore.open({ dir: process.argv[3] });
const internals = ['writePreRaftWal', 'CRASH_POINTS', 'nodeFileSystem', 'planAppend', 'formatLsn', 'Raft', 'ProgressTracker', 'DirectoryLock'];
console.log(JSON.stringify({
  last: store.lastIndex(),
  data: new TextDecoder().decode(store.entries(1, 2)[0].data),
  conformance: typeof spec.storageConformance,
  fixtureStatus: fixture.status,
  fixtureLast: fixture.lastIndex(),
  internalsInMain: internals.filter((name) => name in replicalog),
  internalsInTesting: internals.filter((name) => name in testing),
  product: ['ReplicaLogStore', 'ReplicaLogStorage', 'MemoryStorage', 'RawNode', 'ReplicaNode', 'Transport', 'encodeEntry', 'ReplicaLogError', 'NO_LIMIT'].filter((name) => !(name in replicalog)),
}));
await fixture.close();
await store.close();
`,
  );
  const result = execFileSync(process.execPath, ['main.js', join(scratch, 'store'), join(scratch, 'fixture')], { cwd: consumer, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  expect(JSON.parse(result)).toEqual({
    last: 1,
    data: 'hello',
    conformance: 'function',
    fixtureStatus: 'needs-backfill',
    fixtureLast: 5,
    internalsInMain: [],
    internalsInTesting: ['writePreRaftWal', 'CRASH_POINTS', 'nodeFileSystem', 'planAppend', 'formatLsn', 'Raft', 'ProgressTracker', 'DirectoryLock'],
    product: [],
  });

  // TypeScript consumers resolve both entries' declarations through "exports"; the test hooks
  // are typed in replicalog/testing only (a @ts-expect-error that is not needed fails the check).
  writeFileSync(
    join(consumer, 'check.ts'),
    `import { ReplicaLogStore, ReplicaLogStorage, type ReplicaLogStoreOptions, type ReplicaLogStorageOptions } from 'replicalog';
import { nodeFileSystem, CRASH_POINTS, type ReplicaLogStoreTestOptions } from 'replicalog/testing';
export const options: ReplicaLogStoreOptions = { dir: '/tmp/x', cacheMaxEntries: 16 };
// @ts-expect-error fileSystem is a test hook, not a ReplicaLogStoreOptions field
export const hooked: ReplicaLogStoreOptions = { dir: '/tmp/x', fileSystem: nodeFileSystem };
export const testOptions: ReplicaLogStoreTestOptions = { dir: '/tmp/x', fileSystem: nodeFileSystem, crashPoint: (name) => void name };
export const first: string = CRASH_POINTS[0];
export const open: (options: ReplicaLogStoreOptions) => Promise<ReplicaLogStore> = (options) => ReplicaLogStore.open(options);
export const storageOptions: ReplicaLogStorageOptions = { dir: '/tmp/s', name: 'gitaly', barrierSyncLimit: 64 };
// @ts-expect-error crashPoint is a test hook, not a ReplicaLogStorageOptions field
export const hookedStorage: ReplicaLogStorageOptions = { dir: '/tmp/s', crashPoint: () => undefined };
export const partition: (storage: ReplicaLogStorage) => Promise<ReplicaLogStore> = (storage) => storage.openPartition(7, { cacheMaxEntries: 64 });
`,
  );
  const typecheck = spawnSync(
    process.execPath,
    [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', 'check.ts'],
    { cwd: consumer, encoding: 'utf8' },
  );
  expect(`${typecheck.stdout}${typecheck.stderr}`).toBe('');
  expect(typecheck.status).toBe(0);
  const help = execFileSync(join(consumer, 'node_modules', '.bin', 'replicalog'), ['--help'], { encoding: 'utf8' });
  expect(help).toContain('migrate');
}, 180_000);
