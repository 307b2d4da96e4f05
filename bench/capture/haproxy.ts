// The baseline a user would pick instead of a mesh: two HAProxies as an mTLS TCP tunnel over the same
// two hops. node-a's accepts plain TCP from the client pod and connects with TLS 1.3 and a client
// certificate to node-b's, which verifies it and forwards to the server pod. Certificates and
// processes: baseline-tunnel.ts (killed and removed at the end, also on failure).

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeNetns, run } from './lab.js';
import { BaselineTunnel } from './baseline-tunnel.js';
import { HAPROXY_PORTS, BASELINE_UPSTREAM, NODE_IP, type NodeName } from './plan.js';
import { TUNNEL_SERVER_NAME } from './tunnel-certificates.js';

const haproxies = new BaselineTunnel('haproxy', 'haproxy');

/** One tunnel: plain in on node-a's `plain` port, mTLS from node-a to node-b's `tls` port, plain to the upstream. */
export interface Tunnel {
  readonly name: string;
  readonly plain: number;
  readonly tls: number;
  readonly upstreamHost: string;
  readonly upstreamPort: number;
}

/** The capture bench's tunnels: the echo server and iperf3 of the direct server pod. */
const TCP_TUNNELS: readonly Tunnel[] = [
  { name: 'echo', ...HAPROXY_PORTS.echo, upstreamHost: BASELINE_UPSTREAM.host, upstreamPort: BASELINE_UPSTREAM.echoPort },
  { name: 'iperf', ...HAPROXY_PORTS.iperf, upstreamHost: BASELINE_UPSTREAM.host, upstreamPort: BASELINE_UPSTREAM.iperfPort },
];

/** `tcp` relays bytes; `http` parses every request on both HAProxies (keep-alive on both sides, haproxy's default). */
export type HaproxyMode = 'tcp' | 'http';

const defaults = (mode: HaproxyMode): string => `defaults
  mode ${mode}
  timeout connect 5s
  timeout client 60s
  timeout server 60s
`;

let nodeA: string = NODE_IP['node-a'];
let nodeB: string = NODE_IP['node-b'];

/** node-a: plain TCP in, TLS 1.3 with the client certificate out, the server's name and chain verified. */
function clientSideConfig(d: string, mode: HaproxyMode, tunnels: readonly Tunnel[]): string {
  const tunnel = (t: Tunnel): string => `
frontend ${t.name}
  bind ${nodeA}:${t.plain}
  default_backend ${t.name}
backend ${t.name}
  server node-b ${nodeB}:${t.tls} ssl crt ${d}/client.pem ca-file ${d}/ca.pem verify required verifyhost ${TUNNEL_SERVER_NAME} ssl-min-ver TLSv1.3
`;
  return `${defaults(mode)}${tunnels.map(tunnel).join('')}`;
}

/** node-b: TLS 1.3 in, a client certificate from the bench CA required, plain TCP to the server pod. */
function serverSideConfig(d: string, mode: HaproxyMode, tunnels: readonly Tunnel[]): string {
  const tunnel = (t: Tunnel): string => `
frontend ${t.name}
  bind ${nodeB}:${t.tls} ssl crt ${d}/server.pem ca-file ${d}/ca.pem verify required ssl-min-ver TLSv1.3
  default_backend ${t.name}
backend ${t.name}
  server pod ${t.upstreamHost}:${t.upstreamPort}
`;
  return `${defaults(mode)}${tunnels.map(tunnel).join('')}`;
}

function start(node: NodeName, config: string): void {
  const file = join(haproxies.certificates, `${node}.cfg`);
  writeFileSync(file, config);
  const check = spawnSync('haproxy', ['-c', '-q', '-f', file], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy rejected the ${node} configuration:\n${check.stderr}${check.stdout}`);
  haproxies.start(node, ['haproxy', '-db', '-f', file]);
}

/**
 * Starts both HAProxies: by default the capture bench's TCP tunnels; another bench passes its mode,
 * its tunnels and its lab's node addresses.
 */
export function startHaproxyTunnel(mode: HaproxyMode = 'tcp', tunnels: readonly Tunnel[] = TCP_TUNNELS, nodeIp: Record<NodeName, string> = NODE_IP): void {
  nodeA = nodeIp['node-a'];
  nodeB = nodeIp['node-b'];
  const dir = haproxies.makeCertificates();
  start('node-b', serverSideConfig(dir, mode, tunnels));
  start('node-a', clientSideConfig(dir, mode, tunnels));
}

/** Both HAProxies' pids, once each is haproxy itself and still running; else why not. */
export const haproxyPids = (): Record<NodeName, number> => haproxies.pids();

export interface TunnelCheck {
  readonly protocol: string;
  readonly cipher: string;
  /** Whether node-b's HAProxy also sent TLS 1.3's "certificate required" alert (seen only if it arrives in time). */
  readonly certificateRequiredAlert: boolean;
}

const PROBE = 'ambit-bench-probe';
/** The capture bench's probe: a line through the echo tunnel comes back. */
const echoProbe = { tlsPort: HAPROXY_PORTS.echo.tls, request: `${PROBE}\n`, answered: (stdout: string): boolean => stdout.split('\n').includes(PROBE) };
/** s_client keeps reading after stdin ends (-ign_eof), so a tunnel that works is cut by this. */
const PROBE_SECONDS = 5;

/**
 * That the baseline really is mutual TLS 1.3 end to end: from node-a, openssl with the client
 * certificate gets a verified TLS 1.3 session to node-b's HAProxy and its line echoed back by the
 * server pod; without the certificate nothing comes back.
 */
export async function verifyHaproxyMtls(probe: { tlsPort: number; request: string; answered: (stdout: string) => boolean } = echoProbe): Promise<TunnelCheck> {
  const attempt = async (withCert: boolean): Promise<{ text: string; echoed: boolean }> => {
    const dir = haproxies.certificates;
    const cert = withCert ? `-cert ${dir}/client.pem` : '';
    const cmd =
      `printf '%s' '${probe.request}' | timeout ${PROBE_SECONDS} ip netns exec ${nodeNetns('node-a')} openssl s_client -brief -ign_eof ` +
      `-connect ${nodeB}:${probe.tlsPort} -CAfile ${dir}/ca.pem -verify_return_error ${cert}`;
    const r = await run('sh', ['-c', cmd], (PROBE_SECONDS + 5) * 1000);
    return { text: r.stdout + r.stderr, echoed: probe.answered(r.stdout) };
  };
  const ok = await attempt(true);
  const protocol = /Protocol version: (\S+)/.exec(ok.text)?.[1] ?? '';
  const cipher = /Ciphersuite: (\S+)/.exec(ok.text)?.[1] ?? '';
  if (protocol !== 'TLSv1.3' || !/Verification: OK/.test(ok.text) || !ok.echoed) {
    throw new Error(`the HAProxy tunnel did not carry a line over verified TLS 1.3:\n${ok.text}`);
  }
  const refused = await attempt(false);
  if (refused.echoed) throw new Error(`node-b's HAProxy tunnelled for a client without a certificate:\n${refused.text}`);
  return { protocol, cipher, certificateRequiredAlert: /certificate required/.test(refused.text) };
}

/** What the HAProxies printed, for a failure message. */
export const haproxyStderr = (): string => haproxies.stderr();

/** Synchronous, so it also runs from a signal handler just before exit. */
export const stopHaproxyTunnel = (): void => haproxies.stop();
