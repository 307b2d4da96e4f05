// Reads the Kubernetes core kinds (Node, Namespace, ServiceAccount, Pod, Service) from YAML into the
// typed objects of kubernetes.ts, with the API server's defaults and the validation that matters to a mesh.

import { ipFamily } from './formats.js';
import type {
  Container,
  ContainerPort,
  EnvVar,
  NamespaceObject,
  NodeAddress,
  NodeObject,
  ObjectBase,
  ObjectMeta,
  PodCondition,
  PodObject,
  PortProtocol,
  Probe,
  ProbeHeader,
  ServiceAccountObject,
  ServiceObject,
  ServicePort,
  TrafficDistribution,
} from './kubernetes.js';
import { TRAFFIC_DISTRIBUTIONS } from './kubernetes.js';
import { type Field, type MapReader, PORT_RANGE, describe } from './yaml-reader.js';

const PROTOCOLS: readonly PortProtocol[] = ['TCP', 'UDP', 'SCTP'];
const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const;
const POD_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
// Kubernetes' IANA_SVC_NAME: the names container ports and targetPorts use.
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;
const PORT_NAME_EXPECTED = "a port name (at most 15 lowercase letters, digits and '-', with at least one letter)";

export function parseNamespace(_root: MapReader, base: ObjectBase<'Namespace'>): NamespaceObject {
  return base;
}

export function parseServiceAccount(_root: MapReader, base: ObjectBase<'ServiceAccount'>): ServiceAccountObject {
  return base;
}

export function parseNode(root: MapReader, base: ObjectBase<'Node'>): NodeObject {
  const spec = root.map('spec');
  const podCIDR = spec?.get('podCIDR')?.cidr();
  const podCIDRs = spec?.strings('podCIDRs', (item) => item.cidr()) ?? [];
  const addresses: NodeAddress[] = [];
  for (const address of root.map('status')?.maps('addresses') ?? []) {
    const type = address.require('type')?.nonEmptyString();
    const field = address.require('address');
    // Hostname and DNS addresses are names; only the IP kinds must hold IPs.
    const value = type === 'InternalIP' || type === 'ExternalIP' ? field?.ip() : field?.string();
    if (type !== undefined && value !== undefined) addresses.push({ type, address: value });
  }
  return { ...base, spec: { ...(podCIDR ? { podCIDR } : {}), podCIDRs }, status: { addresses } };
}

export function parsePod(root: MapReader, base: ObjectBase<'Pod'>): PodObject | undefined {
  const spec = root.require('spec')?.map();
  if (!spec) return undefined;
  const nodeName = spec.string('nodeName');
  const serviceAccountName = spec.string('serviceAccountName');
  const hostNetwork = spec.bool('hostNetwork') === true;
  const containerFields = spec.require('containers')?.list();
  if (containerFields !== undefined && containerFields.length === 0) {
    root.ctx.error(spec.line, `${spec.path}.containers`, 'expected at least one container, got an empty list');
  }
  const containers = (containerFields ?? []).flatMap((field) => parseContainer(field) ?? []);
  const names = new Set<string>();
  containers.forEach((c, i) => {
    if (names.has(c.name)) containerFields?.[i]?.fail(`duplicate container name "${c.name}"`);
    names.add(c.name);
  });

  const status = root.map('status');
  const podIP = status?.get('podIP')?.ip();
  const podIPs = status?.maps('podIPs').flatMap((entry) => entry.require('ip')?.ip() ?? []) ?? [];
  const conditions: PodCondition[] = [];
  for (const condition of status?.maps('conditions') ?? []) {
    const type = condition.require('type')?.nonEmptyString();
    const value = condition.require('status')?.enum(['True', 'False', 'Unknown']);
    if (type !== undefined && value !== undefined) conditions.push({ type, status: value });
  }
  const phase = status?.enum('phase', POD_PHASES);
  return {
    ...base,
    metadata: { ...base.metadata, ...podOwnership(root) },
    spec: { ...(nodeName ? { nodeName } : {}), ...(serviceAccountName ? { serviceAccountName } : {}), ...(hostNetwork ? { hostNetwork } : {}), containers },
    status: { ...(phase ? { phase } : {}), ...(podIP ? { podIP } : {}), podIPs, conditions },
  };
}

/**
 * generateName and the controlling ownerReference, from which istiod names a pod's workload (its
 * Deployment, CronJob, ...). The first reference with `controller: true` counts, as in Kubernetes.
 */
function podOwnership(root: MapReader): Pick<ObjectMeta, 'generateName' | 'controller'> {
  const metadata = root.map('metadata');
  const generateName = metadata?.string('generateName');
  const references = metadata?.maps('ownerReferences') ?? [];
  // apiVersion, uid and blockOwnerDeletion mean nothing to the mesh.
  for (const ref of references) ref.ignoreRest();
  const controller = references.find((ref) => ref.bool('controller') === true);
  const kind = controller?.require('kind')?.nonEmptyString();
  const name = controller?.require('name')?.nonEmptyString();
  return { ...(generateName ? { generateName } : {}), ...(kind !== undefined && name !== undefined ? { controller: { kind, name } } : {}) };
}

function parseContainer(field: Field): Container | undefined {
  const c = field.map();
  if (!c) return undefined;
  const name = c.require('name')?.nonEmptyString();
  const image = c.string('image');
  const workingDir = c.string('workingDir');
  const command = c.strings('command');
  const args = c.strings('args');
  const env = c.maps('env').flatMap((e) => parseEnvVar(e) ?? []);
  const ports = c.maps('ports').flatMap((p) => parseContainerPort(p) ?? []);
  const probeField = c.get('readinessProbe');
  const readinessProbe = probeField ? parseProbe(probeField) : undefined;
  if (name === undefined) return undefined;
  return {
    name,
    ...(image !== undefined ? { image } : {}),
    command,
    args,
    ...(workingDir !== undefined ? { workingDir } : {}),
    env,
    ports,
    ...(readinessProbe ? { readinessProbe } : {}),
  };
}

function parseEnvVar(e: MapReader): EnvVar | undefined {
  const name = e.require('name')?.nonEmptyString();
  const valueFrom = e.map('valueFrom');
  if (valueFrom) {
    if (e.has('value')) e.ctx.error(e.line, e.childPath('value'), 'expected either value or valueFrom, got both');
    const fieldRef = valueFrom.map('fieldRef');
    const fieldPath = fieldRef?.require('fieldPath')?.nonEmptyString();
    if (!fieldRef) {
      // secretKeyRef and friends need an API server; the lab has none, so the variable stays unset.
      e.ctx.warn(valueFrom.line, valueFrom.path, 'only valueFrom.fieldRef is supported; this variable is not set');
      return undefined;
    }
    return name !== undefined && fieldPath !== undefined ? { name, fieldRef: fieldPath } : undefined;
  }
  const value = e.string('value') ?? '';
  return name !== undefined ? { name, value } : undefined;
}

function parseContainerPort(p: MapReader): ContainerPort | undefined {
  const name = p.get('name')?.string();
  if (name !== undefined && !PORT_NAME.test(name)) p.get('name')?.fail(`expected ${PORT_NAME_EXPECTED}, got ${JSON.stringify(name)}`);
  const containerPort = p.require('containerPort')?.int(PORT_RANGE);
  const protocol = p.enum('protocol', PROTOCOLS) ?? 'TCP';
  if (containerPort === undefined) return undefined;
  return { ...(name !== undefined ? { name } : {}), containerPort, protocol };
}

const PROBE_SCHEMES = ['HTTP', 'HTTPS'] as const;

/** A readinessProbe with Kubernetes' defaults: period 10s, timeout 1s, failure threshold 3, success 1. */
function parseProbe(field: Field): Probe | undefined {
  const probe = field.map();
  if (!probe) return undefined;
  const timing = {
    periodSeconds: probe.int('periodSeconds', { min: 1 }) ?? 10,
    timeoutSeconds: probe.int('timeoutSeconds', { min: 1 }) ?? 1,
    failureThreshold: probe.int('failureThreshold', { min: 1 }) ?? 3,
    successThreshold: probe.int('successThreshold', { min: 1 }) ?? 1,
  };
  const handler = probe.oneOf(['httpGet', 'tcpSocket', 'exec', 'grpc']);
  if (handler === undefined) return field.fail('expected one of httpGet, tcpSocket, exec or grpc, got none');
  if (handler === 'exec' || handler === 'grpc') {
    field.warn(`${handler} probes are not supported by Ambit; the container is treated as always ready`);
    return undefined;
  }
  const action = probe.map(handler);
  const port = action?.require('port');
  const portValue = port ? intOrPortName(port) : undefined;
  if (portValue === undefined) return undefined;
  if (handler === 'tcpSocket') return { kind: 'tcpSocket', port: portValue, ...timing };
  const path = action?.string('path') ?? '/';
  const scheme = action?.enum('scheme', PROBE_SCHEMES) ?? 'HTTP';
  const httpHeaders = (action?.maps('httpHeaders') ?? []).flatMap((h): ProbeHeader[] => {
    const name = h.require('name')?.nonEmptyString();
    return name === undefined ? [] : [{ name, value: h.string('value') ?? '' }];
  });
  action?.get('host')?.warn("httpGet.host is not used: the agent probes the endpoint's pod IP (set a Host header in httpHeaders to send another name)");
  return { kind: 'httpGet', path, port: portValue, scheme, httpHeaders, ...timing };
}

export function parseService(root: MapReader, base: ObjectBase<'Service'>): ServiceObject | undefined {
  const spec = root.require('spec')?.map();
  if (!spec) return undefined;
  const type = spec.enum('type', SERVICE_TYPES) ?? 'ClusterIP';
  const selector = spec.has('selector') ? spec.labels('selector') : undefined;
  const clusterIP = spec.get('clusterIP');
  const clusterIPValue = clusterIP ? clusterIpOf(clusterIP) : undefined;
  const clusterIPs = spec.strings('clusterIPs', clusterIpOf);
  const internalTrafficPolicy = spec.enum('internalTrafficPolicy', ['Cluster', 'Local'] as const);
  const trafficDistribution = spec.enum('trafficDistribution', TRAFFIC_DISTRIBUTIONS) ?? annotatedTrafficDistribution(root, base);

  const portFields = spec.maps('ports');
  const ports: ServicePort[] = [];
  for (const field of portFields) {
    // With several ports, names are what targetPort lookups, metrics and Istio protocol selection use.
    if (portFields.length > 1 && !field.has('name')) {
      field.ctx.error(field.line, field.childPath('name'), 'required field is missing (a Service with several ports must name each one)');
    }
    const port = parseServicePort(field);
    if (port && ports.some((p) => p.port === port.port && p.protocol === port.protocol)) field.ctx.error(field.line, field.path, `duplicate port ${port.port}/${port.protocol}`);
    else if (port) ports.push(port);
  }
  return {
    ...base,
    spec: {
      type,
      ...(selector ? { selector } : {}),
      ...(clusterIPValue ? { clusterIP: clusterIPValue } : {}),
      clusterIPs,
      ports,
      ...(internalTrafficPolicy ? { internalTrafficPolicy } : {}),
      ...(trafficDistribution ? { trafficDistribution } : {}),
    },
  };
}

/** Istio's annotation for what spec.trafficDistribution says on clusters too old to have the field. */
function annotatedTrafficDistribution(root: MapReader, base: ObjectBase<'Service'>): TrafficDistribution | undefined {
  const value = base.metadata.annotations[TRAFFIC_DISTRIBUTION_ANNOTATION];
  if (value === undefined) return undefined;
  if ((TRAFFIC_DISTRIBUTIONS as readonly string[]).includes(value)) return value as TrafficDistribution;
  root.ctx.warn(root.line, `metadata.annotations.${TRAFFIC_DISTRIBUTION_ANNOTATION}`, `unknown traffic distribution ${JSON.stringify(value)} (expected ${TRAFFIC_DISTRIBUTIONS.join(', ')}); endpoints are used alike`);
  return undefined;
}

const TRAFFIC_DISTRIBUTION_ANNOTATION = 'networking.istio.io/traffic-distribution';

function parseServicePort(p: MapReader): ServicePort | undefined {
  const name = p.string('name');
  const port = p.require('port')?.int(PORT_RANGE);
  const target = p.get('targetPort');
  const targetPort = target ? intOrPortName(target) : port;
  const protocol = p.enum('protocol', PROTOCOLS) ?? 'TCP';
  const appProtocol = p.string('appProtocol');
  if (port === undefined || targetPort === undefined) return undefined;
  return { ...(name !== undefined ? { name } : {}), port, targetPort, protocol, ...(appProtocol !== undefined ? { appProtocol } : {}) };
}

/** Kubernetes' IntOrString for ports: a number, or the name of a container port. */
function intOrPortName(field: Field): number | string | undefined {
  const value = field.scalar;
  if (typeof value === 'string' && PORT_NAME.test(value)) return value;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535) return value;
  return field.fail(`expected a port number from 1 to 65535 or ${PORT_NAME_EXPECTED}, got ${describe(field.node)}`);
}

/** A cluster IP: an IP address, "None" for a headless Service, or "" (let the API server pick). */
function clusterIpOf(field: Field): string | undefined {
  const value = field.string();
  if (value === undefined || value === '' || value === 'None' || ipFamily(value)) return value || undefined;
  return field.fail(`expected an IP address or "None", got ${JSON.stringify(value)}`);
}
