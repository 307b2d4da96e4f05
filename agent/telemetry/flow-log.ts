// The flow log: one JSON line per connection and per request, in the shape of Hubble's exported flows
// (`{"flow": {...}, "node_name", "time"}`), to stdout or to a file rotated by size, never blocking
// the data path: lines wait in a bounded queue and are dropped (and counted) when the disk falls behind.
// Records logged within COALESCE_MS of each other share one write, as the agent's log (log-writer.ts):
// each write is a hop through libuv's thread pool, which one record per request paid on its own.
// A file that cannot be written (disk full, path unwritable) costs records, never the agent: they are
// dropped and counted, the log says so once, and the file is opened again every REOPEN_MS.

import { type WriteStream, createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { ConnectionDescription, ConnectionOutcome } from './connections.js';
import { COALESCE_BYTES, COALESCE_MS } from './log-writer.js';

export type FlowLogTarget = { readonly kind: 'stdout' } | { readonly kind: 'file'; readonly path: string; readonly maxBytes: number; readonly keep: number };

/** Where telemetry hands its finished flows; the data path holds this, not the writer. */
export interface FlowSink {
  write(record: FlowRecord): void;
}

/** What ConnectionTelemetry and RequestTelemetry are given to log flows: the sink and this node's name. */
export interface FlowLogging {
  readonly node: string;
  readonly sink: FlowSink;
}

interface Endpoint {
  readonly namespace?: string;
  readonly pod_name?: string;
  readonly workloads?: readonly { readonly name: string; readonly kind: string }[];
  readonly spiffe_id?: string;
}

export interface FlowRecord {
  readonly time: string;
  readonly node_name: string;
  readonly flow: {
    readonly time: string;
    readonly verdict: 'FORWARDED' | 'DROPPED' | 'ERROR';
    readonly drop_reason_desc?: string;
    readonly Type: 'L3_L4' | 'L7';
    readonly node_name: string;
    readonly traffic_direction: 'EGRESS' | 'INGRESS';
    readonly IP: { readonly source: string; readonly destination: string; readonly ipVersion: 'IPv4' | 'IPv6' };
    readonly l4: { readonly TCP: { readonly source_port: number; readonly destination_port: number } };
    readonly source: Endpoint;
    readonly destination: Endpoint;
    readonly destination_service?: { readonly name: string; readonly namespace: string };
    readonly is_mtls: boolean;
    readonly l7?: { readonly type: 'RESPONSE'; readonly latency_ns: number; readonly http: { readonly code: number; readonly method: string; readonly url: string; readonly protocol: string } };
    readonly bytes?: { readonly sent: number; readonly received: number };
    readonly Summary: string;
  };
}

/** How a connection ended, for its flow: relayed (with its bytes) or refused before any relay. */
export type ConnectionEnd = { readonly kind: 'closed'; readonly outcome: ConnectionOutcome } | { readonly kind: 'failed'; readonly flag: string; readonly error: string };

/** The record of one connection, as Hubble would show an L3/L4 flow. */
export function connectionFlowRecord(node: string, c: ConnectionDescription, end: ConnectionEnd, at = new Date()): FlowRecord {
  const denied = end.kind === 'failed' && end.flag === 'DENY';
  const verdict = end.kind === 'closed' ? (end.outcome.error && end.outcome.error.reason !== 'idle-timeout' ? 'ERROR' : 'FORWARDED') : denied ? 'DROPPED' : 'ERROR';
  const summary = end.kind === 'closed' ? `TCP ${end.outcome.bytesSent}/${end.outcome.bytesReceived} bytes${end.outcome.error ? `, ${end.outcome.error.message}` : ''}` : `${end.flag}: ${end.error}`;
  return record(node, c, at, {
    verdict,
    ...(denied ? { drop_reason_desc: 'POLICY_DENIED' } : {}),
    Type: 'L3_L4',
    ...(end.kind === 'closed' ? { bytes: { sent: end.outcome.bytesSent, received: end.outcome.bytesReceived } } : {}),
    Summary: summary,
  });
}

/** What a finished request contributes to its flow (the request telemetry's own description, narrowed). */
export interface RequestFlow {
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  readonly protocol: string;
  readonly code: number;
  readonly durationMs: number;
}

/** The record of one request, as Hubble shows an L7 HTTP response. */
export function requestFlowRecord(node: string, c: ConnectionDescription, r: RequestFlow, at = new Date()): FlowRecord {
  const denied = r.code === 403 || r.code === 401;
  return record(node, c, at, {
    verdict: denied ? 'DROPPED' : 'FORWARDED',
    ...(denied ? { drop_reason_desc: 'POLICY_DENIED' } : {}),
    Type: 'L7',
    l7: { type: 'RESPONSE', latency_ns: Math.round(r.durationMs * 1e6), http: { code: r.code, method: r.method, url: `http://${r.authority}${r.path}`, protocol: r.protocol } },
    Summary: `HTTP/${r.protocol} ${r.code} ${Math.round(r.durationMs)}ms (${r.method} http://${r.authority}${r.path})`,
  });
}

type Varying = Pick<FlowRecord['flow'], 'verdict' | 'Type' | 'Summary'> & Partial<Pick<FlowRecord['flow'], 'drop_reason_desc' | 'l7' | 'bytes'>>;

function record(node: string, c: ConnectionDescription, at: Date, varying: Varying): FlowRecord {
  const time = at.toISOString();
  const [srcIp, srcPort] = split(c.src.addr);
  const [dstIp, dstPort] = split(c.dst.addr);
  const endpoint = (side: ConnectionDescription['src'] | ConnectionDescription['dst']): Endpoint => ({
    ...(side.workload ? { namespace: side.workload.namespace, pod_name: side.workload.name, workloads: [{ name: side.workload.name, kind: 'Pod' }] } : {}),
    ...(side.identity ? { spiffe_id: side.identity } : {}),
  });
  const service = c.dst.service;
  return {
    time,
    node_name: node,
    flow: {
      time,
      node_name: node,
      traffic_direction: c.direction === 'outbound' ? 'EGRESS' : 'INGRESS',
      IP: { source: srcIp, destination: dstIp, ipVersion: srcIp.includes(':') ? 'IPv6' : 'IPv4' },
      l4: { TCP: { source_port: srcPort, destination_port: dstPort } },
      source: endpoint(c.src),
      destination: endpoint(c.dst),
      ...(service ? { destination_service: { name: service.name, namespace: service.namespace } } : {}),
      is_mtls: c.securityPolicy === 'mutual_tls',
      ...varying,
    },
  };
}

/** `ip:port` or `[ip]:port` into its parts (port 0 when absent). */
function split(addr: string): [string, number] {
  const cut = addr.lastIndexOf(':');
  if (cut < 0 || addr.endsWith(']')) return [addr.replace(/^\[|\]$/g, ''), 0];
  return [addr.slice(0, cut).replace(/^\[|\]$/g, ''), Number(addr.slice(cut + 1)) || 0];
}

/** Lines held while the file rotates or the disk is slow; beyond this they are dropped and counted. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** Since when the file cannot be written, why, and the drop count then (to tell what this failure cost). */
interface WriteFailure {
  readonly since: Date;
  readonly error: string;
  readonly droppedBefore: number;
}

/** How long records are dropped after the file failed, before it is opened again. */
const REOPEN_MS = 5_000;

export class FlowLog implements FlowSink {
  #stream: WriteStream | NodeJS.WriteStream;
  #size = 0;
  #rotating = false;
  /** The rotation under way, for close() to wait on. */
  #rotation: Promise<void> | undefined;
  /** Lines not yet handed to the stream: gathering for a shared write, or waiting on a rotation or a slow disk. */
  #queued: string[] = [];
  /** The window during which lines gather for the next write. */
  #flushTimer: NodeJS.Timeout | undefined;
  /** The stream is behind by more than MAX_QUEUED_BYTES: the queue is written when it drains. */
  #awaitingDrain = false;
  #queuedBytes = 0;
  /** Set while the file cannot be written. */
  #failure: WriteFailure | undefined;
  #reopenTimer: NodeJS.Timeout | undefined;
  /** Opened again after a failure, and no record tried on it yet. */
  #reopened = false;
  #closed = false;
  /** Records dropped: the writer fell behind by more than MAX_QUEUED_BYTES, or the file could not be written. */
  dropped = 0;

  constructor(
    private readonly target: FlowLogTarget,
    private readonly log?: Logger,
  ) {
    this.#stream = target.kind === 'stdout' ? process.stdout : this.#open(target);
  }

  write(flow: FlowRecord): void {
    if (this.#failure) {
      if (this.#reopened) this.#probe(this.#failure, `${JSON.stringify(flow)}\n`);
      else this.dropped++;
      return;
    }
    const line = `${JSON.stringify(flow)}\n`;
    if (this.#queuedBytes + line.length > MAX_QUEUED_BYTES) {
      this.dropped++;
      return;
    }
    this.#queued.push(line);
    this.#queuedBytes += line.length;
    // A rotation under way writes the queue into the new file when it is done; a stream behind, when it drains.
    if (this.#rotating || this.#awaitingDrain) return;
    if (this.#queuedBytes >= COALESCE_BYTES) this.#flush();
    else this.#flushTimer ??= setTimeout(() => this.#flush(), COALESCE_MS);
  }

  /** The lines gathered so far, in one write; a stream still behind on earlier writes gets them once it drains. */
  #flush(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#rotating || this.#failure || this.#queued.length === 0) return;
    if (this.#stream.writableLength > MAX_QUEUED_BYTES) {
      this.#awaitingDrain = true;
      this.#stream.once('drain', () => {
        this.#awaitingDrain = false;
        this.#flush();
      });
      return;
    }
    if (this.target.kind === 'stdout') return this.#writeQueued(Number.POSITIVE_INFINITY);
    this.#writeQueued(this.target.maxBytes);
    if (this.#size >= this.target.maxBytes) this.#rotate(this.target);
  }

  /**
   * path → path.1 → … → path.<keep> (the oldest goes), then a new file; lines written meanwhile wait,
   * and fill the new file only up to the size: past it, the file rotates again with the rest still waiting.
   */
  #rotate(target: Extract<FlowLogTarget, { kind: 'file' }>): void {
    this.#rotating = true;
    this.#rotation = (async () => {
      do {
        const old = this.#stream as WriteStream;
        await new Promise<void>((resolve) => old.end(resolve));
        for (let i = target.keep - 1; i >= 1; i--) await rename(`${target.path}.${i}`, `${target.path}.${i + 1}`).catch(() => undefined);
        await rename(target.path, `${target.path}.1`).catch(() => undefined);
        this.#stream = this.#open(target);
        this.#size = 0;
        this.#writeQueued(target.maxBytes);
      } while (this.#size >= target.maxBytes);
      this.#rotating = false;
      this.#rotation = undefined;
    })();
  }

  /** Queued lines into the current file, in one write, until it holds `maxBytes`; the rest stay queued. */
  #writeQueued(maxBytes: number): void {
    let next = 0;
    let size = this.#size;
    while (next < this.#queued.length && size < maxBytes) {
      const line = this.#queued[next++]!;
      size += Buffer.byteLength(line);
      this.#queuedBytes -= line.length;
    }
    if (next === 0) return;
    const batch = next === this.#queued.length ? this.#queued.join('') : this.#queued.slice(0, next).join('');
    // A write that fails loses its lines: they count as dropped (the stream's error then stops writing, #failed).
    this.#stream.write(batch, (err) => {
      if (err) this.dropped += next;
    });
    this.#size = size;
    this.#queued = next === this.#queued.length ? [] : this.#queued.slice(next);
  }

  /** Flushes and closes the file (stdout stays open). */
  async close(): Promise<void> {
    clearTimeout(this.#reopenTimer);
    clearTimeout(this.#flushTimer);
    // A rotation under way finishes first: closing the file it is replacing would leave its lines queued, and path.1 unmade.
    await this.#rotation;
    this.#closed = true;
    // Lines still gathering, or held while the stream was behind, go into the last file rather than being lost.
    if (!this.#failure) this.#writeQueued(Number.POSITIVE_INFINITY);
    const stream = this.#stream;
    if (this.target.kind === 'stdout' || stream.destroyed) return;
    await new Promise<void>((resolve) => (stream as WriteStream).end(resolve));
  }

  /** The file, appended to; a failure to open or write it stops writing until the next try (#failed). */
  #open(target: Extract<FlowLogTarget, { kind: 'file' }>): WriteStream {
    const stream = createWriteStream(target.path, { flags: 'a' });
    stream.once('error', (err: NodeJS.ErrnoException) => this.#failed(target, stream, err));
    return stream;
  }

  /** After a failure, one record tries the reopened file; its write reaching the disk ends the failure (an open alone proves nothing on a full disk). */
  #probe(failure: WriteFailure, line: string): void {
    this.#reopened = false;
    this.#stream.write(line, (err) => {
      if (err || this.#failure !== failure || this.target.kind !== 'file') return;
      this.#failure = undefined;
      const dropped = this.dropped - failure.droppedBefore;
      this.log?.info({ path: this.target.path, dropped }, `the flow log ${this.target.path} can be written again; ${dropped} flow records were dropped since ${failure.since.toISOString()}`);
    });
    this.#size += Buffer.byteLength(line);
  }

  #failed(target: Extract<FlowLogTarget, { kind: 'file' }>, stream: WriteStream, err: NodeJS.ErrnoException): void {
    // What was buffered for this stream is lost with it.
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.dropped += this.#queued.length;
    this.#queued = [];
    this.#queuedBytes = 0;
    stream.destroy();
    if (!this.#failure) {
      this.#failure = { since: new Date(), error: err.code ?? err.message, droppedBefore: this.dropped };
      this.log?.warn(
        { path: target.path, error: err.code ?? err.message },
        `cannot write the flow log ${target.path}: ${err.message}; flow records are dropped (counted in ambit_log_lines_dropped_total{log="flow"}) and the file is tried again every ${REOPEN_MS / 1000} s; traffic is not affected`,
      );
    }
    if (this.#closed) return;
    this.#reopenTimer = setTimeout(() => {
      if (this.#closed) return;
      this.#stream = this.#open(target);
      this.#reopened = true;
    }, REOPEN_MS);
    this.#reopenTimer.unref();
  }
}
