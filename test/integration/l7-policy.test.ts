// HTTP policy on the destination agent in the lab: real curl from enrolled pods on node alpha (and one on
// beta, and one outside the mesh) to a Service whose pod runs on beta. Beta's agent authorizes each
// request with the peer's proven identity (L7 AuthorizationPolicy by path, method and header, a header
// sent twice included), applies a RateLimit (429 with x-ratelimit-*), reports Istio's request metrics
// (reporter="destination"; alpha reports "source"), and exports SERVER spans to an OTLP collector
// running in its node's network namespace.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { AMBIT_MAIN, eventually } from './helpers/lab-cli.js';
import { LabSession, labPodYaml, serviceAccountYaml, twoNodesYaml } from './helpers/lab-session.js';

const LAB = `tlp${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-l7-policy-test-');
const OTLP_PORT = 14000 + (process.pid % 1000);
const SINK = fileURLToPath(new URL('./helpers/otlp-sink.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const REVIEWS_POD = '10.244.2.11';

// The pod answers with what reached it: method, path, a few headers, and the address it came from.
const SERVER = `require('http').createServer((q, s) => { q.resume(); q.on('end', () => s.end(JSON.stringify({ pod: process.env.POD_NAME, method: q.method, url: q.url, from: q.socket.remoteAddress.replace('::ffff:', ''), xfcc: q.headers['x-forwarded-client-cert'], traceparent: q.headers.traceparent, user: q.headers['x-user'] }))); }).listen(9080);`;

const POLICY = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: reviews-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: reviews } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/client] } }]
    to: [{ operation: { methods: [GET, HEAD], paths: [/reviews/*, /limited, /traced] } }]
    when: [{ key: "request.headers[x-user]", notValues: [blocked] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: reviews-deny, namespace: shop }
spec:
  selector: { matchLabels: { app: reviews } }
  action: DENY
  rules:
  - to: [{ operation: { paths: [/reviews/secret*] } }]
---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: reviews, namespace: shop }
spec:
  targetRef: { kind: Service, name: reviews }
  routes:
  - name: limited
    match: [{ path: { exact: /limited } }]
    tokenBucket: { maxTokens: 3, fillInterval: 1h }
`;

function meshYaml(): string {
  const pod = (name: string, ns: string, app: string, ip: string, node: string, sa: string, command: readonly string[]): string =>
    labPodYaml({ name, namespace: ns, labels: { app, version: 'v1' }, node, ip, serviceAccount: sa, command });
  const sa = (name: string, ns = 'shop'): string => serviceAccountYaml(name, ns);
  const idle = ['sleep', 'infinity'];
  return `${twoNodesYaml(84, 244)}
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: outside }
${sa('client')}${sa('intruder')}${sa('reviews')}${sa('default', 'outside')}${pod('client', 'shop', 'client', '10.244.1.20', 'alpha', 'client', idle)}${pod('intruder', 'shop', 'intruder', '10.244.1.21', 'alpha', 'intruder', idle)}${pod('neighbour', 'shop', 'neighbour', '10.244.2.20', 'beta', 'client', idle)}${pod('stranger', 'outside', 'stranger', '10.244.1.30', 'alpha', 'default', idle)}${pod('reviews-v1', 'shop', 'reviews', REVIEWS_POD, 'beta', 'reviews', ['node', '-e', SERVER])}---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: shop }
spec: { clusterIP: 10.104.0.11, selector: { app: reviews }, ports: [{ name: http, port: 9080, targetPort: 9080 }] }
${POLICY}`;
}

interface CurlResult {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** curl from a pod: status, response headers (lowercase names) and body. */
async function curl(pod: string, url: string, args: readonly string[] = []): Promise<CurlResult> {
  const r = await session.exec(pod, ['curl', '-s', '-i', '--max-time', '5', ...args, url]);
  assert.equal(r.code, 0, `curl ${url} from ${pod} failed (exit ${r.code}): ${r.stderr}`);
  const [head = '', ...rest] = r.stdout.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

const REVIEWS = 'http://reviews.shop:9080';

async function metrics(node: string): Promise<string> {
  return (await session.exec(`node/${node}`, ['curl', '-s', 'http://127.0.0.1:15020/metrics'])).stdout;
}

/** The sum of istio_requests_total samples whose labels include every pair of `where`. */
function requests(text: string, where: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('istio_requests_total{')) continue;
    if (Object.entries(where).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  kind: number;
  name: string;
  attributes: Record<string, string | number | boolean>;
  resource: Record<string, string | number | boolean>;
}

/** An OTLP collector inside a node's network namespace, on 127.0.0.1:OTLP_PORT there, printing spans. */
class NodeCollector {
  readonly spans: Span[] = [];
  readonly #child: ChildProcess;
  #buffer = '';
  #listening = false;

  constructor(node: string) {
    // Its own process group, so that the whole chain (lab exec, ip netns exec, node) ends together.
    this.#child = spawn(process.execPath, [AMBIT_MAIN, 'lab', 'exec', '--lab', LAB, `node/${node}`, '--', process.execPath, '--import', 'tsx', SINK, String(OTLP_PORT), '900'], {
      cwd: REPO,
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.#child.stdout!.on('data', (d: Buffer) => {
      this.#buffer += d.toString();
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        const parsed = JSON.parse(line) as Span | { listening: number };
        if ('listening' in parsed) this.#listening = true;
        else this.spans.push(parsed);
      }
    });
  }

  async ready(): Promise<void> {
    await eventually('the OTLP collector to listen', async () => (this.#listening ? true : undefined), 30_000);
  }

  stop(): void {
    if (this.#child.pid !== undefined && this.#child.exitCode === null) {
      try {
        process.kill(-this.#child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
}

const collectors: NodeCollector[] = [];
const previousEndpoint = process.env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'];

before(async () => {
  // The agents inherit the environment of `lab up`: each exports to the collector in its own node.
  process.env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] = `http://127.0.0.1:${OTLP_PORT}/v1/traces`;
  try {
    await session.up(meshYaml(), 90);
  } finally {
    if (previousEndpoint === undefined) delete process.env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'];
    else process.env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] = previousEndpoint;
  }
  for (const node of ['alpha', 'beta']) collectors.push(new NodeCollector(node));
  await Promise.all(collectors.map((c) => c.ready()));
});

after(async () => {
  for (const c of collectors) c.stop();
  await session.down();
});

test('allowed requests reach the pod with the normalized path, the client pod\'s own address and its proven identity', async () => {
  const r = await curl('shop/client', `${REVIEWS}/reviews/./1`, ['--path-as-is']);
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as { method: string; url: string; from: string; xfcc: string };
  assert.equal(seen.url, '/reviews/1');
  assert.equal(seen.from, '10.244.1.20');
  assert.equal(seen.xfcc, 'By=spiffe://cluster.local/ns/shop/sa/reviews;URI=spiffe://cluster.local/ns/shop/sa/client');
  const log = await session.agentLog('beta');
  // The access log, as every later step, reads the normalized path (Envoy's normalize_path rewrites :path).
  assert.match(log, /"src\.identity":"spiffe:\/\/cluster\.local\/ns\/shop\/sa\/client".*"direction":"inbound","method":"GET","path":"\/reviews\/1".*"response_code":200.*"msg":"request complete"/);
});

test('denied with 403 "RBAC: access denied" by path, by method, by a DENY policy, by identity, and by a header also when sent twice', async () => {
  const denied: [string, string, string[]][] = [
    ['shop/client', `${REVIEWS}/details/1`, []],
    ['shop/client', `${REVIEWS}/reviews/1`, ['-X', 'POST']],
    ['shop/client', `${REVIEWS}/reviews/secret-1`, []],
    ['shop/client', `${REVIEWS}/reviews/%2E%2E/reviews/secret-2`, ['--path-as-is']],
    ['shop/intruder', `${REVIEWS}/reviews/1`, []],
    ['shop/client', `${REVIEWS}/reviews/1`, ['-H', 'x-user: blocked']],
    ['shop/client', `${REVIEWS}/reviews/1`, ['-H', 'x-user: alice', '-H', 'x-user: blocked']],
  ];
  for (const [pod, url, args] of denied) {
    const r = await curl(pod, url, args);
    assert.equal(r.status, 403, `${pod} ${args.join(' ')} ${url}: ${r.body}`);
    assert.equal(r.body, 'RBAC: access denied');
  }
  // Each value of a repeated header is judged alone: two harmless values pass.
  const twice = await curl('shop/client', `${REVIEWS}/reviews/1`, ['-H', 'x-user: alice', '-H', 'x-user: bob']);
  assert.equal(twice.status, 200, twice.body);
  assert.deepEqual((JSON.parse(twice.body) as { user: string }).user, 'alice, bob');
  const log = await session.agentLog('beta');
  assert.match(log, /"response_code":403.*"response_code_details":"rbac_access_denied_matched_policy\[shop\/reviews-deny\]"/);
  assert.match(log, /"response_code":403.*"response_code_details":"rbac_access_denied_matched_policy\[none\]"/);
});

test('the same policy holds for a client on the same node, and for plaintext from outside the mesh', async () => {
  assert.equal((await curl('shop/neighbour', `${REVIEWS}/reviews/1`)).status, 200);
  const neighbourDenied = await curl('shop/neighbour', `${REVIEWS}/reviews/secret`);
  assert.equal(neighbourDenied.status, 403);
  assert.equal(neighbourDenied.body, 'RBAC: access denied');
  // Not enrolled: plaintext to the pod's address, through beta's 15006, with no identity to allow.
  const stranger = await curl('outside/stranger', `http://${REVIEWS_POD}:9080/reviews/1`);
  assert.equal(stranger.status, 403);
  assert.equal(stranger.body, 'RBAC: access denied');
});

test('rate limit: 3 tokens, then 429 local_rate_limited with x-ratelimit-* headers, counted with flag RL', async () => {
  const results: CurlResult[] = [];
  for (let i = 0; i < 5; i++) results.push(await curl('shop/client', `${REVIEWS}/limited`));
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 429, 429]);
  assert.deepEqual(results.map((r) => r.headers['x-ratelimit-remaining']), ['2', '1', '0', '0', '0']);
  for (const r of results) assert.equal(r.headers['x-ratelimit-limit'], '3');
  assert.equal(results[3]!.body, 'local_rate_limited');
  assert.ok(Number(results[3]!.headers['x-ratelimit-reset']) > 0);
  const beta = await metrics('beta');
  assert.equal(requests(beta, { reporter: 'destination', response_code: '429', response_flags: 'RL' }), 2);
  assert.match(beta, /^ambit_rate_limit_decisions_total\{namespace="shop",rate_limit="reviews",route="limited",decision="rate_limited"\} 2$/m);
});

test('istio_requests_total on both reporters with Istio\'s labels', async () => {
  const beta = await metrics('beta');
  const destination = {
    reporter: 'destination',
    source_workload: 'client',
    source_workload_namespace: 'shop',
    source_principal: 'spiffe://cluster.local/ns/shop/sa/client',
    destination_workload: 'reviews',
    destination_service: 'reviews.shop.svc.cluster.local',
    destination_principal: 'spiffe://cluster.local/ns/shop/sa/reviews',
    request_protocol: 'http',
    connection_security_policy: 'mutual_tls',
  };
  assert.ok(requests(beta, { ...destination, response_code: '200', response_flags: '-' }) >= 5, beta.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n'));
  assert.ok(requests(beta, { ...destination, response_code: '403' }) >= 6);
  assert.equal(requests(beta, { reporter: 'destination', source_principal: 'spiffe://cluster.local/ns/shop/sa/intruder', response_code: '403' }), 1);
  assert.ok(requests(beta, { reporter: 'destination', source_workload: 'stranger', source_principal: 'unknown', connection_security_policy: 'unknown', response_code: '403' }) >= 1);
  const alpha = await metrics('alpha');
  // The source agent reports what its client got, whatever the destination decided.
  assert.ok(requests(alpha, { reporter: 'source', source_workload: 'client', destination_service: 'reviews.shop.svc.cluster.local', response_code: '403' }) >= 6);
  assert.equal(requests(alpha, { reporter: 'source', source_workload: 'client', response_code: '429' }), 2);
});

test('spans: a SERVER span on the destination agent for each traced request, the child of the caller\'s span', async () => {
  const traceId = randomBytes(16).toString('hex');
  const appSpan = randomBytes(8).toString('hex');
  const r = await curl('shop/client', `${REVIEWS}/traced`, ['-H', `traceparent: 00-${traceId}-${appSpan}-01`]);
  assert.equal(r.status, 200);
  const forwarded = (JSON.parse(r.body) as { traceparent: string }).traceparent;
  const [beta, alpha] = [collectors[1]!, collectors[0]!];
  const server = await eventually('the SERVER span at the collector', async () => beta.spans.find((s) => s.traceId === traceId && s.kind === 2), 30_000);
  assert.equal(forwarded.split('-')[2], server.spanId, 'the pod is the child of the destination agent\'s span');
  assert.equal(server.resource['service.name'], 'reviews.shop');
  assert.equal(server.attributes['http.status_code'], 200);
  assert.equal(server.attributes['node_id'], 'beta');
  // The chain is app → CLIENT (alpha) → SERVER (beta): the source agent exports a CLIENT span for the
  // request, and the destination's SERVER span is its child. No CLIENT span is a failure, not another chain.
  const client = await eventually('the source agent\'s CLIENT span at the collector', async () => alpha.spans.find((s) => s.traceId === traceId && s.kind === 3), 30_000);
  assert.equal(client.parentSpanId, appSpan, 'the CLIENT span is not the child of the application\'s span');
  assert.equal(server.parentSpanId, client.spanId, 'the SERVER span is not the child of the source agent\'s CLIENT span');
  // Denied requests are traced too, as Envoy traces its local replies.
  const deniedTrace = randomBytes(16).toString('hex');
  assert.equal((await curl('shop/client', `${REVIEWS}/reviews/secret`, ['-H', `traceparent: 00-${deniedTrace}-${appSpan}-01`])).status, 403);
  const deniedSpan = await eventually('the denied request\'s span', async () => beta.spans.find((s) => s.traceId === deniedTrace), 30_000);
  assert.equal(deniedSpan.attributes['http.status_code'], 403);
});
