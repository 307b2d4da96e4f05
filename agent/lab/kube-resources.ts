// The kinds the lab's stand-in API server (kube-apiserver.ts) serves, and what it does to their objects
// apart from HTTP: where each kind lives in the API, how an object is keyed, selected by labels, shown in
// a requested version and merge-patched.

/** A Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export interface ResourceType {
  readonly group: string;
  readonly versions: readonly string[];
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
  /** Custom resources (Istio's, Ambit's) list their items with kind and apiVersion; built-in kinds do not. */
  readonly custom: boolean;
}

const RESOURCES: readonly ResourceType[] = [
  { group: '', versions: ['v1'], plural: 'namespaces', kind: 'Namespace', namespaced: false, custom: false },
  { group: '', versions: ['v1'], plural: 'nodes', kind: 'Node', namespaced: false, custom: false },
  { group: '', versions: ['v1'], plural: 'pods', kind: 'Pod', namespaced: true, custom: false },
  { group: '', versions: ['v1'], plural: 'services', kind: 'Service', namespaced: true, custom: false },
  { group: '', versions: ['v1'], plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true, custom: false },
  { group: 'discovery.k8s.io', versions: ['v1'], plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true, custom: false },
  { group: 'networking.istio.io', versions: ['v1', 'v1beta1', 'v1alpha3'], plural: 'virtualservices', kind: 'VirtualService', namespaced: true, custom: true },
  { group: 'networking.istio.io', versions: ['v1', 'v1beta1', 'v1alpha3'], plural: 'destinationrules', kind: 'DestinationRule', namespaced: true, custom: true },
  { group: 'networking.istio.io', versions: ['v1', 'v1beta1', 'v1alpha3'], plural: 'serviceentries', kind: 'ServiceEntry', namespaced: true, custom: true },
  { group: 'networking.istio.io', versions: ['v1', 'v1beta1', 'v1alpha3'], plural: 'workloadentries', kind: 'WorkloadEntry', namespaced: true, custom: true },
  { group: 'security.istio.io', versions: ['v1', 'v1beta1'], plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true, custom: true },
  { group: 'security.istio.io', versions: ['v1', 'v1beta1'], plural: 'peerauthentications', kind: 'PeerAuthentication', namespaced: true, custom: true },
  { group: 'security.istio.io', versions: ['v1', 'v1beta1'], plural: 'requestauthentications', kind: 'RequestAuthentication', namespaced: true, custom: true },
  { group: 'telemetry.istio.io', versions: ['v1', 'v1alpha1'], plural: 'telemetries', kind: 'Telemetry', namespaced: true, custom: true },
  { group: '', versions: ['v1'], plural: 'configmaps', kind: 'ConfigMap', namespaced: true, custom: false },
  // Istio's remote secrets (label istio/multiCluster=true), which agents list with a labelSelector.
  { group: '', versions: ['v1'], plural: 'secrets', kind: 'Secret', namespaced: true, custom: false },
  // Gateway API (the standard and experimental channels' versions); their /status takes merge patches.
  { group: 'gateway.networking.k8s.io', versions: ['v1', 'v1beta1'], plural: 'httproutes', kind: 'HTTPRoute', namespaced: true, custom: true },
  { group: 'gateway.networking.k8s.io', versions: ['v1', 'v1alpha2'], plural: 'grpcroutes', kind: 'GRPCRoute', namespaced: true, custom: true },
  { group: 'gateway.networking.k8s.io', versions: ['v1', 'v1alpha2'], plural: 'tcproutes', kind: 'TCPRoute', namespaced: true, custom: true },
  { group: 'gateway.networking.k8s.io', versions: ['v1', 'v1beta1'], plural: 'gateways', kind: 'Gateway', namespaced: true, custom: true },
  // Ambit's own custom resource (deploy/daemonset/crd-ratelimits.yaml).
  { group: 'ambit.dev', versions: ['v1alpha1'], plural: 'ratelimits', kind: 'RateLimit', namespaced: true, custom: true },
];

export const POD_RESOURCE = RESOURCES.find((r) => r.kind === 'Pod')!;


/** Whether the server holds objects of this kind (`apply` throws for the others). */
export function servesKind(object: { readonly apiVersion?: string; readonly kind?: string }): boolean {
  return resourceFor(object) !== undefined;
}

/** The resource an object's apiVersion and kind name; throws for a kind the server does not hold. */
export function resourceOf(object: KubeObject): ResourceType {
  const resource = resourceFor(object);
  if (!resource) throw new Error(`fake API server: unknown kind ${object.apiVersion}/${object.kind}`);
  return resource;
}

function resourceFor(object: { readonly apiVersion?: string; readonly kind?: string }): ResourceType | undefined {
  const group = object.apiVersion?.includes('/') ? object.apiVersion.split('/')[0] : '';
  return RESOURCES.find((r) => r.kind === object.kind && r.group === group);
}

/** The resource of a kind by its name alone (as `delete` is asked). */
export function resourceOfKind(kind: string): ResourceType | undefined {
  return RESOURCES.find((r) => r.kind === kind);
}

/** The resource a URL's group and plural name. */
export function resourceAt(group: string, plural: string): ResourceType | undefined {
  return RESOURCES.find((r) => r.group === group && r.plural === plural);
}

export function objectKey(resource: ResourceType, namespace: string | undefined, name: string): string {
  return `${resource.group}/${resource.plural}/${namespace ?? ''}/${name}`;
}

/** An equality-based labelSelector (`a=b,c=d`), the only form the agents send. */
export function labelSelector(text: string | undefined): ReadonlyMap<string, string> {
  const pairs = (text ?? '').split(',').filter((p) => p.includes('='));
  return new Map(pairs.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
}

export function selects(selector: ReadonlyMap<string, string>, object: KubeObject): boolean {
  const labels = (object.metadata['labels'] ?? {}) as Record<string, string>;
  for (const [key, value] of selector) if (labels[key] !== value) return false;
  return true;
}

/** The object as the requested version shows it (Istio's versions share one schema). */
export function asVersion(object: KubeObject, resource: ResourceType, version: string): KubeObject {
  return { ...structuredClone(object), apiVersion: `${resource.group ? `${resource.group}/` : ''}${version}`, kind: resource.kind };
}

/** RFC 7386: objects merge key by key, null deletes, anything else (lists included) replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}
