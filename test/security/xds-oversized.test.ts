// Oversized and malformed pushes from istiod, against the delta ADS test peer (real gRPC, TLS and Istio
// protobufs on loopback): a response over the agent's size limit, one whose resources do not decode,
// and one with no readable envelope. Each is refused before anything in it applies, the state in force
// stays, and the stream goes on (NACKed) or starts over (no nonce to NACK); a good push applies after.

import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { DeltaDiscoveryResponseSchema } from '../../agent/proto/envoy/service/discovery/v3/discovery_pb.js';
import { AddressSchema, TunnelProtocol } from '../../agent/proto/istio/workload/workload_pb.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, XdsSource } from '../../agent/sources/xds/xds-source.js';
import type { MeshSnapshot } from '../../agent/state/model.js';
import { WorkloadStore } from '../../agent/state/store.js';
import { FakeXdsServer, type ResourceBody } from '../fixtures/istiod/xds-server.js';
import { ISTIOD_NAME, type IstiodTls, makeIstiodTls } from '../fixtures/istiod/tls.js';

const LIMIT = 64 * 1024;
const NS = 'shop';

function workload(name: string, address: number): { name: string; version: string; body: ResourceBody } {
  const value = toBinary(
    AddressSchema,
    create(AddressSchema, {
      type: {
        case: 'workload',
        value: { uid: `Kubernetes//Pod/${NS}/${name}`, name, namespace: NS, addresses: [new Uint8Array([10, 1, address >> 8, address & 255])], node: 'node-a', tunnelProtocol: TunnelProtocol.HBONE },
      },
    }),
  );
  return { name: `Kubernetes//Pod/${NS}/${name}`, version: '1', body: { typeUrl: ADDRESS_TYPE_URL, value } };
}

const names = (s: MeshSnapshot | undefined): string[] => [...(s?.workloads.keys() ?? [])].sort();

function waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const poll = (): void => {
      const found = check();
      if (found !== undefined) return resolve(found);
      if (Date.now() > deadline) return reject(new Error(`${what}: not within ${timeoutMs} ms`));
      setTimeout(poll, 10);
    };
    poll();
  });
}

describe('xDS pushes that are too large or do not decode', () => {
  let tls: IstiodTls;
  let server: FakeXdsServer;
  let source: XdsSource;
  const store = new WorkloadStore();

  before(async () => {
    tls = await makeIstiodTls();
    server = new FakeXdsServer(tls);
    const address = await server.start();
    const tokenFile = join(tls.dir, 'istio-token');
    await writeFile(tokenFile, 'token');
    server.push(ADDRESS_TYPE_URL, [workload('web', 1)]);
    server.push(AUTHORIZATION_TYPE_URL, []);
    source = new XdsSource(
      {
        connection: { address, rootCertFile: tls.rootCertFile, tokenFile, clusterId: 'Kubernetes', tlsServerName: ISTIOD_NAME },
        node: { ip: '10.20.0.1', podName: 'ambit-x', podNamespace: 'istio-system', nodeName: 'node-a', metadata: {} },
        trustDomain: 'cluster.local',
        clusterDomain: 'cluster.local',
        backoff: { initialMs: 10, maxMs: 100 },
        maxResponseBytes: LIMIT,
      },
      store,
      pino({ level: 'silent' }),
    );
    await source.load();
  });

  after(async () => {
    source.close();
    await server.stop();
    await rm(tls.dir, { recursive: true, force: true });
  });

  it('NACKs a response over the size limit unread, keeps the state and the stream, and applies the next push', async () => {
    assert.deepEqual(names(store.current), [`Kubernetes//Pod/${NS}/web`]);
    const version = store.current!.version;
    const streams = server.streams.length;
    // About 2,000 workloads: far past the 64 KiB limit this source was given.
    const flood = Array.from({ length: 2000 }, (_, i) => workload(`flood-${i}`, 100 + i));
    const nonce = server.push(ADDRESS_TYPE_URL, flood);
    const nack = await server.answerTo(nonce);
    assert.match(nack.errorDetail?.message ?? '', new RegExp(`^the response is \\d+ bytes, over the agent's limit of ${LIMIT}; nothing in it was applied$`));
    assert.equal(store.current!.version, version, 'no new snapshot');
    assert.deepEqual(names(store.current), [`Kubernetes//Pod/${NS}/web`]);

    const next = server.push(ADDRESS_TYPE_URL, [workload('api', 2)], flood.map((w) => w.name));
    assert.equal((await server.answerTo(next)).errorDetail, undefined, 'ACK');
    await waitFor('the next push applied', () => (names(store.current).includes(`Kubernetes//Pod/${NS}/api`) ? true : undefined));
    assert.equal(server.streams.length, streams, 'the same stream carried on');
  });

  it('NACKs a response whose resources do not decode, by its nonce, and keeps the state', async () => {
    const before = names(store.current);
    const version = store.current!.version;
    // A valid envelope (type, nonce) around a resources field that ends mid-message.
    const envelope = toBinary(DeltaDiscoveryResponseSchema, create(DeltaDiscoveryResponseSchema, { typeUrl: ADDRESS_TYPE_URL, nonce: 'broken-1' }));
    server.pushRaw(new Uint8Array([...envelope, 0x12, 0x40, 0x0a, 0x03, 0x61]));
    const nack = await server.answerTo('broken-1');
    assert.match(nack.errorDetail?.message ?? '', /^the response does not decode \(.+\); nothing in it was applied$/);
    assert.equal(store.current!.version, version);
    assert.deepEqual(names(store.current), before);
  });

  it('starts a new stream after a response with no readable nonce, keeping the state until the resync', async () => {
    const before = names(store.current);
    const streams = server.streams.length;
    server.pushRaw(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
    await waitFor('a new stream', () => (server.streams.length > streams ? true : undefined));
    assert.deepEqual(names(store.current), before, 'the state in force did not change');
    const resync = await server.request((r, stream) => stream.id > streams && r.typeUrl === ADDRESS_TYPE_URL && r.responseNonce === '');
    assert.deepEqual(Object.keys(resync.request.initialResourceVersions).sort(), [`Kubernetes//Pod/${NS}/api`, `Kubernetes//Pod/${NS}/web`]);
  });
});
