// A CONNECT the server refuses unprocessed (RST_STREAM REFUSED_STREAM before its answer: a draining
// agent's answer to a stream that crossed its GOAWAY during an upgrade, or a server at its pending cap)
// is safe to send again (RFC 9113 §8.7). The pool sends it again on another connection, and the pod's
// socket the engine carried comes through untouched: its tunnel works and ends with a clean FIN.
// Without the retry the client's connection failed; without the engine leaving the socket alone it ended
// in a reset.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { after, before, it } from 'node:test';
import { spiffeId } from '../../agent/state/model.js';
import { EngineHost } from '../../agent/tunnel/hbone/engine-host.js';
import type { HboneOpenRequest } from '../../agent/tunnel/hbone/open-request.js';
import { HbonePool } from '../../agent/tunnel/hbone/pool.js';
import { type HboneInboundDecision, HboneServer } from '../../agent/tunnel/hbone/server.js';
import { type TestEcho, type TestTrust, connectToAuthority, openTrust, podConnection, startEcho } from '../fixtures/hbone/mesh.js';

const TD = 'cluster.local';
const PRODUCTPAGE = spiffeId(TD, 'default', 'productpage');
const REVIEWS = spiffeId(TD, 'default', 'reviews');
const REVIEWS_IP = '127.0.0.2';
const CLIENT_IP = '127.0.0.10';

let trust: TestTrust;
let echo: TestEcho;
let host: EngineHost;
let server: HboneServer;
let port: number;
let pool: HbonePool;
let handled = 0;
let releaseHeld: (() => void) | undefined;

before(async () => {
  trust = await openTrust(TD, [PRODUCTPAGE, REVIEWS]);
  echo = await startEcho(REVIEWS_IP);
  // One CONNECT may wait for its answer per connection: the next one on it is refused unprocessed.
  host = EngineHost.start({}, { maxPendingConnects: 1 });
  server = new HboneServer({
    certificates: trust.certificates,
    identityForAddress: (ip) => (ip === REVIEWS_IP ? REVIEWS : undefined),
    host,
    handler: (request) => {
      // The first CONNECT is held unanswered, as a slow admission would hold it.
      if (handled++ === 0) return new Promise<HboneInboundDecision>((resolve) => (releaseHeld = () => void connectToAuthority(request).then(resolve)));
      return connectToAuthority(request);
    },
  });
  ({ port } = await server.listen(0, REVIEWS_IP));
  pool = new HbonePool({ certificates: trust.certificates });
});

after(async () => {
  releaseHeld?.();
  await pool?.close(500);
  await server?.close(500);
  host?.close();
  await echo?.close();
  await trust?.close();
});

const request = (): HboneOpenRequest => ({
  source: { identity: PRODUCTPAGE, ip: CLIENT_IP },
  bindSource: true,
  destination: { ip: REVIEWS_IP, port },
  expectedIdentities: [REVIEWS],
  authority: { ip: REVIEWS_IP, port: echo.port },
});

it('a CONNECT refused unprocessed goes again on another connection, and the carried socket ends cleanly', { timeout: 30_000 }, async () => {
  const held = pool.open(request());
  while (handled === 0) await new Promise((resolve) => setImmediate(resolve));
  const { accepted, pod, close } = await podConnection();
  const podEvents: string[] = [];
  pod.on('error', (err: NodeJS.ErrnoException) => podEvents.push(`error ${err.code}`));
  try {
    const carried = await pool.carry(request(), accepted);
    if (!carried.ok) assert.fail(`the refused CONNECT was not sent again: ${carried.error.reason}: ${carried.error.message}`);
    assert.equal(handled, 2, 'the second CONNECT reached the server on a new connection');
    const reply: Buffer[] = [];
    pod.on('data', (chunk: Buffer) => reply.push(chunk));
    const podEnded = once(pod, 'end');
    pod.end('hello through the retry');
    await podEnded;
    assert.equal(Buffer.concat(reply).toString(), 'hello through the retry');
    await carried.value.ended;
    accepted.destroy();
    await once(pod, 'close');
    assert.deepEqual(podEvents, [], 'the pod saw a clean end, not a reset');
  } finally {
    pod.destroy();
    accepted.destroy();
    await close();
  }
  releaseHeld?.();
  const first = await held;
  assert.ok(first.ok, 'the held CONNECT is answered once released');
  first.value.destroy();
});
