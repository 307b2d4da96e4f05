// Istio's standard TCP metrics, with Istio's names and labels, so that the dashboards and alerts users
// already run against ztunnel work unchanged. One registry per agent, served on :15020.

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { logWriterStats } from './log.js';

/** Who talked to whom: the labels Istio's TCP and request metrics share, in Istio's order. */
export const PEER_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
] as const;

/** Istio's TCP label set, in ztunnel's order; every value is a string, "unknown" when not known. */
export const TCP_LABELS = [...PEER_LABELS, 'request_protocol', 'response_flags', 'connection_security_policy'] as const;

export type TcpLabelName = (typeof TCP_LABELS)[number];
export type TcpLabels = Readonly<Record<TcpLabelName, string>>;

export class MeshMetrics {
  readonly registry = new Registry();
  readonly tcpOpened: Counter<TcpLabelName>;
  readonly tcpClosed: Counter<TcpLabelName>;
  readonly tcpFailed: Counter<TcpLabelName>;
  readonly tcpSentBytes: Counter<TcpLabelName>;
  readonly tcpReceivedBytes: Counter<TcpLabelName>;
  readonly socketsOpen: Gauge<'reporter'>;
  /** Connections a data-path listener could not accept (agent/tunnel/accept-errors.ts). */
  readonly acceptErrors: Counter<'listener' | 'error'>;
  /** The open-files limit (agent/tunnel/fd-limit-watch.ts); process_open_fds and process_max_fds say how close. */
  readonly fdLimit: { readonly atLimit: Gauge; readonly reached: Counter };
  #flowLogDropped: () => number = () => 0;

  constructor(version: string) {
    const registers = [this.registry];
    const build = new Gauge({ name: 'istio_build', help: 'Istio component build info', labelNames: ['component', 'tag'], registers });
    build.set({ component: 'ztunnel', tag: `ambit-${version}` }, 1);
    const tcp = (name: string, help: string): Counter<TcpLabelName> => new Counter({ name, help, labelNames: TCP_LABELS, registers });
    this.tcpOpened = tcp('istio_tcp_connections_opened_total', 'The total number of TCP connections opened');
    this.tcpClosed = tcp('istio_tcp_connections_closed_total', 'The total number of TCP connections closed');
    this.tcpFailed = tcp('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed to establish (unstable)');
    this.tcpSentBytes = tcp('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response in case of a TCP connection');
    this.tcpReceivedBytes = tcp('istio_tcp_received_bytes_total', 'The size of total bytes received during request in case of a TCP connection');
    this.socketsOpen = new Gauge({ name: 'istio_tcp_sockets_open', help: 'The current number of open TCP sockets (unstable)', labelNames: ['reporter'], registers });
    this.acceptErrors = new Counter({
      name: 'ambit_accept_errors_total',
      help: 'Connections a data-path listener (outbound, inbound, hbone) could not accept and closed, by error; EMFILE: the open-files limit',
      labelNames: ['listener', 'error'],
      registers,
    });
    this.fdLimit = {
      atLimit: new Gauge({ name: 'ambit_fd_limit_reached', help: '1 while the agent is at (or within 2 %, at least 16 fds, of) its open-files limit: new connections are refused, open ones carry on', registers }),
      reached: new Counter({ name: 'ambit_fd_limit_reached_total', help: 'Times the agent reached (or came within 2 %, at least 16 fds, of) its open-files limit', registers }),
    };
    // prom-client samples event-loop lag every 10 ms by default: 100 wake-ups a second, about 0.015 vCPU
    // of an idle agent (bench/README.md). 100 ms still shows the stalls that matter to a proxy.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    // A full disk or a stuck log reader costs lines, never serving (log-writer.ts, flow-log.ts): this says how many.
    const flowLogDropped = (): number => this.#flowLogDropped();
    new Counter({
      name: 'ambit_log_lines_dropped_total',
      help: 'Lines the agent could not write, by log (agent: its own log on stdout; flow: --flow-log): the disk was full, the file unwritable or the reader too slow',
      labelNames: ['log'],
      registers,
      collect() {
        this.reset();
        this.inc({ log: 'agent' }, logWriterStats().droppedLines);
        this.inc({ log: 'flow' }, flowLogDropped());
      },
    });
  }

  /** Counts the flow log's dropped records in ambit_log_lines_dropped_total{log="flow"}. */
  countFlowLogDrops(read: () => number): void {
    this.#flowLogDropped = read;
  }

  /** Drops one label set from every TCP counter (the series of a workload that left the mesh). */
  removeTcpSeries(labels: TcpLabels): void {
    for (const counter of [this.tcpOpened, this.tcpClosed, this.tcpFailed, this.tcpSentBytes, this.tcpReceivedBytes]) counter.remove(labels);
  }

  /**
   * Exports the native HBONE engine's counters, read at each scrape: what each per-peer limit refused
   * (the log says once per peer what to do), and connections, streams and failures.
   */
  registerHboneEngine(read: () => Readonly<Record<string, number>>): void {
    const registers = [this.registry];
    const LIMITS = {
      maxPendingConnects: 'limitPendingConnects',
      maxConnectionsPerIdentity: 'limitConnectionsPerIdentity',
      maxConnectionsPerAddress: 'limitConnectionsPerAddress',
      maxConnections: 'limitConnections',
      maxConnectionMemory: 'limitConnectionMemory',
    } as const;
    new Counter({
      name: 'ambit_hbone_limited_total',
      help: 'What the HBONE engine refused or closed for a limit (--hbone-max-*), by limit',
      labelNames: ['limit'],
      registers,
      collect() {
        const counters = read();
        this.reset();
        for (const [limit, field] of Object.entries(LIMITS)) this.inc({ limit }, counters[field] ?? 0);
      },
    });
    const EVENTS = {
      connections_opened: 'connectionsOpened',
      streams_opened: 'streamsOpened',
      handshakes_failed: 'handshakesFailed',
      protocol_errors: 'protocolErrors',
      reset_before_answer: 'resetBeforeAnswer',
      idle_closed: 'idleClosed',
      streams_idle_closed: 'streamsIdleClosed',
      ping_timeouts: 'pingTimeouts',
    } as const;
    new Counter({
      name: 'ambit_hbone_events_total',
      help: 'HBONE engine events: connections and streams opened, failed handshakes, protocol errors, streams reset before the agent answered, idle closes (of connections, and of streams by --tcp-idle-timeout), PING timeouts',
      labelNames: ['event'],
      registers,
      collect() {
        const counters = read();
        this.reset();
        for (const [event, field] of Object.entries(EVENTS)) this.inc({ event }, counters[field] ?? 0);
      },
    });
    new Gauge({
      name: 'ambit_hbone_open',
      help: 'HBONE connections and streams the engine holds now',
      labelNames: ['kind'],
      registers,
      collect() {
        const counters = read();
        this.set({ kind: 'connections' }, counters['connectionsOpen'] ?? 0);
        this.set({ kind: 'streams' }, counters['streamsOpen'] ?? 0);
      },
    });
  }

  /** Exports how many HBONE connections ended, inbound and outbound, by the engine's cause, read at each scrape. */
  registerHboneConnectionEnds(read: () => Readonly<Record<string, number>>): void {
    new Counter({
      name: 'ambit_hbone_connections_closed_total',
      help: 'HBONE connections that ended, by cause: idle, drain, closed (GOAWAY, no stream left), peer-closed, io-error, ping-timeout, memory-limit, protocol, handshake, untrusted, identity, ...',
      labelNames: ['cause'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [cause, ended] of Object.entries(read())) this.inc({ cause }, ended);
      },
    });
  }

  /** Exports the capture's per-reason decision counters, read from the kernel at each scrape. */
  registerRedirectDecisions(read: () => Promise<Readonly<Record<string, number>> | undefined>): void {
    new Counter({
      name: 'ambit_redirect_decisions_total',
      help: 'Decisions of the capture (eBPF programs, and the nft table for Service VIPs DNATed to pods of this node): redirected, passed, dropped, by reason',
      labelNames: ['reason'],
      registers: [this.registry],
      async collect() {
        const counters = await read();
        if (!counters) return;
        this.reset();
        for (const [reason, count] of Object.entries(counters)) this.inc({ reason }, count);
      },
    });
  }
}
