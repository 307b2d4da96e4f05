// The destination-side HTTP proxy in-process for policy tests: the security tests' L7 proxies
// (test/security/helpers/l7-proxies.ts: tunnels from bookinfo's productpage, mTLS identity, to
// reviews-v1:9080, and a real Node server as the pod) over the bookinfo mesh plus the given YAML, with
// a keep-alive HTTP client and the agent's log lines kept for the test to read.

import http from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { MeshSnapshot, SpiffeId } from '../../../agent/state/model.js';
import { type PodRequest, startL7Proxies } from '../../security/helpers/l7-proxies.js';

export const PRODUCTPAGE = 'spiffe://cluster.local/ns/bookinfo/sa/default' as SpiffeId;

export interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export interface InboundHarness {
  /** What the pod received, in order. */
  readonly podRequests: PodRequest[];
  /** The agent's log lines (JSON objects). */
  readonly logLines: Record<string, unknown>[];
  /** The snapshot the proxy judges requests with (what `ambit explain` is asked about in the agent). */
  snapshot(): MeshSnapshot;
  /** Where the proxy listens for tunnels (from productpage) to reviews-v1:9080. */
  readonly port: number;
  /** A GET, or a POST when `body` is given. */
  request(path: string, headers?: http.OutgoingHttpHeaders, body?: Buffer): Promise<Answer>;
  close(): Promise<void>;
}

/** The inbound proxy over bookinfo plus `yaml` (Istio objects, a ConfigMap); config errors fail the test. */
export async function inboundHarness(yaml: string): Promise<InboundHarness> {
  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const proxies = await startL7Proxies({ policies: yaml, log: pino({ level: 'info' }, sink) });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    podRequests: proxies.podRequests,
    port: proxies.inboundPort,
    logLines,
    snapshot: () => proxies.store.current!,
    request: (path, headers = {}, body) =>
      new Promise((resolve, reject) => {
        const method = body ? 'POST' : 'GET';
        const req = http.request({ host: '127.0.0.1', port: proxies.inboundPort, path, method, agent, headers: { host: 'reviews:9080', ...headers } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        });
        req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
        req.once('error', reject);
        req.end(body);
      }),
    close: async () => {
      agent.destroy();
      await proxies.close();
    },
  };
}
