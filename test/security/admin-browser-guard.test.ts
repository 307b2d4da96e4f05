// The admin server (127.0.0.1:15000) against what a web page can make a browser on the node send it:
// DNS rebinding (the page's own name, resolving to 127.0.0.1, arrives as Host) and cross-site POSTs to
// /quitquitquit and /logging. Each is refused with 403 and changes nothing; curl-like requests still work.

import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { AdminServer } from '../../agent/admin/admin-server.js';
import { WorkloadStore } from '../../agent/state/store.js';

interface Answer {
  readonly status: number;
  readonly body: string;
}

describe('admin server against browsers', () => {
  const log = pino({ level: 'info' }, { write: () => undefined });
  let quits = 0;
  const admin = new AdminServer({ store: new WorkloadStore(), node: 'node-a', log, quit: () => quits++ });
  let port = 0;

  before(async () => {
    port = (await admin.listen('127.0.0.1', 0)).port;
  });
  after(() => admin.close());

  /** One request to the admin server's loopback address, with the headers a browser would send. */
  function send(method: string, path: string, headers: Record<string, string>): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path, headers, setHost: !('host' in headers) }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.once('error', reject);
      req.end();
    });
  }

  it('refuses a rebound name as Host, for reads too, and says why', async () => {
    for (const host of [`attacker.example:${port}`, 'attacker.example', `localhost.attacker.example:${port}`, `127.0.0.1.nip.io:${port}`]) {
      const answer = await send('GET', '/config_dump', { host });
      assert.equal(answer.status, 403, host);
      assert.match(answer.body, /^refused: Host ".*" is not a loopback name or address; .* \(a DNS rebinding guard\)\n$/);
    }
  });

  it('serves loopback names and addresses as Host', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST.', `[::1]:${port}`, `127.1.2.3:${port}`, `agent.localhost:${port}`]) {
      const answer = await send('GET', '/logging', { host });
      assert.equal(answer.status, 200, `${host}: ${answer.body}`);
    }
  });

  it('refuses a cross-site POST /quitquitquit and /logging; the agent keeps running at its level', async () => {
    const host = `127.0.0.1:${port}`;
    const attempts: Record<string, string>[] = [
      { host, origin: 'https://attacker.example' },
      { host, origin: 'null' },
      { host, origin: `http://localhost:${port}` },
      { host, 'sec-fetch-site': 'cross-site' },
      { host, 'sec-fetch-site': 'same-site' },
    ];
    for (const headers of attempts) {
      const quit = await send('POST', '/quitquitquit', headers);
      assert.equal(quit.status, 403, JSON.stringify(headers));
      assert.match(quit.body, /^refused: a (cross-origin|cross-site|same-site) POST .* never from a web page\n$/);
      assert.equal((await send('POST', '/logging?level=debug', headers)).status, 403);
    }
    assert.equal(quits, 0, '/quitquitquit never ran');
    assert.equal(log.level, 'info', 'the log level never changed');
  });

  it('takes POSTs from curl-like clients and from its own origin', async () => {
    const host = `127.0.0.1:${port}`;
    assert.equal((await send('POST', '/logging?level=warn', { host })).status, 200);
    assert.equal(log.level, 'warn');
    assert.equal((await send('POST', '/logging?level=info', { host, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' })).status, 200);
    assert.equal(log.level, 'info');
    assert.equal((await send('POST', '/quitquitquit', { host })).status, 200);
    assert.equal(quits, 1);
  });
});
