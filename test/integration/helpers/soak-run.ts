// The soak (issue 14 §4), shared by the 2-minute test and `make soak`'s 30 minutes: mixed load from a
// pod on alpha (HTTP kept-alive and new, L4 new and held) through both agents, a policy edit every
// `policyEveryMs`, certificates of 30 s (renewed every ~15 s), and both agents sampled throughout.

import { readdirSync } from 'node:fs';
import { SOAK_CLIENT } from './fault-clients.js';
import { type FaultMesh, agentPid, clientPod, echoIp, faultMeshYaml, metricSum, nodeGet, rssBytes, webVip } from './fault-lab.js';
import { eventually } from './lab-cli.js';
import { LabProcess, type Report } from './lab-process.js';
import type { LabSession } from './lab-session.js';

const NODES = ['alpha', 'beta'] as const;
/**
 * Tunnels alpha's L7 proxy may keep open to beta once the load stopped: its kept-alive client uses at
 * most 4 connections (fault-clients.ts) and each new-connection request at most one more at a time, so
 * the proxy's pool holds a few; twice that is the bound. A leak would leave thousands.
 */
export const KEPT_UPSTREAM_CONNECTIONS = 16;
type Node = (typeof NODES)[number];

export interface AgentSample {
  readonly at: number;
  readonly rssMiB: number;
  readonly heapMiB: number;
  readonly fds: number;
}

export interface SoakResult {
  readonly client: Report;
  readonly samples: Readonly<Record<Node, readonly AgentSample[]>>;
  /** Least-squares slope of RSS and heap after the first quarter (warm-up), MiB per minute. */
  readonly rssSlope: Readonly<Record<Node, number>>;
  readonly heapSlope: Readonly<Record<Node, number>>;
  /** Open fds and live connections before the load and once it ended and drained. */
  readonly fds: Readonly<Record<Node, { before: number; after: number }>>;
  readonly liveConnections: Readonly<Record<Node, { before: number; during: number; after: number }>>;
  /** What the metrics counted during the run, to compare with what the client made. */
  readonly counted: { readonly requestsSource: number; readonly requestsDestination: number; readonly echoConnectionsSource: number };
  readonly policyEdits: number;
  readonly renewals: number;
}

export const soakMesh = (netOctet: number, podOctet: number): FaultMesh => ({ netOctet, podOctet, clients: 1, web: true });

/** An ALLOW policy for the client's identity: each edit changes only its annotation, so traffic stays allowed while every agent re-checks its live connections. */
function policyYaml(edit: number): string {
  return `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-client, namespace: faults, annotations: { soak/edit: "${edit}" } }
spec:
  action: ALLOW
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/faults/sa/client"] } }] }]
`;
}

const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** Connections the agent's live-connection table holds: the entries of its config dump's workloadState (what `ambit zc connections` prints). */
async function liveConnections(lab: string, node: Node): Promise<number> {
  const dump = JSON.parse(await nodeGet(lab, node, 'http://127.0.0.1:15000/config_dump')) as { workloadState?: Record<string, { connections: { inbound: unknown[]; outbound: unknown[] } }> };
  return Object.values(dump.workloadState ?? {}).reduce((n, w) => n + w.connections.inbound.length + w.connections.outbound.length, 0);
}

async function sample(session: LabSession, lab: string, node: Node): Promise<AgentSample> {
  const pid = agentPid(lab, node);
  return { at: Date.now(), rssMiB: rssBytes(pid) / 2 ** 20, heapMiB: (await metricSum(session, node, 'nodejs_heap_size_used_bytes')) / 2 ** 20, fds: fdCount(pid) };
}

/**
 * MiB per minute, least squares over the samples after the first quarter of the run. The heap is a
 * sawtooth (it climbs between collections whatever is kept), so its slope is fitted to the lowest sample
 * of each run of three: a leak lifts those troughs, garbage waiting for the next collection does not.
 */
function slope(samples: readonly AgentSample[], key: 'rssMiB' | 'heapMiB'): number {
  const settled = samples.slice(Math.floor(samples.length / 4));
  const s = key === 'heapMiB' ? troughs(settled, 3) : settled;
  if (s.length < 2) return 0;
  const xs = s.map((p) => (p.at - s[0]!.at) / 60_000);
  const ys = s.map((p) => p[key]);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const num = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0);
  const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

/** The lowest-heap sample of each consecutive group of `size` (a last, shorter group included). */
function troughs(samples: readonly AgentSample[], size: number): AgentSample[] {
  const lows: AgentSample[] = [];
  for (let i = 0; i < samples.length; i += size) {
    const group = samples.slice(i, i + size);
    lows.push(group.reduce((low, p) => (p.heapMiB < low.heapMiB ? p : low)));
  }
  return lows;
}

const requests = (session: LabSession, node: Node, reporter: string): Promise<number> => metricSum(session, node, 'istio_requests_total', new RegExp(`reporter="${reporter}"`));
const echoConnections = (session: LabSession): Promise<number> => metricSum(session, 'alpha', 'istio_tcp_connections_opened_total', /reporter="source".*destination_workload="echo"/);

export async function soak(session: LabSession, lab: string, mesh: FaultMesh, durationMs: number, policyEveryMs: number, sampleEveryMs: number): Promise<SoakResult> {
  const base = faultMeshYaml(mesh);
  await session.apply(base + policyYaml(0));
  const before = {
    fds: Object.fromEntries(NODES.map((n) => [n, fdCount(agentPid(lab, n))])) as Record<Node, number>,
    live: Object.fromEntries(await Promise.all(NODES.map(async (n) => [n, await liveConnections(lab, n)]))) as Record<Node, number>,
    source: await requests(session, 'alpha', 'source'),
    destination: await requests(session, 'beta', 'destination'),
    echo: await echoConnections(session),
    renewals: (await session.agentLog('alpha')).match(/renewed certificate for/g)?.length ?? 0,
  };
  const samples: Record<Node, AgentSample[]> = { alpha: [], beta: [] };
  const client = new LabProcess(lab, clientPod(0), ['node', '-e', SOAK_CLIENT, echoIp(mesh), webVip(mesh), String(durationMs)]);
  const started = Date.now();
  let edits = 0;
  /** The most live connections each table held at a sample during the load. */
  const during: Record<Node, number> = { alpha: 0, beta: 0 };
  try {
    let nextPolicy = started + policyEveryMs;
    while (Date.now() - started < durationMs) {
      for (const n of NODES) {
        samples[n].push(await sample(session, lab, n));
        during[n] = Math.max(during[n], await liveConnections(lab, n));
      }
      if (Date.now() >= nextPolicy) {
        await session.apply(base + policyYaml(++edits));
        nextPolicy += policyEveryMs;
      }
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(sampleEveryMs, durationMs - (Date.now() - started)))));
    }
    const done = await client.line('the soak client to finish', (r) => r['event'] === 'done', 60_000);
    // Drained: the live-connection tables return to where they were (the held connections closed), but for
    // the upstream connections alpha's L7 proxy keeps for minutes after its last request (outbound-http.ts,
    // UPSTREAM_LINGER_MS), each a tunnel in beta's table: a few, as many as the load's peak concurrency
    // needed, where a leak of entries would leave thousands.
    const after = Object.fromEntries(await Promise.all(NODES.map(async (n) => [n, await eventually(`${n}'s live connections to drain`, async () => {
      const live = await liveConnections(lab, n);
      return live <= before.live[n] + KEPT_UPSTREAM_CONNECTIONS ? live : undefined;
    }, 30_000).catch(() => -1)]))) as Record<Node, number>;
    for (const n of NODES) samples[n].push(await sample(session, lab, n));
    const fdsAfter = Object.fromEntries(NODES.map((n) => [n, fdCount(agentPid(lab, n))])) as Record<Node, number>;
    return {
      client: done,
      samples,
      rssSlope: { alpha: slope(samples.alpha, 'rssMiB'), beta: slope(samples.beta, 'rssMiB') },
      heapSlope: { alpha: slope(samples.alpha, 'heapMiB'), beta: slope(samples.beta, 'heapMiB') },
      fds: { alpha: { before: before.fds.alpha, after: fdsAfter.alpha }, beta: { before: before.fds.beta, after: fdsAfter.beta } },
      liveConnections: { alpha: { before: before.live.alpha, during: during.alpha, after: after.alpha }, beta: { before: before.live.beta, during: during.beta, after: after.beta } },
      counted: {
        requestsSource: (await requests(session, 'alpha', 'source')) - before.source,
        requestsDestination: (await requests(session, 'beta', 'destination')) - before.destination,
        echoConnectionsSource: (await echoConnections(session)) - before.echo,
      },
      policyEdits: edits,
      renewals: ((await session.agentLog('alpha')).match(/renewed certificate for/g)?.length ?? 0) - before.renewals,
    };
  } finally {
    client.kill();
  }
}
