// Reads a DestinationRule (subsets and traffic policies: load balancing, connection pools, outlier
// detection, TLS) into the types of istio-networking.ts, with istiod's validation rules.

import { readExportTo, readHost, readPortSelector, readSubsetName, readWorkloadSelector } from './istio-common.js';
import type {
  ClientTLSSettings,
  ConnectionPoolSettings,
  ConsistentHashAlgorithm,
  ConsistentHashKey,
  DestinationRuleObject,
  LoadBalancerAlgorithm,
  LoadBalancerSettings,
  LocalityLbSetting,
  OutlierDetection,
  PortTrafficPolicy,
  SimpleLoadBalancer,
  Subset,
  TrafficPolicy,
} from './istio-networking.js';
import type { ObjectBase } from './kubernetes.js';
import type { Field, MapReader } from './yaml-reader.js';

const SIMPLE = ['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'PASSTHROUGH', 'UNSPECIFIED', 'LEAST_CONN'] as const;
const NON_NEGATIVE = { min: 0 };
const AT_LEAST_1MS = { min: 1 };
// Envoy's limit for a Maglev table, which must also be prime.
const MAGLEV_MAX_TABLE = 5_000_011;

export function parseDestinationRule(root: MapReader, base: ObjectBase<'DestinationRule'>): DestinationRuleObject | undefined {
  const spec = root.require('spec')?.map();
  if (!spec) return undefined;
  const hostField = spec.require('host');
  const host = hostField ? readHost(hostField, { wildcard: true }) : undefined;
  const policy = spec.get('trafficPolicy');
  const trafficPolicy = policy ? parseTrafficPolicy(policy) : undefined;
  const subsets: Subset[] = [];
  for (const field of spec.list('subsets')) {
    const subset = parseSubset(field);
    if (subset && subsets.some((s) => s.name === subset.name)) field.fail(`duplicate subset name "${subset.name}"`);
    else if (subset) subsets.push(subset);
  }
  const exportTo = readExportTo(spec);
  const workloadSelector = readWorkloadSelector(spec, 'workloadSelector');
  if (host === undefined) return undefined;
  return {
    ...base,
    spec: { host, ...(trafficPolicy ? { trafficPolicy } : {}), subsets, exportTo, ...(workloadSelector ? { workloadSelector } : {}) },
  };
}

function parseSubset(field: Field): Subset | undefined {
  const m = field.map();
  if (!m) return undefined;
  const nameField = m.require('name');
  const name = nameField ? readSubsetName(nameField) : undefined;
  const labels = m.labels('labels');
  const policy = m.get('trafficPolicy');
  const trafficPolicy = policy ? parseTrafficPolicy(policy) : undefined;
  if (name === undefined) return undefined;
  return { name, labels, ...(trafficPolicy ? { trafficPolicy } : {}) };
}

function parseTrafficPolicy(field: Field): TrafficPolicy | undefined {
  const m = field.map();
  if (!m) return undefined;
  for (const key of ['tunnel', 'proxyProtocol']) m.get(key)?.warn(`${key} is not supported by Ambit and is ignored`);
  const policies = parsePolicies(m);
  const portFields = m.list('portLevelSettings');
  const portLevelSettings = portFields.flatMap((f) => parsePortTrafficPolicy(f) ?? []);
  const ports = portLevelSettings.map((p) => p.port);
  const duplicate = ports.find((p, i) => ports.indexOf(p) !== i);
  if (duplicate !== undefined) m.get('portLevelSettings')?.fail(`port ${duplicate} has two entries`);
  if (Object.keys(policies).length === 0 && portFields.length === 0 && !m.has('tunnel') && !m.has('proxyProtocol')) {
    return field.fail('expected at least one of loadBalancer, connectionPool, outlierDetection, tls or portLevelSettings, got none');
  }
  return { ...policies, portLevelSettings };
}

function parsePortTrafficPolicy(field: Field): PortTrafficPolicy | undefined {
  const m = field.map();
  if (!m) return undefined;
  m.require('port');
  const port = readPortSelector(m, 'port');
  const policies = parsePolicies(m);
  if (Object.keys(policies).length === 0) {
    return field.fail('expected at least one of loadBalancer, connectionPool, outlierDetection or tls, got none');
  }
  return port === undefined ? undefined : { port, ...policies };
}

/** The four policies a traffic policy and each of its port-level settings share. */
function parsePolicies(m: MapReader): Omit<PortTrafficPolicy, 'port'> {
  const lb = m.get('loadBalancer');
  const pool = m.get('connectionPool');
  const outlier = m.get('outlierDetection');
  const tls = m.get('tls');
  const loadBalancer = lb ? parseLoadBalancer(lb) : undefined;
  const connectionPool = pool ? parseConnectionPool(pool) : undefined;
  const outlierDetection = outlier ? parseOutlierDetection(outlier) : undefined;
  const tlsSettings = tls ? parseTls(tls) : undefined;
  return {
    ...(loadBalancer ? { loadBalancer } : {}),
    ...(connectionPool ? { connectionPool } : {}),
    ...(outlierDetection ? { outlierDetection } : {}),
    ...(tlsSettings ? { tls: tlsSettings } : {}),
  };
}

function parseLoadBalancer(field: Field): LoadBalancerSettings | undefined {
  const m = field.map();
  if (!m) return undefined;
  const kind = m.oneOf(['simple', 'consistentHash']);
  let algorithm: LoadBalancerAlgorithm | undefined = { kind: 'default' };
  if (kind === 'simple') {
    const simple = m.enum('simple', SIMPLE);
    // Istio still accepts LEAST_CONN, the old name of LEAST_REQUEST, and maps it the same way.
    if (simple === 'LEAST_CONN') m.get('simple')?.warn('LEAST_CONN is deprecated; it means LEAST_REQUEST');
    const value: SimpleLoadBalancer | undefined = simple === 'LEAST_CONN' ? 'LEAST_REQUEST' : simple;
    algorithm = value && { kind, simple: value };
  }
  const hash = m.get('consistentHash');
  if (hash) algorithm = parseConsistentHash(hash);
  const locality = m.map('localityLbSetting');
  const localityLbSetting = locality && parseLocality(locality);
  const warmupDurationMs = m.map('warmup')?.require('duration')?.duration(AT_LEAST_1MS);
  m.ignore('warmupDurationSecs');
  if (!algorithm) return undefined;
  return { algorithm, ...(localityLbSetting ? { localityLbSetting } : {}), ...(warmupDurationMs !== undefined ? { warmupDurationMs } : {}) };
}

function parseConsistentHash(field: Field): LoadBalancerAlgorithm | undefined {
  const m = field.map();
  if (!m) return undefined;
  let hashKey: ConsistentHashKey | undefined;
  const keyKind = m.oneOf(['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName']);
  if (keyKind === 'httpHeaderName' || keyKind === 'httpQueryParameterName') {
    const name = m.get(keyKind)?.nonEmptyString();
    hashKey = name === undefined ? undefined : { kind: keyKind, name };
  } else if (keyKind === 'httpCookie') {
    const cookie = m.map(keyKind);
    const name = cookie?.require('name')?.nonEmptyString();
    const path = cookie?.string('path');
    // A ttl of 0s is meaningful: it makes the cookie a session cookie.
    const ttlMs = cookie?.duration('ttl');
    hashKey = name === undefined ? undefined : { kind: keyKind, name, ...(path !== undefined ? { path } : {}), ...(ttlMs !== undefined ? { ttlMs } : {}) };
  } else if (keyKind === 'useSourceIp') {
    if (m.bool(keyKind) === false) m.get(keyKind)?.fail('expected true (false selects no hash key)');
    hashKey = { kind: keyKind };
  } else {
    return field.fail('expected one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName, got none');
  }

  let hashAlgorithm: ConsistentHashAlgorithm | undefined = { kind: 'ringHash' };
  const algorithmKind = m.oneOf(['ringHash', 'maglev', 'minimumRingSize']);
  if (algorithmKind === 'minimumRingSize') {
    m.get(algorithmKind)?.warn('minimumRingSize is deprecated; use ringHash.minimumRingSize');
    const size = m.int(algorithmKind, { min: 1 });
    hashAlgorithm = size === undefined ? undefined : { kind: 'ringHash', minimumRingSize: size };
  } else if (algorithmKind === 'ringHash') {
    const size = m.map(algorithmKind)?.int('minimumRingSize', { min: 1 });
    hashAlgorithm = { kind: 'ringHash', ...(size !== undefined ? { minimumRingSize: size } : {}) };
  } else if (algorithmKind === 'maglev') {
    const tableField = m.map(algorithmKind)?.get('tableSize');
    const tableSize = tableField?.int({ min: 1, max: MAGLEV_MAX_TABLE - 1 });
    if (tableSize !== undefined && !isPrime(tableSize)) tableField?.fail(`expected a prime number, got ${tableSize}`);
    hashAlgorithm = { kind: 'maglev', ...(tableSize !== undefined ? { tableSize } : {}) };
  }
  return hashKey && hashAlgorithm && { kind: 'consistentHash', hashKey, hashAlgorithm };
}

function parseLocality(m: MapReader): LocalityLbSetting {
  const enabled = m.bool('enabled');
  for (const key of ['distribute', 'failover', 'failoverPriority']) {
    m.get(key)?.warn(`${key} is not applied yet: with outlierDetection, endpoints fail over from the client's zone to its region, then anywhere (Istio's default)`);
  }
  return {
    ...(enabled !== undefined ? { enabled } : {}),
    distribute: m.maps('distribute').flatMap((d) => {
      const from = d.require('from')?.nonEmptyString();
      const to: Record<string, number> = {};
      for (const [locality, weight] of d.map('to')?.entries() ?? []) {
        const value = weight.int({ min: 0, max: 100 });
        if (value !== undefined) to[locality] = value;
      }
      return from === undefined ? [] : [{ from, to }];
    }),
    failover: m.maps('failover').flatMap((f) => {
      const from = f.require('from')?.nonEmptyString();
      const to = f.require('to')?.nonEmptyString();
      return from === undefined || to === undefined ? [] : [{ from, to }];
    }),
    failoverPriority: m.strings('failoverPriority'),
  };
}

function parseConnectionPool(field: Field): ConnectionPoolSettings | undefined {
  const m = field.map();
  if (!m) return undefined;
  const tcp = m.map('tcp');
  const http = m.map('http');
  if (!tcp && !http) return field.fail('expected tcp, http or both, got neither');
  let tcpSettings: ConnectionPoolSettings['tcp'];
  if (tcp) {
    const keepalive = tcp.map('tcpKeepalive');
    tcpSettings = defined({
      maxConnections: tcp.int('maxConnections', NON_NEGATIVE),
      connectTimeoutMs: tcp.duration('connectTimeout', AT_LEAST_1MS),
      tcpKeepalive: keepalive && defined({
        probes: keepalive.int('probes', NON_NEGATIVE),
        timeMs: keepalive.duration('time', AT_LEAST_1MS),
        intervalMs: keepalive.duration('interval', AT_LEAST_1MS),
      }),
      maxConnectionDurationMs: tcp.duration('maxConnectionDuration', AT_LEAST_1MS),
      // 0s disables the idle timeout, so it is allowed here.
      idleTimeoutMs: tcp.duration('idleTimeout'),
    });
  }
  let httpSettings: ConnectionPoolSettings['http'];
  if (http) {
    const h2UpgradePolicy = http.enum('h2UpgradePolicy', ['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']);
    const useClientProtocol = http.bool('useClientProtocol');
    if (h2UpgradePolicy === 'UPGRADE' && useClientProtocol) {
      http.get('useClientProtocol')?.fail('useClientProtocol cannot be true when h2UpgradePolicy is UPGRADE');
    }
    httpSettings = defined({
      http1MaxPendingRequests: http.int('http1MaxPendingRequests', NON_NEGATIVE),
      http2MaxRequests: http.int('http2MaxRequests', NON_NEGATIVE),
      maxRequestsPerConnection: http.int('maxRequestsPerConnection', NON_NEGATIVE),
      maxRetries: http.int('maxRetries', NON_NEGATIVE),
      idleTimeoutMs: http.duration('idleTimeout', AT_LEAST_1MS),
      h2UpgradePolicy,
      useClientProtocol,
      maxConcurrentStreams: http.int('maxConcurrentStreams', NON_NEGATIVE),
    });
  }
  return { ...(tcpSettings ? { tcp: tcpSettings } : {}), ...(httpSettings ? { http: httpSettings } : {}) };
}

function parseOutlierDetection(field: Field): OutlierDetection | undefined {
  const m = field.map();
  if (!m) return undefined;
  m.get('consecutiveErrors')?.warn('consecutiveErrors is deprecated and ignored; use consecutive5xxErrors or consecutiveGatewayErrors');
  const split = m.bool('splitExternalLocalOriginErrors') ?? false;
  const localOrigin = m.int('consecutiveLocalOriginFailures', NON_NEGATIVE);
  if (!split && localOrigin !== undefined && localOrigin > 0) {
    m.get('consecutiveLocalOriginFailures')?.fail('consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true');
  }
  return {
    ...defined({
      consecutive5xxErrors: m.int('consecutive5xxErrors', NON_NEGATIVE),
      consecutiveGatewayErrors: m.int('consecutiveGatewayErrors', NON_NEGATIVE),
      consecutiveLocalOriginFailures: localOrigin,
      intervalMs: m.duration('interval', AT_LEAST_1MS),
      baseEjectionTimeMs: m.duration('baseEjectionTime', AT_LEAST_1MS),
      maxEjectionPercent: m.int('maxEjectionPercent', { min: 0, max: 100 }),
      minHealthPercent: m.int('minHealthPercent', { min: 0, max: 100 }),
    }),
    splitExternalLocalOriginErrors: split,
  };
}

function parseTls(field: Field): ClientTLSSettings | undefined {
  const m = field.map();
  if (!m) return undefined;
  const mode = m.enum('mode', ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']) ?? 'DISABLE';
  const settings = defined({
    clientCertificate: m.string('clientCertificate'),
    privateKey: m.string('privateKey'),
    caCertificates: m.string('caCertificates'),
    credentialName: m.string('credentialName'),
    sni: m.string('sni'),
    insecureSkipVerify: m.bool('insecureSkipVerify'),
  });
  m.ignore('caCrl');
  if (mode === 'MUTUAL' && settings.credentialName === undefined) {
    // Without a credentialName the key pair must come from files, as istiod requires.
    for (const key of ['clientCertificate', 'privateKey'] as const) {
      if (settings[key] === undefined) m.ctx.error(m.line, m.childPath(key), 'required field is missing (mode MUTUAL needs it unless credentialName is set)');
    }
  }
  return { mode, ...settings, subjectAltNames: m.strings('subjectAltNames') };
}

/** Drops undefined values, so that optional fields are absent rather than present-and-undefined. */
function defined<T extends object>(fields: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let f = 2; f * f <= n; f++) if (n % f === 0) return false;
  return true;
}
