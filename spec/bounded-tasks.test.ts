/**
 * BoundedTasks (lib/wal/file-system.ts): the limiter behind a batch's fsyncs. At most `limit`
 * run at once; settle() waits for all and reports the first failure; after a failure the
 * tasks still waiting are skipped.
 */
import { describe, expect, it } from 'vitest';
import { BoundedTasks } from '../lib/wal/file-system.js';

const tick = () => new Promise<void>((resume) => setImmediate(resume));

describe('BoundedTasks', () => {
  const cases = [
    { limit: 1, tasks: 5 },
    { limit: 3, tasks: 10 },
    { limit: 32, tasks: 100 },
    { limit: 8, tasks: 3 },
  ];
  it.each(cases)('limit $limit, $tasks tasks: exactly min(limit, tasks) run at once, every task runs once', async ({ limit, tasks }) => {
    const runner = new BoundedTasks(limit);
    let running = 0;
    let most = 0;
    const ran: number[] = [];
    for (let id = 0; id < tasks; id++) {
      runner.add(async () => {
        running++;
        most = Math.max(most, running);
        await tick();
        ran.push(id);
        running--;
      });
    }
    await runner.settle();
    expect(most).toBe(Math.min(limit, tasks));
    expect(ran.sort((a, b) => a - b)).toEqual(Array.from({ length: tasks }, (_, id) => id));
  });

  it('settle() rejects with the FIRST failure after every started task finished; waiting tasks are skipped', async () => {
    const runner = new BoundedTasks(2);
    const finished: string[] = [];
    runner.add(async () => {
      await tick();
      finished.push('slow ok');
    });
    runner.add(async () => {
      throw new Error('first');
    });
    runner.add(async () => {
      finished.push('third');
      throw new Error('second');
    });
    runner.add(async () => {
      finished.push('skipped?');
    });
    await expect(runner.settle()).rejects.toThrow('first');
    expect(finished).toEqual(['slow ok']);
  });

  it('an empty runner settles at once', async () => {
    await expect(new BoundedTasks(4).settle()).resolves.toBeUndefined();
  });
});
