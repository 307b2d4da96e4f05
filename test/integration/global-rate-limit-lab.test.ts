// One quota across two lab nodes, as a user runs it: Service quota has a pod on alpha and one on beta,
// each node's agent enforces its pod's RateLimit and asks one rate limit service (Envoy's
// ShouldRateLimit, written in the test: helpers/rate-limit-service-process.ts) that runs in a lab pod
// behind Service ratelimit/ratelimit and counts in a real Redis. Real curl from a client pod on each
// node: N per minute are answered in total, the rest 429 with x-ratelimit-*, and each agent's
// per-descriptor metric adds up to what it answered. Then the service hangs (SIGSTOP: the timeout
// answers) and stops (SIGKILL): failureMode allow lets requests through, deny answers 500.

import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { LabProcess } from './helpers/lab-process.js';
import { LabSession, labPodYaml, serviceAccountYaml, twoNodesYaml } from './helpers/lab-session.js';
import { type RedisServer, startRedis } from './helpers/redis.js';

const LAB = `trl${process.pid % 1000}`;
const session = LabSession.inTempDir(LAB, 'ambit-global-rate-limit-lab-');
const RLS_SCRIPT = fileURLToPath(new URL('./helpers/rate-limit-service-process.ts', import.meta.url));
const RLS_PORT = 8081;
const PER_MINUTE = 10;
/** Each client's requests: three times the quota in total, so that both nodes meet the limit. */
const PER_CLIENT = (3 * PER_MINUTE) / 2;
const DENY_TIMEOUT_MS = 1000;
const ALLOW_TIMEOUT_MS = 300;

const READY_ON_9081 = '{ tcpSocket: { port: 9081 }, periodSeconds: 1 }';

// Answers with the pod's name on 9080 (the quota, failureMode deny) and 9081 (failureMode allow).
const SERVER = [
  "const answer = (q, s) => { q.resume(); q.on('end', () => s.end(process.env.POD_NAME)); };",
  "require('http').createServer(answer).listen(9080); require('http').createServer(answer).listen(9081);",
].join(' ');

function meshYaml(): string {
  const pod = (name: string, ns: string, app: string, ip: string, node: string, command: readonly string[]): string =>
    labPodYaml({ name, namespace: ns, labels: { app }, node, ip, serviceAccount: app, command });
  // lab up waits for readiness: the first request must not reach a pod before it listens.
  const server = (name: string, ip: string, node: string): string =>
    pod(name, 'shop', 'quota', ip, node, ['node', '-e', SERVER]).replace('      env:', `      readinessProbe: ${READY_ON_9081}\n      env:`);
  const idle = ['sleep', 'infinity'];
  return [
    twoNodesYaml(76, 242),
    '---\napiVersion: v1\nkind: Namespace\nmetadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }\n',
    '---\napiVersion: v1\nkind: Namespace\nmetadata: { name: ratelimit }\n',
    serviceAccountYaml('quota', 'shop'),
    serviceAccountYaml('client', 'shop'),
    serviceAccountYaml('ratelimit', 'ratelimit'),
    server('quota-a', '10.242.1.11', 'alpha'),
    server('quota-b', '10.242.2.11', 'beta'),
    pod('client-a', 'shop', 'client', '10.242.1.20', 'alpha', idle),
    pod('client-b', 'shop', 'client', '10.242.2.20', 'beta', idle),
    // Outside the mesh; the test runs the service in it (and stops it) with lab exec.
    pod('ratelimit', 'ratelimit', 'ratelimit', '10.242.1.30', 'alpha', idle),
    SERVICES_AND_LIMITS,
  ].join('');
}

const SERVICES_AND_LIMITS = `---
apiVersion: v1
kind: Service
metadata: { name: quota, namespace: shop }
spec:
  clusterIP: 10.112.242.11
  selector: { app: quota }
  ports: [{ name: http, port: 9080, targetPort: 9080 }, { name: http-open, port: 9081, targetPort: 9081 }]
---
apiVersion: v1
kind: Service
metadata: { name: ratelimit, namespace: ratelimit }
spec: { clusterIP: 10.112.242.30, selector: { app: ratelimit }, ports: [{ name: grpc, port: ${RLS_PORT}, targetPort: ${RLS_PORT} }] }
---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: quota, namespace: shop }
spec:
  targetRef: { kind: Service, name: quota, port: 9080 }
  global:
    service: ratelimit.ratelimit.svc.cluster.local
    port: ${RLS_PORT}
    domain: shop
    failureMode: deny
    timeout: ${DENY_TIMEOUT_MS}ms
    descriptors:
    - name: per-service
      entries: [{ destinationService: {} }]
---
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: { name: open, namespace: shop }
spec:
  targetRef: { kind: Service, name: quota, port: 9081 }
  global:
    service: ratelimit.ratelimit.svc.cluster.local
    port: ${RLS_PORT}
    domain: shop
    failureMode: allow
    timeout: ${ALLOW_TIMEOUT_MS}ms
    descriptors:
    - name: open
      entries: [{ genericKey: { descriptorValue: open } }]
`;

/** One response as curl saw it: the pod that answered (the body), the status, the rate limit headers, seconds taken. */
interface Answer {
  readonly pod: string;
  readonly status: number;
  readonly limit: string;
  readonly remaining: string;
  readonly reset: string;
  readonly envoyRateLimited: string;
  readonly seconds: number;
}

/** What curl prints after each response's body: `|`-separated, one line per request. */
const WRITE_OUT = [
  '%{http_code}',
  '%header{x-ratelimit-limit}',
  '%header{x-ratelimit-remaining}',
  '%header{x-ratelimit-reset}',
  '%header{x-envoy-ratelimited}',
  '%{time_total}\n',
].map((field) => `|${field}`).join('');

/** `count` requests from a client pod, one after another, each on a new connection (so each picks an endpoint). */
async function requests(client: string, url: string, count: number): Promise<Answer[]> {
  const argv = ['curl', '-s', '--max-time', '10', '-H', 'connection: close', '-w', WRITE_OUT, `${url}/[1-${count}]`];
  const r = await session.exec(client, argv, 60_000);
  assert.equal(r.code, 0, `curl from ${client} failed (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.length > 0)
    .map((line) => {
      const [pod = '', status, limit = '', remaining = '', reset = '', envoyRateLimited = '', seconds] = line.split('|');
      return { pod, status: Number(status), limit, remaining, reset, envoyRateLimited, seconds: Number(seconds) };
    });
}

/** The sum of a metric's series on a node's agent whose labels include all of `labels`. */
async function metricSum(node: string, name: string, labels: Readonly<Record<string, string>>): Promise<number> {
  const metrics = (await session.exec(`node/${node}`, ['curl', '-s', 'http://127.0.0.1:15020/metrics'])).stdout;
  let sum = 0;
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`) || !Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** ambit_global_rate_limit_decisions_total of RateLimit shop/quota on both agents, for one decision. */
async function quotaDecisions(decision: 'ok' | 'over_limit' | 'error'): Promise<{ alpha: number; beta: number }> {
  const labels = { namespace: 'shop', rate_limit: 'quota', descriptor: 'per-service', decision };
  const [alpha, beta] = await Promise.all(['alpha', 'beta'].map((node) => metricSum(node, 'ambit_global_rate_limit_decisions_total', labels)));
  return { alpha: alpha!, beta: beta! };
}

let redis: RedisServer | undefined;
let rls: LabProcess | undefined;
let rlsPid: number | undefined;

before(async () => {
  try {
    redis = await startRedis();
    await session.up(meshYaml(), 90);
    const limits = JSON.stringify({ destination_service: PER_MINUTE });
    rls = new LabProcess(LAB, 'ratelimit/ratelimit', [process.execPath, '--import', 'tsx', RLS_SCRIPT, String(RLS_PORT), redis.socketPath, limits]);
    rlsPid = Number((await rls.line('the rate limit service to listen', (r) => r['listening'] === RLS_PORT, 30_000))['pid']);
  } catch (error) {
    await cleanUp();
    throw error;
  }
});

/** Kills the rate limit service (once: its pid is forgotten, so that it can never name another process). */
function killRateLimitService(): void {
  if (rlsPid === undefined) return;
  const pid = rlsPid;
  rlsPid = undefined;
  try {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGKILL');
  } catch (error) {
    // ESRCH: it had already ended (and the lab's report of it is what the failing test prints).
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

async function cleanUp(): Promise<void> {
  killRateLimitService();
  rls?.kill();
  rls = undefined;
  await session.down();
  await redis?.stop();
  redis = undefined;
}

after(cleanUp);

const QUOTA_TITLE = `one quota of ${PER_MINUTE} a minute across two nodes: ${PER_MINUTE}±1 answered 200 in total, the rest 429 with x-ratelimit-*`;

test(QUOTA_TITLE, async (t) => {
  // The service counts in fixed one-minute windows, as envoyproxy/ratelimit does: start well inside one.
  const intoMinute = Date.now() % 60_000;
  if (intoMinute > 40_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 200));

  // Clients on both nodes at once; each request picks quota-a (alpha's agent) or quota-b (beta's).
  const [fromAlpha, fromBeta] = await Promise.all(['shop/client-a', 'shop/client-b'].map((client) => requests(client, 'http://quota.shop:9080/q', PER_CLIENT)));
  const all = [...fromAlpha!, ...fromBeta!];
  const admitted = all.filter((a) => a.status === 200);
  const limited = all.filter((a) => a.status === 429);
  const byPod = (pod: string): number => admitted.filter((a) => a.pod === pod).length;
  const seen = JSON.stringify(all.map((a) => `${a.pod || '-'} ${a.status} remaining=${a.remaining}`));
  assert.equal(all.length, 2 * PER_CLIENT, seen);
  assert.equal(admitted.length + limited.length, all.length, `only 200 and 429 are expected: ${seen}`);
  const split = `quota-a ${byPod('quota-a')}, quota-b ${byPod('quota-b')}`;
  assert.ok(Math.abs(admitted.length - PER_MINUTE) <= 1, `${admitted.length} of ${all.length} answered 200 (${split}); the quota is ${PER_MINUTE}±1: ${seen}`);

  t.diagnostic(`200: ${split}; 429: ${limited.length}`);

  // Headers as for local limits, from the shared count: every answer says the limit; each admitted one
  // saw a different count, so the remaining values are distinct; a 429 has none left and says so.
  for (const a of all) {
    assert.equal(a.limit, String(PER_MINUTE), seen);
    const reset = Number(a.reset);
    assert.ok(reset > 0 && reset <= 60, `x-ratelimit-reset ${a.reset} is within the minute`);
  }
  assert.equal(new Set(admitted.map((a) => a.remaining)).size, admitted.length, `each admitted request took its own place in the quota: ${seen}`);
  for (const a of limited) {
    assert.equal(a.remaining, '0', seen);
    assert.equal(a.envoyRateLimited, 'true', seen);
    assert.equal(a.pod, '', 'a limited request never reaches the pod');
  }

  // Each agent counted what it decided; together the counts are what the clients saw.
  const ok = await quotaDecisions('ok');
  const over = await quotaDecisions('over_limit');
  // Each request picks its endpoint, so how the 200s split is chance; that both agents decided some is not.
  const counts = `ok ${JSON.stringify(ok)}, over_limit ${JSON.stringify(over)}`;
  assert.ok(ok.alpha + over.alpha > 0 && ok.beta + over.beta > 0, `both agents asked the service: ${counts}`);
  assert.equal(ok.alpha + ok.beta, admitted.length, `ok decisions ${JSON.stringify(ok)}`);
  assert.equal(over.alpha + over.beta, limited.length, `over_limit decisions ${JSON.stringify(over)}`);
});

/** The timeout decided the answer: not before it, and long before curl's own 10 s. */
function assertAnsweredAfter(answer: Answer, timeoutMs: number): void {
  const seconds = answer.seconds;
  assert.ok(seconds >= timeoutMs / 1000 && seconds < timeoutMs / 1000 + 3, `answered after ${seconds} s, the timeout is ${timeoutMs} ms`);
}

test(`a rate limit service that hangs: the timeout answers (deny: 500 after ${DENY_TIMEOUT_MS} ms; allow: 200 after ${ALLOW_TIMEOUT_MS} ms)`, async (t) => {
  const [before] = await requests('shop/client-a', 'http://quota.shop:9081/open', 1);
  assert.equal(before!.status, 200, 'the open port answers while the service does');
  process.kill(rlsPid!, 'SIGSTOP');
  try {
    const [denied] = await requests('shop/client-a', 'http://quota.shop:9080/hang', 1);
    const [allowed] = await requests('shop/client-b', 'http://quota.shop:9081/hang', 1);
    t.diagnostic(`while hung: deny answered ${denied!.status} in ${denied!.seconds} s, allow ${allowed!.status} in ${allowed!.seconds} s`);
    assert.equal(denied!.status, 500, `failureMode deny: ${JSON.stringify(denied)}`);
    assert.equal(denied!.pod, '', 'a denied request never reaches the pod');
    assertAnsweredAfter(denied!, DENY_TIMEOUT_MS);
    assert.equal(allowed!.status, 200, `failureMode allow: ${JSON.stringify(allowed)}`);
    assertAnsweredAfter(allowed!, ALLOW_TIMEOUT_MS);
  } finally {
    process.kill(rlsPid!, 'SIGCONT');
  }
});

const RLSE = { reporter: 'destination', response_code: '500', response_flags: 'RLSE' };

test('a rate limit service that is down: failureMode allow lets requests through, deny answers 500 (flag RLSE), each counted as error', async () => {
  const errors = await quotaDecisions('error');
  const rlseBefore = await Promise.all(['alpha', 'beta'].map((node) => metricSum(node, 'istio_requests_total', RLSE)));
  killRateLimitService();
  const [allowed, denied] = await Promise.all([
    requests('shop/client-a', 'http://quota.shop:9081/down', 4),
    requests('shop/client-b', 'http://quota.shop:9080/down', 4),
  ]);
  assert.deepEqual(allowed!.map((a) => a.status), [200, 200, 200, 200], `failureMode allow: ${JSON.stringify(allowed)}`);
  assert.ok(allowed!.every((a) => a.pod.startsWith('quota-')), 'allowed requests reach the pods');
  assert.deepEqual(denied!.map((a) => a.status), [500, 500, 500, 500], `failureMode deny: ${JSON.stringify(denied)}`);
  assert.ok(denied!.every((a) => a.pod === '' && a.envoyRateLimited === ''), 'denied requests reach no pod and are not said to be rate limited');
  const errorsAfter = await quotaDecisions('error');
  const newErrors = errorsAfter.alpha + errorsAfter.beta - errors.alpha - errors.beta;
  assert.equal(newErrors, denied!.length, `error decisions before ${JSON.stringify(errors)}, after ${JSON.stringify(errorsAfter)}`);
  const rlseAfter = await Promise.all(['alpha', 'beta'].map((node) => metricSum(node, 'istio_requests_total', RLSE)));
  assert.equal(rlseAfter[0]! + rlseAfter[1]! - rlseBefore[0]! - rlseBefore[1]!, denied!.length, 'istio_requests_total counts each deny with flag RLSE');
  // The operator is told, by the agents that met the failure, what happened and what to check.
  const logs = (await Promise.all(['alpha', 'beta'].map((node) => session.agentLog(node)))).join('\n');
  assert.match(logs, /RateLimit shop\/quota: the rate limit service did not answer .*so requests are answered 500 \(failureMode deny\); check that spec.global/);
  assert.match(logs, /RateLimit shop\/open: the rate limit service did not answer .*so requests are let through unlimited \(failureMode allow\)/);
});
