// TCP options of the sockets the agent relays between, in one place.

/**
 * TCP keepalive's idle time, ztunnel's (SocketConfig::default, 180 s): a peer that vanished without a
 * FIN or RST (its node lost, its pod's namespace torn down) is probed and its connection closed,
 * instead of being held open, with its memory and fds, for as long as the agent runs. Interval and
 * count stay the kernel's (75 s, 9).
 */
export const KEEPALIVE_IDLE_MS = 180_000;

/** For net.createServer and net.connect: keepalive from the first moment of a connection. */
export const KEEPALIVE_OPTIONS = { keepAlive: true, keepAliveInitialDelay: KEEPALIVE_IDLE_MS } as const;

/** A TCP socket that joins a relay: no Nagle delay on writes the endpoints already decided to send, and keepalive. */
export function tuneRelaySocket(socket: { setNoDelay(noDelay: boolean): unknown; setKeepAlive(enable: boolean, initialDelay: number): unknown }): void {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
}
