// The lab in real network namespaces: pods reach each other across nodes and reach Services by name
// and VIP, crashed containers come back, YAML edits reach kube-proxy and DNS, and `down` leaves the
// machine exactly as it was, also after kill -9 of everything the lab started.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { cgroup2Root } from '../../agent/system/cgroups.js';
import { ipv4Key, pinnedState } from './helpers/bpf-state.js';
import { hostFootprint, labsUp, withoutLabs } from './helpers/host-footprint.js';
import { LabSession } from './helpers/lab-session.js';
import { AMBIT_MAIN, ambit, eventually, requireBuiltAmbit, requireRoot } from './helpers/lab-cli.js';
import { WEB_ALPHA_VIP, shopMeshYaml } from './helpers/lab-shop-mesh.js';

const LAB = `t${process.pid % 10000}`;
const dir = mkdtempSync(join(tmpdir(), 'ambit-lab-test-'));
const yamlPath = join(dir, 'mesh.yaml');
const cgroupRoot = cgroup2Root();
const before_ = { footprint: hostFootprint(cgroupRoot), labs: labsUp() };

before(async () => {
  requireRoot();
  requireBuiltAmbit();
  writeFileSync(yamlPath, shopMeshYaml());
  const up = await ambit(['lab', 'up', '--lab', LAB, '--timeout', '90', yamlPath], 120_000);
  assert.equal(up.code, 0, `lab up failed:\n${up.stdout}\n${up.stderr}`);
  assert.match(up.stdout, /is up: 2 nodes, 6 pods/);
});

after(async () => {
  await ambit(['lab', 'down', '--lab', LAB]);
  rmSync(dir, { recursive: true, force: true });
});

/** What the server said: `<pod that answered> <address it saw the connection come from>`. */
async function curlFrom(pod: string, url: string): Promise<{ pod: string; peer: string }> {
  const r = await ambit(['lab', 'exec', '--lab', LAB, pod, '--', 'curl', '-s', '--max-time', '3', url], 15_000);
  assert.equal(r.code, 0, `curl ${url} from ${pod} failed (exit ${r.code}): ${r.stderr}`);
  const [answered = '', peer = ''] = r.stdout.trim().split(' ');
  return { pod: answered, peer };
}

const session = new LabSession(LAB, yamlPath);
const agentLog = (node: string): Promise<string> => session.agentLog(node);
/** How many lines of a node agent's log match `pattern`: to tell the records a step added. */
const loggedLines = async (node: string, pattern: RegExp): Promise<number> => (await agentLog(node)).split('\n').filter((l) => pattern.test(l)).length;

test('pods reach pods on the same node and across nodes by IP', async () => {
  assert.equal((await curlFrom('shop/client', 'http://10.245.1.10:8080/')).pod, 'web-a');
  assert.equal((await curlFrom('shop/client', 'http://10.245.2.10:8080/')).pod, 'web-b');
});

test('pods reach a Service by VIP and by every DNS form of its name, balanced over both endpoints', async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 20 && seen.size < 2; i++) seen.add((await curlFrom('shop/client', 'http://10.97.0.10/')).pod);
  assert.deepEqual([...seen].sort(), ['web-a', 'web-b']);
  for (const name of ['web', 'web.shop', 'web.shop.svc', 'web.shop.svc.cluster.local']) {
    assert.match((await curlFrom('shop/client', `http://${name}/`)).pod, /^web-[ab]$/);
  }
});

test('a pod reaches itself through its own Service (hairpin)', async () => {
  const answers = new Set<string>();
  for (let i = 0; i < 12; i++) answers.add((await curlFrom('shop/web-a', 'http://web/')).pod);
  assert.ok(answers.has('web-a'), `web-a never reached itself through the Service: ${[...answers].join(', ')}`);
});

test('enrolled pods\' connections cross the agents, which keep the client address', async () => {
  // Same node: the agent connects to web-a as the client itself.
  assert.deepEqual(await curlFrom('shop/client', 'http://10.245.1.10:8080/'), { pod: 'web-a', peer: '10.245.1.20' });
  // Across nodes: an HBONE tunnel from the client's address to web-b's 15008, then beta's agent to web-b.
  assert.deepEqual(await curlFrom('shop/client', 'http://10.245.2.10:8080/'), { pod: 'web-b', peer: '10.245.1.20' });
  const alpha = await agentLog('alpha');
  assert.match(
    alpha,
    /"src\.addr":"10\.245\.1\.20:\d+","src\.workload":"client","src\.namespace":"shop","src\.identity":"spiffe:\/\/cluster\.local\/ns\/shop\/sa\/default","dst\.addr":"10\.245\.2\.10:15008","dst\.hbone_addr":"10\.245\.2\.10:8080","dst\.workload":"web-b".*"direction":"outbound".*"msg":"connection complete"/,
  );
  const beta = await agentLog('beta');
  assert.match(beta, /"src\.addr":"10\.245\.1\.20:\d+","src\.workload":"client","src\.namespace":"shop","src\.identity":"spiffe:\/\/cluster\.local\/ns\/shop\/sa\/default","dst\.addr":"10\.245\.2\.10:8080".*"dst\.workload":"web-b".*"direction":"inbound".*"msg":"connection complete"/);
  const metrics = await ambit(['lab', 'exec', '--lab', LAB, 'node/beta', '--', 'curl', '-s', 'http://127.0.0.1:15020/metrics']);
  assert.match(metrics.stdout, /^istio_tcp_connections_opened_total\{reporter="destination",.*source_principal="spiffe:\/\/cluster\.local\/ns\/shop\/sa\/default",.*destination_workload="web",.*connection_security_policy="mutual_tls"\} [1-9]/m);
  assert.match(metrics.stdout, /^ambit_redirect_decisions_total\{reason="tc-assigned-listener"\} [1-9]/m);
});

test('a pod that opts out, and a pod of a namespace without the label, go direct', async () => {
  assert.deepEqual(await curlFrom('shop/optout', 'http://10.245.2.10:8080/'), { pod: 'web-b', peer: '10.245.1.21' });
  assert.doesNotMatch(await agentLog('alpha'), /"src\.workload":"optout"/);
  assert.doesNotMatch(await agentLog('alpha'), /captured other\/outsider/);
});

test('inbound from a pod outside the mesh is steered through the destination agent (15006), keeping its address', async () => {
  // Across nodes (tc on beta's uplink) and on the same node (tc on the outsider's own veth).
  assert.deepEqual(await curlFrom('other/outsider', 'http://10.245.2.10:8080/'), { pod: 'web-b', peer: '10.245.1.30' });
  assert.deepEqual(await curlFrom('other/outsider', 'http://10.245.1.10:8080/'), { pod: 'web-a', peer: '10.245.1.30' });
  assert.match(await agentLog('beta'), /"src\.addr":"10\.245\.1\.30:\d+","src\.workload":"outsider","src\.namespace":"other","dst\.addr":"10\.245\.2\.10:8080".*"direction":"inbound"/);
  assert.match(await agentLog('alpha'), /"src\.addr":"10\.245\.1\.30:\d+","src\.workload":"outsider","src\.namespace":"other","dst\.addr":"10\.245\.1\.10:8080".*"direction":"inbound"/);
});

test('inbound from a pod outside the mesh through a Service VIP, DNATed to an enrolled pod of its own node, still goes through that agent', async () => {
  // kube-proxy's DNAT happens after tc on the client's veth: the nft table of dnat-capture.ts catches it.
  const inboundFromOutsider = (): Promise<number> =>
    loggedLines('alpha', /"src\.addr":"10\.245\.1\.30:\d+","src\.workload":"outsider".*"dst\.addr":"10\.245\.1\.10:8080".*"direction":"inbound"/);
  const before = await inboundFromOutsider();
  // The lab's kube-proxy picks web-a (alpha) or web-b (beta) at random: ask until web-a has answered twice.
  let viaAlpha = 0;
  for (let i = 0; i < 30 && viaAlpha < 2; i++) {
    const answer = await curlFrom('other/outsider', 'http://10.97.0.10/');
    assert.equal(answer.peer, '10.245.1.30', 'the pod sees the client\'s own address');
    if (answer.pod === 'web-a') viaAlpha++;
  }
  assert.equal(viaAlpha, 2, 'web-a never answered through the VIP');
  await eventually('alpha to log both connections as inbound', async () => ((await inboundFromOutsider()) >= before + 2 ? true : undefined));
  const metrics = await ambit(['lab', 'exec', '--lab', LAB, 'node/alpha', '--', 'curl', '-s', 'http://127.0.0.1:15020/metrics']);
  assert.match(metrics.stdout, /^ambit_redirect_decisions_total\{reason="vip-assigned-listener"\} [2-9]/m);
  assert.match(metrics.stdout, /^ambit_redirect_decisions_total\{reason="vip-assigned-established"\} [1-9]/m);
});

const applyOnBeta = (yaml: string): Promise<number> => session.apply(yaml);

test('the inbound agent enforces PeerAuthentication STRICT and AuthorizationPolicy on plaintext, live', async () => {
  try {
    await applyOnBeta(
      shopMeshYaml(`---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: web-strict, namespace: shop }
spec: { selector: { matchLabels: { app: web } }, portLevelMtls: { "8080": { mode: STRICT } } }
`),
    );
    const refused = await ambit(['lab', 'exec', '--lab', LAB, 'other/outsider', '--', 'curl', '-s', '--max-time', '3', 'http://10.245.2.10:8080/']);
    assert.notEqual(refused.code, 0, `plaintext reached a STRICT port: ${refused.stdout}`);
    assert.match(await agentLog('beta'), /"src\.addr":"10\.245\.1\.30:\d+".*"error":"plaintext refused: PeerAuthentication shop\/web-strict requires mTLS \(STRICT\) for shop\/web-b:8080","response_flags":"DENY","msg":"connection failed"/);

    await applyOnBeta(
      shopMeshYaml(`---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-outsiders, namespace: shop }
spec:
  action: DENY
  rules: [{ from: [{ source: { ipBlocks: [10.245.1.30/32] } }], to: [{ operation: { ports: ["8080"] } }] }]
`),
    );
    const denied = await ambit(['lab', 'exec', '--lab', LAB, 'other/outsider', '--', 'curl', '-s', '--max-time', '3', 'http://10.245.2.10:8080/']);
    // 8080 speaks HTTP (the web Service's port is named http): each request is authorized, a denied one answered 403.
    assert.equal(denied.stdout, 'RBAC: access denied', `a denied source got through: ${denied.stdout}`);
    assert.match(await agentLog('beta'), /"src\.addr":"10\.245\.1\.30:\d+".*"response_code":403,.*"response_code_details":"rbac_access_denied_matched_policy\[shop\/no-outsiders\]"/);
    // The opted-out pod is plaintext too, but the policy does not name it.
    assert.deepEqual(await curlFrom('shop/optout', 'http://10.245.2.10:8080/'), { pod: 'web-b', peer: '10.245.1.21' });
  } finally {
    await applyOnBeta(shopMeshYaml());
  }
  assert.deepEqual(await curlFrom('other/outsider', 'http://10.245.2.10:8080/'), { pod: 'web-b', peer: '10.245.1.30' });
});

test('applications in captured pods still see their real peer (getpeername)', async () => {
  const script = 'import socket; s = socket.create_connection(("10.245.2.10", 8080), 3); print("%s:%d" % s.getpeername())';
  const r = await ambit(['lab', 'exec', '--lab', LAB, 'shop/client', '--', '/usr/bin/python3', '-c', script]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), '10.245.2.10:8080');
});

/** One attempt from `pod`, without asserting: a refused or timed-out connection is an answer here. */
async function attempt(pod: string, url: string): Promise<{ code: number | null; body: string }> {
  const r = await ambit(['lab', 'exec', '--lab', LAB, pod, '--', 'curl', '-s', '--max-time', '2', url], 15_000);
  return { code: r.code, body: r.stdout.trim() };
}

test('kill -9 of an agent: every path of its pods fails closed while it is down; the restarted agent adopts its maps and links and sweeps the pins of pods that left', async () => {
  const status = JSON.parse(readFileSync(`/run/ambit/lab/${LAB}/status.json`, 'utf8')) as { supervisorPid: number; processes: { id: string; pid?: number }[] };
  const pid = status.processes.find((p) => p.id === 'node/alpha')?.pid;
  assert.ok(pid, 'no pid for the alpha agent');
  const pinDir = `/sys/fs/bpf/ambit/${LAB}-alpha`;
  const webAKey = `${ipv4Key('10.245.1.10')}=`;
  const pinned = pinnedState(pinDir);
  assert.ok(pinned.linkIds['pods/shop_web-a/ambit_connect4'] && pinned.linkIds['pods/shop_client/ambit_connect4'], `web-a and client are not both pinned: ${JSON.stringify(pinned.linkIds)}`);
  assert.ok(pinned.entries['ambit_enrolled']?.some((e) => e.startsWith(webAKey)), 'web-a is not in ambit_enrolled');
  const swept = /removed capture left by a previous agent for shop\/web-a/;
  const sweptBefore = await loggedLines('alpha', swept);
  // The supervisor restarts an agent at once; stopped, it cannot race the checks below.
  const readyAgain = (): Promise<boolean> =>
    eventually('the agent to be ready again', async () => {
      const r = await ambit(['lab', 'exec', '--lab', LAB, 'node/alpha', '--', 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:15021/healthz/ready']);
      return r.stdout === '200' ? true : undefined;
    }, 30_000);
  let edited = false;
  process.kill(status.supervisorPid, 'SIGSTOP');
  let resumedAt = 0;
  let ready: Promise<boolean> = Promise.resolve(false);
  try {
    try {
      process.kill(pid, 'SIGKILL');
      // Dead (a zombie until the stopped supervisor reaps it): its sockets are closed.
      await eventually('the agent to die', async () => (/^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')) ? true : undefined), 10_000);
      // The pods and the network work: a pod outside the mesh on this node still reaches web-b (beta's agent is up).
      assert.deepEqual(await attempt('shop/optout', 'http://10.245.2.10:8080/'), { code: 0, body: 'web-b 10.245.1.21' }, 'the control path failed: the refusals below would prove nothing');
      const paths: [string, string, string][] = [
        ['outbound across nodes (connect hook to 15001)', 'shop/client', 'http://10.245.2.10:8080/'],
        ['outbound on the same node', 'shop/client', 'http://10.245.1.10:8080/'],
        ['outbound to a Service VIP', 'shop/client', 'http://10.97.0.10/'],
        ['inbound from outside the mesh (tc to 15006)', 'other/outsider', 'http://10.245.1.10:8080/'],
        ['inbound from outside the mesh through a VIP DNATed to web-a (nft to 15006)', 'other/outsider', `http://${WEB_ALPHA_VIP}/`],
      ];
      for (const [path, pod, url] of paths) {
        const r = await attempt(pod, url);
        assert.ok(r.code !== 0 && r.body === '', `${path}: ${pod} reached ${url} while its agent was down (curl exit ${r.code}: ${r.body})`);
      }
      // While no agent watches, web-a leaves the mesh: the next agent must remove what was pinned for it.
      writeFileSync(yamlPath, shopMeshYaml('', undefined, ', side: alpha, istio.io/dataplane-mode: none'));
      edited = true;
    } finally {
      process.kill(status.supervisorPid, 'SIGCONT');
      resumedAt = Date.now();
      ready = readyAgain();
      await ready.catch(() => undefined); // the next tests need the agent back, whatever failed above
    }
    await ready;
    console.log(`# alpha's agent was ready ${Date.now() - resumedAt} ms after the supervisor resumed`);
    // Adopted: the same maps and the same links (kernel ids), not new ones with equal contents.
    const adopted = pinnedState(pinDir);
    // tc links on pods' veths follow the devices; the node's own (fab0) and every pod link must be the same link.
    const stable = (ids: Readonly<Record<string, number>>): Record<string, number> =>
      Object.fromEntries(Object.entries(ids).filter(([path]) => !path.startsWith('tc/veth') && !path.startsWith('pods/shop_web-a/')));
    assert.deepEqual(adopted.mapIds, pinned.mapIds, 'the restarted agent made new maps instead of adopting the pinned ones');
    assert.deepEqual(adopted.entries['ambit_config'], pinned.entries['ambit_config']);
    assert.deepEqual(stable(adopted.linkIds), stable(pinned.linkIds), 'the links of pods still enrolled were not adopted as they were (same link ids)');
    // Swept (before readiness: the first reconcile does it): web-a's entry, pins and programs are gone.
    await eventually('the restarted agent to say it swept web-a', async () => ((await loggedLines('alpha', swept)) > sweptBefore ? true : undefined), 5_000);
    assert.deepEqual(pinnedState(pinDir).entries['ambit_enrolled'], pinned.entries['ambit_enrolled']!.filter((e) => !e.startsWith(webAKey)), 'ambit_enrolled is not what it held, less web-a');
    assert.equal(existsSync(`${pinDir}/links/pods/shop_web-a`), false, 'web-a left the mesh but its pins stayed');
    const webA = execFileSync('bpftool', ['cgroup', 'show', join(cgroupRoot, 'ambit', LAB, 'pods', 'shop.web-a')], { encoding: 'utf8' });
    assert.doesNotMatch(webA, /ambit_/, `web-a's cgroup still runs the capture programs:\n${webA}`);
    // One link per program on the client's cgroup: the new agent re-used the pinned links.
    const attached = execFileSync('bpftool', ['cgroup', 'show', join(cgroupRoot, 'ambit', LAB, 'pods', 'shop.client')], { encoding: 'utf8' });
    for (const program of ['connect4', 'connect6', 'sockops', 'getpeername4', 'getpeername6']) {
      const links = attached.split('\n').filter((l) => l.trim().endsWith(`ambit_${program}`)).length;
      assert.equal(links, 1, `ambit_${program} attached ${links} times:\n${attached}`);
    }
    assert.deepEqual(await curlFrom('shop/client', 'http://10.245.2.10:8080/'), { pod: 'web-b', peer: '10.245.1.20' });
  } finally {
    if (edited) {
      const captured = await loggedLines('alpha', /captured shop\/web-a/);
      writeFileSync(yamlPath, shopMeshYaml());
      await eventually('web-a captured again', async () => ((await loggedLines('alpha', /captured shop\/web-a/)) > captured ? true : undefined));
    }
  }
});

test('removing the namespace label releases its pods live, and adding it back captures them again', async () => {
  const captures = async (): Promise<number> => (await agentLog('alpha')).match(/captured shop\/client/g)?.length ?? 0;
  const before = await captures();
  const tunnelled = async (): Promise<number> => (await agentLog('alpha')).match(/"src\.workload":"client".*"dst\.hbone_addr":"10\.245\.2\.10:8080".*"msg":"connection complete"/g)?.length ?? 0;
  const tunnelledBefore = await tunnelled();
  try {
    writeFileSync(yamlPath, shopMeshYaml('', '{}'));
    await eventually('client released', async () => ((await agentLog('alpha')).includes('released shop/client') ? true : undefined));
    // Not captured: web-b sees the client pod itself, straight through the node, and alpha relays nothing.
    assert.deepEqual(await curlFrom('shop/client', 'http://10.245.2.10:8080/'), { pod: 'web-b', peer: '10.245.1.20' });
    assert.equal(await tunnelled(), tunnelledBefore, 'a released pod\'s connection went through the agent');
  } finally {
    writeFileSync(yamlPath, shopMeshYaml());
  }
  await eventually('client captured again', async () => ((await captures()) === before + 1 ? true : undefined));
  assert.deepEqual(await curlFrom('shop/client', 'http://10.245.2.10:8080/'), { pod: 'web-b', peer: '10.245.1.20' });
  await eventually('the connection to be tunnelled again', async () => ((await tunnelled()) > tunnelledBefore ? true : undefined), 5_000);
});

test('exec node/<name> runs in the node namespace, which holds the node IP', async () => {
  const r = await ambit(['lab', 'exec', '--lab', LAB, 'node/beta', '--', 'ip', '-br', 'addr', 'show', 'fab0']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /172\.31\.78\.12\/32/);
});

test('a container that exits is restarted with backoff, and its output is in its log', async () => {
  const restarts = await eventually('two restarts of shop/crasher', async () => {
    const status = await ambit(['lab', 'status', '--lab', LAB]);
    const row = status.stdout.split('\n').find((l) => l.startsWith('shop/crasher'));
    const count = Number(row?.trim().split(/\s+/).pop());
    return count >= 2 ? count : undefined;
  });
  assert.ok(restarts >= 2);
  const logs = await ambit(['lab', 'logs', '--lab', LAB, 'shop/crasher']);
  assert.ok((logs.stdout.match(/^crashing$/gm) ?? []).length >= 2, logs.stdout);
  assert.match(logs.stdout, /exited \(code 3, signal -\); restarting in \d+s/);
});

test('status lists every agent and container; agents are ready', async () => {
  const status = await ambit(['lab', 'status', '--lab', LAB]);
  assert.equal(status.code, 0);
  assert.match(status.stdout, /node\/alpha \(agent\)\s+alpha\s+172\.31\.78\.11\s+running\s+yes/);
  assert.match(status.stdout, /node\/beta \(agent\)\s+beta\s+172\.31\.78\.12\s+running\s+yes/);
  assert.match(status.stdout, /shop\/web-b \[main\]\s+beta\s+10\.245\.2\.10\s+running\s+yes/);
});

test('bringing the same lab up twice is refused with a clear message', async () => {
  const again = await ambit(['lab', 'up', '--lab', LAB, yamlPath]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, new RegExp(`lab "${LAB}" is already up .*; run \`ambit lab down --lab ${LAB}\` first`));
});

test('editing the YAML changes Services live: a new Service resolves and routes, one with internalTrafficPolicy: Local only to its node', async () => {
  writeFileSync(
    yamlPath,
    shopMeshYaml(`---
apiVersion: v1
kind: Service
metadata: { name: web-b-only, namespace: shop }
spec:
  clusterIP: 10.97.0.11
  selector: { app: web }
  ports: [{ name: http, port: 8081, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: web-local, namespace: shop }
spec:
  clusterIP: 10.97.0.12
  selector: { app: web }
  internalTrafficPolicy: Local
  ports: [{ name: http, port: 8082, targetPort: 8080 }, { name: tcp, port: 8083, targetPort: 8080 }]
`),
  );
  // The client's DNS goes to its agent's proxy, which answers the new name once the agent has the edit.
  await eventually('the new Service to resolve in the pod', async () => ((await ambit(['lab', 'exec', '--lab', LAB, 'shop/client', '--', 'getent', 'hosts', 'web-local'])).code === 0 ? true : undefined));
  assert.match((await curlFrom('shop/client', 'http://web-b-only:8081/')).pod, /^web-[ab]$/);
  // The client runs on alpha: through the L7 proxy (http) and the L4 relay (tcp) alike, only web-a answers.
  for (const port of [8082, 8083]) {
    const answered = new Set<string>();
    for (let i = 0; i < 8; i++) answered.add((await curlFrom('shop/client', `http://web-local:${port}/`)).pod);
    assert.deepEqual([...answered], ['web-a'], `port ${port} of an internalTrafficPolicy: Local Service left the client's node`);
  }
});

test('down after kill -9 of every lab process leaves the machine as it was', async () => {
  // SIGKILL the supervisor, agents and containers at once, with no chance to clean up after themselves.
  writeFileSync(join(cgroupRoot, 'ambit', LAB, 'cgroup.kill'), '1');
  // ambit uninstall removes a node's capture: its pins, and the steering rule in its namespace.
  const uninstall = await ambit(['lab', 'exec', '--lab', LAB, 'node/alpha', '--', process.execPath, AMBIT_MAIN, 'uninstall', '--bpf-scope', `${LAB}-alpha`]);
  assert.equal(uninstall.code, 0, uninstall.stderr);
  assert.match(uninstall.stdout, new RegExp(`pins, links and maps under /sys/fs/bpf/ambit/${LAB}-alpha\n  ip rule fwmark 0x200 lookup 100\n  nft table ip ambit_dnat_capture\n  nft table ip ambit_replies\n  routes of table 100`));
  assert.equal(existsSync(`/sys/fs/bpf/ambit/${LAB}-alpha`), false);
  const rules = await ambit(['lab', 'exec', '--lab', LAB, 'node/alpha', '--', 'ip', 'rule']);
  assert.doesNotMatch(rules.stdout, /fwmark/);
  const tables = await ambit(['lab', 'exec', '--lab', LAB, 'node/alpha', '--', 'nft', 'list', 'tables']);
  assert.doesNotMatch(tables.stdout, /ambit_dnat_capture/);
  const down = await ambit(['lab', 'down', '--lab', LAB]);
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, new RegExp(`lab "${LAB}" is down: removed 9 network namespaces`));
  // Other labs may come and go meanwhile (other engineers' tests): what they own is left out of both sides.
  const others = [...new Set([...before_.labs, ...labsUp()])].filter((lab) => lab !== LAB);
  assert.deepEqual(withoutLabs(hostFootprint(cgroupRoot), others), withoutLabs(before_.footprint, others));
  const again = await ambit(['lab', 'down', '--lab', LAB]);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /was not up; nothing to remove/);
});
