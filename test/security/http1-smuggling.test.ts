// HTTP/1 request smuggling against both L7 proxies: Content-Length with Transfer-Encoding, two
// Content-Lengths, an obfuscated Transfer-Encoding, obs-fold and bare LF. The protection is Node's
// strict llhttp parser (never the lenient one), so each is refused with 400 and its connection closed,
// and neither the request nor the one smuggled behind it reaches the pod. Nothing in the agent, its
// image or its start-up flags may turn the lenient parser on.

import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type L7Proxies, rawHttp1, startL7Proxies } from './helpers/l7-proxies.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let proxies: L7Proxies;

before(async () => {
  proxies = await startL7Proxies();
});
after(() => proxies.close());

const SMUGGLED = 'GET /admin/secret HTTP/1.1\r\nHost: reviews:9080\r\n\r\n';
const ATTACKS: Record<string, string> = {
  'Content-Length and Transfer-Encoding (CL.TE / TE.CL)':
    `POST /public HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: ${5 + SMUGGLED.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  'two Content-Lengths that disagree': `POST /public HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
  'Transfer-Encoding not ending in chunked': `POST /public HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  'obs-fold continuing a header': 'GET /public HTTP/1.1\r\nHost: reviews:9080\r\nX-User: alice\r\n admin\r\n\r\n',
  'bare LF line endings': `GET /public HTTP/1.1\nHost: reviews:9080\nX-Smuggle: 1\n\n${SMUGGLED}`,
  'bare LF inside the header block': 'GET /public HTTP/1.1\r\nHost: reviews:9080\nX-User: admin\r\n\r\n',
};

for (const side of ['destination', 'source'] as const) {
  for (const [name, bytes] of Object.entries(ATTACKS)) {
    test(`${side} proxy: ${name} is refused with 400 and the connection closed; nothing reaches the pod`, async () => {
      const before = proxies.podRequests.length;
      const reply = await rawHttp1(side === 'destination' ? proxies.inboundPort : proxies.outboundPort, bytes);
      assert.equal(reply.status, 400, `answer: ${JSON.stringify(reply.text.slice(0, 80))}`);
      assert.ok(reply.closedByPeer, 'the proxy closes the connection');
      assert.deepEqual(proxies.podRequests.slice(before), []);
    });
  }
}

test('a well-formed request on the same proxies still reaches the pod (the refusals above are about the framing)', async () => {
  const reply = await rawHttp1(proxies.inboundPort, 'POST /public HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
  assert.equal(reply.status, 200);
  assert.equal(proxies.podRequests.at(-1)?.url, '/public');
});

/** Every file under `dir` with one of `extensions`. */
async function filesUnder(dir: string, extensions: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && extensions.some((e) => entry.name.endsWith(e))) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

test('nothing the agent ships turns on the lenient HTTP parser or extended CONNECT', async () => {
  const files = [
    ...(await filesUnder(join(ROOT, 'agent'), ['.ts'])),
    ...(await filesUnder(join(ROOT, 'deploy'), ['.yaml', '.yml', 'Dockerfile', '.tpl'])),
    ...['package.json', 'Makefile', 'bin/ambit'].map((f) => join(ROOT, f)),
  ];
  const offending: string[] = [];
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (/insecureHTTPParser\s*:\s*true|insecure-http-parser|enableConnectProtocol\s*:\s*true/.test(text)) offending.push(file);
  }
  assert.ok(files.length > 50, 'the scan found the sources');
  assert.deepEqual(offending, []);
});
