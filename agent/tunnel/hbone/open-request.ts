// What one HBONE tunnel is opened with (the plan's request to the pool), and the key the pool shares
// connections by: ztunnel's WorkloadKey.

import type { Socket } from 'node:net';
import type { SpiffeId } from '../../state/model.js';
import { type HboneTarget, formatAuthority } from './connect-headers.js';
import { HBONE_PORT } from './settings.js';

export interface HboneOpenRequest {
  /** The client workload: its identity signs the connection; its IP is the `forwarded` client and part of the key. */
  readonly source: { readonly identity: SpiffeId; readonly ip: string };
  /** Bind the TCP socket to source.ip (the node must own it, or the dialer must bind transparently). */
  readonly bindSource?: boolean;
  /** Where the TCP connection goes; the port defaults to 15008. */
  readonly destination: { readonly ip: string; readonly port?: number };
  /** The server must present one of these: the workload's identity, or a Service's subject_alt_names. */
  readonly expectedIdentities: readonly SpiffeId[];
  /** The tunnel's target: the destination pod's IP and the application port, or a Service (double HBONE). */
  readonly authority: HboneTarget;
  /** The Service hostname the client asked for, sent as `forwarded: …;host=`. */
  readonly serviceHostname?: string;
  /** A ready `baggage` header (see formatBaggage). */
  readonly baggage?: string;
  /** The client's network, for the inner CONNECT of double HBONE (`x-forwarded-network`). */
  readonly originNetwork?: string;
  /**
   * A connection of its own over this socket instead of TCP to `destination` (the inner tunnel of
   * double HBONE, over the outer one): never shared, as ztunnel does not pool inner tunnels (a pooled
   * one would reach only one workload behind the gateway), and closed when its stream ends.
   */
  readonly over?: Socket;
}

/** ztunnel's WorkloadKey: the source IP is part of it because tunnels may carry it as their source. */
export function poolKey(request: HboneOpenRequest): string {
  const destinations = [...new Set(request.expectedIdentities)].sort().join(',');
  const target = formatAuthority({ ip: request.destination.ip, port: request.destination.port ?? HBONE_PORT });
  return `${request.source.identity}|${destinations}|${target}|${request.source.ip}`;
}
