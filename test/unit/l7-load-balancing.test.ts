// Load balancers: round robin, random, least request (power of two choices) preferring idle endpoints,
// passthrough, and consistent hashing (ring and Maglev) with its hash keys, stability when endpoints
// come and go, and the cookie it issues.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../agent/l7/clock.js';
import {
  ConsistentHashBalancer,
  MaglevTable,
  RingHashTable,
  formatSetCookie,
  hash32,
  requestHash,
} from '../../agent/l7/consistent-hash.js';
import { ActiveRequests, type LbEndpoint, LeastRequestBalancer, RandomBalancer, RoundRobinBalancer, createLoadBalancer } from '../../agent/l7/load-balancer.js';
import { seededRandom } from '../../agent/l7/random.js';
import { UpstreamClusters } from '../../agent/l7/upstream-cluster.js';
import { mesh, request } from './helpers/l7-mesh.js';

const endpoints = (n: number): LbEndpoint[] =>
  Array.from({ length: n }, (_, i) => ({ key: `10.244.1.${i + 1}:9080`, ip: `10.244.1.${i + 1}`, port: 9080, workload: `ns/pod-${i + 1}`, priority: 0 }));

function tally(pick: () => string, n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const key = pick();
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

const keyOf = (p: ReturnType<RoundRobinBalancer['pick']>): string => (p.kind === 'endpoint' ? p.endpoint.key : p.kind);

test('round robin visits every endpoint in turn; random spreads evenly', () => {
  const eps = endpoints(3);
  const rr = new RoundRobinBalancer(seededRandom(1));
  const first = [0, 1, 2, 3, 4, 5].map(() => keyOf(rr.pick(eps)));
  assert.deepEqual(first.slice(3), first.slice(0, 3));
  assert.equal(new Set(first).size, 3);
  const random = new RandomBalancer(seededRandom(2));
  for (const count of tally(() => keyOf(random.pick(eps)), 9000).values()) assert.ok(Math.abs(count - 3000) < 200, `${count}`);
  assert.deepEqual(rr.pick([]), { kind: 'empty' });
});

test('least request prefers idle endpoints: a busy one is picked only when both choices land on it', () => {
  const eps = endpoints(3);
  const active = new ActiveRequests();
  const done = Array.from({ length: 10 }, () => active.begin(eps[0]!.key));
  const lb = new LeastRequestBalancer(active, seededRandom(3));
  const counts = tally(() => keyOf(lb.pick(eps)), 9000);
  // Power of two choices with replacement: the busy endpoint wins only when drawn twice, 1/9 of picks.
  assert.ok(Math.abs(counts.get(eps[0]!.key)! / 9000 - 1 / 9) < 0.02, `busy got ${counts.get(eps[0]!.key)}`);
  assert.ok(counts.get(eps[1]!.key)! > 3500 && counts.get(eps[2]!.key)! > 3500);
  for (const d of done) d();
  d0Twice(active, eps[0]!.key);
  assert.equal(active.active(eps[0]!.key), 0);
  // With every endpoint idle it balances evenly.
  for (const count of tally(() => keyOf(lb.pick(eps)), 9000).values()) assert.ok(Math.abs(count - 3000) < 250, `${count}`);
});

function d0Twice(active: ActiveRequests, key: string): void {
  const end = active.begin(key);
  end();
  end(); // a second end() must not count below zero
}

test('LEAST_REQUEST is the default; PASSTHROUGH keeps the original destination; retries avoid tried endpoints', () => {
  const active = new ActiveRequests();
  assert.equal(createLoadBalancer(undefined, active).algorithm, 'LEAST_REQUEST');
  assert.equal(createLoadBalancer({ algorithm: { kind: 'simple', simple: 'UNSPECIFIED' } }, active).algorithm, 'LEAST_REQUEST');
  assert.equal(createLoadBalancer({ algorithm: { kind: 'default' } }, active).algorithm, 'LEAST_REQUEST');
  assert.deepEqual(createLoadBalancer({ algorithm: { kind: 'simple', simple: 'PASSTHROUGH' } }, active).pick(endpoints(2)), { kind: 'passthrough' });
  const eps = endpoints(2);
  const lb = new RandomBalancer(seededRandom(4));
  for (let i = 0; i < 100; i++) assert.equal(keyOf(lb.pick(eps, { avoid: new Set([eps[0]!.key]) })), eps[1]!.key);
  assert.equal(keyOf(lb.pick(eps.slice(0, 1), { avoid: new Set([eps[0]!.key]) })), eps[0]!.key, 'a tried endpoint beats none');
});

const KEYS = Array.from({ length: 20_000 }, (_, i) => hash32(`user-${i}`));

function moved(before: { lookup(h: number): string }, after: { lookup(h: number): string }): { moved: number; toNew: number } {
  let count = 0;
  let toNew = 0;
  for (const h of KEYS) {
    const a = before.lookup(h);
    const b = after.lookup(h);
    if (a !== b) {
      count++;
      if (b === 'new') toNew++;
    }
  }
  return { moved: count / KEYS.length, toNew };
}

test('ring hash: adding an endpoint moves only the keys it takes over; removing one moves only its own', () => {
  const four = ['a', 'b', 'c', 'd'];
  const ring4 = new RingHashTable(four);
  const ring5 = new RingHashTable([...four, 'new']);
  assert.ok(ring4.size >= 1024 && ring5.size >= 1024, 'the ring honours minimumRingSize');
  const added = moved(ring4, ring5);
  assert.ok(added.moved > 0.12 && added.moved < 0.28, `moved ${added.moved}`);
  assert.equal(added.toNew, Math.round(added.moved * KEYS.length), 'every moved key went to the new endpoint');
  const removed = moved(ring5, ring4);
  for (const h of KEYS) if (ring5.lookup(h) !== 'new') assert.equal(ring4.lookup(h), ring5.lookup(h));
  assert.ok(Math.abs(removed.moved - added.moved) < 1e-9);
  // Spread: with 1024 points every endpoint holds a fair share.
  const share = tally(() => '', 0);
  for (const h of KEYS) share.set(ring4.lookup(h), (share.get(ring4.lookup(h)) ?? 0) + 1);
  for (const n of share.values()) assert.ok(n / KEYS.length > 0.15 && n / KEYS.length < 0.35, `${n}`);
  // The ring depends on the set of endpoints, not on their order.
  const shuffled = new RingHashTable(['d', 'b', 'a', 'c']);
  for (const h of KEYS.slice(0, 2000)) assert.equal(shuffled.lookup(h), ring4.lookup(h));
});

test('Maglev: a table change moves close to the minimal share of keys', () => {
  const four = ['a', 'b', 'c', 'd'];
  const m4 = new MaglevTable(four, 65537);
  const m5 = new MaglevTable([...four, 'new'], 65537);
  const added = moved(m4, m5);
  assert.ok(added.moved > 0.15 && added.moved < 0.25, `moved ${added.moved}`);
  assert.ok(added.toNew / (added.moved * KEYS.length) > 0.95, 'almost every moved key went to the new endpoint');
  const share = new Map<string, number>();
  for (const h of KEYS) share.set(m4.lookup(h), (share.get(m4.lookup(h)) ?? 0) + 1);
  for (const n of share.values()) assert.ok(Math.abs(n / KEYS.length - 0.25) < 0.02, `${n}`);
});

test('hash keys: header (order of repeated values ignored), source IP, query parameter; absent key balances at random', () => {
  const req = (headers: string[], path = '/', ip = '10.244.1.10') => request('reviews', { headers, path, source: { ip } });
  const byHeader = { kind: 'httpHeaderName', name: 'X-User' } as const;
  assert.equal(requestHash(byHeader, req(['x-user', 'a', 'x-user', 'b'])).hash, requestHash(byHeader, req(['x-user', 'b', 'X-User', 'a'])).hash);
  assert.notEqual(requestHash(byHeader, req(['x-user', 'a'])).hash, requestHash(byHeader, req(['x-user', 'b'])).hash);
  assert.deepEqual(requestHash(byHeader, req([])), {});
  assert.equal(requestHash({ kind: 'useSourceIp' }, req([], '/', '10.0.0.1')).hash, hash32('10.0.0.1'));
  assert.equal(requestHash({ kind: 'httpQueryParameterName', name: 'session' }, req([], '/x?session=abc&session=def')).hash, hash32('abc'));
  const lb = new ConsistentHashBalancer({ kind: 'ringHash' }, seededRandom(5));
  const eps = endpoints(4);
  const sticky = new Set(Array.from({ length: 50 }, () => keyOf(lb.pick(eps, { hash: hash32('jason') }))));
  assert.equal(sticky.size, 1);
  assert.equal(new Set(Array.from({ length: 200 }, () => keyOf(lb.pick(eps)))).size, 4, 'no hash: random spread');
});

test('httpCookie: an absent cookie with a ttl is issued (tell the caller to set it); with it the request sticks', () => {
  const byCookie = { kind: 'httpCookie', name: 'user', path: '/', ttlMs: 60_000 } as const;
  const first = requestHash(byCookie, request('reviews', { source: { ip: '10.244.1.10', port: 40000 } }));
  assert.ok(first.setCookie && first.hash !== undefined);
  assert.equal(formatSetCookie(first.setCookie), `user="${first.setCookie.value}"; Max-Age=60; Path=/; HttpOnly`);
  const again = requestHash(byCookie, request('reviews', { headers: ['cookie', `theme=dark; user="${first.setCookie.value}"`] }));
  assert.deepEqual(again, { hash: first.hash });
  assert.equal(requestHash({ ...byCookie, ttlMs: 0 }, request('reviews')).setCookie?.maxAgeSeconds, undefined, 'ttl 0s: a session cookie');
  assert.deepEqual(requestHash({ kind: 'httpCookie', name: 'user' }, request('reviews')), {}, 'no ttl: never issued');
});

test("sticky sessions through a cluster: Istio's consistentHash example by cookie, stable when an endpoint joins", () => {
  const yaml = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, ttl: 0s}`;
  const s = mesh(yaml);
  const clusters = new UpstreamClusters({ clock: new ManualClock(), random: seededRandom(6) });
  const resolved = clusters.resolve(s, { host: 'reviews.bookinfo.svc.cluster.local', port: 9080 }, { namespace: 'bookinfo', labels: {} });
  assert.ok(resolved.ok);
  const cluster = resolved.cluster;
  assert.equal(cluster.algorithm, 'RING_HASH');
  const first = cluster.choose(request('reviews', { source: { ip: '10.244.1.10', port: 5555 } }));
  assert.ok(first.kind === 'endpoint' && first.setCookie);
  const cookie = `user="${first.setCookie.value}"`;
  for (let i = 0; i < 20; i++) {
    const next = cluster.choose(request('reviews', { headers: ['cookie', cookie] }));
    assert.equal(next.kind === 'endpoint' && next.endpoint.key, first.endpoint.key);
    assert.equal(next.kind === 'endpoint' && next.setCookie, undefined);
  }
  clusters.close();
});
