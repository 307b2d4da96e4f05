// Enrollment through eBPF: keeps the kernel's view in step with the mesh snapshot. Every enrolled pod
// of this node gets the outbound programs on its cgroup and its IP in the enrolled map (so tc steers
// inbound connections to the agent); every local pod's host-side veth and the node's uplinks carry the
// tc programs. Pods are never touched: labeling a namespace captures its running pods on their next
// connection, and removing the label releases them.

import { rmSync } from 'node:fs';
import { readdir, rm, rmdir } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { capturesDns } from '../dns/mesh-answer.js';
import type { MeshSnapshot, Workload } from '../state/model.js';
import { cgroupOf } from '../system/cgroups.js';
import type { Logger } from '../telemetry/log.js';
import {
  type AmbitMaps,
  BpfObject,
  type Counters,
  DNS_CGROUP_PROGRAMS,
  type DnsProgram,
  type InboundProgram,
  type OutboundProgram,
  POD_CGROUP_PROGRAMS,
  type Result,
  type SocketAddress4,
  bpfObjectPath,
  detachLink,
  ensureBpffs,
  openAmbitMaps,
  originalDst,
  pinRoot,
  readCounters,
  setEnrolled,
  writeConfig,
} from './bpf-binding.js';
import { type CaptureLink, CaptureLinks, type PlannedLink } from './capture-links.js';
import { CaptureWatchdog } from './capture-watchdog.js';
import { DnatCapture, type DnatReason, readDnatCounters, removeDnatCapture } from './dnat-capture.js';
import { kernelProblems } from './kernel-checks.js';
import { NodeRouting } from './node-routing.js';

export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;
export const HBONE_PORT = 15008;

/**
 * The directory for a group of link pins, <pinDir>/links/<group>/ (created by each attachment: bpffs
 * needs it). bpffs refuses names with a dot, so groups use `_`, which Kubernetes names never hold.
 */
function linkDir(pinDir: string, group: string): string {
  return join(pinDir, 'links', group);
}

/** A pod's pin directory name: `<namespace>_<name>`. */
function podPinName(workload: Workload): string {
  return `${workload.namespace}_${workload.name}`;
}

export interface CaptureOptions {
  /** Names this agent's pins: /sys/fs/bpf/ambit/<scope>/. One scope per agent (per node). */
  readonly scope: string;
  readonly node: string;
  /** The node address pods reach; the outbound listener lives there. */
  readonly nodeIp: string;
  /** Devices that carry other nodes' traffic to this node's pods. */
  readonly uplinks: readonly string[];
  /** The cgroup v2 directory of a pod of this node, or undefined when it cannot be known. */
  readonly podCgroup: (workload: Workload) => string | undefined;
  /** Send each pod's DNS (port 53) to the agent's proxy on <nodeIp>:15053, unless the pod opts out (capturesDns). */
  readonly dns: boolean;
  readonly log: Logger;
}

/** Something that keeps capture from doing its whole job now; readiness reports it until it clears. */
export interface CaptureProblem {
  readonly kind: 'nft-sync' | 'pins';
  readonly message: string;
}

/** A pod the kernel currently captures, with what is needed to release it. */
interface Enrolled {
  readonly ip: string;
  readonly linkDir: string;
  readonly cgroup: string;
  /** Whether the DNS programs are attached too. */
  readonly dns: boolean;
}

export class EbpfCapture {
  /** The capture of each scope in this process (one per agent), where readiness finds it. */
  static readonly #byScope = new Map<string, EbpfCapture>();
  readonly #enrolled = new Map<string, Enrolled>();
  readonly #podLinks = new Set<string>();
  readonly #routing = new NodeRouting();
  #reconciling: Promise<void> = Promise.resolve();
  /** False until the first reconcile has swept what a previous agent left for pods now gone. */
  #adopted = false;
  /** Re-attaches, every period, what was removed under the agent (started once start() has attached). */
  readonly #watchdog: CaptureWatchdog;
  /** Every attachment's outcome, for links(). */
  readonly #links = new CaptureLinks();
  /**
   * The agent's own cgroup, read once: it does not change while the process lives, and reading
   * /proc on every watchdog tick can fail at the open-files limit (which once killed the agent there).
   */
  readonly #agentCgroup = cgroupOf();

  private constructor(
    private readonly options: CaptureOptions,
    private readonly outbound: BpfObject<OutboundProgram>,
    private readonly inbound: BpfObject<InboundProgram>,
    private readonly dnsPrograms: BpfObject<DnsProgram> | undefined,
    private readonly maps: AmbitMaps,
    private readonly dnat: DnatCapture,
  ) {
    this.#watchdog = new CaptureWatchdog({ pinDir: this.pinDir, log: options.log, links: () => this.#plannedLinks(), settled: () => this.#reconciling });
  }

  get pinDir(): string {
    return pinRoot(this.options.scope);
  }

  /** Loads the programs, configures them, and attaches what does not depend on pods. */
  static async start(options: CaptureOptions): Promise<Result<EbpfCapture>> {
    const problems = kernelProblems();
    if (problems.length > 0) return { ok: false, error: { code: 'EKERNEL', message: `this node cannot capture: ${problems.join('; ')}` } };
    const pinDir = pinRoot(options.scope);
    const bpffs = ensureBpffs();
    if (!bpffs.ok) return bpffs;
    const outboundPath = bpfObjectPath('outbound_cgroup');
    const inboundPath = bpfObjectPath('inbound_tc');
    if (!outboundPath.ok) return outboundPath;
    if (!inboundPath.ok) return inboundPath;
    const outbound = BpfObject.load<OutboundProgram>(outboundPath.value, pinDir);
    if (!outbound.ok) return outbound;
    const inbound = BpfObject.load<InboundProgram>(inboundPath.value, pinDir);
    if (!inbound.ok) return inbound;
    const dnsPath = options.dns ? bpfObjectPath('dns_cgroup') : undefined;
    if (dnsPath && !dnsPath.ok) return dnsPath;
    const dnsPrograms = dnsPath ? BpfObject.load<DnsProgram>(dnsPath.value, pinDir) : undefined;
    if (dnsPrograms && !dnsPrograms.ok) return dnsPrograms;
    for (const name of [...outbound.value.replacedPins, ...inbound.value.replacedPins]) {
      options.log.warn(
        { map: name, pinDir },
        `eBPF map ${name} in ${pinDir} was pinned with another definition (left by another Ambit version); it was created anew and starts empty: connections being set up during the upgrade may be refused once`,
      );
    }
    const maps = openAmbitMaps(pinDir);
    if (!maps.ok) return maps;
    const configured = writeConfig(maps.value, { proxyIp: options.nodeIp, outboundPort: OUTBOUND_PORT, inboundPort: INBOUND_PORT, hbonePort: HBONE_PORT });
    if (!configured.ok) return configured;

    let dnat: DnatCapture;
    try {
      dnat = new DnatCapture(INBOUND_PORT, options.log);
    } catch (err) {
      return { ok: false, error: { code: 'ENOTOOL', message: `this node cannot capture Service VIP traffic of its pods outside the mesh: ${(err as Error).message}` } };
    }
    const capture = new EbpfCapture(options, outbound.value, inbound.value, dnsPrograms?.value, maps.value, dnat);
    // SO_ORIGINAL_DST is answered by a program on the agent's own cgroup, never on a pod's.
    const sockopt = capture.#agentLink().attach();
    if (!sockopt.ok) return sockopt;
    const routed = await capture.#routing.installSteeringRoute();
    if (!routed.ok) return routed;
    for (const uplink of options.uplinks) {
      const attached = capture.#tcLink(uplink).attach();
      if (!attached.ok) return attached;
      capture.#links.learnIfindex(uplink, await capture.#routing.ifindexOf(uplink));
    }
    EbpfCapture.#byScope.set(options.scope, capture);
    capture.#watchdog.start();
    options.log.info({ pinDir, agentCgroup: capture.#agentCgroup, uplinks: options.uplinks }, `eBPF capture loaded: outbound to ${options.nodeIp}:${OUTBOUND_PORT}, inbound steered on ${options.uplinks.join(', ')}`);
    return { ok: true, value: capture };
  }

  /**
   * Readiness's question, asked with the agent's capture configuration: the first problem of the
   * capture running for its scope, or undefined (also without eBPF capture, or before it started).
   */
  static problemOf(capture: { readonly mode: string; readonly scope?: string }): string | undefined {
    if (capture.mode !== 'ebpf' || capture.scope === undefined) return undefined;
    const problem = EbpfCapture.#byScope.get(capture.scope)?.problems()[0];
    return problem && `capture is incomplete: ${problem.message}`;
  }

  /** The links of the capture running for the agent's scope (none without eBPF capture, or before it started). */
  static linksOf(capture: { readonly mode: string; readonly scope?: string }): readonly CaptureLink[] {
    if (capture.mode !== 'ebpf' || capture.scope === undefined) return [];
    return EbpfCapture.#byScope.get(capture.scope)?.links() ?? [];
  }

  /**
   * Every program attached now: name, attach point (cgroup, or device, ifindex and direction), the
   * kernel's link id and the pin. The same list the watchdog re-attaches each period, with its outcome.
   */
  links(): readonly CaptureLink[] {
    return this.#links.list(this.#plannedLinks());
  }

  /** What keeps capture from doing its whole job right now; empty when nothing does. */
  problems(): readonly CaptureProblem[] {
    const problems: CaptureProblem[] = [];
    const nft = this.dnat.failure;
    if (nft !== undefined) problems.push({ kind: 'nft-sync', message: nft });
    const missingMaps = this.#watchdog.missingMaps;
    if (missingMaps.length > 0) {
      problems.push({ kind: 'pins', message: `the eBPF map pins ${missingMaps.join(', ')} were deleted from ${this.pinDir}; capture goes on with the maps the programs hold, but a restarted agent would start empty ones: restart the agent now to pin them again` });
    }
    return problems;
  }

  /** Brings enrollment in line with the snapshot; runs one at a time, in snapshot order. */
  reconcile(snapshot: MeshSnapshot): Promise<void> {
    this.#reconciling = this.#reconciling.then(() => this.#reconcile(snapshot));
    return this.#reconciling;
  }

  /** Where a captured outbound connection was going, from the cgroup/getsockopt program. */
  originalDestination(socket: Socket): SocketAddress4 | undefined {
    const dst = originalDst(socket);
    return dst.ok ? dst.value : undefined;
  }

  /** Every capture decision by reason: the eBPF programs' map, and the counters of the nft table. */
  async counters(): Promise<Partial<Record<keyof Counters | DnatReason, number>> | undefined> {
    const counters = readCounters(this.maps);
    if (!counters.ok) return undefined;
    return { ...counters.value, ...(await readDnatCounters()) };
  }

  /** Releases every pod and removes the pins: used when capture is turned off, not on restart. */
  async release(): Promise<void> {
    this.#watchdog.stop();
    for (const key of [...this.#enrolled.keys()]) this.#release(key);
    this.dnat.stop();
    if (EbpfCapture.#byScope.get(this.options.scope) === this) EbpfCapture.#byScope.delete(this.options.scope);
    await removeDnatCapture();
    this.outbound.close();
    this.inbound.close();
    this.dnsPrograms?.close();
    await rm(this.pinDir, { recursive: true, force: true });
  }

  async #reconcile(snapshot: MeshSnapshot): Promise<void> {
    const { node, log } = this.options;
    // A hostNetwork pod has no veth of its own: its IP is the node's.
    const local = [...snapshot.workloads.values()].filter((w) => w.node === node && !w.hostNetwork && w.ips[0] !== undefined);
    const wanted = new Map(local.filter((w) => w.enrollment.enrolled).map((w) => [w.key, w]));

    for (const [key, entry] of [...this.#enrolled]) {
      // A pod that opted in or out of DNS capture since: enrolled again below, with or without the DNS programs.
      if (wanted.has(key) && entry.dns !== this.#capturesDns(wanted.get(key)!)) this.#release(key);
      else if (!wanted.has(key)) {
        this.#release(key);
        log.info({ pod: key }, `released ${key} from capture`);
      }
    }
    if (!this.#adopted) {
      await this.#sweepPrevious(wanted);
      this.#adopted = true;
    }
    for (const [key, workload] of wanted) {
      if (this.#enrolled.has(key)) continue;
      const enrolled = this.#enroll(workload);
      if (enrolled.ok) log.info({ pod: key, ip: workload.ips[0] }, `captured ${key} (${workload.enrollment.reason})`);
      else log.error({ pod: key, err: enrolled.error }, `cannot capture ${key}: ${enrolled.error.message}; its traffic bypasses the mesh until this is fixed`);
    }
    // Written only here, once enrollment is known: a restarted agent keeps its predecessor's table
    // (which drops what it cannot deliver) until then, rather than opening a gap. A failure is also
    // retried on its own and fails readiness until a write succeeds (problems()).
    const dnat = await this.dnat.sync([...this.#enrolled.values()].map((e) => e.ip));
    if (!dnat.ok) log.error({ err: dnat.error }, `${dnat.error.message}; readiness fails until it can be written (retried with backoff)`);
    // Every local pod's veth carries the pod program: it steers inbound connections to enrolled pods
    // from neighbours, and returns replies to the agent's source-preserving sockets.
    for (const workload of local) {
      const ip = workload.ips[0]!;
      const device = await this.#routing.deviceTo(ip);
      if (!device || this.#podLinks.has(device)) continue;
      const attached = this.#tcLink(device).attach();
      if (attached.ok) {
        this.#podLinks.add(device);
        this.#links.learnIfindex(device, await this.#routing.ifindexOf(device));
      } else log.error({ pod: workload.key, device, err: attached.error }, `cannot attach tc to ${device} (pod ${workload.key}): ${attached.error.message}`);
    }
  }

  /** Every link capture holds now: the agent's getsockopt, the uplinks', each pod veth's and each enrolled pod's programs. */
  #plannedLinks(): PlannedLink[] {
    return [
      this.#agentLink(),
      ...[...this.options.uplinks, ...this.#podLinks].map((device) => this.#tcLink(device)),
      ...[...this.#enrolled].flatMap(([key, pod]) => this.#podLinkPlans(key, pod)),
    ];
  }

  #agentLink(): PlannedLink {
    const cgroup = this.#agentCgroup;
    return this.#links.plan('ambit_getsockopt', { kind: 'cgroup', cgroup }, join(linkDir(this.pinDir, 'agent'), 'ambit_getsockopt'), (pin) =>
      this.outbound.attachCgroup('ambit_getsockopt', cgroup, pin),
    );
  }

  /** An uplink's or a pod veth's tc program: tcx ingress, pinned as links/tc/<device>. */
  #tcLink(device: string): PlannedLink {
    const uplink = this.options.uplinks.includes(device);
    const program = uplink ? 'ambit_tc_uplink' : 'ambit_tc_pod';
    const at = { kind: 'tcx', direction: 'ingress', device, role: uplink ? 'uplink' : 'pod-veth' } as const;
    return this.#links.plan(program, at, join(linkDir(this.pinDir, 'tc'), device), (pin) => this.inbound.attachTcxIngress(program, device, pin));
  }

  /** A pod's programs on its cgroup, the DNS ones first so their connect4 runs before ambit_connect4 (which then leaves the proxy's address alone). */
  #podLinkPlans(key: string, pod: Pick<Enrolled, 'linkDir' | 'cgroup' | 'dns'>): PlannedLink[] {
    const at = { kind: 'cgroup', cgroup: pod.cgroup, pod: key } as const;
    const dns = pod.dns ? this.dnsPrograms : undefined;
    return [
      ...(dns ? DNS_CGROUP_PROGRAMS.map((program) => this.#links.plan(program, at, join(pod.linkDir, program), (pin) => dns.attachCgroup(program, pod.cgroup, pin))) : []),
      ...POD_CGROUP_PROGRAMS.map((program) => this.#links.plan(program, at, join(pod.linkDir, program), (pin) => this.outbound.attachCgroup(program, pod.cgroup, pin))),
    ];
  }

  #enroll(workload: Workload): Result<void> {
    const cgroup = this.options.podCgroup(workload);
    if (!cgroup) return { ok: false, error: { code: 'ENOCGROUP', message: `the cgroup of pod ${workload.key} is unknown (see --pod-cgroup)` } };
    const pins = linkDir(this.pinDir, join('pods', podPinName(workload)));
    const dns = this.#capturesDns(workload);
    // A predecessor may have captured this pod's DNS before it opted out.
    if (!dns) for (const program of DNS_CGROUP_PROGRAMS) detachLink(join(pins, program));
    for (const link of this.#podLinkPlans(workload.key, { linkDir: pins, cgroup, dns })) {
      const attached = link.attach();
      if (!attached.ok) {
        this.#detachPod(pins);
        return attached;
      }
    }
    const ip = workload.ips[0]!;
    const marked = setEnrolled(this.maps, ip, true);
    if (!marked.ok) {
      this.#detachPod(pins);
      return marked;
    }
    this.#enrolled.set(workload.key, { ip, linkDir: pins, cgroup, dns });
    return { ok: true, value: undefined };
  }

  /**
   * A restarted agent adopts what its predecessor pinned: attaching again is a no-op for pods still
   * enrolled, and this removes the links and map entries of pods that left while no agent watched.
   */
  async #sweepPrevious(wanted: ReadonlyMap<string, Workload>): Promise<void> {
    const keep = new Set([...wanted.values()].map(podPinName));
    const podsDir = join(this.pinDir, 'links', 'pods');
    for (const name of await readdir(podsDir).catch(() => [] as string[])) {
      if (keep.has(name)) continue;
      this.#detachPod(join(podsDir, name));
      await rmdir(join(podsDir, name)).catch(() => undefined);
      this.options.log.info({ pins: name }, `removed capture left by a previous agent for ${name.replace('_', '/')}, which is no longer enrolled here`);
    }
    const wantedIps = new Set([...wanted.values()].map((w) => w.ips[0]));
    const enrolledIps = this.maps.enrolled.keys();
    for (const ip of enrolledIps.ok ? enrolledIps.value : []) if (!wantedIps.has(ip)) setEnrolled(this.maps, ip, false);
  }

  #release(key: string): void {
    const entry = this.#enrolled.get(key);
    if (!entry) return;
    setEnrolled(this.maps, entry.ip, false);
    this.#detachPod(entry.linkDir);
    rmSync(entry.linkDir, { recursive: true, force: true });
    this.#enrolled.delete(key);
  }

  #detachPod(linkDir: string): void {
    this.#links.forget(linkDir);
    for (const program of [...POD_CGROUP_PROGRAMS, ...DNS_CGROUP_PROGRAMS]) detachLink(join(linkDir, program));
  }

  /** With --dns-capture, every enrolled pod's DNS unless it opts out (Istio's annotation). */
  #capturesDns(workload: Workload): boolean {
    return this.dnsPrograms !== undefined && capturesDns(workload);
  }
}
