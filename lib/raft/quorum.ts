/**
 * Port of etcd raft v3.6 `quorum/`: majority and joint quorums, commit-index and vote arithmetic.
 *
 * Node ids and log indexes are JS numbers. Go's `math.MaxUint64` (the committed index of an
 * empty majority config) is represented by `MAX_INDEX` (= +Infinity), which compares greater
 * than every real index and prints as "∞".
 */

/** The committed index of an empty majority config (Go's math.MaxUint64). */
export const MAX_INDEX: number = Number.POSITIVE_INFINITY;

/** Go's `Index.String()`: decimal, or "∞" for MAX_INDEX. */
export function indexToString(index: number): string {
  return index === MAX_INDEX ? '∞' : String(index);
}

/** Looks up the index acknowledged by a voter; `undefined` means "no information" (not 0). */
export interface AckedIndexer {
  ackedIndex(voterId: number): number | undefined;
}

/** An AckedIndexer backed by a map from voter id to acknowledged index (Go's mapAckIndexer). */
export class MapAckIndexer implements AckedIndexer {
  readonly indexes: Map<number, number>;

  constructor(indexes: Iterable<readonly [number, number]> = []) {
    this.indexes = new Map(indexes);
  }

  ackedIndex(voterId: number): number | undefined {
    return this.indexes.get(voterId);
  }
}

/** The outcome of a vote. Values match Go (VotePending = 1 + iota). */
export enum VoteResult {
  /** Neither "yes" nor "no" has reached a quorum yet. */
  VotePending = 1,
  /** A quorum has voted "no". */
  VoteLost = 2,
  /** A quorum has voted "yes". */
  VoteWon = 3,
}

/** Go's stringer output for VoteResult. */
export function voteResultToString(result: VoteResult): string {
  switch (result) {
    case VoteResult.VotePending:
      return 'VotePending';
    case VoteResult.VoteLost:
      return 'VoteLost';
    case VoteResult.VoteWon:
      return 'VoteWon';
    default:
      return `VoteResult(${String(result)})`;
  }
}

function sortedIds(ids: Iterable<number>): number[] {
  return [...ids].sort((a, b) => a - b);
}

/**
 * A set of voter ids deciding by simple majority. It is a `Set<number>`, so `has`, `add`,
 * `delete` and `size` work as on Go's map; the quorum methods mirror Go's.
 */
export class MajorityConfig extends Set<number> {
  /** "(1 2 3)": the ids in ascending order. */
  override toString(): string {
    return `(${sortedIds(this).join(' ')})`;
  }

  /** The ids in ascending order (Go's `Slice()`; empty array for an empty config). */
  slice(): number[] {
    return sortedIds(this);
  }

  /** Multi-line rendering of each voter's acked index, with a bar showing its rank. */
  describe(l: AckedIndexer): string {
    if (this.size === 0) return '<empty majority quorum>';
    interface Row {
      id: number;
      idx: number;
      found: boolean;
      bar: number;
    }
    const n = this.size;
    const rows: Row[] = [];
    for (const id of this) {
      const idx = l.ackedIndex(id);
      rows.push({ id, idx: idx ?? 0, found: idx !== undefined, bar: 0 });
    }
    // Sorted by index, a row whose index is strictly above its predecessor's gets bar = its rank;
    // a row tied with its predecessor keeps bar 0 (exactly as Go computes it).
    rows.sort((a, b) => a.idx - b.idx || a.id - b.id);
    for (let i = 1; i < rows.length; i++) {
      const row = rows[i]!;
      const previous = rows[i - 1]!;
      if (previous.idx < row.idx) row.bar = i;
    }
    rows.sort((a, b) => a.id - b.id);
    let out = `${' '.repeat(n)}    idx\n`;
    for (const row of rows) {
      out += row.found ? `${'x'.repeat(row.bar)}>${' '.repeat(n - row.bar)}` : `?${' '.repeat(n)}`;
      out += ` ${String(row.idx).padStart(5, ' ')}    (id=${row.id})\n`;
    }
    return out;
  }

  /**
   * The highest index acked by a majority. Voters without information count as 0.
   * An empty config returns MAX_INDEX so that it is neutral inside a joint config.
   */
  committedIndex(l: AckedIndexer): number {
    const n = this.size;
    if (n === 0) return MAX_INDEX;
    const acked = new Array<number>(n).fill(0);
    let fill = n - 1;
    for (const id of this) {
      const idx = l.ackedIndex(id);
      if (idx !== undefined) acked[fill--] = idx;
    }
    acked.sort((a, b) => a - b);
    // Walking n/2+1 slots left from the end finds the largest index held by a quorum.
    return acked[n - (Math.floor(n / 2) + 1)]!;
  }

  /** Won once a majority said yes, lost once a majority can no longer say yes. Empty config wins. */
  voteResult(votes: ReadonlyMap<number, boolean>): VoteResult {
    if (this.size === 0) return VoteResult.VoteWon;
    let granted = 0;
    let missing = 0;
    for (const id of this) {
      const vote = votes.get(id);
      if (vote === undefined) {
        missing++;
      } else if (vote) {
        granted++;
      }
    }
    const quorum = Math.floor(this.size / 2) + 1;
    if (granted >= quorum) return VoteResult.VoteWon;
    if (granted + missing >= quorum) return VoteResult.VotePending;
    return VoteResult.VoteLost;
  }
}

/**
 * Two majority configs, incoming ([0]) and outgoing ([1]); decisions need both.
 * The outgoing half is empty when the configuration is not joint.
 */
export type JointConfig = [MajorityConfig, MajorityConfig];

/** A fresh non-joint, empty JointConfig. */
export function newJointConfig(
  incoming: Iterable<number> = [],
  outgoing: Iterable<number> = [],
): JointConfig {
  return [new MajorityConfig(incoming), new MajorityConfig(outgoing)];
}

/** "(1 2)&&(2 3)", or just "(1 2)" when the outgoing half is empty. */
export function jointConfigToString(c: JointConfig): string {
  return c[1].size > 0 ? `${c[0].toString()}&&${c[1].toString()}` : c[0].toString();
}

/** The union of both halves, as a new MajorityConfig (Go's `IDs()`). */
export function jointConfigIds(c: JointConfig): MajorityConfig {
  const ids = new MajorityConfig(c[0]);
  for (const id of c[1]) ids.add(id);
  return ids;
}

/** `describe` over the union of both halves. */
export function jointConfigDescribe(c: JointConfig, l: AckedIndexer): string {
  return jointConfigIds(c).describe(l);
}

/** The smaller of the two halves' committed indexes: committed means committed in both. */
export function jointCommittedIndex(c: JointConfig, l: AckedIndexer): number {
  return Math.min(c[0].committedIndex(l), c[1].committedIndex(l));
}

/** Both halves must win; a loss in either half loses. */
export function jointVoteResult(c: JointConfig, votes: ReadonlyMap<number, boolean>): VoteResult {
  const first = c[0].voteResult(votes);
  const second = c[1].voteResult(votes);
  if (first === second) return first;
  if (first === VoteResult.VoteLost || second === VoteResult.VoteLost) return VoteResult.VoteLost;
  // One half won and the other is pending.
  return VoteResult.VotePending;
}

/**
 * Companion namespace so callers can write `JointConfig.committedIndex(voters, l)`,
 * mirroring Go's methods on the JointConfig type.
 */
export const JointConfig = {
  create: newJointConfig,
  /** Go's `String()` (not named toString, which would shadow Object.prototype.toString). */
  format: jointConfigToString,
  ids: jointConfigIds,
  describe: jointConfigDescribe,
  committedIndex: jointCommittedIndex,
  voteResult: jointVoteResult,
} as const;

/** Committed index of a majority or joint config. */
export function committedIndex(c: MajorityConfig | JointConfig, l: AckedIndexer): number {
  return c instanceof MajorityConfig ? c.committedIndex(l) : jointCommittedIndex(c, l);
}

/** Vote result of a majority or joint config. */
export function voteResult(
  c: MajorityConfig | JointConfig,
  votes: ReadonlyMap<number, boolean>,
): VoteResult {
  return c instanceof MajorityConfig ? c.voteResult(votes) : jointVoteResult(c, votes);
}

/** Describe a majority or joint config against an AckedIndexer. */
export function describe(c: MajorityConfig | JointConfig, l: AckedIndexer): string {
  return c instanceof MajorityConfig ? c.describe(l) : jointConfigDescribe(c, l);
}
