// What `istioctl ztunnel-config <table> -o json|yaml` prints: the dump read into istioctl's Go types
// (configdump/api.go) and marshalled back, so only their fields, in their order, with their omitempty
// rules and sorted as its Print*Dump functions sort (workloads and certificates in dump order).

import { compareBytes } from '../admin/byte-order.js';
import type { CertDump, ConfigDump, ConnectionDump, PolicyDump, RbacMatchDump, ServiceDump, StringMatchDump, WorkloadDump, WorkloadStateDump } from '../admin/config-dump.js';
import type { GoValue } from './go-format.js';

export type DocumentName = 'workloads' | 'services' | 'policies' | 'certificates' | 'connections';

export function istioctlDocument(name: DocumentName, dump: ConfigDump): GoValue {
  switch (name) {
    case 'workloads':
      return dump.workloads.map(workload);
    case 'services':
      return [...dump.services].sort((a, b) => compareBytes(a.namespace, b.namespace) || compareBytes(a.name, b.name) || compareBytes(a.hostname, b.hostname)).map(service);
    case 'policies':
      return [...dump.policies].sort((a, b) => compareBytes(a.namespace, b.namespace) || compareBytes(a.name, b.name)).map(policy);
    case 'certificates':
      return dump.certificates.map((c) => ({ identity: c.identity, state: c.state, certChain: c.certChain.map(cert), rootCerts: c.rootCerts.map(cert) }));
    case 'connections':
      return Object.values(dump.workloadState)
        .sort((a, b) => compareBytes(a.info.namespace, b.info.namespace) || compareBytes(a.info.name, b.info.name))
        .map(workloadState);
  }
}

/** `omitempty`: a field is left out when it holds its zero value. */
function omitEmpty(fields: Record<string, GoValue | undefined>): Record<string, GoValue> {
  const out: Record<string, GoValue> = {};
  for (const [key, value] of Object.entries(fields)) {
    const empty = value === undefined || value === '' || value === false || value === 0 || (Array.isArray(value) && value.length === 0);
    if (!empty) out[key] = value as GoValue;
  }
  return out;
}

/** ZtunnelWorkload: locality and applicationTunnel are structs, never left out. */
function workload(w: WorkloadDump): GoValue {
  return {
    uid: w.uid,
    workloadIps: [...w.workloadIps],
    ...(w.networkGateway ? { networkGateway: { destination: w.networkGateway.destination } } : {}),
    protocol: w.protocol,
    name: w.name,
    namespace: w.namespace,
    serviceAccount: w.serviceAccount,
    workloadName: w.workloadName,
    workloadType: w.workloadType,
    canonicalName: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    clusterId: w.clusterId,
    ...omitEmpty({ trustDomain: w.trustDomain }),
    locality: {},
    node: w.node ?? '',
    ...omitEmpty({ network: w.network }),
    status: w.status,
    hostname: '',
    capacity: w.capacity,
    applicationTunnel: { protocol: '' },
    ...omitEmpty({ authorizationPolicies: [...(w.authorizationPolicies ?? [])] }),
  };
}

/** ZtunnelService and ZtunnelEndpoint: endpoints keep istioctl's `service` field and lose `status`. */
function service(s: ServiceDump): GoValue {
  const endpoints = new Map<string, GoValue>(
    Object.entries(s.endpoints).map(([uid, e]) => [uid, { workloadUid: e.workloadUid, service: '', port: new Map(Object.entries(e.port)) }]),
  );
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    vips: [...s.vips],
    ports: new Map(Object.entries(s.ports)),
    endpoints,
    ...omitEmpty({ subjectAltNames: [...s.subjectAltNames] }),
    ipFamilies: s.ipFamilies,
    ...omitEmpty({ canonical: s.canonical, visibility: s.visibility }),
  };
}

/** ZtunnelPolicy drops dryRun; PolicyMatch orders its fields its own way. */
function policy(p: PolicyDump): GoValue {
  return { name: p.name, namespace: p.namespace, scope: p.scope, action: p.action, rules: p.rules.map((rule) => rule.map((clause) => clause.map(policyMatch))) };
}

function policyMatch(m: RbacMatchDump): GoValue {
  const strings = (list: readonly StringMatchDump[] | undefined): GoValue[] => (list ?? []).map(stringMatch);
  const accounts = (list: RbacMatchDump['serviceAccounts']): GoValue[] => (list ?? []).map((a) => ({ namespace: a.namespace, serviceAccount: a.serviceAccount }));
  return omitEmpty({
    namespaces: strings(m.namespaces),
    notNamespaces: strings(m.notNamespaces),
    principals: strings(m.principals),
    notPrincipals: strings(m.notPrincipals),
    sourceIps: [...(m.sourceIps ?? [])],
    notSourceIps: [...(m.notSourceIps ?? [])],
    destinationIps: [...(m.destinationIps ?? [])],
    notDestinationIps: [...(m.notDestinationIps ?? [])],
    destinationPorts: [...(m.destinationPorts ?? [])],
    notDestinationPorts: [...(m.notDestinationPorts ?? [])],
    serviceAccounts: accounts(m.serviceAccounts),
    notServiceAccounts: accounts(m.notServiceAccounts),
  });
}

/** StringMatch: Exact, Suffix, Prefix, Presence; Presence holds whatever the dump had (an empty list). */
function stringMatch(m: StringMatchDump): GoValue {
  if ('Presence' in m) return { Presence: [] };
  return omitEmpty({ Exact: 'Exact' in m ? m.Exact : '', Suffix: 'Suffix' in m ? m.Suffix : '', Prefix: 'Prefix' in m ? m.Prefix : '' });
}

function cert(c: CertDump): GoValue {
  return { pem: c.pem, serialNumber: c.serialNumber, validFrom: c.validFrom, expirationTime: c.expirationTime };
}

/** WorkloadState: connections as istioctl's four fields; a null originalDst reads as "". */
function workloadState(w: WorkloadStateDump): GoValue {
  const connection = (c: ConnectionDump): GoValue => ({ src: c.src, originalDst: c.originalDst ?? '', actualDst: c.actualDst, protocol: c.protocol });
  return {
    ...omitEmpty({ state: w.state }),
    connections: { inbound: w.connections.inbound.map(connection), outbound: w.connections.outbound.map(connection) },
    info: { name: w.info.name, namespace: w.info.namespace, trustDomain: w.info.trustDomain, serviceAccount: w.info.serviceAccount },
  };
}
