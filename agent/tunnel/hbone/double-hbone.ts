// Double HBONE (ztunnel's proxy_to_double_hbone): an outer tunnel to another network's east-west
// gateway, and inside it an inner tunnel whose TLS ends at the destination workload, so the gateway
// carries only TLS records. The two meet on a socket pair: the outer stream's bytes go to one end, the
// inner connection is dialled over the other (the engine's dial takes any connected stream socket).

import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { socketPair } from '../../redirect/bpf-binding.js';
import { HboneError, type HboneResult, fail, ok } from './errors.js';
import type { HboneOpenRequest } from './open-request.js';
import type { CarriedTunnel, HbonePool } from './pool.js';

/** The two tunnels of one connection, as the outbound plan builds them. */
export interface DoubleHboneRequest {
  /** To the gateway: its identity is expected, the `:authority` is the Service's `hostname:port`. */
  readonly outer: HboneOpenRequest;
  /** To the destination workload, over the outer tunnel: its identity is expected, same `:authority`. */
  readonly inner: Omit<HboneOpenRequest, 'over'>;
}

/**
 * Opens both tunnels: the inner one carries `downstream` itself when given (the engine takes its fd),
 * otherwise the caller gets a stream. A failure names the hop that failed, with the pool's reason.
 */
export function openDoubleHbone(pool: HbonePool, request: DoubleHboneRequest): Promise<HboneResult<Duplex>>;
export function openDoubleHbone(pool: HbonePool, request: DoubleHboneRequest, downstream: Socket): Promise<HboneResult<CarriedTunnel>>;
export async function openDoubleHbone(pool: HbonePool, request: DoubleHboneRequest, downstream?: Socket): Promise<HboneResult<Duplex | CarriedTunnel>> {
  const pair = socketPair();
  if (!pair.ok) return fail('connect-failed', `double HBONE: no socket pair between the tunnels: ${pair.error.message}`);
  // Neither end is read by Node: each only lends its fd to the engine, which dups it.
  const [outerEnd, innerEnd] = pair.value.map((fd) => socketOver(fd));
  const outer = await pool.carry(request.outer, outerEnd!);
  if (!outer.ok) {
    outerEnd!.destroy();
    innerEnd!.destroy();
    return renamed(outer.error, 'the east-west gateway');
  }
  const inner = { ...request.inner, over: innerEnd! };
  const opened = downstream ? await pool.carry(inner, downstream) : await pool.open(inner);
  if (!opened.ok) {
    innerEnd!.destroy();
    outer.value.close('the inner tunnel failed');
    return renamed(opened.error, 'the destination, through the east-west gateway');
  }
  if (!downstream) return opened;
  const carried = opened.value as CarriedTunnel;
  // The inner tunnel ending closes its connection, whose fd's end reaches the outer stream as EOF.
  return ok({
    ended: carried.ended,
    close: (reason: string) => {
      carried.close(reason);
      outer.value.close(reason);
    },
  });
}

function socketOver(fd: number): Socket {
  try {
    return new Socket({ fd, readable: false, writable: false });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function renamed(error: HboneError, hop: string): HboneResult<never> {
  return { ok: false, error: new HboneError(error.reason, `${hop}: ${error.message}`, error.status) };
}
