// The CA unreachable, as the CA's host sees it: while istiod refuses connections, the agent dials it
// only when the certificate manager retries (its backoff), not on grpc-js's own reconnect loop, so a
// cluster of agents cut off together does not hammer a recovering istiod once a second each.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkloadCertificateManager } from '../../agent/identity/certificate-manager.js';
import { IstioCaClient } from '../../agent/identity/istio-ca-client.js';
import { spiffeId } from '../../agent/state/model.js';
import { ISTIOD_NAME, type IstiodTls, makeIstiodTls } from '../fixtures/istiod/tls.js';

const PRODUCTPAGE = spiffeId('cluster.local', 'bookinfo', 'productpage');

describe('an unreachable CA', () => {
  let tls: IstiodTls;
  before(async () => (tls = await makeIstiodTls()));
  after(() => rm(tls.dir, { recursive: true, force: true }));

  it("is dialled once per retry of the certificate manager, on the manager's backoff", async () => {
    // An istiod whose pods are gone: every connection is cut before TLS. Each accept is one dial.
    const dials: number[] = [];
    const refusing = createServer((socket) => {
      dials.push(Date.now());
      socket.destroy();
    });
    refusing.listen(0, '127.0.0.1');
    await once(refusing, 'listening');
    const tokenFile = join(tls.dir, 'token');
    await writeFile(tokenFile, 'a-token');
    const client = new IstioCaClient({ address: `127.0.0.1:${(refusing.address() as AddressInfo).port}`, rootCertFile: tls.rootCertFile, tokenFile, tlsServerName: ISTIOD_NAME });
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
    // An attempt dials, is cut, fails; grpc-js may dial once more within a few ms. Nothing else may dial.
    const betweenAttempts = dials.filter((at) => !failures.some((failedAt) => at >= failedAt - 200 && at <= failedAt + 50));
    assert.ok(dials.length <= 2 * failures.length, `the CA was dialled ${dials.length} times for ${failures.length} attempts (at ${offsets.join(', ')} ms)`);
    assert.deepEqual(betweenAttempts, [], `the CA was dialled between the manager's attempts (at ${offsets.join(', ')} ms)`);
  });
});
