import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  encodeFrameHeader,
  FrameDecoder,
  FrameKind,
  TransportError,
  TransportErrorCode,
} from '../../lib/transport/framing.js';
import type { Frame } from '../../lib/transport/framing.js';
import { decodeHello, decodeStreamHeader, encodeHello, encodeStreamHeader } from '../../lib/transport/wire.js';

function frames(...list: [FrameKind, number[] | string][]): { encoded: Buffer; expected: { kind: FrameKind; payload: Buffer }[] } {
  const expected = list.map(([kind, payload]) => ({ kind, payload: Buffer.from(payload as never) }));
  return { encoded: Buffer.concat(expected.map((frame) => encodeFrame(frame.kind, frame.payload))), expected };
}

function plain(decoded: Frame[]): { kind: FrameKind; payload: Buffer }[] {
  return decoded.map((frame) => ({ kind: frame.kind, payload: Buffer.from(frame.payload) }));
}

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(TransportError);
    return (error as TransportError).code;
  }
  return undefined;
}

describe('frame layout', () => {
  it('is a 4-byte big-endian length (kind + payload), the kind byte, then the payload', () => {
    expect([...encodeFrame(FrameKind.Message, Buffer.from([0xaa, 0xbb]))]).toEqual([0, 0, 0, 3, 4, 0xaa, 0xbb]);
    expect([...encodeFrame(FrameKind.HelloAccept)]).toEqual([0, 0, 0, 1, 2]);
    expect([...encodeFrameHeader(FrameKind.StreamChunk, 0x01020304)]).toEqual([1, 2, 3, 5, 6]);
    expect(DEFAULT_MAX_FRAME_BYTES).toBe(64 * 1024 * 1024);
  });
});

describe('FrameDecoder', () => {
  const sample = frames(
    [FrameKind.Hello, 'hello'],
    [FrameKind.Message, []],
    [FrameKind.StreamChunk, Array.from({ length: 300 }, (_, i) => i & 0xff)],
    [FrameKind.StreamEnd, [0, 0, 0, 0, 0, 0, 1, 44]],
  );

  it('decodes frames merged into one chunk', () => {
    const decoder = new FrameDecoder();
    expect(plain(decoder.push(sample.encoded))).toEqual(sample.expected);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('decodes frames split into 1-byte chunks', () => {
    const decoder = new FrameDecoder();
    const out: Frame[] = [];
    for (const byte of sample.encoded) out.push(...decoder.push(Buffer.from([byte])));
    expect(plain(out)).toEqual(sample.expected);
  });

  it('decodes any split of the stream into chunks (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: sample.encoded.length }), { maxLength: 12 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const decoder = new FrameDecoder();
        const out: Frame[] = [];
        let from = 0;
        for (const point of [...points, sample.encoded.length]) {
          out.push(...decoder.push(sample.encoded.subarray(from, point)));
          from = point;
        }
        expect(plain(out)).toEqual(sample.expected);
        expect(decoder.bufferedBytes).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('keeps an incomplete frame until the rest arrives', () => {
    const decoder = new FrameDecoder();
    const encoded = encodeFrame(FrameKind.Message, Buffer.alloc(10, 7));
    expect(decoder.push(encoded.subarray(0, 8))).toEqual([]);
    expect(decoder.bufferedBytes).toBe(8);
    expect(plain(decoder.push(encoded.subarray(8)))).toEqual([{ kind: FrameKind.Message, payload: Buffer.alloc(10, 7) }]);
  });

  it('refuses an oversize length as soon as the 4-byte prefix arrives, without buffering the body', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1024 });
    expect(decoder.push(Buffer.from([0, 0]))).toEqual([]);
    expect(codeOf(() => decoder.push(Buffer.from([0x04, 0x01])))).toBe(TransportErrorCode.FrameTooLarge);
    expect(decoder.bufferedBytes).toBe(0);
    // Poisoned: the byte stream has lost its framing.
    expect(codeOf(() => decoder.push(encodeFrame(FrameKind.Message)))).toBe(TransportErrorCode.FrameTooLarge);
  });

  it('accepts a frame of exactly the maximum size', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 101 });
    expect(decoder.push(encodeFrame(FrameKind.StreamChunk, Buffer.alloc(100)))).toHaveLength(1);
    expect(codeOf(() => new FrameDecoder({ maxFrameBytes: 101 }).push(encodeFrame(FrameKind.StreamChunk, Buffer.alloc(101))))).toBe(
      TransportErrorCode.FrameTooLarge,
    );
  });

  it('refuses garbage: a zero length, an unknown kind', () => {
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 0])))).toBe(TransportErrorCode.MalformedFrame);
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 1, 0])))).toBe(TransportErrorCode.MalformedFrame);
    expect(codeOf(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 2, 200, 1])))).toBe(TransportErrorCode.MalformedFrame);
    // "GET / HTTP/1.1": 0x47455420 is above the default maximum.
    expect(codeOf(() => new FrameDecoder().push(Buffer.from('GET / HTTP/1.1\r\n')))).toBe(TransportErrorCode.FrameTooLarge);
  });

  it('never throws anything but a TransportError on random bytes (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const decoder = new FrameDecoder({ maxFrameBytes: 4096 });
        try {
          for (const chunk of chunks) decoder.push(chunk);
        } catch (error) {
          expect(error).toBeInstanceOf(TransportError);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('rejects an invalid maximum', () => {
    expect(() => new FrameDecoder({ maxFrameBytes: 0 })).toThrow(RangeError);
  });
});

describe('control payloads', () => {
  it('round-trips Hello', () => {
    const hello = { version: 1, senderId: Number.MAX_SAFE_INTEGER, receiverId: 2, clusterId: 'clüster' };
    expect(decodeHello(encodeHello(hello))).toEqual(hello);
  });

  it('round-trips a stream header, absent and present snapshot data', () => {
    const header = {
      messageBytes: Buffer.from([8, 7, 16, 2]),
      snapshotDataLength: undefined,
      attachments: [{ index: 5, files: [{ name: 'MANIFEST', size: 0 }, { name: '1', size: 12345 }] }],
    };
    const decoded = decodeStreamHeader(encodeStreamHeader(header));
    expect({ ...decoded, messageBytes: Buffer.from(decoded.messageBytes) }).toEqual(header);
    expect(decodeStreamHeader(encodeStreamHeader({ ...header, snapshotDataLength: 0 })).snapshotDataLength).toBe(0);
  });

  it('refuses truncated and trailing bytes', () => {
    const bytes = encodeHello({ version: 1, senderId: 1, receiverId: 2, clusterId: 'c' });
    expect(codeOf(() => decodeHello(bytes.subarray(0, bytes.length - 1)))).toBe(TransportErrorCode.MalformedFrame);
    expect(codeOf(() => decodeHello(Buffer.concat([bytes, Buffer.from([0])])))).toBe(TransportErrorCode.MalformedFrame);
    const unsafe = Buffer.from(bytes);
    unsafe.fill(0xff, 1, 9);
    expect(codeOf(() => decodeHello(unsafe))).toBe(TransportErrorCode.MalformedFrame);
  });
});
