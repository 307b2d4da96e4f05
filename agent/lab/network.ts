// Builds the lab's network: a fabric namespace with a bridge joining every node (one per cluster in a lab
// of several, joined only through their gateways: internetwork.ts), a namespace per node routing for its
// pods, and a namespace per pod wired to its node by a veth pair. Nothing is created in
// the machine's own namespace: every link is created inside a lab namespace (`ip -n`), so the host's
// routes and interfaces stay exactly as they were.

import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MeshSnapshot } from '../state/model.js';
import { runCommand, requireTool } from '../system/commands.js';
import { LAB_CLUSTER_DNS, podResolvConf } from './cluster-dns.js';
import { renderPodHosts } from './hosts.js';
import { type Ipv4Prefix, parseIpv4Prefix, prefixContains } from '../system/ipv4.js';
import { clusterView } from './clusters.js';
import { LabInternetwork } from './internetwork.js';
import { renderKubeProxyRules } from './kube-proxy.js';
import { ETC_NETNS_DIR, LAB_API_SERVER, POD_GATEWAY, type LabLayout } from './layout.js';
import type { HostAddresses, LabPlan } from './plan.js';

const FABRIC_BRIDGE = 'br0';
const NODE_FABRIC_LINK = 'fab0';

export class LabNetwork {
  readonly #ip = requireTool('ip', 'iproute2');
  readonly #nft = requireTool('nft', 'nftables');

  constructor(private readonly layout: LabLayout) {}

  /** Creates every namespace and link of the plan, in order; `teardown` undoes a partial build too. */
  async build(plan: LabPlan): Promise<void> {
    // Each cluster's nodes have a fabric of their own: no route leads from one cluster's nodes to another's.
    for (const cluster of plan.clusters) {
      const { nodes, pods } = clusterView(plan, cluster);
      const fabric = cluster.fabricNetns;
      await this.#addNetns(fabric);
      await this.#ipIn(fabric, 'link', 'add', FABRIC_BRIDGE, 'type', 'bridge');
      await this.#ipIn(fabric, 'link', 'set', FABRIC_BRIDGE, 'up');

      for (const node of nodes) {
        await this.#addNetns(node.netns);
        await this.#ipIn(fabric, 'link', 'add', node.fabricLink, 'type', 'veth', 'peer', 'name', NODE_FABRIC_LINK, 'netns', node.netns);
        await this.#ipIn(fabric, 'link', 'set', node.fabricLink, 'master', FABRIC_BRIDGE, 'up');
        await this.#ipIn(node.netns, 'addr', 'add', `${node.ip}/32`, 'dev', NODE_FABRIC_LINK);
        await this.#ipIn(node.netns, 'link', 'set', NODE_FABRIC_LINK, 'up');
        await this.#sysctl(node.netns, 'net.ipv4.ip_forward=1');
      }

      for (const node of nodes) {
        for (const peer of nodes) {
          if (peer === node) continue;
          await this.#ipIn(node.netns, 'route', 'add', `${peer.ip}/32`, 'dev', NODE_FABRIC_LINK);
          for (const cidr of peer.podCidrs) await this.#ipIn(node.netns, 'route', 'add', cidr, 'via', peer.ip, 'dev', NODE_FABRIC_LINK, 'onlink');
        }
        // Pods outside every podCIDR of their node still need a route from the other nodes.
        for (const pod of pods) {
          const home = nodes.find((n) => n.name === pod.node)!;
          if (home === node || home.podCidrs.some((c) => prefixContains(parseIpv4Prefix(c)!, pod.ip))) continue;
          await this.#ipIn(node.netns, 'route', 'add', `${pod.ip}/32`, 'via', home.ip, 'dev', NODE_FABRIC_LINK, 'onlink');
        }
      }
    }
    // Between clusters, only their east-west gateways' edges.
    await new LabInternetwork(this.layout).build(plan);

    for (const pod of plan.pods) {
      const node = plan.nodes.find((n) => n.name === pod.node)!;
      await this.#addNetns(pod.netns);
      await this.#ipIn(node.netns, 'link', 'add', pod.hostLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.netns);
      // Every pod's gateway is the same link-local address on its own veth, so a pod's routes do not
      // depend on which node it runs on.
      await this.#ipIn(node.netns, 'addr', 'add', `${POD_GATEWAY}/32`, 'dev', pod.hostLink);
      await this.#ipIn(node.netns, 'link', 'set', pod.hostLink, 'up');
      await this.#ipIn(node.netns, 'route', 'add', `${pod.ip}/32`, 'dev', pod.hostLink);
      await this.#ipIn(pod.netns, 'addr', 'add', `${pod.ip}/32`, 'dev', 'eth0');
      await this.#ipIn(pod.netns, 'link', 'set', 'eth0', 'up');
      await this.#ipIn(pod.netns, 'route', 'add', POD_GATEWAY, 'dev', 'eth0', 'scope', 'link');
      await this.#ipIn(pod.netns, 'route', 'add', 'default', 'via', POD_GATEWAY, 'dev', 'eth0');
    }
  }

  /**
   * Gives the fabric bridge the lab API server's address and routes it from every node (for
   * `lab up --source kubernetes`): the agents reach the API server over the fabric, as a cluster's
   * nodes reach their control plane over the node network. Pods get no route to it.
   */
  async wireApiServer(plan: LabPlan): Promise<void> {
    const fabric = this.layout.fabricNetns;
    await this.#ipIn(fabric, 'addr', 'add', `${LAB_API_SERVER.ip}/32`, 'dev', FABRIC_BRIDGE);
    for (const node of plan.nodes) {
      await this.#ipIn(fabric, 'route', 'add', `${node.ip}/32`, 'dev', FABRIC_BRIDGE);
      await this.#ipIn(node.netns, 'route', 'add', `${LAB_API_SERVER.ip}/32`, 'dev', NODE_FABRIC_LINK);
    }
  }

  /**
   * Gives each cluster's fabric bridge its cluster DNS's address (cluster-dns.ts), routed from the
   * cluster's nodes, and routes each of its pods' addresses back through the pod's node: pods ask it
   * directly, agents forward to it. `replace`, as wireApiServer may have routed the nodes already.
   */
  async wireClusterDns(plan: LabPlan): Promise<void> {
    for (const cluster of plan.clusters) {
      const { nodes, pods } = clusterView(plan, cluster);
      const fabric = cluster.fabricNetns;
      await this.#ipIn(fabric, 'addr', 'add', `${LAB_CLUSTER_DNS.ip}/32`, 'dev', FABRIC_BRIDGE);
      for (const node of nodes) {
        await this.#ipIn(fabric, 'route', 'replace', `${node.ip}/32`, 'dev', FABRIC_BRIDGE);
        await this.#ipIn(node.netns, 'route', 'replace', `${LAB_CLUSTER_DNS.ip}/32`, 'dev', NODE_FABRIC_LINK);
      }
      for (const pod of pods) {
        const node = nodes.find((n) => n.name === pod.node)!;
        await this.#ipIn(fabric, 'route', 'replace', `${pod.ip}/32`, 'via', node.ip, 'dev', FABRIC_BRIDGE, 'onlink');
      }
    }
  }

  /** Applies what follows from the current Services: kube-proxy rules on nodes; each pod's hosts and resolv.conf. */
  async applyServices(plan: LabPlan, snapshot: MeshSnapshot): Promise<void> {
    const rules = renderKubeProxyRules(snapshot);
    for (const node of plan.nodes) await runCommand(this.#ip, ['netns', 'exec', node.netns, this.#nft, '-f', '-'], rules);
    for (const pod of plan.pods) {
      const dir = this.layout.etcDir(pod.netns);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'hosts'), renderPodHosts(pod));
      await writeFile(join(dir, 'resolv.conf'), podResolvConf(pod.namespace, snapshot.clusterDomain));
    }
  }

  /**
   * Every namespace whose name says it belongs to this lab, whether or not the state file knows it;
   * `labs` are all the labs on the machine (listLabs), so that a longer lab name's namespaces are left alone.
   */
  async listNetns(labs: readonly string[]): Promise<string[]> {
    const out = await runCommand(this.#ip, ['netns', 'list']);
    return out
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter((name) => this.layout.ownsNetns(name, labs));
  }

  /** Deletes the lab's namespaces (their links, routes and nft tables go with them) and /etc/netns files. */
  async teardown(labs: readonly string[]): Promise<void> {
    for (const netns of await this.listNetns(labs)) {
      await runCommand(this.#ip, ['netns', 'delete', netns]);
      await rm(this.layout.etcDir(netns), { recursive: true, force: true });
    }
    // /etc/netns exists only for labs (Debian does not ship it); leave it only if something else uses it.
    await rmdir(ETC_NETNS_DIR).catch(() => undefined);
  }

  async #addNetns(name: string): Promise<void> {
    await runCommand(this.#ip, ['netns', 'add', name]);
    await this.#ipIn(name, 'link', 'set', 'lo', 'up');
  }

  #ipIn(netns: string, ...args: string[]): Promise<string> {
    return runCommand(this.#ip, ['-n', netns, ...args]);
  }

  #sysctl(netns: string, setting: string): Promise<string> {
    const [key, value] = setting.split('=') as [string, string];
    // /proc/sys/net answers for the network namespace of the process that opens it.
    return runCommand(this.#ip, ['netns', 'exec', netns, 'sh', '-c', `echo ${value} > /proc/sys/${key.replaceAll('.', '/')}`]);
  }
}

/** The machine's own IPv4 networks and resolvers, which a lab must not overlap. */
export async function readHostAddresses(): Promise<HostAddresses> {
  const ip = requireTool('ip', 'iproute2');
  const routes = JSON.parse(await runCommand(ip, ['-j', '-4', 'route', 'show', 'table', 'all'])) as { dst?: string; type?: string }[];
  const prefixes: Ipv4Prefix[] = [];
  for (const route of routes) {
    if (!route.dst || route.dst === 'default' || route.type === 'broadcast') continue;
    const prefix = parseIpv4Prefix(route.dst);
    if (prefix && prefix.length > 0) prefixes.push(prefix);
  }
  const resolv = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const nameservers = resolv
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((s): s is string => s !== undefined);
  return { prefixes, nameservers };
}
