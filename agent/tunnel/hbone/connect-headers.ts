// The HBONE CONNECT request on the wire: the `:authority` address form (ip:port, IPv6 in brackets),
// the headers a client sends (forwarded, traceparent, baggage) and the checks a server applies to
// them, in ztunnel's order (proxy/outbound.rs create_hbone_request, proxy/inbound.rs).

import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { isIP } from 'node:net';

/** Where a tunnel ends: the destination pod's IP and the application port. */
export interface HboneAuthority {
  readonly ip: string;
  readonly port: number;
}

/**
 * A tunnel named by its Service instead: `hostname:port` with the Service port, as both tunnels of
 * double HBONE carry it (ztunnel's HboneAddress::SvcHostname); the east-west gateway routes on it and
 * the destination maps the Service port to the pod's target port.
 */
export interface ServiceAuthority {
  readonly hostname: string;
  readonly port: number;
}

/** What a CONNECT's `:authority` names. */
export type HboneTarget = HboneAuthority | ServiceAuthority;

/** ztunnel's header naming the client's network on the inner CONNECT of double HBONE (X_FORWARDED_NETWORK_HEADER; its comments call it x-istio-origin-network). */
export const ORIGIN_NETWORK_HEADER = 'x-forwarded-network';

/** The headers an inbound handler may use; absent when the client did not send them. */
export interface ConnectRequestHeaders {
  readonly traceparent?: string;
  readonly baggage?: string;
  readonly forwarded?: string;
  /** ORIGIN_NETWORK_HEADER: the tunnel came through an east-west gateway from this network. */
  readonly originNetwork?: string;
}

export type InboundConnectCheck<Target extends HboneTarget = HboneAuthority> =
  | { readonly ok: true; readonly authority: Target; readonly headers: ConnectRequestHeaders }
  | { readonly ok: false; readonly status: 400; readonly reason: string };

/** `::ffff:10.0.0.1` (a v4 peer on a dual-stack socket) is 10.0.0.1, as ztunnel's to_canonical. */
export function canonicalIp(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped ? mapped[1]! : ip.toLowerCase();
}

export function formatAuthority(authority: HboneTarget): string {
  if ('hostname' in authority) return `${authority.hostname}:${authority.port}`;
  return isIP(authority.ip) === 6 ? `[${authority.ip}]:${authority.port}` : `${authority.ip}:${authority.port}`;
}

/** `ip:port` or `[ipv6]:port`; undefined for anything else (hostnames included, see readConnectRequest). */
export function parseAuthority(text: string): HboneAuthority | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d+\.\d+\.\d+\.\d+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const ip = match[1] ?? match[2]!;
  const port = Number(match[3]);
  if (isIP(ip) !== (match[1] === undefined ? 4 : 6) || port < 1 || port > 65535) return undefined;
  return { ip: canonicalIp(ip), port };
}

/** `<dns name>:<port>`, a Service's hostname; undefined for anything else. */
export function parseServiceAuthority(text: string): ServiceAuthority | undefined {
  const match = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*):(\d{1,5})$/i.exec(text);
  if (!match || match[1]!.length > 253 || isIP(match[1]!) !== 0) return undefined;
  const port = Number(match[5]);
  return port >= 1 && port <= 65535 ? { hostname: match[1]!.toLowerCase(), port } : undefined;
}

/** W3C trace context, random per tunnel, sampled flag off: ztunnel's TraceParent::new(). */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-00`;
}

/** ztunnel's baggage keys; values are Kubernetes names, which never need escaping. */
export interface BaggageFields {
  readonly clusterName?: string;
  readonly namespace?: string;
  /** `deployment`, `cronjob`, `pod` or `job`, with the workload's name. */
  readonly workload?: { readonly type: 'deployment' | 'cronjob' | 'pod' | 'job'; readonly name: string };
  readonly canonicalService?: string;
  readonly canonicalRevision?: string;
  readonly region?: string;
  readonly zone?: string;
}

export function formatBaggage(fields: BaggageFields): string {
  const pairs: [string, string | undefined][] = [
    ['k8s.cluster.name', fields.clusterName],
    ['k8s.namespace.name', fields.namespace],
    [fields.workload ? `k8s.${fields.workload.type}.name` : '', fields.workload?.name],
    ['service.name', fields.canonicalService],
    ['service.version', fields.canonicalRevision],
    ['cloud.region', fields.region],
    ['cloud.availability_zone', fields.zone],
  ];
  return pairs.filter(([, value]) => value).map(([key, value]) => `${key}=${value}`).join(',');
}

export interface OutboundConnectOptions {
  readonly authority: HboneTarget;
  /** The original client's IP, sent as `forwarded: for="…"`. */
  readonly clientIp: string;
  /** The Service hostname the client meant, when known: `;host=` lets the server name the service in telemetry. */
  readonly serviceHostname?: string;
  readonly traceparent?: string;
  readonly baggage?: string;
  /** The client's network, sent on the inner CONNECT of double HBONE only (ORIGIN_NETWORK_HEADER). */
  readonly originNetwork?: string;
}

/** ztunnel's `forwarded`: the original client, and the Service it meant when known. */
export function forwardedHeader(clientIp: string, serviceHostname: string | undefined): string {
  return `for="${clientIp}"${serviceHostname ? `;host=${serviceHostname}` : ''}`;
}

/** Classic CONNECT: `:method` and `:authority` only (no `:scheme`, no `:path`), then ztunnel's headers. */
export function outboundConnectHeaders(options: OutboundConnectOptions): OutgoingHttpHeaders {
  const forwarded = forwardedHeader(options.clientIp, options.serviceHostname);
  return {
    ':method': 'CONNECT',
    ':authority': formatAuthority(options.authority),
    forwarded,
    traceparent: options.traceparent ?? newTraceparent(),
    ...(options.baggage ? { baggage: options.baggage } : {}),
    ...(options.originNetwork !== undefined ? { [ORIGIN_NETWORK_HEADER]: options.originNetwork } : {}),
  };
}

/**
 * The server's checks before any lookup: CONNECT (ztunnel answers 400 to any other method, not 405),
 * classic CONNECT only, an `ip:port` authority whose IP is the address the client dialled (the pod
 * IP the connection was captured for), so one pod's tunnel cannot be pointed at another pod. With
 * `services`, a `hostname:port` authority is accepted too (the inner tunnel of double HBONE, which
 * names the Service; the pod is still the address dialled, as ztunnel's validate_destination).
 */
export function readConnectRequest(headers: IncomingHttpHeaders, localIp: string): InboundConnectCheck;
export function readConnectRequest(headers: IncomingHttpHeaders, localIp: string, services: true): InboundConnectCheck<HboneTarget>;
export function readConnectRequest(headers: IncomingHttpHeaders, localIp: string, services = false): InboundConnectCheck<HboneTarget> {
  const refuse = (reason: string): InboundConnectCheck<HboneTarget> => ({ ok: false, status: 400, reason });
  const method = headers[':method'];
  if (method !== 'CONNECT') return refuse(`method ${String(method)} is not supported; HBONE accepts CONNECT only`);
  // nghttp2 already resets these at the frame level; this keeps the rule true for any other front end.
  if (headers[':protocol'] !== undefined) return refuse('extended CONNECT (:protocol) is not HBONE');
  if (headers[':path'] !== undefined || headers[':scheme'] !== undefined) return refuse('a CONNECT request carries no :path or :scheme');
  const text = headers[':authority'];
  if (typeof text !== 'string' || text === '') return refuse('the CONNECT request has no :authority');
  const authority = parseAuthority(text);
  if (!authority) {
    const service = services ? parseServiceAuthority(text) : undefined;
    if (service) return { ok: true, authority: service, headers: pickHeaders(headers) };
    return refuse(`:authority ${JSON.stringify(text)} is not <ip>:<port>${services ? ' or <service hostname>:<port>' : ''}`);
  }
  if (authority.ip !== canonicalIp(localIp)) {
    return refuse(`:authority ${text} names ${authority.ip}, but the tunnel was opened to ${canonicalIp(localIp)}`);
  }
  return { ok: true, authority, headers: pickHeaders(headers) };
}

function pickHeaders(headers: IncomingHttpHeaders): ConnectRequestHeaders {
  const one = (name: string): string | undefined => {
    const value = headers[name];
    return Array.isArray(value) ? value.join(',') : value;
  };
  const traceparent = one('traceparent');
  const baggage = one('baggage');
  const forwarded = one('forwarded');
  const originNetwork = one(ORIGIN_NETWORK_HEADER);
  return { ...(traceparent ? { traceparent } : {}), ...(baggage ? { baggage } : {}), ...(forwarded ? { forwarded } : {}), ...(originNetwork !== undefined ? { originNetwork } : {}) };
}
