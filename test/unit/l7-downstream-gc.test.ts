// A finished request's objects die young: the proxy's per-request shape over Node's HTTP/1.1 objects
// (http1Downstream) must not keep a request alive past the young-generation collections that should
// take it. A getter on that shape did (V8 keeps an object literal's accessor in a hidden class that
// young-generation GC treats as alive): every request was promoted to the old generation and waited
// for a full collection, which cost the L7 proxy CPU on every request (bench/README.md).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { http1Downstream } from '../../agent/l7/proxy/downstream.js';
import { DEFAULT_PATH_NORMALIZATION } from '../../agent/l7/request-target.js';

/**
 * Requests counted, and the old-generation growth they may cause per request: about 1.3-1.5 KB here
 * (Node's own, and tsx's transform of the sources), 3.3-3.5 KB when each request is kept.
 */
const REQUESTS = 1000;
const MAX_OLD_GROWTH_KB_PER_REQUEST = 2.4;

test('the requests of a keep-alive connection are not promoted to the old generation', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as (options?: { type: 'major' | 'minor' }) => void;
  const server = http.createServer((req, res) => {
    const d = http1Downstream(req, res, DEFAULT_PATH_NORMALIZATION);
    d.body.resume();
    d.body.once('end', () => {
      d.writeHead(200, { 'content-length': 1024 });
      d.response.end(Buffer.alloc(1024));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = (): Promise<void> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/item', agent }, (res) => {
          res.resume();
          res.once('end', resolve);
        })
        .once('error', reject);
    });
  const oldSpaceUsed = (): number => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;
  try {
    // Warm up (compiled code and caches settle), then start from what a full collection leaves.
    for (let i = 0; i < 300; i++) await get();
    gc();
    const before = oldSpaceUsed();
    for (let i = 1; i <= REQUESTS; i++) {
      await get();
      // Two young collections: an object alive at both is promoted.
      if (i % 50 === 0) {
        gc({ type: 'minor' });
        gc({ type: 'minor' });
      }
    }
    const perRequestKb = (oldSpaceUsed() - before) / 1024 / REQUESTS;
    assert.ok(perRequestKb < MAX_OLD_GROWTH_KB_PER_REQUEST, `the old generation grew ${perRequestKb.toFixed(2)} KB per finished request over ${REQUESTS} (at most ${MAX_OLD_GROWTH_KB_PER_REQUEST} expected)`);
  } finally {
    agent.destroy();
    server.close();
  }
});
