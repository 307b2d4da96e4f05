// Where everything a lab makes lives, derived from the lab's name alone, so that `down` can find and
// remove all of it even when the state file is gone: every name starts with `ambit-<lab>-` (see ownsNetns).

import { createHash } from 'node:crypto';
import { join } from 'node:path';

export const LAB_RUN_DIR = '/run/ambit/lab';
export const DEFAULT_LAB = 'lab';
/** `ip netns exec` bind-mounts /etc/netns/<netns>/* over /etc (hosts, resolv.conf). */
export const ETC_NETNS_DIR = '/etc/netns';

/** The supervisor's names for the lab's control-plane processes, in status.json, `lab status` and `lab logs`. */
export const API_SERVER_ID = 'control-plane/kube-apiserver';
export const CA_ID = 'control-plane/ambit-ca';

const LAB_NAME = /^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$/;

export function checkLabName(name: string): string | undefined {
  return LAB_NAME.test(name) ? undefined : `lab name ${JSON.stringify(name)}: expected 1-16 lowercase letters, digits or '-', starting and ending with a letter or digit`;
}

/** A cluster ID names a lab's namespaces and cgroups (fabric-<id>, gw-<id>), so it has a lab name's shape. */
export function checkClusterId(id: string): string | undefined {
  return LAB_NAME.test(id) ? undefined : `cluster ID ${JSON.stringify(id)}: expected 1-16 lowercase letters, digits or '-', starting and ending with a letter or digit`;
}

/** The cgroup directory under which every lab has its own. */
export function labCgroupParent(cgroupRoot: string): string {
  return join(cgroupRoot, 'ambit');
}

/** The namespace joining the east-west gateways of a lab of several clusters (LabLayout.internetworkNetns). */
const INTERNETWORK = 'internetwork';

/**
 * Whether `netns` has the shape of a name lab `lab` makes (see LabLayout's fabricNetns, clusterFabricNetns,
 * nodeNetns, podNetns, gatewayNetns and internetworkNetns).
 */
function makesNetns(lab: string, netns: string): boolean {
  const prefix = `ambit-${lab}-`;
  if (!netns.startsWith(prefix)) return false;
  const rest = netns.slice(prefix.length);
  return rest === 'fabric' || rest === INTERNETWORK || ['fabric-', 'n-', 'p-', 'gw-'].some((shape) => rest.startsWith(shape));
}

export class LabLayout {
  constructor(
    readonly name: string,
    readonly cgroupRoot: string,
  ) {}

  get prefix(): string {
    return `ambit-${this.name}-`;
  }
  get stateDir(): string {
    return join(LAB_RUN_DIR, this.name);
  }
  get stateFile(): string {
    return join(this.stateDir, 'state.json');
  }
  get statusFile(): string {
    return join(this.stateDir, 'status.json');
  }
  get logDir(): string {
    return join(this.stateDir, 'logs');
  }
  get supervisorLog(): string {
    return join(this.logDir, 'supervisor.log');
  }
  /** `lab up --source kubernetes`: the lab's API server, its credentials and the agents' kubeconfig. */
  get apiServerLog(): string {
    return join(this.logDir, 'kube-apiserver.log');
  }
  /** `lab up --source kubernetes`: the lab's `ambit ca` (agent/lab/lab-ca.ts). */
  get caLog(): string {
    return join(this.logDir, 'ambit-ca.log');
  }
  get caCgroup(): string {
    return join(this.cgroupDir, 'ambit-ca');
  }
  get apiServerDir(): string {
    return join(this.stateDir, 'kube-apiserver');
  }
  get kubeconfig(): string {
    return join(this.apiServerDir, 'kubeconfig');
  }
  agentLog(node: string): string {
    return join(this.logDir, 'nodes', `${node}.log`);
  }
  containerLog(namespace: string, pod: string, container: string): string {
    return join(this.logDir, 'pods', `${namespace}_${pod}`, `${container}.log`);
  }

  get fabricNetns(): string {
    return `${this.prefix}fabric`;
  }
  /** In a lab of several clusters each has its own fabric, with no route to another's. */
  clusterFabricNetns(cluster: string): string {
    return `${this.prefix}fabric-${cluster}`;
  }
  /** A cluster's edge: its east-west gateway, the only namespace wired both to its fabric and to the internetwork. */
  gatewayNetns(cluster: string): string {
    return `${this.prefix}gw-${cluster}`;
  }
  /** The segment between networks (the internet between clusters, as it were): only the edges are on it. */
  get internetworkNetns(): string {
    return `${this.prefix}${INTERNETWORK}`;
  }
  nodeNetns(node: string): string {
    return `${this.prefix}n-${node}`;
  }
  podNetns(namespace: string, pod: string): string {
    return `${this.prefix}p-${namespace}.${pod}`;
  }
  etcDir(netns: string): string {
    return join(ETC_NETNS_DIR, netns);
  }

  /** Each node agent pins its maps and links under /sys/fs/bpf/ambit/<scope>. */
  bpfScope(node: string): string {
    return `${this.name}-${node}`;
  }
  /**
   * Whether a network namespace is this lab's, given every lab on the machine. Lab names may hold '-', so
   * `ambit-web-` also begins lab web-2's names: a name is ours when it has the shape we make (fabric,
   * fabric-<cluster>, n-<node>, p-<namespace>.<pod>, gw-<cluster>, internetwork) and no longer lab name
   * that begins with ours makes it too.
   */
  ownsNetns(netns: string, labs: readonly string[]): boolean {
    return makesNetns(this.name, netns) && !labs.some((lab) => lab.startsWith(`${this.name}-`) && makesNetns(lab, netns));
  }

  /** Whether a bpffs pin directory (bpfScope) is this lab's, by the same rule as ownsNetns. */
  ownsBpfScope(scope: string, labs: readonly string[]): boolean {
    return scope.startsWith(`${this.name}-`) && !labs.some((lab) => lab.startsWith(`${this.name}-`) && scope.startsWith(`${lab}-`));
  }


  get cgroupDir(): string {
    return join(labCgroupParent(this.cgroupRoot), this.name);
  }
  get supervisorCgroup(): string {
    return join(this.cgroupDir, 'supervisor');
  }
  get apiServerCgroup(): string {
    return join(this.cgroupDir, 'kube-apiserver');
  }
  gatewayCgroup(cluster: string): string {
    return join(this.cgroupDir, 'gateways', cluster);
  }
  gatewayLog(cluster: string): string {
    return join(this.logDir, 'gateways', `${cluster}.log`);
  }
  /** A cluster's east-west gateway: its state (certificates) and the pod the lab writes for it (clusters.ts). */
  gatewayStateDir(cluster: string): string {
    return join(this.stateDir, 'gateways', cluster);
  }
  agentCgroup(node: string): string {
    return join(this.cgroupDir, 'agents', node);
  }
  podCgroup(namespace: string, pod: string): string {
    return join(this.cgroupDir, 'pods', `${namespace}.${pod}`);
  }
}

/**
 * Interface names must fit in 15 bytes and be unique within their namespace; a short hash of the
 * pod's key gives a stable name that says which pod it is in `ip link` only through `lab status`.
 */
export function podHostLink(namespace: string, pod: string): string {
  return `veth${createHash('sha256').update(`${namespace}/${pod}`).digest('hex').slice(0, 8)}`;
}

export function fabricLink(index: number): string {
  return `fab${index}`;
}

/**
 * Where the lab's API server listens (`lab up --source kubernetes`): an address on the fabric bridge,
 * routed from every node. Link-local, so it can clash with no node, pod or Service range; it exists
 * only inside the lab's namespaces. 6443 is kube-apiserver's usual secure port.
 */
export const LAB_API_SERVER = { ip: '169.254.100.1', port: 6443 } as const;

/** The node side of each pod's veth answers for this gateway address (Calico's convention). */
export const POD_GATEWAY = '169.254.1.1';
