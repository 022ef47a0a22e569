/**
 * A strict pass over protobuf bytes before they are decoded: what etcd's gogo-generated
 * unmarshalers (raftpb/raft.pb.go) refuse, we refuse, and nothing that would come out changed.
 *
 * protobufjs alone is lenient where gogo is not: inside nested and repeated messages it turns an
 * unknown value of a closed enum into 0, it skips a known field sent with the wrong wire type
 * (returning the default), and it reads a bool from only the low 32 bits of its varint. This pass
 * walks the bytes with the schema and refuses (ERR_CORRUPT, naming the field):
 *   - a field number 0, wire types 6 and 7, a varint longer than 10 bytes (gogo: integer
 *     overflow), a length that runs past the end;
 *   - a known field whose wire type is not the one its type uses (repeated scalars: packed or not);
 *   - a closed-enum value the enum does not define, at any depth and in packed lists;
 *   - nesting deeper than MAX_DEPTH.
 *
 * Bools are read as Go reads them (GogoReader below, not protobufjs's bool): any varint of up to 10 bytes, true when
 * its low 64 bits are not 0. For raftpb that is gogo's loop (`v |= int(b&0x7F) << shift`, so
 * of a 10th byte only its lowest bit, bit 63, survives: a bool whose only set bit is bit 64 is
 * false). Gitaly's messages are decoded in Go by google.golang.org/protobuf, whose varint
 * reader refuses a 10th byte above 1: so do we, in the gitaly package, for every varint.
 *
 * Deliberately stricter than gogo (documented in the README): a 32-bit field whose varint does
 * not fit 32 bits is refused (gogo truncates it, which changes the value); groups (wire types 3
 * and 4, unused since proto2) are refused even as unknown fields; and, as before, protobufjs
 * refuses tags and lengths padded beyond 5 bytes and field numbers at or above 2^29.
 */
import protobuf from 'protobufjs';
import { corruptError } from './errors.js';

/** Nesting depth at which decoding (and encoding) stops: raftpb nests Message.responses. */
export const MAX_DEPTH = 100;

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

const SCALAR_WIRE_TYPES: Record<string, number> = {
  double: FIXED64,
  float: FIXED32,
  int32: VARINT,
  int64: VARINT,
  uint32: VARINT,
  uint64: VARINT,
  sint32: VARINT,
  sint64: VARINT,
  fixed32: FIXED32,
  fixed64: FIXED64,
  sfixed32: FIXED32,
  sfixed64: FIXED64,
  bool: VARINT,
  string: LENGTH_DELIMITED,
  bytes: LENGTH_DELIMITED,
};

const THIRTY_TWO_BIT = new Set(['int32', 'uint32', 'sint32']);

class Cursor {
  position: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
    readonly what: string,
    /** google.golang.org/protobuf's rule (gitaly): a 10-byte varint's last byte must be 0 or 1. */
    readonly refuseOverflowingTenthByte: boolean,
  ) {
    this.position = start;
  }

  /** A cursor over [start, end) of the same bytes, under the same rules. */
  sub(start: number, end: number): Cursor {
    return new Cursor(this.bytes, start, end, this.what, this.refuseOverflowingTenthByte);
  }

  fail(message: string): never {
    throw corruptError(`${this.what}: malformed bytes (${message} at byte ${this.position})`);
  }

  /** A varint as its low 64 bits split in two 32-bit halves, and its length in bytes. */
  varint(): { low: number; high: number; length: number } {
    let low = 0;
    let high = 0;
    for (let count = 0; count < 10; count++) {
      if (this.position >= this.end) this.fail('a varint runs past the end');
      const byte = this.bytes[this.position++]!;
      const bits = byte & 0x7f;
      if (count < 4) low |= bits << (7 * count);
      else if (count === 4) {
        low |= (bits & 0x0f) << 28;
        high |= bits >> 4;
      } else high |= bits << (7 * count - 32); // of the 10th byte (count 9) only bit 63 survives, as in Go
      if (count === 9 && bits > 1 && this.refuseOverflowingTenthByte) this.fail('a varint above 2^64 (10th byte above 1)');
      if ((byte & 0x80) === 0) return { low: low >>> 0, high: high >>> 0, length: count + 1 };
    }
    return this.fail('a varint longer than 10 bytes');
  }

  skip(count: number): void {
    if (count > this.end - this.position) this.fail(`${count} bytes announced, ${this.end - this.position} left`);
    this.position += count;
  }
}

function enumValues(enumType: protobuf.Enum): Set<number> {
  return new Set(Object.values(enumType.values));
}

const enumCache = new WeakMap<protobuf.Enum, Set<number>>();
function knownEnumValues(enumType: protobuf.Enum): Set<number> {
  let values = enumCache.get(enumType);
  if (values === undefined) {
    values = enumValues(enumType);
    enumCache.set(enumType, values);
  }
  return values;
}

/** int32 enum value of a varint (gogo casts the low 32 bits to int32). */
function enumValue(low: number): number {
  return low | 0;
}

function checkScalar(cursor: Cursor, field: protobuf.Field, name: string, value: { low: number; high: number; length: number }): void {
  // A bool is any varint (GogoReader reads it as Go does); varint() already refused more than 10 bytes.
  if (field.type === 'bool') return;
  if (THIRTY_TWO_BIT.has(field.type)) {
    // gogo would truncate to 32 bits (a changed value); int32's negative values are 10 bytes with all high bits set.
    const fitsUnsigned = value.high === 0;
    const negativeInt32 = field.type === 'int32' && value.high === 0xffffffff && value.low >= 0x80000000;
    if (!fitsUnsigned && !negativeInt32) cursor.fail(`${name}: a value that does not fit 32 bits`);
    return;
  }
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Enum) {
    if (value.high !== 0 && value.high !== 0xffffffff) cursor.fail(`${name}: an enum value that does not fit 32 bits`);
    const number = enumValue(value.low);
    if (!knownEnumValues(resolved).has(number)) throw corruptError(`${cursor.what}: ${name} has unknown value ${number}`);
  }
}

function expectedWireType(field: protobuf.Field): number {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return LENGTH_DELIMITED;
  if (resolved instanceof protobuf.Enum) return VARINT;
  const wireType = SCALAR_WIRE_TYPES[field.type];
  if (wireType === undefined) throw new Error(`wire-check: no wire type for ${field.type}`);
  return wireType;
}

function skipUnknown(cursor: Cursor, wireType: number): void {
  switch (wireType) {
    case VARINT:
      cursor.varint();
      return;
    case FIXED64:
      cursor.skip(8);
      return;
    case LENGTH_DELIMITED: {
      const length = cursor.varint();
      if (length.high !== 0 || length.low > 0x7fffffff) cursor.fail('a length above 2^31');
      cursor.skip(length.low);
      return;
    }
    case FIXED32:
      cursor.skip(4);
      return;
    default:
      cursor.fail(`wire type ${wireType} (groups are refused; 6 and 7 do not exist)`);
  }
}

function checkMessage(type: protobuf.Type, cursor: Cursor, depth: number): void {
  if (depth > MAX_DEPTH) throw corruptError(`${cursor.what}: nested deeper than ${MAX_DEPTH} levels`);
  while (cursor.position < cursor.end) {
    const tag = cursor.varint();
    if (tag.high !== 0 || tag.length > 5) cursor.fail('a tag longer than 5 bytes');
    const fieldNumber = tag.low >>> 3;
    const wireType = tag.low & 7;
    if (fieldNumber === 0) cursor.fail('field number 0');
    const field = type.fieldsById[fieldNumber];
    if (field === undefined) {
      skipUnknown(cursor, wireType);
      continue;
    }
    const name = `${type.name}.${field.name}`;
    const expected = expectedWireType(field);
    if (wireType !== expected) {
      // A repeated scalar may come packed (one length-delimited run of values).
      if (field.repeated && wireType === LENGTH_DELIMITED && expected !== LENGTH_DELIMITED) {
        const length = cursor.varint();
        if (length.high !== 0) cursor.fail(`${name}: a packed run too long`);
        const end = cursor.position + length.low;
        if (end > cursor.end) cursor.fail(`${name}: a packed run past the end`);
        const packed = cursor.sub(cursor.position, end);
        while (packed.position < end) {
          if (expected === VARINT) checkScalar(packed, field, name, packed.varint());
          else packed.skip(expected === FIXED64 ? 8 : 4);
        }
        cursor.position = end;
        continue;
      }
      cursor.fail(`${name}: wire type ${wireType}, expected ${expected}`);
    }
    if (expected === VARINT) {
      checkScalar(cursor, field, name, cursor.varint());
    } else if (expected === LENGTH_DELIMITED) {
      const length = cursor.varint();
      if (length.high !== 0 || length.low > 0x7fffffff) cursor.fail(`${name}: a length above 2^31`);
      const end = cursor.position + length.low;
      if (end > cursor.end) cursor.fail(`${name}: ${length.low} bytes announced, ${cursor.end - cursor.position} left`);
      if (field.resolvedType instanceof protobuf.Type) {
        checkMessage(field.resolvedType, cursor.sub(cursor.position, end), depth + 1);
      }
      cursor.position = end;
    } else {
      cursor.skip(expected === FIXED64 ? 8 : 4);
    }
  }
}

/** Refuses (ERR_CORRUPT) bytes that gogo would refuse or that protobufjs would decode to another value. */
export function checkWireStrict(type: protobuf.Type, bytes: Uint8Array, what: string): void {
  const gitaly = type.fullName.startsWith('.gitaly.');
  checkMessage(type, new Cursor(bytes, 0, bytes.length, what, gitaly), 1);
}

/**
 * A protobufjs Reader whose bool() is Go's: the varint accumulated into 64 bits (of a 10th byte
 * only its lowest bit, bit 63, counts), true when that is not 0. protobufjs's own bool() (8.x)
 * counts every bit of all 10 bytes, so a bool whose only set bits are above bit 63 would come
 * out true where Go reads false. Decode with it only after checkWireStrict, which refused
 * varints over 10 bytes.
 */
export class GogoReader extends protobuf.Reader {
  override bool(): boolean {
    let nonZero = false;
    for (let count = 0; count < 10; count++) {
      if (this.pos >= this.len) throw new RangeError(`a bool runs past the end at byte ${this.pos}`);
      const byte = this.buf[this.pos++]!;
      if ((byte & (count === 9 ? 0x01 : 0x7f)) !== 0) nonZero = true;
      if (byte < 0x80) return nonZero;
    }
    throw new RangeError(`a bool varint longer than 10 bytes at byte ${this.pos}`);
  }
}
