// What the HBONE engine (native/src/hbone) tells JavaScript, as a discriminated union: one event per
// decision it needs (a peer to accept, a CONNECT to answer) and per end (a stream, a connection).

/** A connection's id in the engine; streams have their own ids, unique in the engine. */
export type ConnId = number & { readonly __brand: 'HboneConn' };
export type StreamId = number & { readonly __brand: 'HboneStream' };

/**
 * Why a stream ended. `done`: both sides ended cleanly. `peer-reset`: RST_STREAM from the peer (`code`
 * is the HTTP/2 error code). `local-reset`: resetStream() was called. `fd-error`: the plain fd failed
 * (`code` is the errno; the peer got CONNECT_ERROR). `timeout`: no response in responseTimeoutMs.
 * `conn-closed`: its connection ended under it. `refused`: a non-200 answer (`code` is the status).
 * `limit`: maxPendingConnects. `draining`: the connection was draining. `refused-locally`: the engine
 * could not open it (no such connection, clientMaxStreams, out of stream ids). `idle-timeout`: no byte
 * moved either way for streamIdleTimeoutMs (the peer got CANCEL, the fd was closed).
 */
export type StreamEndCause =
  | 'done'
  | 'peer-reset'
  | 'local-reset'
  | 'fd-error'
  | 'timeout'
  | 'conn-closed'
  | 'refused'
  | 'limit'
  | 'draining'
  | 'refused-locally'
  | 'idle-timeout';

/** Why a connection ended; `message` says it for an operator. */
export type ConnEndCause =
  | 'handshake'
  /** The peer's chain does not lead to our roots (or is expired, or not yet valid). */
  | 'untrusted'
  | 'handshake-timeout'
  | 'identity'
  | 'peer-refused'
  | 'refused-by-server'
  | 'limit'
  | 'memory-limit'
  | 'peer-closed'
  | 'io-error'
  | 'protocol'
  | 'ping-timeout'
  | 'idle'
  | 'drain'
  | 'draining'
  | 'goaway'
  | 'peer-goaway-error'
  | 'closed'
  | 'local-close'
  | 'engine-closed'
  | 'internal';

export type EngineLimit = 'maxPendingConnects' | 'maxConnectionsPerIdentity' | 'maxConnectionsPerAddress' | 'maxConnections' | 'maxConnectionMemory';

export type EngineEvent =
  /** Server: the handshake verified the client's chain against the roots; answer with acceptPeer(). */
  | { readonly type: 'peer'; readonly conn: ConnId; readonly tag: number; readonly identity: string; readonly address: string; readonly chainDer: readonly Buffer[] }
  /** Client: TLS is up and the server presented one of the expected identities. */
  | { readonly type: 'connected'; readonly conn: ConnId; readonly identity: string }
  /** Server: a valid classic CONNECT; answer with answer(). Header names are lower case. */
  | { readonly type: 'connect'; readonly conn: ConnId; readonly stream: StreamId; readonly tag: number; readonly authority: string; readonly headers: Readonly<Record<string, string>> }
  /** Client: the final response to openStream()'s CONNECT. */
  | { readonly type: 'response'; readonly conn: ConnId; readonly stream: StreamId; readonly status: number }
  | { readonly type: 'streamEnd'; readonly conn: ConnId; readonly stream: StreamId; readonly bytesIn: number; readonly bytesOut: number; readonly cause: StreamEndCause; readonly code: number }
  | { readonly type: 'connEnd'; readonly conn: ConnId; readonly cause: ConnEndCause; readonly message: string; readonly bytesIn: number; readonly bytesOut: number }
  /** Client: the server will take no new streams on this connection. */
  | { readonly type: 'goaway'; readonly conn: ConnId; readonly code: number }
  /** A peer hit a limit; sent once per (limit, peer). `hint` says what an operator can do. */
  | { readonly type: 'limit'; readonly conn: ConnId; readonly limit: EngineLimit; readonly peer: string; readonly cap: number; readonly hint: string }
  /** Every connection is gone after drain(). */
  | { readonly type: 'drained' };

const LIMIT_HINTS: Readonly<Record<EngineLimit, string>> = {
  maxPendingConnects: 'the peer opens CONNECTs faster than the agent answers them; raise maxPendingConnects if the peer is legitimate',
  maxConnectionsPerIdentity: 'one workload identity holds this many connections; raise maxConnectionsPerIdentity if it is legitimate, else find why it does not reuse them',
  maxConnectionsPerAddress: 'one source address holds this many connections; raise maxConnectionsPerAddress if it is legitimate (a node NATing many pods)',
  maxConnections: 'the engine holds its cap of connections; raise maxConnections or add capacity',
  maxConnectionMemory: 'one connection buffered this much; raise maxConnectionMemory if its streams are legitimately slow readers',
};

export function limitHint(limit: EngineLimit): string {
  return LIMIT_HINTS[limit];
}

/** Engine-wide counters (for metrics), read at any time. */
export interface EngineCounters {
  readonly connectionsOpened: number;
  readonly connectionsOpen: number;
  readonly streamsOpened: number;
  readonly streamsOpen: number;
  readonly handshakesFailed: number;
  readonly protocolErrors: number;
  readonly resetBeforeAnswer: number;
  readonly lateAnswers: number;
  readonly limitPendingConnects: number;
  readonly limitConnectionsPerIdentity: number;
  readonly limitConnectionsPerAddress: number;
  readonly limitConnections: number;
  readonly limitConnectionMemory: number;
  readonly idleClosed: number;
  readonly pingTimeouts: number;
  /** Bytes written to plain fds, and read from them. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Streams closed by streamIdleTimeoutMs. */
  readonly streamsIdleClosed: number;
}

/** One connection, as its data thread sees it now. */
export interface ConnStats {
  readonly streams: number;
  /** TLS plaintext waiting for the socket (bounded by the engine's high-water mark). */
  readonly outBuffered: number;
  /** Bytes from the peer waiting for slow plain fds (bounded by the flow-control windows). */
  readonly inBuffered: number;
  readonly memory: number;
  readonly pendingConnects: number;
  readonly identity: string;
}
