import { describeRootCause, rootSystemCode } from '../lib/errors.js';
import { describe, expect, it } from 'vitest';
import {
  checkSafeUnsigned,
  compactedError,
  corruptError,
  ErrorCode,
  isReplicaLogError,
  isSentinelError,
  ReplicaLogError,
  ReplicaLogRangeError,
  SentinelMessage,
  snapOutOfDateError,
  snapshotTemporarilyUnavailableError,
  unavailableError,
} from '../lib/errors.js';
import { validateConfChangeV2Untrusted, validateMessageUntrusted } from '../lib/validate.js';

describe('errors', () => {
  it.each([
    [compactedError(3), ErrorCode.Compacted, 'requested index is unavailable due to compaction'],
    [unavailableError(9), ErrorCode.Unavailable, 'requested entry at index is unavailable'],
    [snapOutOfDateError(2), ErrorCode.SnapOutOfDate, 'requested index is older than the existing snapshot'],
    [snapshotTemporarilyUnavailableError(), ErrorCode.SnapshotTemporarilyUnavailable, 'snapshot is temporarily unavailable'],
  ])('sentinel %# has etcd\'s exact message and its code', (error, code, message) => {
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe(code);
    expect(error.message).toBe(message);
    expect(SentinelMessage[code as keyof typeof SentinelMessage]).toBe(message);
    expect(isSentinelError(error)).toBe(true);
  });

  it('carries the index and path at fault', () => {
    expect(compactedError(3).index).toBe(3);
    const corrupt = corruptError('RAFT does not decode: /x/wal/0000000000001/RAFT', { path: '/x/wal/0000000000001/RAFT' });
    expect(corrupt.path).toBe('/x/wal/0000000000001/RAFT');
    expect(corrupt.message).toContain('0000000000001');
    expect(isSentinelError(corrupt)).toBe(false);
  });

  it('isReplicaLogError tells coded errors apart, optionally by code', () => {
    expect(isReplicaLogError(compactedError())).toBe(true);
    expect(isReplicaLogError(compactedError(), ErrorCode.Compacted)).toBe(true);
    expect(isReplicaLogError(compactedError(), ErrorCode.Unavailable)).toBe(false);
    expect(isReplicaLogError(new Error('plain'))).toBe(false);
    expect(isReplicaLogError(Object.assign(new Error('lookalike'), { code: 'ERR_COMPACTED' }))).toBe(false);
    expect(isReplicaLogError(new ReplicaLogRangeError('x'), ErrorCode.OutOfRange)).toBe(true);
  });

  it.each([
    [0, 'ok'],
    [Number.MAX_SAFE_INTEGER, 'ok'],
    [Number.MAX_SAFE_INTEGER + 1, ErrorCode.OutOfRange],
    [-1, ErrorCode.OutOfRange],
    [1.5, ErrorCode.OutOfRange],
    [Number.POSITIVE_INFINITY, ErrorCode.OutOfRange],
    [Number.NaN, ErrorCode.OutOfRange],
    ['1', ErrorCode.InvalidArgument],
    [10n, ErrorCode.InvalidArgument],
  ])('checkSafeUnsigned(%s) → %s', (value, expected) => {
    let code = 'ok';
    try {
      checkSafeUnsigned(value, 'value');
    } catch (error) {
      code = (error as ReplicaLogError).code;
      if (code === ErrorCode.OutOfRange) expect(error).toBeInstanceOf(RangeError);
    }
    expect(code).toBe(expected);
  });

  it('message and conf change validation names the field at fault', () => {
    expect(() => validateMessageUntrusted({ type: 3, to: 1, from: 2, term: -1 })).toThrow(/message\.term/);
    expect(() => validateConfChangeV2Untrusted({ transition: 0, changes: [{ type: 9, nodeId: 1 }] })).toThrow(/changes\[0\]\.type/);
  });
});

describe('describeRootCause (issue 17: errors name the real cause)', () => {
  it.each([
    ['a LevelDB wrapper around a read-only file system', new Error('Database failed to open', { cause: new Error('IO error: /x/LOCK: Read-only file system') }), 'EROFS: IO error: /x/LOCK: Read-only file system'],
    ['an errno error', Object.assign(new Error('EACCES: permission denied, open /x'), { code: 'EACCES' }), 'EACCES: permission denied, open /x'],
    ['an errno error whose message does not start with its code', Object.assign(new Error('permission denied'), { code: 'EACCES' }), 'EACCES: permission denied'],
    ['a full disk two levels down', new Error('a', { cause: new Error('b', { cause: new Error('write failed: No space left on device') }) }), 'ENOSPC: write failed: No space left on device'],
    ['anything else', new Error('plain'), 'plain'],
  ])('%s', (_name, error, expected) => {
    expect(describeRootCause(error)).toBe(expected);
    // rootSystemCode is the code describeRootCause leads with (none for anything else).
    expect(rootSystemCode(error)).toBe(/^(E[A-Z]+):/.exec(expected)?.[1]);
  });

  it('open() of a store whose kv/ is a file says ENOTDIR in its one-line message', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { ReplicaLogStore } = await import('../lib/replica-log-store.js');
    const dir = mkdtempSync(join(tmpdir(), 'replicalog-cause-'));
    try {
      writeFileSync(join(dir, 'kv'), 'not a directory');
      const error = await ReplicaLogStore.open({ dir }).then(
        () => undefined,
        (caught: { code?: string; message: string }) => caught,
      );
      expect(error?.code).toBe('ERR_IO');
      expect(error?.message).toMatch(/^cannot open .*kv: (ENOTDIR|EEXIST|IO error)/);
      expect(error?.message).not.toMatch(/: Database failed to open$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
