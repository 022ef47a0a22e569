/**
 * validateConfig against etcd raft v3.6 Config.validate: the same values give the same
 * defaults and the same refusals (Go's messages, as RaftError ERR_CONFIG); the two options
 * JavaScript can omit where Go sees 0 are pinned separately, and so are values Go's types
 * (uint64 sizes and ids, int ticks) cannot hold.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../memory-storage.js';
import { NO_LIMIT } from '../types.js';
import { DEFAULT_MAX_INFLIGHT_MSGS, RaftError, validateConfig, type RaftConfig } from './raft.js';
import { ReadOnlyOption } from './read-only.js';
import { LOCAL_APPEND_THREAD, LOCAL_APPLY_THREAD } from './util.js';

const storage = new MemoryStorage();
/** Every option Go has, at the values a Go caller would pass (Go has no "omitted"). */
const goConfig = (extra: Partial<RaftConfig> = {}): RaftConfig => ({
  id: 1,
  electionTick: 10,
  heartbeatTick: 1,
  storage,
  maxSizePerMsg: 1024 * 1024,
  maxInflightMsgs: 256,
  ...extra,
});

function refusal(config: RaftConfig): string {
  try {
    validateConfig(config);
  } catch (error) {
    expect(error).toBeInstanceOf(RaftError);
    expect((error as RaftError).code).toBe('ERR_CONFIG');
    return (error as Error).message;
  }
  return 'accepted';
}

describe('validateConfig (Go Config.validate)', () => {
  it('refuses what Go refuses, with Go messages', () => {
    const cases: Array<[string, Partial<RaftConfig>, string]> = [
      ['id 0', { id: 0 }, 'cannot use none as id'],
      ['the append thread id', { id: LOCAL_APPEND_THREAD }, 'cannot use local target as id'],
      ['the apply thread id', { id: LOCAL_APPLY_THREAD }, 'cannot use local target as id'],
      ['heartbeat 0', { heartbeatTick: 0 }, 'heartbeat tick must be greater than 0'],
      ['election = heartbeat', { electionTick: 1, heartbeatTick: 1 }, 'election tick must be greater than heartbeat tick'],
      ['election < heartbeat', { electionTick: 2, heartbeatTick: 3 }, 'election tick must be greater than heartbeat tick'],
      ['no storage', { storage: undefined as unknown as MemoryStorage }, 'storage cannot be nil'],
      ['inflight msgs 0', { maxInflightMsgs: 0 }, 'max inflight messages must be greater than 0'],
      ['inflight bytes below the message size', { maxSizePerMsg: 2048, maxInflightBytes: 2047 }, 'max inflight bytes must be >= max message size'],
      ['lease reads without check quorum', { readOnlyOption: ReadOnlyOption.ReadOnlyLeaseBased }, 'CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased'],
    ];
    for (const [label, extra, message] of cases) expect(refusal(goConfig(extra)), label).toBe(message);
  });

  it('gives the defaults Go gives for the same values', () => {
    const cases: Array<[string, Partial<RaftConfig>, Partial<ReturnType<typeof validateConfig>>]> = [
      // MaxUncommittedEntriesSize 0: no limit.
      ['uncommitted 0', { maxUncommittedEntriesSize: 0 }, { maxUncommittedEntriesSize: NO_LIMIT }],
      ['uncommitted set', { maxUncommittedEntriesSize: 4096 }, { maxUncommittedEntriesSize: 4096 }],
      // MaxCommittedSizePerReady 0: MaxSizePerMsg.
      ['committed per ready 0', { maxSizePerMsg: 2048, maxCommittedSizePerReady: 0 }, { maxCommittedSizePerReady: 2048 }],
      ['committed per ready set', { maxSizePerMsg: 2048, maxCommittedSizePerReady: 100 }, { maxCommittedSizePerReady: 100 }],
      // MaxSizePerMsg 0 stays 0 (one entry per message), and so does the per-Ready size it defaults.
      ['message size 0', { maxSizePerMsg: 0 }, { maxSizePerMsg: 0, maxCommittedSizePerReady: 0 }],
      // MaxInflightBytes 0: no limit; equal to MaxSizePerMsg is allowed.
      ['inflight bytes 0', { maxInflightBytes: 0 }, { maxInflightBytes: NO_LIMIT }],
      ['inflight bytes = message size', { maxSizePerMsg: 2048, maxInflightBytes: 2048 }, { maxInflightBytes: 2048 }],
      // The booleans and the read-only option default to Go's zero values.
      [
        'zero values',
        {},
        {
          applied: 0,
          checkQuorum: false,
          preVote: false,
          readOnlyOption: ReadOnlyOption.ReadOnlySafe,
          disableProposalForwarding: false,
          disableConfChangeValidation: false,
          stepDownOnRemoval: false,
        },
      ],
      ['lease reads with check quorum', { readOnlyOption: ReadOnlyOption.ReadOnlyLeaseBased, checkQuorum: true }, { readOnlyOption: ReadOnlyOption.ReadOnlyLeaseBased }],
    ];
    for (const [label, extra, want] of cases) expect(validateConfig(goConfig(extra)), label).toMatchObject(want);
  });

  it('where JavaScript omits what Go sees as 0: no message limit, 256 inflight messages', () => {
    const resolved = validateConfig({ id: 1, electionTick: 10, heartbeatTick: 1, storage });
    expect(resolved.maxSizePerMsg).toBe(NO_LIMIT);
    expect(resolved.maxCommittedSizePerReady).toBe(NO_LIMIT);
    expect(resolved.maxInflightMsgs).toBe(DEFAULT_MAX_INFLIGHT_MSGS);
    expect(DEFAULT_MAX_INFLIGHT_MSGS).toBe(256);
    expect(resolved.maxInflightBytes).toBe(NO_LIMIT);
    expect(resolved.maxUncommittedEntriesSize).toBe(NO_LIMIT);
  });

  it('refuses values Go types cannot hold', () => {
    const cases: Array<[Partial<RaftConfig>, string]> = [
      [{ id: -1 }, 'id must be a non-negative integer (got -1)'],
      [{ id: 1.5 }, 'id must be a non-negative integer (got 1.5)'],
      [{ id: 2 ** 53 }, `id must be a non-negative integer (got ${2 ** 53})`],
      [{ heartbeatTick: 0.5 }, 'heartbeatTick must be a non-negative integer (got 0.5)'],
      [{ electionTick: Number.NaN }, 'electionTick must be a non-negative integer (got NaN)'],
      [{ electionTick: Number.POSITIVE_INFINITY }, 'electionTick must be a non-negative integer (got Infinity)'],
      [{ applied: -3 }, 'applied must be a non-negative integer (got -3)'],
      [{ maxSizePerMsg: -1 }, 'maxSizePerMsg must be a non-negative integer or NO_LIMIT (got -1)'],
      [{ maxCommittedSizePerReady: 1.25 }, 'maxCommittedSizePerReady must be a non-negative integer or NO_LIMIT (got 1.25)'],
      [{ maxUncommittedEntriesSize: Number.NaN }, 'maxUncommittedEntriesSize must be a non-negative integer or NO_LIMIT (got NaN)'],
      [{ maxInflightMsgs: Number.POSITIVE_INFINITY }, 'maxInflightMsgs must be a non-negative integer (got Infinity)'],
      [{ maxInflightBytes: -100 }, 'maxInflightBytes must be a non-negative integer or NO_LIMIT (got -100)'],
      [{ maxSizePerMsg: '10' as unknown as number }, 'maxSizePerMsg must be a non-negative integer or NO_LIMIT (got 10)'],
    ];
    for (const [extra, message] of cases) expect(refusal(goConfig(extra)), JSON.stringify(extra)).toBe(message);
    // NO_LIMIT is a size, not a count.
    expect(refusal(goConfig({ maxSizePerMsg: NO_LIMIT, maxInflightBytes: NO_LIMIT, maxUncommittedEntriesSize: NO_LIMIT }))).toBe('accepted');
  });
});
