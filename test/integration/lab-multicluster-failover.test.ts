// Locality across clusters in the lab: with reviews in both clusters, productpage's agent in cluster1
// prefers cluster1's own reviews-v1; when that endpoint is lost, the DestinationRule's outlier detection
// ejects it and the requests fail over to reviews-v3 in cluster2, through the east-west gateways.
// reviews-v1 has no readinessProbe, so the agent's active health checks (which reuse it) are not what
// ejects it: without the outlierDetection the requests never fail over.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { type CommandResult, ambit, eventually, requireBuiltAmbit, requireRoot } from './helpers/lab-cli.js';
import { tally } from './helpers/lab-session.js';

const LAB = `mf${process.pid % 10000}`;
const dir = mkdtempSync(join(tmpdir(), 'ambit-lab-failover-'));
const example = (file: string): string => fileURLToPath(new URL(`../../examples/${file}`, import.meta.url));

/** cluster1 gets its own reviews (v1, no ratings) beside cluster2's v3, and Istio's outlier detection for reviews. */
const LOCAL_REVIEWS = `apiVersion: v1
kind: ServiceAccount
metadata: { name: bookinfo-reviews, namespace: bookinfo }
---
apiVersion: v1
kind: Pod
metadata: { name: reviews-v1, namespace: bookinfo, labels: { app: reviews, version: v1 } }
spec:
  nodeName: east-1
  serviceAccountName: bookinfo-reviews
  containers:
    - name: reviews
      command: [node, ${example('bookinfo/apps/reviews.mjs')}]
      ports: [{ name: http, containerPort: 9080 }]
      env:
        - { name: VERSION, value: v1 }
        - { name: POD_NAME, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
        - { name: POD_NAMESPACE, valueFrom: { fieldRef: { fieldPath: metadata.namespace } } }
        - { name: NODE_NAME, valueFrom: { fieldRef: { fieldPath: spec.nodeName } } }
status: { phase: Running, podIP: 10.244.81.12 }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: bookinfo }
spec:
  host: reviews.bookinfo.svc.cluster.local
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 120s, maxEjectionPercent: 100 }
`;

before(async () => {
  requireRoot();
  requireBuiltAmbit();
  const extra = join(dir, 'local-reviews.yaml');
  writeFileSync(extra, LOCAL_REVIEWS);
  const up = await ambit(
    ['lab', 'up', '--lab', LAB, '--timeout', '150', '--cluster', `cluster1=${example('multicluster/cluster1.yaml')},${extra}`, '--cluster', `cluster2=${example('multicluster/cluster2.yaml')}`],
    240_000,
  );
  assert.equal(up.code, 0, `lab up failed:\n${up.stdout}\n${up.stderr}`);
});

after(async () => {
  await ambit(['lab', 'down', '--lab', LAB], 120_000);
  rmSync(dir, { recursive: true, force: true });
});

const exec = (target: string, argv: readonly string[]): Promise<CommandResult> => ambit(['lab', 'exec', '--lab', LAB, target, '--', ...argv], 30_000);

/** Which reviews pod answered productpage's request for the page (or why none did). */
async function reviewsAnswer(): Promise<{ pod: string; status: number | string }> {
  const r = await exec('bookinfo/client', ['curl', '-s', '--max-time', '10', 'http://productpage:9080/productpage']);
  if (r.code !== 0) return { pod: 'none', status: `curl exit ${r.code}` };
  const page = JSON.parse(r.stdout) as { reviews?: { pod?: string; error?: string } };
  return page.reviews?.pod ? { pod: page.reviews.pod, status: 200 } : { pod: 'none', status: page.reviews?.error ?? 'no reviews' };
}

test("productpage prefers its own cluster's reviews, and fails over to the other cluster's when it is lost", async () => {
  const local: { pod: string; status: number | string }[] = [];
  for (let i = 0; i < 10; i++) local.push(await reviewsAnswer());
  assert.deepEqual(tally(local), { 'reviews-v1 200': 10 }, 'reviews-v3 in cluster2 answered while cluster1 had its own');

  // cluster1's reviews is lost: its pod refuses every connection to 9080 from now on.
  const cut = await exec('bookinfo/reviews-v1', ['sh', '-c', 'nft add table ip lost && nft add chain ip lost in "{ type filter hook input priority 0; }" && nft add rule ip lost in tcp dport 9080 reject with tcp reset']);
  assert.equal(cut.code, 0, cut.stderr);

  const after_: { pod: string; status: number | string }[] = [];
  await eventually(
    'requests to fail over to reviews-v3 in cluster2',
    async () => {
      after_.push(await reviewsAnswer());
      return after_.slice(-5).length === 5 && after_.slice(-5).every((a) => a.pod === 'reviews-v3') ? true : undefined;
    },
    30_000,
  );
  // Once failed over, it stays: the lost endpoint is ejected, not retried request after request.
  const settled: { pod: string; status: number | string }[] = [];
  for (let i = 0; i < 10; i++) settled.push(await reviewsAnswer());
  assert.deepEqual(tally(settled), { 'reviews-v3 200': 10 }, `after the failover: ${JSON.stringify(tally(after_))}`);
});
