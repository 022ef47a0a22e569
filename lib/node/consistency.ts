/**
 * Replica consistency check, in the spirit of etcd's corruption check, carried by the log itself.
 *
 * Every `every` applied entries the leader proposes a check REQUEST. Each replica that applies
 * the request at index i records the digest of its state as of i (the request changes no key),
 * and proposes a REPORT {at: i, node, digest}. Every replica that applies a report compares it
 * with its own digest at i: a difference means two replicas applied the same log prefix and hold
 * different states (a bug, a damaged disk, a hand edit). That raises an alarm: a log line, an
 * entry in /status, and a counter. Nothing is stopped: an operator decides which replica to
 * rebuild (`replicalog verify --against` compares two replicas' logs).
 *
 * Both records are Normal entries whose data is JSON without a key, which the key-value state
 * machine applies as no-ops (see state-machine.ts), so older nodes ignore them.
 */

import { decodeJsonObject } from './state-machine.js';

/** What a check entry says. */
export type ConsistencyRecord =
  | { consistency: 'request'; requestId: string }
  | { consistency: 'report'; at: number; node: number; digest: string };

export interface ConsistencyAlarm {
  /** The index both replicas had applied. */
  index: number;
  /** The replica whose report differs from this one's state. */
  node: number;
  ours: string;
  theirs: string;
}

const textEncoder = new TextEncoder();

export function encodeConsistencyRecord(record: ConsistencyRecord): Uint8Array {
  return textEncoder.encode(JSON.stringify(record));
}

/** The record `data` holds, or undefined for any other entry (checked field by field). */
export function decodeConsistencyRecord(data: Uint8Array | undefined): ConsistencyRecord | undefined {
  const record = decodeJsonObject(data);
  if (record === undefined) return undefined;
  if (record.consistency === 'request' && typeof record.requestId === 'string') return { consistency: 'request', requestId: record.requestId };
  if (
    record.consistency === 'report' &&
    Number.isSafeInteger(record.at) &&
    Number.isSafeInteger(record.node) &&
    typeof record.digest === 'string' &&
    record.digest.length <= 128
  ) {
    return { consistency: 'report', at: record.at as number, node: record.node as number, digest: record.digest };
  }
  return undefined;
}

/** One replica's side of the check: its digests at recent requests, and the alarms raised. */
export class ConsistencyChecker {
  /** Digest of this replica's state at each recent request index (bounded). */
  private readonly digests = new Map<number, string>();
  readonly alarms: ConsistencyAlarm[] = [];
  /** Reports compared (equal or not). */
  compared = 0;
  /** The last index a request was proposed at (by this node as leader). */
  lastRequestedAt = 0;

  constructor(
    readonly nodeId: number,
    /** Applied entries between two checks the leader asks for. */
    readonly every: number,
    private readonly keep = 16,
  ) {}

  /** A request was applied at `index` with the state's digest `digest`: the report to propose. */
  onRequest(index: number, digest: string): ConsistencyRecord {
    this.digests.set(index, digest);
    while (this.digests.size > this.keep) this.digests.delete(this.digests.keys().next().value!);
    this.lastRequestedAt = Math.max(this.lastRequestedAt, index);
    return { consistency: 'report', at: index, node: this.nodeId, digest };
  }

  /** A report was applied: the alarm it raises, if the digests differ. */
  onReport(report: Extract<ConsistencyRecord, { consistency: 'report' }>): ConsistencyAlarm | undefined {
    const ours = this.digests.get(report.at);
    // Not recorded here (restarted since, or the request is older than `keep` checks): nothing to compare.
    if (ours === undefined || report.node === this.nodeId) return undefined;
    this.compared++;
    if (ours === report.digest) return undefined;
    const alarm: ConsistencyAlarm = { index: report.at, node: report.node, ours, theirs: report.digest };
    this.alarms.push(alarm);
    if (this.alarms.length > 100) this.alarms.shift();
    return alarm;
  }

  /** True when the leader should ask for a check now. */
  due(applied: number): boolean {
    return applied - this.lastRequestedAt >= this.every;
  }
}
