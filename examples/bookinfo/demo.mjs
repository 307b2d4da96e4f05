// `make demo`: brings the bookinfo mesh up in the lab, sends a bounded burst of requests from the
// client pod, and prints which services and versions answered, then where to look next. The lab stays
// up until `make demo-down`. With --multicluster (`make demo-multicluster`), bookinfo runs over two
// clusters on two networks (examples/multicluster): reviews answers from the second cluster only,
// through the east-west gateways, and the demo shows that nothing else joins the two networks.

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const REQUESTS = 30;
const repo = fileURLToPath(new URL('../..', import.meta.url));
const example = (path) => fileURLToPath(new URL(path, import.meta.url));
const MODES = {
  single: {
    title: 'examples/bookinfo (2 nodes, 7 pods, one ambit agent per node)',
    up: [example('./bookinfo.yaml')],
    nodes: ['node-a', 'node-b'],
  },
  multicluster: {
    title:
      'examples/multicluster: bookinfo over cluster1 (network1: productpage, details, client) and cluster2 (network2: reviews-v3, ratings), one agent per node, the networks joined only by their east-west gateways',
    up: ['--cluster', `cluster1=${example('../multicluster/cluster1.yaml')}`, '--cluster', `cluster2=${example('../multicluster/cluster2.yaml')}`],
    nodes: ['east-1', 'west-1'],
  },
};
const mode = MODES[process.argv.includes('--multicluster') ? 'multicluster' : 'single'];
const ambitMain = `${repo}/dist/agent/cli/main.js`;

function ambit(args, { capture = false, quiet = false } = {}) {
  const stdio = capture ? ['ignore', 'pipe', quiet ? 'ignore' : 'inherit'] : 'inherit';
  const r = spawnSync(process.execPath, [ambitMain, ...args], { stdio, encoding: 'utf8', timeout: 180_000 });
  if (r.error) throw r.error;
  return r;
}

function step(text) {
  process.stdout.write(`\n== ${text}\n`);
}

step(`Bringing up ${mode.title}`);
if (ambit(['lab', 'status'], { capture: true, quiet: true }).status === 0) {
  process.stdout.write('a lab is already up; taking it down first\n');
  ambit(['lab', 'down']);
}
const up = ambit(['lab', 'up', ...mode.up]);
if (up.status !== 0) {
  process.stderr.write('\nthe lab did not come up; see the messages above. `make demo-down` removes what is left.\n');
  process.exit(1);
}

step(`Sending ${REQUESTS} requests from bookinfo/client to http://productpage:9080/productpage`);
// One exec runs the whole loop inside the client pod; every curl is bounded by --max-time.
const loop = `for i in $(seq 1 ${REQUESTS}); do curl -s --max-time 5 http://productpage:9080/productpage; echo; done`;
const traffic = ambit(['lab', 'exec', 'bookinfo/client', '--', 'sh', '-c', loop], { capture: true });

const counts = new Map();
const count = (key) => counts.set(key, (counts.get(key) ?? 0) + 1);
let failed = 0;
for (const line of traffic.stdout.split('\n').filter((l) => l.trim() !== '')) {
  let page;
  try {
    page = JSON.parse(line);
  } catch {
    failed++;
    continue;
  }
  if (page.error) {
    failed++;
    continue;
  }
  count(`productpage ${page.version}`);
  if (page.details?.version) count(`details ${page.details.version}`);
  if (page.reviews?.version) count(`reviews ${page.reviews.version}`);
  if (page.reviews?.ratings?.version) count(`ratings ${page.reviews.ratings.version}`);
}
const answered = counts.get('productpage v1') ?? 0;
process.stdout.write(`${answered} of ${REQUESTS} requests answered, ${failed} failed\n\n`);
process.stdout.write('service      version  responses\n');
for (const [key, n] of [...counts.entries()].sort()) {
  const [service, version] = key.split(' ');
  process.stdout.write(`${service.padEnd(12)} ${version.padEnd(8)} ${n}\n`);
}

step('What the mesh saw (Istio metrics from each node agent, :15020/metrics)');
// Every pod of bookinfo is enrolled and every port speaks HTTP, so each call above was routed by the
// agent of the caller's node (reporter="source") and, across nodes, carried in an mTLS tunnel to the
// agent of the callee's node (reporter="destination"), which authorized it on the caller's identity.
const sum = (text, metric, reporter, extra = '') =>
  [...text.matchAll(new RegExp(`^${metric}\\{reporter="${reporter}"[^}]*${extra}[^}]*\\} (\\d+)`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
for (const node of mode.nodes) {
  const scrape = ambit(['lab', 'exec', `node/${node}`, '--', 'curl', '-s', '--max-time', '5', 'http://127.0.0.1:15020/metrics'], { capture: true });
  const requests = { source: sum(scrape.stdout, 'istio_requests_total', 'source'), destination: sum(scrape.stdout, 'istio_requests_total', 'destination') };
  const mtls = sum(scrape.stdout, 'istio_tcp_connections_opened_total', 'destination', 'connection_security_policy="mutual_tls"');
  process.stdout.write(`${node}: ${requests.source} requests routed for its pods, ${requests.destination} received for them, over ${mtls} mutual-TLS tunnel connections\n`);
}

if (mode === MODES.multicluster) {
  step('The two networks: nothing but the east-west gateways joins them');
  // Bounded: a refused or unroutable connection fails at once; --max-time caps the rest.
  const direct = ambit(['lab', 'exec', 'bookinfo/client', '--', 'curl', '-s', '--max-time', '2', 'http://10.244.82.10:9080/health'], { capture: true, quiet: true });
  process.stdout.write(`bookinfo/client (cluster1) -> reviews-v3's own address 10.244.82.10 (cluster2): ${direct.status === 0 ? 'ANSWERED (the networks are not separate!)' : `no way through (curl exit ${direct.status})`}\n`);
  const route = ambit(['lab', 'exec', 'node/east-1', '--', 'ip', 'route', 'get', '172.31.200.2'], { capture: true, quiet: true });
  process.stdout.write(`node east-1's only way out of cluster1, to cluster2's gateway: ${route.stdout.split('\n')[0]?.trim()}\n`);
  // The gateway's access log has each outer tunnel it relayed: whose it was (the client's proven identity) and which Service it asked for.
  const relayed = ambit(['lab', 'logs', 'gateway/cluster2'], { capture: true, quiet: true })
    .stdout.split('\n')
    .filter((line) => line.includes('"target":"access"') && line.includes('"connection complete"'))
    .map((line) => JSON.parse(line));
  const peers = [...new Set(relayed.map((t) => `${t['src.identity']} -> ${t['dst.hbone_addr']}`))];
  process.stdout.write(`cluster2's east-west gateway relayed ${relayed.length} tunnels, still encrypted end to end: ${peers.join(', ') || 'none'}\n`);
}

step('Where to look next');
process.stdout.write(`  status of agents and pods:  npx ambit lab status
  agent logs (JSON):          npx ambit lab logs node/${mode.nodes[0]}     (all logs under /run/ambit/lab/lab/logs)
  a pod's logs:               npx ambit lab logs bookinfo/reviews-v3
  exec into a pod:            npx ambit lab exec bookinfo/client -- curl -s http://productpage:9080/productpage
  mesh metrics of a node:     npx ambit lab exec node/${mode.nodes[0]} -- curl -s http://127.0.0.1:15020/metrics
  what an agent knows:        npx ambit lab exec node/${mode.nodes[0]} -- npx ambit zc workloads
  tear it all down:           make demo-down
`);
process.exit(answered === REQUESTS ? 0 : 1);
