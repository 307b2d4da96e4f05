// Whether a connection may enter an enrolled pod of this node: the one decision every inbound path makes
// (HBONE on 15008, plaintext on 15006, and same-node traffic the outbound listener keeps inside the
// agent), and the one that is made again on live connections whenever the policy changes.
//
// A port that speaks HTTP, when the caller serves it request by request (`httpPerRequest`, the inbound
// HTTP proxy agent/l7/proxy/inbound-http.ts), is admitted without AuthorizationPolicy: each request is
// authorized instead, with its method, path and headers. PeerAuthentication still decides here. A live
// re-check of such a connection (LiveConnections, on every new snapshot) therefore closes it only
// when the pod is gone, plaintext became refused, or the port stopped speaking HTTP and the connection
// as a whole is no longer allowed; a policy change otherwise applies from the connection's next request.

import { authorizeConnection } from '../policy/authorization.js';
import { inboundPortProtocol } from '../policy/http-authorization.js';
import { acceptsPlaintext, effectiveMtlsMode } from '../policy/peer-authentication.js';
import { type AppProtocol, speaksHttp } from '../state/protocol.js';
import type { MeshSnapshot, SpiffeId, Workload } from '../state/model.js';
import type { ResponseFlag } from '../telemetry/connections.js';
import { AGENT_PORTS, type Address } from './destination.js';

export interface InboundAttempt {
  readonly node: string;
  readonly sourceIp: string;
  /** The peer's SPIFFE id, proven by its certificate (HBONE) or known to this agent (same node). */
  readonly sourceIdentity?: SpiffeId;
  /** The pod address and application port the connection is for. */
  readonly destination: Address;
  /**
   * The caller hands connections to HTTP ports to the inbound HTTP proxy, which authorizes every
   * request: such a connection is not authorized as a whole. Without it, every port is judged as L4.
   */
  readonly httpPerRequest?: boolean;
}

export type InboundAdmission =
  /** `httpProtocol`: admitted for per-request authorization; the caller must serve it with the inbound HTTP proxy. */
  | { readonly ok: true; readonly workload: Workload; readonly httpProtocol?: AppProtocol }
  /** `status` is the HBONE answer (ztunnel's): 503 no such workload here, 401 denied by policy. */
  | { readonly ok: false; readonly workload?: Workload; readonly flag: ResponseFlag; readonly status: 401 | 503; readonly reason: string };

export function admitInbound(snapshot: MeshSnapshot | undefined, attempt: InboundAttempt): InboundAdmission {
  const { node, destination: dst } = attempt;
  const workload = snapshot?.workloadsByIp.get(dst.ip);
  if (!snapshot || !workload || workload.node !== node || !workload.enrollment.enrolled) {
    return { ok: false, flag: 'NO_ROUTE', status: 503, reason: `${dst.ip} is not an enrolled pod of node ${node}` };
  }
  // ztunnel's "illegal ports": a tunnel must never be pointed back at the agent itself.
  if (AGENT_PORTS.has(dst.port)) return { ok: false, workload, flag: 'NO_ROUTE', status: 503, reason: `port ${dst.port} belongs to the mesh agent` };
  if (attempt.sourceIdentity === undefined) {
    const mtls = effectiveMtlsMode(snapshot, workload, dst.port);
    if (!acceptsPlaintext(mtls)) {
      return { ok: false, workload, flag: 'DENY', status: 401, reason: `plaintext refused: PeerAuthentication ${mtls.policy} requires mTLS (STRICT) for ${workload.key}:${dst.port}` };
    }
  }
  if (attempt.httpPerRequest) {
    const protocol = inboundPortProtocol(snapshot, workload, dst.port);
    if (speaksHttp(protocol)) return { ok: true, workload, httpProtocol: protocol };
  }
  const authz = authorizeConnection(snapshot, {
    ...(attempt.sourceIdentity !== undefined ? { sourceIdentity: attempt.sourceIdentity } : {}),
    sourceIp: attempt.sourceIp,
    destination: workload,
    destinationIp: dst.ip,
    destinationPort: dst.port,
  });
  if (!authz.allowed) {
    const reason = authz.reason === 'denied' ? `denied by AuthorizationPolicy ${authz.policy}` : `no ALLOW AuthorizationPolicy for ${workload.key} matches`;
    return { ok: false, workload, flag: 'DENY', status: 401, reason };
  }
  return { ok: true, workload };
}
