// Arbitrary protobuf wire bytes shaped by a message's descriptor: every field, at any depth, with
// values from its type's edges and from what Istio sends, plus unknown fields; what a peer can send
// that still decodes, so a fuzz property reaches the translation rather than the decoder's refusals.

import { type DescField, type DescMessage, ScalarType } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import fc from 'fast-check';

type Write = (w: BinaryWriter) => void;

/** Strings a translation looks at: names, uids, SPIFFE ids, hostnames, and their near misses. */
const STRINGS = ['', 'ns1', 'default', 'reviews', 'c//Pod/ns1/a', 'Kubernetes//Pod/ns1/a', 'cluster.local', 'spiffe://cluster.local/ns/ns1/sa/a', 'spiffe://td/ns/x', 'reviews.ns1.svc.cluster.local', '*', '*.example.com', 'a*', '10.0.0.1', 'ns1/p', 'ns1/reviews.ns1.svc.cluster.local', 'istio-system/ztunnel', 'topology.kubernetes.io/zone', 'x\0y', '..', 'é'];
const text = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...STRINGS) }, fc.string({ minLength: 1, maxLength: 24 }), fc.string({ unit: 'binary', maxLength: 8 }));
// Addresses are bytes here: mostly 4 or 16 of them, so that a message gets past its address checks.
const bytes = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 4, maxLength: 4 }) },
  { weight: 2, arbitrary: fc.uint8Array({ minLength: 16, maxLength: 16 }) },
  fc.constantFrom(Uint8Array.of(10, 0, 0, 1), Uint8Array.of(0, 0, 0, 0), new Uint8Array(16), Uint8Array.from([...new Array<number>(10).fill(0), 255, 255, 10, 0, 0, 1])),
  fc.uint8Array({ maxLength: 20 }),
);
// Ports and prefix lengths at their edges, mostly.
const u32 = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(0, 1, 8, 24, 32, 33, 64, 80, 128, 129, 443, 15008, 65535, 65536, 2 ** 31, 2 ** 32 - 1) }, fc.nat({ max: 2 ** 32 - 1 }));
const i32 = fc.oneof(fc.constantFrom(0, -1, 1, 2 ** 31 - 1, -(2 ** 31)), fc.integer());
const i64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

function scalar(type: ScalarType): fc.Arbitrary<[WireType, Write]> {
  const v = (wire: WireType, arb: fc.Arbitrary<unknown>, put: (w: BinaryWriter, value: never) => void): fc.Arbitrary<[WireType, Write]> =>
    arb.map((value) => [wire, (w: BinaryWriter) => put(w, value as never)]);
  switch (type) {
    case ScalarType.STRING:
      return v(WireType.LengthDelimited, text, (w, s: string) => w.string(s));
    case ScalarType.BYTES:
      return v(WireType.LengthDelimited, bytes, (w, b: Uint8Array) => w.bytes(b));
    case ScalarType.BOOL:
      return v(WireType.Varint, fc.boolean(), (w, b: boolean) => w.bool(b));
    case ScalarType.UINT32:
      return v(WireType.Varint, u32, (w, n: number) => w.uint32(n));
    case ScalarType.INT32:
      return v(WireType.Varint, i32, (w, n: number) => w.int32(n));
    case ScalarType.SINT32:
      return v(WireType.Varint, i32, (w, n: number) => w.sint32(n));
    case ScalarType.FIXED32:
      return v(WireType.Bit32, u32, (w, n: number) => w.fixed32(n));
    case ScalarType.SFIXED32:
      return v(WireType.Bit32, i32, (w, n: number) => w.sfixed32(n));
    case ScalarType.INT64:
      return v(WireType.Varint, i64, (w, n: bigint) => w.int64(n));
    case ScalarType.SINT64:
      return v(WireType.Varint, i64, (w, n: bigint) => w.sint64(n));
    case ScalarType.SFIXED64:
      return v(WireType.Bit64, i64, (w, n: bigint) => w.sfixed64(n));
    case ScalarType.UINT64:
      return v(WireType.Varint, u64, (w, n: bigint) => w.uint64(n));
    case ScalarType.FIXED64:
      return v(WireType.Bit64, u64, (w, n: bigint) => w.fixed64(n));
    case ScalarType.FLOAT:
      return v(WireType.Bit32, fc.float(), (w, n: number) => w.float(n));
    case ScalarType.DOUBLE:
      return v(WireType.Bit64, fc.double(), (w, n: number) => w.double(n));
  }
}

/** Known numbers mostly, and numbers no version of the enum has (proto3 keeps them as open enums). */
const enumValue = (numbers: readonly number[]): fc.Arbitrary<[WireType, Write]> =>
  fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...numbers) }, { weight: 1, arbitrary: i32 }).map((n) => [WireType.Varint, (w: BinaryWriter) => w.int32(n)]);

const nested = (write: Write): Write => (w) => {
  w.fork();
  write(w);
  w.join();
};

/** One value of a field (an element, for repeated fields), as a wire type and its writer. */
function element(field: DescField, depth: number): fc.Arbitrary<[WireType, Write]> {
  switch (field.fieldKind) {
    case 'scalar':
      return scalar(field.scalar);
    case 'enum':
      return enumValue(field.enum.values.map((e) => e.number));
    case 'message':
      return message(field.message, depth + 1).map((write) => [WireType.LengthDelimited, nested(write)]);
    case 'list':
      if (field.listKind === 'scalar') return scalar(field.scalar);
      if (field.listKind === 'enum') return enumValue(field.enum.values.map((e) => e.number));
      return message(field.message, depth + 1).map((write) => [WireType.LengthDelimited, nested(write)]);
    case 'map': {
      const value =
        field.mapKind === 'scalar' ? scalar(field.scalar) : field.mapKind === 'enum' ? enumValue(field.enum.values.map((e) => e.number)) : message(field.message, depth + 1).map((write): [WireType, Write] => [WireType.LengthDelimited, nested(write)]);
      return fc.tuple(scalar(field.mapKey), value).map(([[kt, k], [vt, v]]) => [
        WireType.LengthDelimited,
        nested((w) => {
          k(w.tag(1, kt));
          v(w.tag(2, vt));
        }),
      ]);
    }
  }
}

/** Past this depth a message is written empty, so recursive types stay finite (Istio's deepest field, Authorization → groups → rules → matches → source_ips, is at 4). */
const MAX_DEPTH = 6;

/** The fields of a message as wire bytes (without its own length); unknown fields sometimes mixed in. */
export function message(desc: DescMessage, depth = 0): fc.Arbitrary<Write> {
  if (depth >= MAX_DEPTH) return fc.constant(() => {});
  const fields = desc.fields.map((field) => {
    // A singular field is there four times in five: a translation refuses most messages lacking one.
    const many = field.fieldKind === 'list' || field.fieldKind === 'map';
    const values = many ? fc.array(element(field, depth), { maxLength: 3 }) : fc.option(element(field, depth), { freq: 5 }).map((v) => (v ? [v] : []));
    return values.map((list) => list.map(([wire, write]): Write => (w) => write(w.tag(field.number, wire))));
  });
  const unknown = fc.array(fc.tuple(fc.integer({ min: 1000, max: 2000 }), fc.uint8Array({ maxLength: 6 })), { maxLength: 1 }).map((list) => list.map(([no, b]): Write => (w) => w.tag(no, WireType.LengthDelimited).bytes(b)));
  return fc.tuple(fc.tuple(...fields), unknown).map(([perField, extra]) => (w: BinaryWriter) => {
    for (const write of [...perField.flat(), ...extra]) write(w);
  });
}

/** Encoded bytes of an arbitrary message of `desc` that a conforming decoder accepts. */
export function messageBytes(desc: DescMessage): fc.Arbitrary<Uint8Array> {
  return message(desc).map((write) => {
    const w = new BinaryWriter();
    write(w);
    return w.finish();
  });
}
