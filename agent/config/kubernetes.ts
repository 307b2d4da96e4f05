// Typed Kubernetes core objects, as Ambit reads them from the YAML a user would `kubectl apply`.
// Only the fields the mesh uses are kept; every object remembers where it came from so that later
// errors (a selector that matches nothing, a port that does not exist) can point at the file and line.

/** Where an object (or one of its fields) was written: the file and 1-based line. */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  /**
   * From the Kubernetes API server: the object's resourceVersion when it last changed in a way the agent
   * reads (a status-only update keeps the version that is in force).
   */
  readonly resourceVersion?: string;
}

export type Labels = Readonly<Record<string, string>>;

export interface ObjectMeta {
  readonly name: string;
  /** "" for cluster-scoped kinds (Node, Namespace); "default" when a namespaced object omits it. */
  readonly namespace: string;
  /** The API server's id for this incarnation of the object; absent in hand-written YAML. */
  readonly uid?: string;
  /** When the API server created it (RFC 3339); absent in hand-written YAML. Gateway API routes are ordered by it. */
  readonly creationTimestamp?: string;
  /** The spec's generation, which Gateway API route status echoes as observedGeneration. */
  readonly generation?: number;
  readonly labels: Labels;
  readonly annotations: Labels;
  /** Pods only: the prefix the API server named the pod from, set when a controller created it. */
  readonly generateName?: string;
  /** Pods only: the ownerReference marked `controller: true` (the ReplicaSet, Job, ... that made the pod). */
  readonly controller?: ControllerReference;
}

/** The part of an ownerReference that names a workload: istiod derives a pod's workload name from it. */
export interface ControllerReference {
  readonly kind: string;
  readonly name: string;
}

/** What every object has: its kind, the apiVersion it was written with, its metadata and its origin. */
export interface ObjectBase<K extends string> {
  readonly kind: K;
  readonly apiVersion: string;
  readonly metadata: ObjectMeta;
  readonly source: SourceLocation;
}

export interface NodeAddress {
  readonly type: string; // InternalIP, ExternalIP, Hostname, ...
  readonly address: string;
}

export interface NodeObject extends ObjectBase<'Node'> {
  readonly spec: { readonly podCIDR?: string; readonly podCIDRs: readonly string[] };
  readonly status: { readonly addresses: readonly NodeAddress[] };
}

export type NamespaceObject = ObjectBase<'Namespace'>;

export type ServiceAccountObject = ObjectBase<'ServiceAccount'>;

export type PortProtocol = 'TCP' | 'UDP' | 'SCTP';

export interface ContainerPort {
  readonly name?: string;
  readonly containerPort: number;
  readonly protocol: PortProtocol;
}

/** An environment variable: a literal value, or one of the downward-API fields the lab can fill in. */
export type EnvVar =
  | { readonly name: string; readonly value: string }
  | { readonly name: string; readonly fieldRef: string };

export interface ProbeHeader {
  readonly name: string;
  readonly value: string;
}

/** An HTTP GET or TCP socket probe; Ambit's active health checks reuse the readinessProbe. */
export type Probe =
  | {
      readonly kind: 'httpGet';
      readonly path: string;
      readonly port: number | string;
      /** HTTPS as a kubelet probes it: the pod's certificate is not verified. */
      readonly scheme: 'HTTP' | 'HTTPS';
      /** Sent as given, in order; a Host, User-Agent or Accept here replaces the probe's own. */
      readonly httpHeaders: readonly ProbeHeader[];
      readonly periodSeconds: number;
      readonly timeoutSeconds: number;
      readonly failureThreshold: number;
      readonly successThreshold: number;
    }
  | {
      readonly kind: 'tcpSocket';
      readonly port: number | string;
      readonly periodSeconds: number;
      readonly timeoutSeconds: number;
      readonly failureThreshold: number;
      readonly successThreshold: number;
    };

export interface Container {
  readonly name: string;
  readonly image?: string;
  readonly command: readonly string[];
  readonly args: readonly string[];
  readonly workingDir?: string;
  readonly env: readonly EnvVar[];
  readonly ports: readonly ContainerPort[];
  readonly readinessProbe?: Probe;
}

export interface PodCondition {
  readonly type: string;
  readonly status: 'True' | 'False' | 'Unknown';
}

export interface PodObject extends ObjectBase<'Pod'> {
  readonly spec: {
    readonly nodeName?: string;
    readonly serviceAccountName?: string;
    /** Runs in the node's network namespace, with the node's IP: never captured, never an IP's owner. */
    readonly hostNetwork?: true;
    readonly containers: readonly Container[];
  };
  readonly status: {
    readonly phase?: string;
    readonly podIP?: string;
    readonly podIPs: readonly string[];
    readonly conditions: readonly PodCondition[];
  };
}

export interface ServicePort {
  readonly name?: string;
  readonly port: number;
  /** A number, or the name of a container port; defaults to `port`. */
  readonly targetPort: number | string;
  readonly protocol: PortProtocol;
  readonly appProtocol?: string;
}

export interface ServiceObject extends ObjectBase<'Service'> {
  readonly spec: {
    readonly type: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
    /** undefined when the Service has no selector (endpoints are managed elsewhere). */
    readonly selector?: Labels;
    readonly clusterIP?: string; // "None" for headless Services
    readonly clusterIPs: readonly string[];
    readonly ports: readonly ServicePort[];
    /** `Local`: clients use only endpoints on their own node (Kubernetes' internalTrafficPolicy). */
    readonly internalTrafficPolicy?: 'Cluster' | 'Local';
    /** Kubernetes' trafficDistribution (or Istio's networking.istio.io/traffic-distribution annotation). */
    readonly trafficDistribution?: TrafficDistribution;
  };
}

export const TRAFFIC_DISTRIBUTIONS = ['PreferClose', 'PreferSameZone', 'PreferSameNode'] as const;
export type TrafficDistribution = (typeof TRAFFIC_DISTRIBUTIONS)[number];

export type KubernetesObject =
  | NodeObject
  | NamespaceObject
  | ServiceAccountObject
  | PodObject
  | ServiceObject;
