// Service endpoints through the label index (agent/state/label-index.ts): matchLabels semantics kept
// (every pair, the Service's own namespace only, an empty selector selects the namespace), and building a
// snapshot reads each pod's labels a bounded number of times, not once per Service.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildSnapshot } from '../../agent/state/build.js';
import { pod, service } from './helpers/mesh-objects.js';

const options = { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' };
const endpoints = (s: ReturnType<typeof buildSnapshot>, key: string): string[] => (s.services.get(key)?.endpoints ?? []).map((e) => e.workload);

test('a selector selects the pods of its namespace that hold every pair, in the pods\' order', () => {
  const s = buildSnapshot(
    [
      pod('shop', 'web-2', { ip: '10.1.0.2', labels: { app: 'web', tier: 'front' } }),
      pod('shop', 'web-1', { ip: '10.1.0.1', labels: { app: 'web', tier: 'front' } }),
      pod('shop', 'web-old', { ip: '10.1.0.3', labels: { app: 'web', tier: 'back' } }),
      pod('shop', 'api', { ip: '10.1.0.4', labels: { app: 'api' } }),
      pod('other', 'web-x', { ip: '10.1.0.5', labels: { app: 'web', tier: 'front' } }),
      service('shop', 'front', '10.96.0.1', { app: 'web', tier: 'front' }, [{ port: 80, targetPort: 8080 }]),
      service('shop', 'all', '10.96.0.2', {}, [{ port: 80, targetPort: 8080 }]),
      service('shop', 'none', '10.96.0.3', { app: 'web', tier: 'middle' }, [{ port: 80, targetPort: 8080 }]),
    ],
    options,
  );
  assert.deepEqual(endpoints(s, 'shop/front.shop.svc.cluster.local'), ['shop/web-2', 'shop/web-1']);
  assert.deepEqual(endpoints(s, 'shop/all.shop.svc.cluster.local'), ['shop/web-2', 'shop/web-1', 'shop/web-old', 'shop/api']);
  assert.deepEqual(endpoints(s, 'shop/none.shop.svc.cluster.local'), []);
});

test('building a snapshot reads each pod\'s labels a bounded number of times, however many Services select: 400 Services over 4,000 pods', () => {
  let reads = 0;
  // Counts every read of a pod's labels: a scan per Service would read them 400 times each (1.6 million).
  const pods = Array.from({ length: 4_000 }, (_, i) => {
    const p = pod('big', `p-${i}`, { ip: `10.2.${i >> 8}.${i & 255}`, labels: { app: `a-${Math.floor(i / 10)}` } });
    return { ...p, metadata: { ...p.metadata, labels: new Proxy(p.metadata.labels, { get: (t, k) => (reads++, Reflect.get(t, k)) }) } };
  });
  const services = Array.from({ length: 400 }, (_, k) => service('big', `s-${k}`, `10.96.${k >> 8}.${k & 255}`, { app: `a-${k}` }, [{ port: 80, targetPort: 8080 }]));
  const s = buildSnapshot([...pods, ...services], options);
  assert.equal(endpoints(s, 'big/s-399.big.svc.cluster.local').length, 10);
  assert.ok(reads <= 4_000 * 20, `building read pods' labels ${reads} times for 4,000 pods`);
});
