// Property tests (fast-check, fuzz target xds-translate) of the xDS translation on whatever istiod, or
// whoever holds its connection, can send: any Address or Authorization that decodes, at any depth and
// with values from every field's edges, is translated to a record or refused with a reason, never a
// throw (agent/sources/xds/translate-*.ts); what is accepted has addresses, ports and CIDRs in range
// and builds a snapshot; and bytes that are
// cut, flipped or random either fail to decode (the NACK path) or translate the same way.

import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { test } from 'node:test';
import { type DescMessage, fromBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { AuthorizationSchema } from '../../agent/proto/istio/security/authorization_pb.js';
import { AddressSchema } from '../../agent/proto/istio/workload/workload_pb.js';
import type { Translated } from '../../agent/sources/xds/translated.js';
import { type XdsAddress, translateAddress } from '../../agent/sources/xds/translate-address.js';
import { type XdsAuthorization, translateAuthorization } from '../../agent/sources/xds/translate-authorization.js';
import { buildXdsSnapshot } from '../../agent/sources/xds/xds-snapshot.js';
import { fuzzTarget } from '../fuzz/property.js';
import { messageBytes } from '../fuzz/protobuf-arbitrary.js';

const fuzz = fuzzTarget('xds-translate');

/** A translation's outcome must be one of the two typed shapes, whatever went in. */
function checkTranslated<T>(result: Translated<T>, what: string): T | undefined {
  assert.equal(typeof result.ok, 'boolean', `${what}: not a Translated result`);
  if (result.ok) return result.value;
  assert.equal(typeof result.reason, 'string');
  assert.ok(result.reason.length > 0, `${what}: refused without a reason`);
  return undefined;
}

/** What is accepted is what the data path can use: addresses, ports and CIDRs within their ranges. */
function checkWellFormed(value: XdsAddress | XdsAuthorization): void {
  // Only the fields that hold CIDRs: names and keys may look like one ("0/0" is namespace 0, name 0).
  const cidrs = 'kind' in value ? [] : value.policy.spec.rules.flatMap((rule) => [
    ...rule.from.flatMap((f) => [...f.ipBlocks, ...f.notIpBlocks, ...f.remoteIpBlocks, ...f.notRemoteIpBlocks]),
    ...rule.when.filter((c) => /(^|\.)ip$/.test(c.key)).flatMap((c) => [...c.values, ...c.notValues]),
  ]);
  for (const c of cidrs) {
    const [ip = '', length = ''] = c.split('/');
    assert.ok(isIP(ip) !== 0 && /^\d+$/.test(length) && Number(length) <= (isIP(ip) === 4 ? 32 : 128), `accepted CIDR ${c}`);
  }
  if (!('kind' in value)) return;
  const inRange = (port: number, min: number): boolean => Number.isInteger(port) && port >= min && port <= 65535;
  if (value.kind === 'workload') {
    for (const ip of value.ips) assert.ok(isIP(ip) !== 0, `accepted workload address ${ip}`);
    for (const ports of value.services.values()) for (const [from, to] of ports) assert.ok(inRange(from, 1) && inRange(to, 0), `accepted port ${from}→${to}`);
  } else {
    for (const ip of value.vips) assert.ok(isIP(ip) !== 0, `accepted VIP ${ip}`);
    for (const p of value.ports) assert.ok(inRange(p.servicePort, 1) && inRange(p.targetPort, 0), `accepted port ${p.servicePort}→${p.targetPort}`);
  }
}

/** Resource names as the peer chooses them: colliding, empty, or anything. */
const name = fc.oneof(fc.constantFrom('a', 'b', 'ns1/reviews.ns1.svc.cluster.local', 'c//Pod/ns1/a', ''), fc.string({ maxLength: 12 }));

test('every Address and Authorization that decodes is translated or refused with a reason, and what is accepted builds a snapshot', async () => {
  await fuzz.assert(
    'decoded-messages',
    fc.property(
      fc.array(fc.tuple(name, messageBytes(AddressSchema)), { minLength: 1, maxLength: 4 }),
      fc.array(fc.tuple(name, messageBytes(AuthorizationSchema)), { maxLength: 3 }),
      (addressBytes, authorizationBytes) => {
        const addresses = new Map<string, XdsAddress>();
        const authorizations = new Map<string, XdsAuthorization>();
        for (const [key, bytes] of addressBytes) {
          const accepted = checkTranslated(translateAddress(fromBinary(AddressSchema, bytes)), `Address ${Buffer.from(bytes).toString('hex')}`);
          if (accepted) checkWellFormed(accepted);
          if (accepted) addresses.set(key, accepted);
        }
        for (const [key, bytes] of authorizationBytes) {
          const accepted = checkTranslated(translateAuthorization(fromBinary(AuthorizationSchema, bytes)), `Authorization ${Buffer.from(bytes).toString('hex')}`);
          if (accepted) checkWellFormed(accepted);
          if (accepted) authorizations.set(key, accepted);
        }
        const { snapshot } = buildXdsSnapshot(addresses, authorizations, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local', node: { name: 'node-1', ip: '10.0.0.1' } });
        assert.ok(snapshot.workloads.size <= addressBytes.length);
        assert.ok(snapshot.services.size <= addressBytes.length);
      },
    ),
    { numRuns: 600 },
  );
});

/** Cut, flipped, extended or wholly random bytes, from a valid message or from nothing. */
const mutated = (desc: DescMessage): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc.tuple(messageBytes(desc), fc.nat(), fc.nat({ max: 255 }), fc.constantFrom('flip', 'cut', 'insert')).map(([b, at, value, how]) => {
      const i = b.length === 0 ? 0 : at % b.length;
      if (how === 'cut') return b.subarray(0, i);
      if (how === 'insert') return Uint8Array.from([...b.subarray(0, i), value, ...b.subarray(i)]);
      const out = Uint8Array.from(b);
      if (out.length > 0) out[i] = out[i]! ^ (value || 1);
      return out;
    }),
    fc.uint8Array({ maxLength: 64 }),
  );

test('damaged bytes fail to decode or translate without a throw', async () => {
  await fuzz.assert(
    'damaged-bytes',
    fc.property(fc.boolean().chain((isAddress) => mutated(isAddress ? AddressSchema : AuthorizationSchema).map((b) => [isAddress, b] as const)), ([isAddress, bytes]) => {
      const decoded = decode(isAddress ? AddressSchema : AuthorizationSchema, bytes);
      if (decoded === undefined) return; // xds-source.ts refuses it as "cannot decode"
      const hex = Buffer.from(bytes).toString('hex');
      if (isAddress) checkTranslated(translateAddress(fromBinary(AddressSchema, bytes)), `Address ${hex}`);
      else checkTranslated(translateAuthorization(fromBinary(AuthorizationSchema, bytes)), `Authorization ${hex}`);
    }),
    { numRuns: 1500 },
  );
});

function decode(desc: DescMessage, bytes: Uint8Array): unknown {
  try {
    return fromBinary(desc, bytes);
  } catch {
    return undefined;
  }
}
