// One relayed connection from its answer to its end, as a value its handler returns: it owns the
// connection's TCP telemetry (agent/telemetry/connections.ts) and its live-connection entry
// (live-connections.ts), so whoever carries the bytes calls open() once and finish() once, and nothing
// has to match events to connections afterwards.

import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionDescription, ConnectionOutcome, ConnectionTelemetry, ResponseFlag } from '../telemetry/connections.js';
import type { InboundAttempt } from './inbound-admission.js';
import type { LiveConnection, LiveConnections } from './live-connections.js';
import { relay } from './relay.js';

/** What the flow is listed as in `ambit zc connections`; the rest comes from its first description. */
export interface FlowListing {
  readonly transport: LiveConnection['transport'];
  /** Outbound: what the client dialled, when it differs from where the connection is carried. */
  readonly originalDst?: string;
}

/** The two sinks every flow reports to; one per agent. */
export class ConnectionFlows {
  constructor(
    readonly telemetry: ConnectionTelemetry,
    readonly live: LiveConnections,
  ) {}

  /**
   * A flow for a connection that was decided but is not carried yet. `descriptions` counts it once per
   * reporter (the same-node path reports both sides); `admission`, when given, is checked again on
   * every new snapshot while it lives.
   */
  flow(descriptions: readonly ConnectionDescription[], listing: FlowListing, admission?: InboundAttempt): ConnectionFlow {
    return new ConnectionFlow(this, descriptions, listing, admission);
  }

  /** A connection refused before it was carried: counted and logged with why, once per reporter. */
  refused(descriptions: readonly ConnectionDescription[], flag: ResponseFlag, reason: string): void {
    for (const description of descriptions) this.telemetry.failed(description, flag, reason);
  }
}

export class ConnectionFlow {
  #state: 'pending' | 'open' | 'finished' = 'pending';
  #closers: ((outcome: ConnectionOutcome) => void)[] = [];
  #untrack: () => void = () => undefined;

  constructor(
    private readonly flows: ConnectionFlows,
    readonly descriptions: readonly ConnectionDescription[],
    private readonly listing: FlowListing,
    private readonly admission: InboundAttempt | undefined,
  ) {}

  /**
   * The connection is carried from now on: counted as opened and listed as live. `close` cuts it
   * (a policy change that no longer admits it, or the end of a drain); its end still comes through
   * finish().
   */
  open(close: (reason: string) => void): void {
    if (this.#state !== 'pending') return;
    this.#state = 'open';
    this.#closers = this.descriptions.map((d) => this.flows.telemetry.opened(d).closed);
    const first = this.descriptions[0]!;
    const dst = first.dst.hboneAddr ?? first.dst.addr;
    const { transport, originalDst } = this.listing;
    this.#untrack = this.flows.live.add(
      {
        direction: first.direction,
        src: first.src.addr,
        dst,
        ...(originalDst !== undefined && originalDst !== dst ? { originalDst } : {}),
        transport,
        startedAt: new Date(),
        ...(first.src.identity ? { srcIdentity: first.src.identity } : {}),
        ...(first.dst.identity ? { dstIdentity: first.dst.identity } : {}),
      },
      close,
      this.admission,
    );
  }

  /** Its end, with the bytes moved each way: counted and logged once; later calls do nothing. */
  finish(outcome: ConnectionOutcome): void {
    if (this.#state === 'finished') return;
    const wasOpen = this.#state === 'open';
    this.#state = 'finished';
    if (!wasOpen) return this.flows.refused(this.descriptions, 'CONNECT', outcome.error ? `${outcome.error.side}: ${outcome.error.message}` : 'ended before it was carried');
    this.#untrack();
    for (const closed of this.#closers) closed(outcome);
  }

  /** It could not be carried after all (the answer failed): counted as failed with `flag`, once. */
  fail(flag: ResponseFlag, reason: string): void {
    if (this.#state !== 'pending') return;
    this.#state = 'finished';
    this.flows.refused(this.descriptions, flag, reason);
  }
}

/** Relays a client's `socket` and `upstream` as `flow`, from open to finish: a policy close destroys the client's socket. */
export async function relayUnder(flow: ConnectionFlow, socket: Socket, upstream: Duplex): Promise<void> {
  flow.open((reason) => socket.destroy(new Error(`closed by policy: ${reason}`)));
  flow.finish(await relay(socket, upstream));
}
