/**
 * syncfs through one long-lived helper (lib/wal/sync-file-system.ts, issue 18): requests are
 * answered in order by one `sh` per process, a failure after syncfs proved to work is EIO naming
 * the path, a helper that dies hands its requests to one `sync` process each, and an idle helper
 * never keeps the process alive.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SYNC_HELPER_SCRIPT, syncFileSystemOf } from '../lib/wal/sync-file-system.js';

const directory = mkdtempSync(join(tmpdir(), 'replicalog-syncfs-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

/** The syncfs helpers this process runs (children whose command line holds the helper's loop). */
function helperPids(): number[] {
  const pids: number[] = [];
  for (const task of readdirSync(`/proc/${process.pid}/task`)) {
    const listed = readFileSync(`/proc/${process.pid}/task/${task}/children`, 'utf8').trim();
    for (const pid of listed === '' ? [] : listed.split(' ').map(Number)) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('sync -f -- "$path"')) pids.push(pid);
      } catch {
        // exited meanwhile
      }
    }
  }
  return pids;
}

const refsOfKind = (kind: string) => process.getActiveResourcesInfo().filter((resource) => resource === kind).length;

describe.runIf(process.platform === 'linux')('syncFileSystemOf', () => {
  it('answers 40 requests made at once, all through one helper process', async () => {
    expect(await syncFileSystemOf(directory)).toBe(true);
    const answers = await Promise.all(Array.from({ length: 40 }, () => syncFileSystemOf(directory)));
    expect(answers).toEqual(Array(40).fill(true));
    expect(helperPids()).toHaveLength(1);
  });

  it('a failure once syncfs works is EIO naming the path; the next request still works', async () => {
    expect(await syncFileSystemOf(directory)).toBe(true);
    const missing = join(directory, 'missing', 'deeper');
    await expect(syncFileSystemOf(missing)).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining(missing) });
    expect(await syncFileSystemOf(directory)).toBe(true);
  });

  it('a helper killed with requests pending: they are answered by one sync each, and the next request starts a new helper', async () => {
    expect(await syncFileSystemOf(directory)).toBe(true);
    const [first] = helperPids();
    expect(first).toBeDefined();
    const pending = Array.from({ length: 5 }, () => syncFileSystemOf(directory));
    process.kill(first!, 'SIGKILL');
    expect(await Promise.all(pending)).toEqual(Array(5).fill(true));
    expect(await syncFileSystemOf(directory)).toBe(true);
    const [second] = helperPids();
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
  });

  it('holds the event loop open only while a request is pending', async () => {
    expect(await syncFileSystemOf(directory)).toBe(true);
    const idle = { pipes: refsOfKind('PipeWrap'), processes: refsOfKind('ProcessWrap') };
    const pending = syncFileSystemOf(directory);
    expect(refsOfKind('ProcessWrap')).toBe(idle.processes + 1);
    await pending;
    await new Promise((resume) => setImmediate(resume));
    expect({ pipes: refsOfKind('PipeWrap'), processes: refsOfKind('ProcessWrap') }).toEqual(idle);
  });

  it('the helper script answers one line per path and exits when its input ends (so it ends with its process)', () => {
    // execFileSync returns only once sh has exited: at the end of its input, as when the node
    // process that feeds it exits or is killed.
    const output = execFileSync('sh', ['-c', SYNC_HELPER_SCRIPT], { input: `${directory}\n/nonexistent/x\n`, encoding: 'utf8', timeout: 20_000 });
    const lines = output.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe('ok');
    expect(lines[1]).toMatch(/^err .*\/nonexistent\/x/);
  });
});
