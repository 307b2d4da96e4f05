// One quota across two agents: two destination agents' inbound proxies (each with its own store and
// rate limiters) send their global descriptors to one rate limit service (grpc-js, in the test) that
// counts in a real Redis (Debian's redis-server on a Unix socket). Clients hit both agents at once;
// N requests per minute hold in total, not N per agent. Needs root only to install redis-server.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type InboundHarness, inboundHarness } from '../unit/helpers/inbound-harness.js';
import { type TestRateLimitService, globalRateLimitYaml, startRateLimitService } from '../unit/helpers/rate-limit-service.js';
import { RedisCounters, type RedisServer, startRedis } from './helpers/redis.js';

const PER_MINUTE = 10;

const limitYaml = (port: number) =>
  globalRateLimitYaml('reviews-quota', port, 'quota-test', ['failureMode: deny', 'timeout: 2s'], `    - name: reviews
      entries:
      - destinationService: {}
`);

let redis: RedisServer;
let rls: TestRateLimitService;
let agents: InboundHarness[] = [];

before(async () => {
  redis = await startRedis();
  rls = await startRateLimitService({ counters: new RedisCounters(redis.client), perMinute: { destination_service: PER_MINUTE } });
  agents = [await inboundHarness(limitYaml(rls.port)), await inboundHarness(limitYaml(rls.port))];
});

after(async () => {
  for (const a of agents) await a.close();
  await rls?.close();
  await redis?.stop();
});

test(`a quota of ${PER_MINUTE} requests per minute holds across two agents (N±1 answered in total)`, async () => {
  // The service counts in fixed one-minute windows, as envoyproxy/ratelimit does: start well inside one.
  const intoMinute = Date.now() % 60_000;
  if (intoMinute > 45_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 100));

  const rounds = 15;
  const statuses: number[][] = [[], []];
  for (let i = 0; i < rounds; i++) {
    // Both agents at once, each with its own client: the quota is shared, not split.
    const answers = await Promise.all(agents.map((a) => a.request('/reviews/1')));
    answers.forEach((a, n) => statuses[n]!.push(a.status));
  }
  const all = statuses.flat();
  const admitted = all.filter((s) => s === 200).length;
  assert.deepEqual([...new Set(all)].sort(), [200, 429], `only 200 and 429 are expected; got ${JSON.stringify(statuses)}`);
  assert.ok(Math.abs(admitted - PER_MINUTE) <= 1, `${admitted} of ${all.length} answered 200 across both agents; the quota is ${PER_MINUTE}±1 (per agent: ${statuses.map((s) => s.filter((x) => x === 200).length).join(' and ')})`);
  assert.ok(
    statuses.every((s) => s.includes(200)),
    'both agents admitted some requests (each asked the shared service)',
  );
  assert.equal(agents[0]!.podRequests.length + agents[1]!.podRequests.length, admitted, 'only admitted requests reach the pods');

  // The count lives in Redis: every request of both agents is one hit on the one key.
  const keys = await redis.client.command('KEYS', 'quota-test_*');
  assert.ok(Array.isArray(keys) && keys.length === 1, `one counter in Redis, got ${JSON.stringify(keys)}`);
  assert.equal(await redis.client.command('GET', String(keys[0])), String(rounds * 2));
});
