/**
 * A first-in first-out queue whose push and shift cost O(1) (amortised) at any length.
 *
 * Why not an array's shift(): V8 shifts a small array by moving its start, but an array whose
 * backing store lives in the large-object space (beyond about 16,000 elements) is moved element
 * by element, with a write barrier for each: draining a long queue with shift() costs O(n²).
 * The WAL's recycle pool (up to 131,072 compacted directories) spent 7 % of a 3-node cluster's
 * CPU there at 3×C=64 (issue 18).
 */
export class FifoQueue<T> {
  private items: (T | undefined)[] = [];
  /** Items before `head` were shifted; their slots hold undefined. */
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest item, left in the queue (undefined when it is empty). */
  peek(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  /** Removes and returns the oldest item (undefined when the queue is empty). */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    // The slot is cleared so the queue does not keep a taken item alive.
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      // The consumed prefix is at least half the array: copying the rest costs no more than
      // the shifts that consumed it, so each item is copied O(1) times on average.
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
