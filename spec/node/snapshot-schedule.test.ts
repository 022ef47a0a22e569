/**
 * When a node snapshots (lib/node/group.ts nextSnapshotAt, issue 18): each member on its own grid,
 * so three members never snapshot at the same index, at most 1.5 intervals and at least half an
 * interval after the last snapshot.
 */
import { describe, expect, it } from 'vitest';
import { nextSnapshotAt } from '../../lib/node/group.js';

describe('nextSnapshotAt', () => {
  it.each([
    // last snapshot, every, node id, next
    { last: 1, every: 10_000, node: 1, next: 10_000 },
    { last: 1, every: 10_000, node: 2, next: 12_500 },
    { last: 1, every: 10_000, node: 3, next: 15_000 },
    { last: 1, every: 10_000, node: 4, next: 7_500 },
    { last: 1, every: 10_000, node: 5, next: 10_000 }, // the grid repeats every four ids
    { last: 10_000, every: 10_000, node: 1, next: 20_000 },
    { last: 12_500, every: 10_000, node: 2, next: 22_500 },
    // A snapshot installed from the leader off the grid: the next point at least half an interval on.
    { last: 19_990, every: 10_000, node: 1, next: 30_000 },
    { last: 14_000, every: 10_000, node: 1, next: 20_000 },
    { last: 1, every: 20, node: 3, next: 30 },
    { last: 0, every: 1, node: 2, next: 1 },
    { last: 5, every: 3, node: 2, next: 9 }, // below 4 there is no shift
  ])('after a snapshot at $last, every $every, node $node: next at $next', ({ last, every, node, next }) => {
    expect(nextSnapshotAt(last, every, node)).toBe(next);
  });

  it('keeps three members apart and each within [0.5, 1.5] intervals of its last snapshot', () => {
    const every = 10_000;
    const points = [1, 2, 3].map((node) => {
      const taken: number[] = [];
      let last = 1;
      for (let round = 0; round < 20; round++) {
        const next = nextSnapshotAt(last, every, node);
        expect(next - last).toBeGreaterThanOrEqual(every / 2);
        expect(next - last).toBeLessThanOrEqual(1.5 * every);
        taken.push(next);
        last = next;
      }
      return new Set(taken);
    });
    for (const point of points[0]!) expect(points[1]!.has(point) || points[2]!.has(point)).toBe(false);
    for (const point of points[1]!) expect(points[2]!.has(point)).toBe(false);
  });
});
