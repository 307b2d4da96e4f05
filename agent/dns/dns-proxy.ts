// The DNS proxy on 15053 (ztunnel's port), UDP and TCP: a pod's query for a mesh name is answered from
// the snapshot (mesh-answer.ts); every other message is sent to the pod's own DNS server unchanged and
// its reply returned unchanged. Every wait is bounded: queries in flight, bytes per TCP connection, time.

import { createSocket } from 'node:dgram';
import { connect, isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import type { WorkloadStore } from '../state/store.js';
import { type DnsListener, frameTcp, listenDns } from './dns-listener.js';
import { MESH_ANSWER_TTL, meshAnswer } from './mesh-answer.js';
import { MAX_MESSAGE, RCODE_NOERROR, encodeFormatError, encodeResponse, parseQuery } from './wire.js';

/** Istio ztunnel's DNS capture port. */
export const DNS_PROXY_PORT = 15053;
/** How long an upstream server has to reply (the glibc resolver's own timeout is 5 s per try). */
const UPSTREAM_TIMEOUT_MS = 5000;
/** Forwarded queries waiting for their upstream at once; past it a query is dropped and the client retries. */
const MAX_IN_FLIGHT = 1024;

export interface DnsUpstream {
  readonly ip: string;
  readonly port: number;
}

export interface DnsProxyOptions {
  readonly store: WorkloadStore;
  readonly log: Logger;
  /** Where the client's query was going (its original DNS server), or undefined to refuse forwarding. */
  readonly upstreamOf: (client: DnsUpstream) => DnsUpstream | undefined;
}

/** What the proxy did with one message; counted and logged at debug. */
export type DnsOutcome = 'answered' | 'forwarded' | 'format-error' | 'dropped';

export class DnsProxy {
  readonly #options: DnsProxyOptions;
  #listener: DnsListener | undefined;
  #inFlight = 0;
  readonly counts: Record<DnsOutcome, number> = { answered: 0, forwarded: 0, 'format-error': 0, dropped: 0 };

  constructor(options: DnsProxyOptions) {
    this.#options = options;
  }

  /** Binds UDP and TCP on `host:port` (the same port for both; port 0 picks one for UDP, and TCP takes it too). */
  async listen(host: string, port = DNS_PROXY_PORT): Promise<{ readonly port: number }> {
    this.#listener = await listenDns(host, port, (message, client, transport) => this.#handle(message, client, transport), this.#options.log);
    return { port: this.#listener.port };
  }

  close(): void {
    this.#listener?.close();
  }

  /** One message from `client`: the mesh's answer, the upstream's reply, a FORMERR, or nothing (dropped). */
  async #handle(message: Uint8Array, client: DnsUpstream, transport: 'udp' | 'tcp'): Promise<Uint8Array | undefined> {
    const parsed = parseQuery(message);
    if (!parsed.ok && parsed.reason === 'malformed') {
      this.#count(parsed.id === undefined ? 'dropped' : 'format-error', client, parsed.detail);
      return parsed.id === undefined ? undefined : encodeFormatError(parsed.id);
    }
    if (parsed.ok) {
      const snapshot = this.#options.store.current;
      const workload = snapshot?.workloadsByIp.get(client.ip);
      // Only pods of the mesh are answered from it; anything else asks its own server as if we were not here.
      if (snapshot && workload) {
        const answer = meshAnswer(snapshot, workload, parsed.query.question);
        if (answer.kind === 'answer') {
          this.#count('answered', client, `${parsed.query.question.name} → ${answer.service.key}`);
          return encodeResponse(parsed.query, RCODE_NOERROR, answer.records, MESH_ANSWER_TTL, true);
        }
      }
    }
    const upstream = this.#options.upstreamOf(client);
    if (!upstream || this.#inFlight >= MAX_IN_FLIGHT) {
      this.#count('dropped', client, upstream ? `${MAX_IN_FLIGHT} queries already wait for upstream` : 'no upstream DNS server is known for this client');
      return undefined;
    }
    this.#inFlight++;
    try {
      const reply = transport === 'udp' ? await forwardUdp(message, upstream) : await forwardTcp(message, upstream);
      this.#count(reply ? 'forwarded' : 'dropped', client, reply ? `to ${upstream.ip}:${upstream.port}` : `${upstream.ip}:${upstream.port} did not reply`);
      return reply;
    } finally {
      this.#inFlight--;
    }
  }

  #count(outcome: DnsOutcome, client: DnsUpstream, detail: string): void {
    this.counts[outcome]++;
    this.#options.log.debug({ client: `${client.ip}:${client.port}`, outcome }, `DNS ${outcome}: ${detail}`);
  }

}

/** Sends `message` from a fresh socket (a random port, as a stub resolver would) and takes its first reply. */
function forwardUdp(message: Uint8Array, upstream: DnsUpstream): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket(isIPv6(upstream.ip) ? 'udp6' : 'udp4');
    let finished = false;
    // The first of reply, error and timeout wins: closing a dgram socket twice throws.
    const done = (reply: Uint8Array | undefined): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    };
    const timer = setTimeout(() => done(undefined), UPSTREAM_TIMEOUT_MS);
    socket.on('error', () => done(undefined));
    socket.on('message', (reply, rinfo) => {
      // Only the server asked, with the query's id, may answer it.
      if (rinfo.address === upstream.ip && rinfo.port === upstream.port && reply.length >= 2 && reply.readUInt16BE(0) === ((message[0]! << 8) | message[1]!)) done(reply);
    });
    socket.send(message, upstream.port, upstream.ip, (err) => err && done(undefined));
  });
}

/** One query over a fresh TCP connection to the upstream, framed as RFC 7766 says. */
function forwardTcp(message: Uint8Array, upstream: DnsUpstream): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: upstream.ip, port: upstream.port });
    let buffered = Buffer.alloc(0);
    const done = (reply: Uint8Array | undefined): void => {
      socket.destroy();
      resolve(reply);
    };
    socket.setTimeout(UPSTREAM_TIMEOUT_MS, () => done(undefined));
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(undefined));
    socket.on('connect', () => socket.write(frameTcp(message)));
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length > 2 + MAX_MESSAGE) return done(undefined);
      if (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) done(buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
    });
  });
}
