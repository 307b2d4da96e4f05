// Who the agent says it is on the xDS stream: ztunnel's node id and metadata, from which istiod picks
// the proxy type, cluster, node and network it serves.

import { create } from '@bufbuild/protobuf';
import type { JsonObject, JsonValue } from '@bufbuild/protobuf';
import { type Node, NodeSchema } from '../../proto/envoy/config/core/v3/base_pb.js';

export interface XdsNodeInfo {
  /** The agent pod's IP (INSTANCE_IP). */
  readonly ip: string;
  /** The agent pod's name and namespace (POD_NAME, POD_NAMESPACE). */
  readonly podName: string;
  readonly podNamespace: string;
  /** The Kubernetes node (NODE_NAME). */
  readonly nodeName: string;
  /**
   * The proxy type istiod reads from the id. Current ztunnel says `ztunnel`, which istiod since 1.23
   * treats as a node proxy; older ztunnels said `sidecar`.
   */
  readonly proxyType?: 'ztunnel' | 'sidecar';
  /** ISTIO_META_* values, prefix stripped (CLUSTER_ID, NETWORK, ...), and ISTIO_METAJSON_* parsed. */
  readonly metadata?: Readonly<Record<string, JsonValue>>;
}

/** `<type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`, as ztunnel writes it. */
export function xdsNodeId(info: XdsNodeInfo): string {
  const ns = info.podNamespace;
  return `${info.proxyType ?? 'ztunnel'}~${info.ip}~${info.podName}.${ns}~${ns}.svc.cluster.local`;
}

export function xdsNode(info: XdsNodeInfo): Node {
  const metadata: JsonObject = {
    NAME: info.podName,
    NAMESPACE: info.podNamespace,
    INSTANCE_IPS: info.ip,
    NODE_NAME: info.nodeName,
    ...info.metadata,
  };
  return create(NodeSchema, { id: xdsNodeId(info), metadata });
}

const META_PREFIX = 'ISTIO_META_';
const METAJSON_PREFIX = 'ISTIO_METAJSON_';

/**
 * Node information from the environment the DaemonSet sets (as ztunnel's chart: INSTANCE_IP, POD_NAME,
 * POD_NAMESPACE, NODE_NAME, ISTIO_META_*); `problems` lists variables that are missing or unreadable.
 */
export function xdsNodeInfoFromEnv(env: NodeJS.ProcessEnv): { info: XdsNodeInfo; problems: string[] } {
  const problems: string[] = [];
  const need = (name: string, fallback: string): string => {
    const value = env[name];
    if (value) return value;
    problems.push(`${name} is not set (the DaemonSet sets it from the downward API); using ${JSON.stringify(fallback)}`);
    return fallback;
  };
  const metadata: Record<string, JsonValue> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if (key.startsWith(METAJSON_PREFIX)) {
      try {
        metadata[key.slice(METAJSON_PREFIX.length)] = JSON.parse(value) as JsonValue;
      } catch (err) {
        problems.push(`${key} is not JSON (${(err as Error).message}); it is left out of the node metadata`);
      }
    } else if (key.startsWith(META_PREFIX)) {
      metadata[key.slice(META_PREFIX.length)] = value;
    }
  }
  return {
    info: {
      ip: need('INSTANCE_IP', '1.1.1.1'),
      podName: need('POD_NAME', ''),
      podNamespace: need('POD_NAMESPACE', ''),
      nodeName: need('NODE_NAME', ''),
      metadata,
    },
    problems,
  };
}
