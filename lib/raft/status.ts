/** Port of etcd raft v3.6 status.go. */
import type { HardState } from '../types.js';
import type { Raft } from './raft.js';
import { raftStateToString, StateType } from './raft.js';
import type { Config as TrackerConfig, Progress } from './tracker.js';

/** The node's state without per-follower progress (cheap). */
export interface BasicStatus {
  id: number;
  /** HardState fields (Go embeds pb.HardState). */
  term: number;
  vote: number;
  commit: number;
  /** SoftState fields (Go embeds SoftState); raftState is e.g. "StateLeader". */
  lead: number;
  raftState: string;
  applied: number;
  leadTransferee: number;
  hardState: HardState;
}

export interface Status extends BasicStatus {
  /** Copies of every follower's progress; filled only on the leader (empty otherwise). */
  progress: Map<number, Progress>;
  /** A copy of the active configuration. */
  config: TrackerConfig;
}

export function getBasicStatus(raft: Raft): BasicStatus {
  const hardState = raft.hardState();
  const softState = raft.softState();
  return {
    id: raft.id,
    term: hardState.term,
    vote: hardState.vote,
    commit: hardState.commit,
    lead: softState.lead,
    raftState: raftStateToString(softState.raftState),
    applied: raft.raftLog.applied,
    leadTransferee: raft.leadTransferee,
    hardState,
  };
}

export function getStatus(raft: Raft): Status {
  const basic = getBasicStatus(raft);
  const progress = new Map<number, Progress>();
  if (raft.state === StateType.StateLeader) {
    raft.trk.visit((id, pr) => progress.set(id, pr.clone()));
  }
  const config = raft.trk.config.clone();
  // Go v3.6's Config.Clone drops autoLeave (a known quirk); a status should show it.
  config.autoLeave = raft.trk.config.autoLeave;
  return { ...basic, progress, config };
}

/** Go's Status.MarshalJSON (ids in hex, as Go prints them). */
export function statusToJson(status: Status): string {
  const progress = [...status.progress.entries()]
    .map(([id, pr]) => `"${id.toString(16)}":{"match":${pr.match},"next":${pr.next},"state":"${['StateProbe', 'StateReplicate', 'StateSnapshot'][pr.state]}"}`)
    .join(',');
  return (
    `{"id":"${status.id.toString(16)}","term":${status.term},"vote":"${status.vote.toString(16)}","commit":${status.commit},` +
    `"lead":"${status.lead.toString(16)}","raftState":"${status.raftState}","applied":${status.applied},` +
    `"progress":{${progress}},"leadtransferee":"${status.leadTransferee.toString(16)}"}`
  );
}
