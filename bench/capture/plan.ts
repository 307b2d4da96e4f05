// What the capture bench compares and how hard it pushes: the five paths, where each one's client
// and servers are, the rounds and rates, and the targets the report judges against.

export const LAB = 'tbench';
export const NODES = ['node-a', 'node-b'] as const;
export type NodeName = (typeof NODES)[number];
/** The node addresses from capture-mesh.yaml: the HAProxy tunnel's two ends listen on them. */
export const NODE_IP: Record<NodeName, string> = { 'node-a': '172.31.90.11', 'node-b': '172.31.90.12' };

/** Rounds unless `--rounds` says otherwise. */
export const DEFAULT_ROUNDS = 3;
export const IPERF_SECONDS = 5;
/** iperf3's parallel streams per bulk run: one (a single flow's ceiling) and two (what more data threads can spread). */
export const STREAMS = [1, 2] as const;
export type Streams = (typeof STREAMS)[number];
export const PERSISTENT = { rate: 1000, seconds: 5 } as const;
// Lower than the persistent rate: every request is a new connection (TCP, and for the tunnels a new
// stream, or for HAProxy a new TLS session) through both proxies.
export const PER_CONNECTION = { rate: 500, seconds: 5 } as const;
export const WARMUP_SECONDS = 1;
export const SERVER_WAIT_MS = 30_000;

/**
 * `ambit`: mesh to mesh over HBONE; `ambit-plain`: mesh to a pod outside the mesh, one
 * agent's plain relay (spliced in the kernel); `node-h2`: the Node floor, a bare node:http2 CONNECT tunnel over mTLS
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

/**
 * What Ambit's HBONE path must reach, each against HAProxy's mTLS tunnel in the same run (the same
 * machine, load and moment): a user picking a mesh should pay no more than for the proxy they would
 * pick instead.
 */
export const TARGETS = {
  /** CPU per agent at most this times HAProxy's per proxy (on the same node), keep-alive 1000 rps and a new connection per request. */
  cpuVsHaproxy: 1.0,
  /** Added p90 at 1000 rps keep-alive at most HAProxy's plus this. */
  addedP90OverHaproxyMs: 0.02,
  /** Bulk throughput at least this times HAProxy's, one stream and two (Ambit at its data threads, HAProxy at its default). */
  throughputVsHaproxy: 1.0,
  /** Per agent, the largest peak-minus-before of a 1000 rps run (ztunnel's figure). */
  rssGrowthMB: 12,
  /** Each agent's garbage collection during the bulk runs, in % of their wall time: no GC in the byte path. */
  gcPercentOfWall: 1,
} as const;

/** The plain relay (mesh to a pod outside it, spliced by node-a's agent alone): against direct. */
export const PLAIN_TARGETS = {
  throughputPercentOfDirect: 60,
  addedP90Ms: 0.2,
} as const;
