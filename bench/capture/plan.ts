// What the capture bench compares and how hard it pushes: the five paths, where each one's client
// and servers are, the rounds and rates, and the issues' targets the report judges against.

export const LAB = 'tbench';
export const NODES = ['node-a', 'node-b'] as const;
export type NodeName = (typeof NODES)[number];
/** The node addresses from capture-mesh.yaml: the HAProxy tunnel's two ends listen on them. */
export const NODE_IP: Record<NodeName, string> = { 'node-a': '172.31.90.11', 'node-b': '172.31.90.12' };

export const ROUNDS = 3;
export const IPERF_SECONDS = 5;
export const PERSISTENT = { rate: 1000, seconds: 5 } as const;
// Lower than the persistent rate: every request is a new connection through both proxies, and this
// rate stays well inside what they accept without queueing, so the latency is the path's, not a backlog's.
export const PER_CONNECTION = { rate: 200, seconds: 5 } as const;
export const WARMUP_SECONDS = 1;
export const SERVER_WAIT_MS = 30_000;

/**
 * `ambit`: mesh to mesh over HBONE (issue 4); `ambit-plain`: mesh to a pod outside the mesh, one
 * agent's plain relay (issue 3); `node-h2`: the Node floor, a bare node:http2 CONNECT tunnel over mTLS
 * (node-h2.ts); `haproxy`: HAProxy as an mTLS TCP tunnel, what a user would pick instead.
 */
export type Mode = 'direct' | 'ambit' | 'ambit-plain' | 'node-h2' | 'haproxy';
export const MODES: readonly Mode[] = ['direct', 'ambit', 'ambit-plain', 'node-h2', 'haproxy'];
/** The modes a proxy carries, whose cost the bench measures. */
export type ProxiedMode = Exclude<Mode, 'direct'>;
export type Variant = 'persistent' | 'per-connection';
export const VARIANTS: readonly Variant[] = ['persistent', 'per-connection'];
export const rateOf = (variant: Variant): { readonly rate: number; readonly seconds: number } => (variant === 'persistent' ? PERSISTENT : PER_CONNECTION);

/** The proxies the benches watch on each node: the agent, a Node floor (node-h2 here, node-http in the L7 bench) and HAProxy. */
export type Proxy = 'ambit' | 'node-h2' | 'node-http' | 'haproxy';
export type ProcessKey = `${Proxy}/${NodeName}`;
export const processesOf = (proxy: Proxy): ProcessKey[] => NODES.map((node) => `${proxy}/${node}` as const);
/** Whose CPU a run is charged to: a direct run shows the agents' background work (it should be near zero). */
export const proxyOf = (mode: Mode): Proxy => (mode === 'haproxy' || mode === 'node-h2' ? mode : 'ambit');

const ECHO_PORT = 7000;
const IPERF_PORT = 5201;
/** The HAProxy tunnel's ports: plain TCP on node-a for the client, mTLS between the nodes. */
export const HAPROXY_PORTS = { echo: { plain: 17000, tls: 17700 }, iperf: { plain: 15201, tls: 17701 } } as const;
/** The Node floor tunnel's ports: plain TCP on node-a per upstream, one mTLS port on node-b for both (CONNECT names the upstream). */
export const NODE_H2_PORTS = { echo: 17100, iperf: 15301, tls: 17800 } as const;

export interface Path {
  /** `ambit lab exec` target the load runs in. */
  readonly client: string;
  readonly host: string;
  readonly echoPort: number;
  readonly iperfPort: number;
}

// The HAProxy and Node floor paths start from the unenrolled client, so nothing but their tunnel is in
// their way, and end at the unenrolled server (an enrolled one would have its inbound captured by the agent).
export const PATHS: Record<Mode, Path> = {
  direct: { client: 'direct/client', host: '10.247.2.20', echoPort: ECHO_PORT, iperfPort: IPERF_PORT },
  ambit: { client: 'mesh/client', host: '10.247.2.10', echoPort: ECHO_PORT, iperfPort: IPERF_PORT },
  // The enrolled client to the unenrolled server: node-a's agent captures it and relays it as plain TCP
  // (passthrough), node-b's does not see it: the plain relay issue 3's targets are for.
  'ambit-plain': { client: 'mesh/client', host: '10.247.2.20', echoPort: ECHO_PORT, iperfPort: IPERF_PORT },
  'node-h2': { client: 'direct/client', host: NODE_IP['node-a'], echoPort: NODE_H2_PORTS.echo, iperfPort: NODE_H2_PORTS.iperf },
  haproxy: { client: 'direct/client', host: NODE_IP['node-a'], echoPort: HAPROXY_PORTS.echo.plain, iperfPort: HAPROXY_PORTS.iperf.plain },
};
/** Where the baseline tunnels (HAProxy, the Node floor) lead: the unenrolled server. */
export const BASELINE_UPSTREAM = { host: PATHS.direct.host, echoPort: ECHO_PORT, iperfPort: IPERF_PORT } as const;

/** The paths that go through a proxy, whose cost the bench measures. */
export const PROXIED_MODES = MODES.filter((m): m is ProxiedMode => m !== 'direct');

/**
 * The order rotates each round, so slow drift (thermal, page cache, a noisy neighbour) is spread over
 * all the modes instead of charged to one.
 */
export const orderOf = (round: number): Mode[] => MODES.map((_, i) => MODES[(i + round - 1) % MODES.length]!);

/** Issue 4's bench targets for the Ambit path (HBONE), judged at the 1000 rps persistent load. */
export const TARGETS = {
  /** ≥ this % of direct single-stream throughput, and ≥ HAProxy's. */
  throughputPercentOfDirect: 50,
  /** p90 added over direct ≤ this, and ≤ HAProxy's. */
  addedP90Ms: 0.3,
  /** Per agent: CPU seconds per second at 1000 rps, i.e. CPU seconds per 1000 requests (ztunnel's figure). */
  vcpuPer1000RpsPerAgent: 0.06,
  /** Per agent, during a 1000 rps run. */
  rssGrowthMB: 12,
} as const;

/** Issue 3's bench targets for the plain relay, at the same load. */
export const PLAIN_TARGETS = {
  throughputPercentOfDirect: 60,
  addedP90Ms: 0.2,
} as const;
