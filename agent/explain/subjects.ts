// How `ambit explain` names its source and destination, resolved against a snapshot: a pod (`ns/name`),
// a Service (`name.ns`, its full hostname, or a ServiceEntry host), or an IP (a pod's, a Service VIP, or
// an address outside the mesh). The destination also needs the port the client dials.

import { isIP } from 'node:net';
import type { MeshService, MeshSnapshot, Workload } from '../state/model.js';
import { kubernetesServiceHostname } from '../state/model.js';
import type { Address } from '../tunnel/destination.js';

export type ExplainSource =
  | { readonly kind: 'pod'; readonly workload: Workload; readonly ip: string }
  /** An address no pod of the mesh has: nothing captures it, only the destination side can judge it. */
  | { readonly kind: 'outside'; readonly ip: string };

export type ExplainDestination =
  | { readonly kind: 'service'; readonly service: MeshService; readonly dial: Address }
  | { readonly kind: 'pod'; readonly workload: Workload; readonly dial: Address }
  | { readonly kind: 'outside'; readonly dial: Address };

export type Resolved<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const ok = <T>(value: T): Resolved<T> => ({ ok: true, value });
const fail = <T>(error: string): Resolved<T> => ({ ok: false, error });

export function resolveSource(snapshot: MeshSnapshot, spec: string): Resolved<ExplainSource> {
  if (isIP(spec)) {
    const workload = snapshot.workloadsByIp.get(spec);
    return ok(workload ? { kind: 'pod', workload, ip: spec } : { kind: 'outside', ip: spec });
  }
  const workload = podByName(snapshot, spec);
  if (!workload) return fail(`source ${JSON.stringify(spec)}: no pod of that name; name a pod as <namespace>/<name> or give its IP`);
  const ip = workload.ips[0];
  if (ip === undefined) return fail(`source ${spec}: the pod has no IP yet, so it opens no connection`);
  return ok({ kind: 'pod', workload, ip });
}

/** `spec` is `<what>[:port]`; `port` (from --port or the spec) is needed unless the target has one port. */
export function resolveDestination(snapshot: MeshSnapshot, spec: string): Resolved<ExplainDestination> {
  const { name, port } = splitPort(spec);
  if (port !== undefined && !(port >= 1 && port <= 65535)) return fail(`destination ${spec}: the port must be 1-65535`);
  if (isIP(name)) {
    const service = snapshot.servicesByVip.get(name);
    if (service) return withServicePort(service, name, port, spec);
    const workload = snapshot.workloadsByIp.get(name);
    if (workload) return withPodPort(workload, name, port, spec);
    if (port === undefined) return fail(`destination ${spec}: which port? write ${name}:<port>`);
    return ok({ kind: 'outside', dial: { ip: name, port } });
  }
  if (name.includes('/')) {
    const workload = podByName(snapshot, name);
    if (!workload) return fail(`destination ${JSON.stringify(name)}: no pod of that name (pods are <namespace>/<name>)`);
    const ip = workload.ips[0];
    if (ip === undefined) return fail(`destination ${name}: the pod has no IP yet`);
    return withPodPort(workload, ip, port, spec);
  }
  const service = serviceByName(snapshot, name);
  if (!service) return fail(`destination ${JSON.stringify(name)}: no Service or ServiceEntry host of that name (write <name>.<namespace>, its hostname, a pod as <namespace>/<name>, or an IP)`);
  const vip = service.vips[0];
  if (vip === undefined) return fail(`destination ${name}: ${service.hostname} has no address (a headless Service or a ServiceEntry without addresses): name one of its pods instead`);
  return withServicePort(service, vip, port, spec);
}

function withServicePort(service: MeshService, vip: string, port: number | undefined, spec: string): Resolved<ExplainDestination> {
  const chosen = port ?? (service.ports.length === 1 ? service.ports[0]!.port : undefined);
  if (chosen === undefined) return fail(`destination ${spec}: which port of ${service.hostname}? it has ${service.ports.map((p) => p.port).join(', ') || 'none'}`);
  return ok({ kind: 'service', service, dial: { ip: vip, port: chosen } });
}

function withPodPort(workload: Workload, ip: string, port: number | undefined, spec: string): Resolved<ExplainDestination> {
  const named = [...new Set(workload.namedPorts.values())];
  const chosen = port ?? (named.length === 1 ? named[0] : undefined);
  if (chosen === undefined) return fail(`destination ${spec}: which port of pod ${workload.key}? write ${spec}:<port>`);
  return ok({ kind: 'pod', workload, dial: { ip, port: chosen } });
}

function podByName(snapshot: MeshSnapshot, name: string): Workload | undefined {
  const direct = snapshot.workloads.get(name);
  if (direct) return direct;
  // In xDS mode workloads are keyed by istiod's uid: find the pod by namespace and name.
  const [namespace, pod] = name.split('/', 2);
  for (const w of snapshot.workloads.values()) if (w.namespace === namespace && w.name === pod) return w;
  return undefined;
}

/** `name.ns`, `name.ns.svc`, the full hostname, or a ServiceEntry host. */
function serviceByName(snapshot: MeshSnapshot, name: string): MeshService | undefined {
  const lower = name.toLowerCase().replace(/\.$/, '');
  const exact = snapshot.servicesByHostname.get(lower);
  if (exact) return exact;
  const parts = lower.split('.');
  if (parts.length === 2 || (parts.length === 3 && parts[2] === 'svc')) {
    return snapshot.servicesByHostname.get(kubernetesServiceHostname(parts[0]!, parts[1]!, snapshot.clusterDomain));
  }
  return undefined;
}

/** `reviews.bookinfo:9080` → name and port; `10.96.0.1:80`; a bare IPv6 address keeps its colons. */
export function splitPort(spec: string): { readonly name: string; readonly port?: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec);
  if (bracketed) return { name: bracketed[1]!, ...(bracketed[2] ? { port: Number(bracketed[2]) } : {}) };
  if (isIP(spec) === 6) return { name: spec };
  const m = /^(.*):(\d+)$/.exec(spec);
  return m ? { name: m[1]!, port: Number(m[2]) } : { name: spec };
}
