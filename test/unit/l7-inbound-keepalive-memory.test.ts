// A kept-alive connection into the proxy's HTTP/1.1 server holds nothing of the requests it finished.
// The server tracked a connection between requests (for a drain to close it) with a 'close' listener
// added at the end of each request: on a long-lived connection (a tunnel from another node's agent,
// kept for minutes) each listener, and the request its closure held, stayed until the connection
// closed. The destination agent of the L7 bench grew by about 11 KB a request, 400 MiB in 20 s at
// 1000 requests/s. Measured here the way a leak shows: what a full collection cannot take back.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { DEFAULT_HTTP_SERVER_LIMITS, http1Server } from '../../agent/l7/proxy/http-servers.js';

const REQUESTS = 2000;
/** Old-generation growth per finished request a full collection leaves: 0.00 KB here, 2.1 KB with the leak (11 KB in an agent, whose requests hold more). */
const MAX_RETAINED_KB_PER_REQUEST = 1;

test('a kept-alive connection that a drain would close retains nothing of its finished requests', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  // 'close': the policy for tunnels from other nodes' agents, whose idle connections a drain closes.
  const server = http1Server(DEFAULT_HTTP_SERVER_LIMITS, () => 'close', (req, res) => {
    req.resume();
    req.once('end', () => res.end(Buffer.alloc(1024)));
  });
  // The proxy feeds its servers connections; a listener here stands in for the tunnel that does.
  const front = net.createServer((socket) => server.emit('connection', socket));
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  const { port } = front.address() as AddressInfo;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const post = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/item', agent }, (res) => {
        res.resume();
        res.once('end', resolve);
      });
      req.once('error', reject);
      req.end(Buffer.alloc(1024));
    });
  const retained = (): number => {
    gc();
    return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;
  };
  try {
    for (let i = 0; i < 300; i++) await post();
    const before = retained();
    for (let i = 0; i < REQUESTS; i++) await post();
    const perRequestKb = (retained() - before) / 1024 / REQUESTS;
    assert.ok(perRequestKb < MAX_RETAINED_KB_PER_REQUEST, `a full collection left ${perRequestKb.toFixed(2)} KB per finished request on one kept-alive connection (at most ${MAX_RETAINED_KB_PER_REQUEST} expected)`);
  } finally {
    agent.destroy();
    front.close();
  }
});
