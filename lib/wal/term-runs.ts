/**
 * The terms of every retained entry, run-length encoded: run k covers the indexes
 * [starts[k], starts[k+1]) (the last run up to lastIndex), all with term terms[k].
 * A log whose term changes rarely costs a few runs; the worst case (every entry a new term)
 * is 16 bytes per entry. Lookups are a binary search.
 *
 * Invariant: `starts` is strictly increasing and every index in [firstIndex, lastIndex] lies
 * in exactly one run; the store keeps firstIndex/lastIndex itself.
 */
export class TermRuns {
  private starts: number[] = [];
  private terms: number[] = [];

  /** Term of `index`, which the caller has checked lies in the retained range. */
  termAt(index: number): number {
    let low = 0;
    let high = this.starts.length - 1;
    // Largest k with starts[k] <= index.
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.starts[middle]! <= index) low = middle;
      else high = middle - 1;
    }
    const term = this.terms[low];
    if (term === undefined || this.starts[low]! > index) throw new Error(`TermRuns: no term for index ${index}`);
    return term;
  }

  /** Appends `index` (the next index after the current last) with `term`. */
  push(index: number, term: number): void {
    if (this.terms.length > 0 && this.terms[this.terms.length - 1] === term) return;
    this.starts.push(index);
    this.terms.push(term);
  }

  /** Forgets every index >= `index`. */
  truncateFrom(index: number): void {
    let keep = this.starts.length;
    while (keep > 0 && this.starts[keep - 1]! >= index) keep--;
    this.starts.length = keep;
    this.terms.length = keep;
  }

  /** Forgets every index < `index` (the new first index). */
  dropBelow(index: number): void {
    let drop = 0;
    // Drop run k when the next run also starts at or below `index`: run k is then wholly below.
    while (drop + 1 < this.starts.length && this.starts[drop + 1]! <= index) drop++;
    if (drop > 0) {
      this.starts.splice(0, drop);
      this.terms.splice(0, drop);
    }
    if (this.starts.length > 0 && this.starts[0]! < index) this.starts[0] = index;
  }

  /**
   * Copies of the runs that start at or below `last` (the checkpoint of the entries
   * firstIndex..last; the caller has checked last lies in the retained range). The first start
   * is firstIndex: dropBelow moves it up to the new first index.
   */
  runsThrough(last: number): { starts: number[]; terms: number[] } {
    const count = this.runCountThrough(last);
    return { starts: this.starts.slice(0, count), terms: this.terms.slice(0, count) };
  }

  /** How many runs start at or below `last` (the size of runsThrough(last), without copying). */
  runCountThrough(last: number): number {
    let low = 0;
    let high = this.starts.length;
    // First k with starts[k] > last.
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.starts[middle]! <= last) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  clear(): void {
    this.starts = [];
    this.terms = [];
  }

  get runCount(): number {
    return this.starts.length;
  }
}
