// Which endpoint one try goes to: the cluster's balancer (skipping endpoints earlier tries used), or the
// one pod the client dialled, as the target the upstream connections take, with a sticky-session cookie
// to issue when the balancer made one.

import type { MeshSnapshot } from '../../state/model.js';
import { formatSetCookie } from '../consistent-hash.js';
import type { HttpRequestAttributes } from '../request.js';
import type { UpstreamCluster } from '../upstream-cluster.js';
import type { RequestFlag } from './request-record.js';
import type { UpstreamTarget } from './upstream-connections.js';
import { originatesTls } from './upstream-tls.js';

/** Where tries go: a cluster's balanced endpoints, or the one pod the client dialled. */
export interface Upstream {
  readonly cluster: UpstreamCluster | undefined;
  readonly pod: UpstreamTarget | undefined;
}

export type Picked =
  | { readonly kind: 'target'; readonly target: UpstreamTarget; readonly setCookie: string | undefined }
  | { readonly kind: 'fail'; readonly flag: RequestFlag; readonly message: string };

export function pickTarget(snapshot: MeshSnapshot, upstream: Upstream, attrs: HttpRequestAttributes, tried: ReadonlySet<string>): Picked {
  if (upstream.pod) return { kind: 'target', target: upstream.pod, setCookie: undefined };
  const cluster = upstream.cluster!;
  const choice = cluster.choose(attrs, tried);
  if (choice.kind === 'noHealthyUpstream') return { kind: 'fail', flag: 'UH', message: choice.message };
  // PASSTHROUGH keeps the client's choice of address; a Service VIP has none, so any endpoint will do.
  const endpoint = choice.kind === 'endpoint' ? choice.endpoint : cluster.allEndpoints()[Math.floor(Math.random() * cluster.allEndpoints().length)];
  if (!endpoint) return { kind: 'fail', flag: 'UH', message: `no healthy upstream: ${cluster.name} has no endpoints` };
  const { service } = cluster;
  // One shape for every target, fields that do not apply undefined.
  const target: UpstreamTarget = {
    key: endpoint.key,
    address: { ip: endpoint.ip, port: endpoint.port },
    workload: snapshot.workloads.get(endpoint.workload),
    service,
    breaker: cluster.breaker,
    connectTimeoutMs: cluster.breaker.currentLimits.connectTimeoutMs,
    // Istio originates TLS for a host outside the mesh; inside it, HBONE's mTLS carries the request.
    tls: service?.entry?.location === 'MESH_EXTERNAL' && originatesTls(cluster.tls) ? { settings: cluster.tls, host: service.hostname } : undefined,
  };
  const setCookie = choice.kind === 'endpoint' && choice.setCookie ? formatSetCookie(choice.setCookie) : undefined;
  return { kind: 'target', target, setCookie };
}
