// istiod unreachable, as istiod's host sees it: while it refuses connections, the agent dials it only
// when the certificate manager or the xDS stream retries (their backoff), not on grpc-js's own
// reconnect loop, so a cluster of agents cut off together does not hammer a recovering istiod once a
// second each.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, type Server, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkloadCertificateManager } from '../../agent/identity/certificate-manager.js';
import { IstioCaClient } from '../../agent/identity/istio-ca-client.js';
import type { IstiodConnectionOptions } from '../../agent/identity/istiod-channel.js';
import { DeltaAdsClient } from '../../agent/sources/xds/ads-client.js';
import { xdsNode } from '../../agent/sources/xds/node.js';
import { spiffeId } from '../../agent/state/model.js';
import { createLogger } from '../../agent/telemetry/log.js';
import { ISTIOD_NAME, type IstiodTls, makeIstiodTls } from '../fixtures/istiod/tls.js';

const PRODUCTPAGE = spiffeId('cluster.local', 'bookinfo', 'productpage');

/** An istiod whose pods are gone: every connection is cut before TLS. Each accept is one dial. */
async function refusingIstiod(tls: IstiodTls): Promise<{ dials: number[]; refusing: Server; connection: IstiodConnectionOptions }> {
  const dials: number[] = [];
  const refusing = createServer((socket) => {
    dials.push(Date.now());
    socket.destroy();
  });
  refusing.listen(0, '127.0.0.1');
  await once(refusing, 'listening');
  const tokenFile = join(tls.dir, 'token');
  await writeFile(tokenFile, 'a-token');
  return { dials, refusing, connection: { address: `127.0.0.1:${(refusing.address() as AddressInfo).port}`, rootCertFile: tls.rootCertFile, tokenFile, tlsServerName: ISTIOD_NAME } };
}

/** Dials outside the windows of the attempts (an attempt dials, is cut, fails; grpc-js may dial once more within a few ms). */
const dialsBetween = (dials: readonly number[], failures: readonly number[]): number[] => dials.filter((at) => !failures.some((failedAt) => at >= failedAt - 200 && at <= failedAt + 50));

describe('an unreachable istiod', () => {
  let tls: IstiodTls;
  before(async () => (tls = await makeIstiodTls()));
  after(() => rm(tls.dir, { recursive: true, force: true }));

  it("is dialled once per retry of the certificate manager, on the manager's backoff", async () => {
    const { dials, refusing, connection } = await refusingIstiod(tls);
    const client = new IstioCaClient(connection);
    const manager = new WorkloadCertificateManager({ caClient: client, retry: { initialMs: 400, maxMs: 10_000, jitter: 0 } });
    const failures: number[] = [];
    manager.subscribe((event) => {
      if (event.type === 'failed') failures.push(Date.now());
    });
    const started = Date.now();
    try {
      void manager.fetch(PRODUCTPAGE);
      // Attempts at 0, 0.4, 1.2 and 2.8 s; the window ends before the fifth (6 s).
      await new Promise((resolve) => setTimeout(resolve, 4_500));
    } finally {
      manager.close();
      client.close();
      refusing.close();
    }
    const offsets = dials.map((at) => at - started);
    assert.equal(failures.length, 4, `the manager made ${failures.length} attempts in 4.5 s, not 4 (backoff 0.4, 0.8, 1.6 s)`);
    const betweenAttempts = dialsBetween(dials, failures);
    assert.ok(dials.length <= 2 * failures.length, `the CA was dialled ${dials.length} times for ${failures.length} attempts (at ${offsets.join(', ')} ms)`);
    assert.deepEqual(betweenAttempts, [], `the CA was dialled between the manager's attempts (at ${offsets.join(', ')} ms)`);
  });

  it("is dialled once per reconnect of the xDS stream, on the stream's backoff", async () => {
    const { dials, refusing, connection } = await refusingIstiod(tls);
    const ads = new DeltaAdsClient({ connection, node: xdsNode({ ip: '10.0.0.1', podName: 'ztunnel-n1', podNamespace: 'istio-system', nodeName: 'n1' }), handlers: new Map(), backoff: { initialMs: 800, maxMs: 10_000 }, log: createLogger('fatal') });
    const failures: number[] = [];
    ads.subscribe((event) => {
      if (event.type === 'disconnected') failures.push(Date.now());
    });
    const started = Date.now();
    try {
      ads.start();
      await new Promise((resolve) => setTimeout(resolve, 4_500));
    } finally {
      ads.close();
      refusing.close();
    }
    const offsets = dials.map((at) => at - started);
    assert.ok(failures.length >= 3 && failures.length <= 6, `the stream was tried ${failures.length} times in 4.5 s (backoff from 0.8 s, equal jitter)`);
    assert.ok(dials.length <= 2 * failures.length, `istiod was dialled ${dials.length} times for ${failures.length} streams (at ${offsets.join(', ')} ms)`);
    assert.deepEqual(dialsBetween(dials, failures), [], `istiod was dialled between the stream's reconnects (at ${offsets.join(', ')} ms)`);
  });
});
