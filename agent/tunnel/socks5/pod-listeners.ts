// SOCKS5 on 127.0.0.1:15080 inside every enrolled pod of this node, as ztunnel offers it (opt-in): a
// process in the pod can use the mesh without being redirected, e.g. a tool or a test. The agent opens
// each listener inside the pod's own network namespace, so only the pod's processes reach it and the
// listener says which pod a connection comes from; the connection then takes the outbound path a
// captured one would, with the pod's identity and address. A destination only the node should reach
// (its loopback, link-local, its own addresses, the agent's ports) is refused before anything is dialled
// (destination-policy.ts), and what is dialled leaves from the pod's own address (outbound.ts).

import { lookup } from 'node:dns/promises';
import { type Server, type Socket, createServer, isIP } from 'node:net';
import { netnsListen } from '../../redirect/bpf-binding.js';
import type { PodCgroupResolver } from '../../redirect/pod-cgroups.js';
import type { MeshSnapshot, Workload } from '../../state/model.js';
import type { WorkloadStore } from '../../state/store.js';
import { type NetnsRef, ownNetnsId, podNetns } from '../../system/netns.js';
import type { Logger } from '../../telemetry/log.js';
import type { Address } from '../destination.js';
import { KEEPALIVE_OPTIONS } from '../socket-options.js';
import { type DestinationRules, judgeDestination, unmapIpv4 } from './destination-policy.js';
import { SOCKS5_REPLY, type Socks5Request, readSocks5Request, sendSocks5Reply } from './handshake.js';

export const SOCKS5_PORT = 15080;

/** What serving one SOCKS5 connection needs. */
export interface SocksServing {
  readonly store: WorkloadStore;
  /** Takes a connection whose source pod and destination are known (OutboundProxy#handleFrom). */
  readonly handoff: (socket: Socket, source: Workload, dst: Address) => void;
  /** What no pod may be connected to (checked after name resolution). */
  readonly destinations: DestinationRules;
  readonly log: Logger;
}

export interface PodSocksOptions extends SocksServing {
  readonly node: string;
  readonly podCgroup: PodCgroupResolver;
}

/** A pod's listener as the readiness question sees it (pod-readiness.ts asks before its containers start). */
export type PodSocksState = { readonly ready: true } | { readonly ready: false; readonly reason: string };

/** How often pods without a listener, or with a new sandbox, are looked at again. */
const RESCAN_MS = 5_000;

interface PodListener {
  readonly netns: string;
  readonly server: Server;
}

export class PodSocksListeners {
  readonly #pods = new Map<string, PodListener>();
  /** Pods whose listener could not be opened, with the namespace it was tried in. */
  readonly #refused = new Map<string, string>();
  readonly #timer: NodeJS.Timeout;
  /** The agent's own network namespace, never to be taken for a pod's. */
  #ownNetns: string | undefined;
  /** Reconciliations run one at a time: each opens and closes listeners by what the last one left. */
  #queue: Promise<void> = Promise.resolve();
  #queued = 0;
  #closed = false;

  constructor(private readonly options: PodSocksOptions) {
    // A pod's processes may start after its snapshot arrives, and a restarted sandbox has a new
    // namespace with the same pod: neither changes the snapshot, so look again from time to time.
    this.#timer = setInterval(() => {
      const snapshot = options.store.current;
      // A scan still under way (many pods, a slow /proc) is not joined by another.
      if (snapshot && this.#queued === 0) void this.reconcile(snapshot);
    }, RESCAN_MS).unref();
  }

  /** Brings the listeners in line with this node's enrolled pods. */
  reconcile(snapshot: MeshSnapshot): Promise<void> {
    this.#queued++;
    this.#queue = this.#queue
      .then(() => this.#reconcile(snapshot))
      .catch((err: Error) => this.options.log.error({ err: err.message }, `SOCKS5 listeners: ${err.message}`))
      .finally(() => this.#queued--);
    return this.#queue;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#queue;
    for (const key of [...this.#pods.keys()]) this.#stop(key);
  }

  /**
   * Whether pod `key`'s listener is open, looking for its namespace now rather than at the next scan:
   * asked by whoever starts the pod's containers (the lab's kubelet), as Istio's CNI plugin waits for
   * ztunnel, so that the listener is there before the pod's first process could use it.
   */
  state(key: string): Promise<PodSocksState | undefined> {
    // undefined: not an enrolled pod of this node, so it gets no listener and has nothing to wait for.
    const check = async (): Promise<PodSocksState | undefined> => {
      const pod = this.options.store.current?.workloads.get(key);
      if (!pod || !this.#wanted(pod)) return undefined;
      if (!this.#pods.has(key)) await this.#reconcilePod(pod, (this.#ownNetns ??= await ownNetnsId()));
      if (this.#pods.has(key)) return { ready: true };
      if (this.#refused.has(key)) return { ready: false, reason: `the SOCKS5 listener of ${key} could not be opened (see the agent's log)` };
      return { ready: false, reason: `no process of ${key} runs in a network namespace holding ${pod.ips[0]} yet` };
    };
    // In the reconciliation queue: a listener is opened by one reconciliation at a time.
    const result = this.#queue.then(check, check);
    this.#queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result.catch((err: Error) => ({ ready: false, reason: err.message }));
  }

  #wanted(w: Workload): boolean {
    return w.node === this.options.node && w.enrollment.enrolled && w.ips[0] !== undefined;
  }

  async #reconcile(snapshot: MeshSnapshot): Promise<void> {
    if (this.#closed) return;
    const wanted = [...snapshot.workloads.values()].filter((w) => this.#wanted(w));
    const keys = new Set(wanted.map((w) => w.key));
    for (const key of [...this.#pods.keys()]) if (!keys.has(key)) this.#stop(key);
    for (const key of [...this.#refused.keys()]) if (!keys.has(key)) this.#refused.delete(key);
    const own = (this.#ownNetns ??= await ownNetnsId());
    for (const pod of wanted) await this.#reconcilePod(pod, own);
  }

  async #reconcilePod(pod: Workload, own: string): Promise<void> {
    if (this.#closed) return;
    const cgroup = this.options.podCgroup(pod);
    const netns = cgroup ? await podNetns(cgroup, pod.ips[0]!, own) : undefined;
    const current = this.#pods.get(pod.key);
    // No process found (a container restarting): the listener stays; it closes when the pod leaves.
    if (!netns || current?.netns === netns.id) return;
    if (current) {
      this.#stop(pod.key);
      this.options.log.info({ pod: pod.key }, `SOCKS5 listener of ${pod.key} moves to its new network namespace (its sandbox was recreated)`);
    }
    await this.#start(pod, netns);
  }

  async #start(pod: Workload, netns: NetnsRef): Promise<void> {
    const { log } = this.options;
    const fd = netnsListen(netns.path, '127.0.0.1', SOCKS5_PORT);
    if (!fd.ok) {
      // Tried again at every scan (a port the pod holds may free up), said once per sandbox.
      const message = `cannot open SOCKS5 on 127.0.0.1:${SOCKS5_PORT} in pod ${pod.key}: ${fd.error.message}`;
      if (this.#refused.get(pod.key) === netns.id) log.debug({ pod: pod.key }, message);
      else log.error({ pod: pod.key, err: fd.error }, message);
      this.#refused.set(pod.key, netns.id);
      return;
    }
    this.#refused.delete(pod.key);
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, ...KEEPALIVE_OPTIONS }, (socket) => void serveSocksConnection(socket, pod.key, this.options));
    // Accept failures (EMFILE and the like) are reported, never thrown: one pod's listener must not stop the agent.
    server.on('error', (err) => log.error({ pod: pod.key, err: err.message }, `SOCKS5 listener of pod ${pod.key}: ${err.message}`));
    await new Promise<void>((resolve) => {
      server.once('listening', resolve);
      server.once('error', () => resolve());
      server.listen({ fd: fd.value });
    });
    if (!server.listening) return;
    this.#pods.set(pod.key, { netns: netns.id, server });
    log.info({ pod: pod.key }, `SOCKS5 listening on 127.0.0.1:${SOCKS5_PORT} in pod ${pod.key}`);
  }

  #stop(key: string): void {
    this.#pods.get(key)?.server.close();
    this.#pods.delete(key);
  }
}

/**
 * One connection to pod `podKey`'s listener: the handshake, the destination (resolved for the pod, then
 * judged), the reply, and the handoff to the outbound path. Exported for the tests that attack it.
 */
export async function serveSocksConnection(socket: Socket, podKey: string, options: SocksServing, lookupName = nodeLookup): Promise<void> {
  const { store, log } = options;
  socket.on('error', () => undefined);
  const handshake = await readSocks5Request(socket);
  if (!handshake.ok) {
    log.debug({ pod: podKey, reason: handshake.reason }, `SOCKS5 request from pod ${podKey} refused: ${handshake.reason}`);
    return;
  }
  const { request } = handshake;
  const snapshot = store.current;
  const pod = snapshot?.workloads.get(podKey);
  if (!snapshot || !pod) {
    sendSocks5Reply(socket, SOCKS5_REPLY.notAllowed);
    socket.end();
    return;
  }
  const resolved = await resolveTarget(snapshot, pod, request, lookupName);
  if (resolved === undefined) {
    log.debug({ pod: podKey, host: request.host }, `SOCKS5: pod ${podKey} asked for ${request.host}, which does not resolve`);
    sendSocks5Reply(socket, SOCKS5_REPLY.hostUnreachable);
    socket.end();
    return;
  }
  // Judged on the address that will be dialled, so a name that resolves to loopback is refused too.
  const ip = unmapIpv4(resolved);
  const verdict = judgeDestination(ip, request.port, options.destinations);
  if (!verdict.allowed) {
    const asked = request.kind === 'name' ? ` (${request.host})` : '';
    log.warn({ pod: podKey, dst: `${ip}:${request.port}`, host: request.host }, `SOCKS5: refused pod ${podKey}'s request for ${ip}:${request.port}${asked}: ${verdict.reason}`);
    sendSocks5Reply(socket, SOCKS5_REPLY.notAllowed);
    socket.end();
    return;
  }
  // Success before the upstream is open, as ztunnel answers: what fails later closes the connection,
  // with the reason in the agent's connection telemetry.
  sendSocks5Reply(socket, SOCKS5_REPLY.succeeded);
  log.debug({ pod: podKey, dst: `${ip}:${request.port}` }, 'SOCKS5 connection accepted');
  options.handoff(socket, pod, { ip, port: request.port });
}

/**
 * The address a request names: an IP as given; a Service's name as the pod's resolver would find it
 * (its namespace's search path: name, name.namespace, name.namespace.svc, then the FQDN) to the
 * Service's VIP; any other name through the node's resolver.
 */
export async function resolveTarget(snapshot: MeshSnapshot, pod: Workload, request: Socks5Request, lookupName = nodeLookup): Promise<string | undefined> {
  if (request.kind === 'ip') return isIP(request.host) ? request.host : undefined;
  const suffix = `svc.${snapshot.clusterDomain}`;
  const candidates = [`${request.host}.${pod.namespace}.${suffix}`, `${request.host}.${suffix}`, `${request.host}.${snapshot.clusterDomain}`, request.host];
  for (const name of candidates) {
    const vip = snapshot.servicesByHostname.get(name)?.vips[0];
    if (vip !== undefined) return vip;
  }
  return lookupName(request.host);
}

/** A name through the node's resolver (the agent's own /etc/resolv.conf), IPv4 as the mesh is. */
function nodeLookup(name: string): Promise<string | undefined> {
  return lookup(name, { family: 4 }).then(
    (found) => found.address,
    () => undefined,
  );
}
