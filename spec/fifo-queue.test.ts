import { describe, expect, it } from 'vitest';
import { FifoQueue } from '../lib/fifo-queue.js';
import { seededRandom } from '../lib/seeded-random.js';

/** Runs `steps` against a FifoQueue and an array model; every shift, peek and length must agree. */
function runAgainstModel(steps: ReadonlyArray<{ push: number } | { shift: number }>): number {
  const queue = new FifoQueue<number>();
  const model: number[] = [];
  let next = 0;
  let checks = 0;
  for (const step of steps) {
    if ('push' in step) {
      for (let i = 0; i < step.push; i++) {
        queue.push(next);
        model.push(next++);
      }
    } else {
      for (let i = 0; i < step.shift; i++) {
        expect(queue.peek()).toBe(model[0]);
        expect(queue.shift()).toBe(model.shift());
        checks++;
      }
    }
    expect(queue.length).toBe(model.length);
  }
  return checks;
}

describe('FifoQueue', () => {
  // The prefix is dropped once 1,024 items were taken and they are half the array: the cases
  // cross that point, drain to empty, and refill after it.
  it.each([
    { name: 'empty', steps: [{ shift: 3 }] },
    { name: 'a few in, all out, past the end', steps: [{ push: 3 }, { shift: 5 }] },
    { name: 'long queue drained past the compaction point', steps: [{ push: 5000 }, { shift: 4000 }, { push: 10 }, { shift: 1010 }] },
    { name: 'refilled after draining', steps: [{ push: 2048 }, { shift: 2048 }, { push: 3000 }, { shift: 1500 }, { push: 1 }, { shift: 1501 }] },
    { name: 'steady state (as the recycle pool: compactions push, checkpoints take)', steps: Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? { push: 700 } : { shift: 650 })) },
  ])('agrees with an array model: $name', ({ steps }) => {
    runAgainstModel(steps);
  });

  it('agrees with an array model under seeded random pushes and shifts', () => {
    const random = seededRandom(18);
    const below = (limit: number) => Math.floor(random() * limit);
    const steps = Array.from({ length: 400 }, () => (below(3) === 0 ? { shift: below(600) } : { push: below(400) }));
    expect(runAgainstModel(steps)).toBeGreaterThan(1000);
  });

  it('clear empties it and it is usable after', () => {
    const queue = new FifoQueue<string>();
    for (const item of ['a', 'b', 'c']) queue.push(item);
    queue.shift();
    queue.clear();
    expect(queue.length).toBe(0);
    expect(queue.peek()).toBeUndefined();
    expect(queue.shift()).toBeUndefined();
    queue.push('d');
    expect(queue.shift()).toBe('d');
  });
});
