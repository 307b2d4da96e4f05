// The wiring between the networks of a lab of several clusters: each cluster's east-west gateway gets a
// namespace of its own (its edge) on both the cluster's fabric and the internetwork, a bridge that only
// edges are on. An edge forwards one thing, a cluster's connections to other networks' gateways on the
// HBONE port, and hides them behind its own address, so nothing else crosses between the networks and
// no route to one cluster's nodes or pods exists anywhere in another.

import { runCommand, requireTool } from '../system/commands.js';
import { parseIpv4Prefix, prefixContains } from '../system/ipv4.js';
import { EAST_WEST_HBONE_PORT } from '../state/clusters.js';
import { type LabEastWestPlan, clusterView } from './clusters.js';
import type { LabLayout } from './layout.js';
import type { LabPlan } from './plan.js';

const BRIDGE = 'br0';
/** The edge's two links: into its cluster's fabric, and onto the internetwork. */
const CLUSTER_LINK = 'cluster0';
const INTERNETWORK_LINK = 'wan0';
/** The node side of a node's fabric link (network.ts). */
const NODE_FABRIC_LINK = 'fab0';
export const EDGE_TABLE = 'ambit_edge';

/**
 * The edge's nftables: it forwards only from its cluster to the other gateways' HBONE port (and the
 * answers), never into its cluster, and masquerades what it forwards, as a cluster's NAT gateway would:
 * the other networks see the edge's address alone.
 */
export function renderEdgeRules(otherGateways: readonly string[]): string {
  const allow = otherGateways.length > 0 ? `    iifname "${CLUSTER_LINK}" oifname "${INTERNETWORK_LINK}" ip daddr { ${otherGateways.join(', ')} } tcp dport ${EAST_WEST_HBONE_PORT} accept\n` : '';
  return `table ip ${EDGE_TABLE} {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
${allow}  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${INTERNETWORK_LINK}" masquerade
  }
}
`;
}

export class LabInternetwork {
  readonly #ip = requireTool('ip', 'iproute2');
  readonly #nft = requireTool('nft', 'nftables');

  constructor(private readonly layout: LabLayout) {}

  /** Wires every cluster's edge after network.ts has built the clusters' fabrics and nodes; nothing for a lab without gateways. */
  async build(plan: LabPlan): Promise<void> {
    const edges = plan.clusters.flatMap((cluster) => (cluster.eastWest ? [{ cluster, edge: cluster.eastWest }] : []));
    if (edges.length === 0) return;
    const internetwork = this.layout.internetworkNetns;
    await this.#addNetns(internetwork);
    await this.#ipIn(internetwork, 'link', 'add', BRIDGE, 'type', 'bridge');
    await this.#ipIn(internetwork, 'link', 'set', BRIDGE, 'up');
    for (const { cluster, edge } of edges) {
      const others = edges.filter((e) => e.edge !== edge).map((e) => e.edge.address);
      await this.#addNetns(edge.netns);
      await this.#wireIntoCluster(clusterView(plan, cluster), cluster.fabricNetns, edge, others);
      await this.#ipIn(internetwork, 'link', 'add', edge.internetworkLink, 'type', 'veth', 'peer', 'name', INTERNETWORK_LINK, 'netns', edge.netns);
      await this.#ipIn(internetwork, 'link', 'set', edge.internetworkLink, 'master', BRIDGE, 'up');
      await this.#ipIn(edge.netns, 'addr', 'add', `${edge.address}/32`, 'dev', INTERNETWORK_LINK);
      await this.#ipIn(edge.netns, 'link', 'set', INTERNETWORK_LINK, 'up');
      for (const other of others) await this.#ipIn(edge.netns, 'route', 'add', `${other}/32`, 'dev', INTERNETWORK_LINK);
      await runCommand(this.#ip, ['netns', 'exec', edge.netns, this.#nft, '-f', '-'], renderEdgeRules(others));
      await runCommand(this.#ip, ['netns', 'exec', edge.netns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']);
    }
  }

  /**
   * The edge reaches its cluster's nodes and pods (the gateway forwards inner tunnels to them), and the
   * nodes send what is for other networks' gateways to it: their only route out of the cluster.
   */
  async #wireIntoCluster(cluster: LabPlan, fabric: string, edge: LabEastWestPlan, otherGateways: readonly string[]): Promise<void> {
    await this.#ipIn(fabric, 'link', 'add', edge.fabricLink, 'type', 'veth', 'peer', 'name', CLUSTER_LINK, 'netns', edge.netns);
    await this.#ipIn(fabric, 'link', 'set', edge.fabricLink, 'master', BRIDGE, 'up');
    await this.#ipIn(edge.netns, 'addr', 'add', `${edge.fabricAddress}/32`, 'dev', CLUSTER_LINK);
    await this.#ipIn(edge.netns, 'link', 'set', CLUSTER_LINK, 'up');
    for (const node of cluster.nodes) {
      await this.#ipIn(edge.netns, 'route', 'add', `${node.ip}/32`, 'dev', CLUSTER_LINK);
      for (const cidr of node.podCidrs) await this.#ipIn(edge.netns, 'route', 'add', cidr, 'via', node.ip, 'dev', CLUSTER_LINK, 'onlink');
      await this.#ipIn(node.netns, 'route', 'add', `${edge.fabricAddress}/32`, 'dev', NODE_FABRIC_LINK);
      for (const gateway of otherGateways) await this.#ipIn(node.netns, 'route', 'add', `${gateway}/32`, 'via', edge.fabricAddress, 'dev', NODE_FABRIC_LINK, 'onlink');
    }
    for (const pod of cluster.pods) {
      const home = cluster.nodes.find((n) => n.name === pod.node)!;
      if (home.podCidrs.some((c) => prefixContains(parseIpv4Prefix(c)!, pod.ip))) continue;
      await this.#ipIn(edge.netns, 'route', 'add', `${pod.ip}/32`, 'via', home.ip, 'dev', CLUSTER_LINK, 'onlink');
    }
  }

  async #addNetns(name: string): Promise<void> {
    await runCommand(this.#ip, ['netns', 'add', name]);
    await this.#ipIn(name, 'link', 'set', 'lo', 'up');
  }

  #ipIn(netns: string, ...args: string[]): Promise<string> {
    return runCommand(this.#ip, ['-n', netns, ...args]);
  }
}
