/**
 * A log that says each kind of thing at most once per interval: a flood of refused connections
 * or messages is counted, not written a million times. The first occurrence of a kind is logged
 * at once; later ones within the interval are counted and reported with the next line of that kind.
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly write: (line: string) => void,
    private readonly intervalMs: number,
    /** Kinds remembered at most (the oldest are forgotten): the log itself stays bounded. */
    private readonly maxKinds = 1024,
  ) {}

  note(kind: string, line: string): void {
    const now = Date.now();
    const seen = this.last.get(kind);
    if (seen !== undefined && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.last.delete(kind);
    if (this.last.size >= this.maxKinds) this.last.delete(this.last.keys().next().value!);
    this.last.set(kind, { at: now, suppressed: 0 });
    this.write(suppressed > 0 ? `${line} (and ${suppressed} more like it since the last report)` : line);
  }
}
