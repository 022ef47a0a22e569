/**
 * Port of etcd raft v3.6 read_only.go: the leader's queue of ReadIndex requests waiting for a
 * quorum of heartbeat acknowledgements (ReadOnlySafe).
 */
import type { Message } from '../types.js';

export enum ReadOnlyOption {
  /** Confirm leadership with a heartbeat round per read (linearizable). */
  ReadOnlySafe = 0,
  /** Rely on the leader lease (needs checkQuorum; affected by clock drift). */
  ReadOnlyLeaseBased = 1,
}

/** A ReadIndex answer: serve the read once the applied index reaches `index`. */
export interface ReadState {
  index: number;
  requestCtx: Uint8Array;
}

export interface ReadIndexStatus {
  req: Message;
  /** The commit index when the request arrived. */
  index: number;
  /** Nodes that acknowledged the heartbeat carrying this request's context. */
  acks: Map<number, boolean>;
}

/** Request contexts are byte strings; Go uses string(bytes) as map key, we use latin1. */
export function contextKey(context: Uint8Array | undefined): string {
  return context === undefined ? '' : Buffer.from(context.buffer, context.byteOffset, context.byteLength).toString('latin1');
}

export class ReadOnly {
  readonly option: ReadOnlyOption;
  /** Pending requests by context key; every key is also in readIndexQueue. */
  pendingReadIndex = new Map<string, ReadIndexStatus>();
  /** Keys in arrival order. */
  readIndexQueue: string[] = [];

  constructor(option: ReadOnlyOption) {
    this.option = option;
  }

  /** Queues read request `m` (its entries[0].data is the context) at commit index `index`. */
  addRequest(index: number, m: Message): void {
    const key = contextKey(m.entries[0]!.data);
    if (this.pendingReadIndex.has(key)) return;
    this.pendingReadIndex.set(key, { index, req: m, acks: new Map() });
    this.readIndexQueue.push(key);
  }

  /** Records `id`'s heartbeat ack for `context`; returns the acks so far (undefined if unknown). */
  recvAck(id: number, context: Uint8Array | undefined): Map<number, boolean> | undefined {
    const status = this.pendingReadIndex.get(contextKey(context));
    if (status === undefined) return undefined;
    status.acks.set(id, true);
    return status.acks;
  }

  /**
   * Dequeues every request up to and including the one whose context is m.context (acked by a
   * quorum, so all earlier ones are confirmed too). Empty if that context is not queued.
   */
  advance(m: Message): ReadIndexStatus[] {
    const ctx = contextKey(m.context);
    const statuses: ReadIndexStatus[] = [];
    let position = 0;
    let found = false;
    for (const key of this.readIndexQueue) {
      position++;
      const status = this.pendingReadIndex.get(key);
      if (status === undefined) throw new Error('cannot find corresponding read state from pending map');
      statuses.push(status);
      if (key === ctx) {
        found = true;
        break;
      }
    }
    if (!found) return [];
    this.readIndexQueue = this.readIndexQueue.slice(position);
    for (const status of statuses) this.pendingReadIndex.delete(contextKey(status.req.entries[0]!.data));
    return statuses;
  }

  /** The context of the newest pending request, or undefined. */
  lastPendingRequestCtx(): Uint8Array | undefined {
    const key = this.readIndexQueue[this.readIndexQueue.length - 1];
    if (key === undefined) return undefined;
    return this.pendingReadIndex.get(key)!.req.entries[0]!.data ?? new Uint8Array();
  }
}
