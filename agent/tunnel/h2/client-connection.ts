// Dials one outbound HBONE connection: TCP to the destination's 15008 (optionally from a given source
// address), TLS 1.3 with the source workload's certificate and no SNI, the server's SPIFFE id checked
// against the identities we meant to reach, then HTTP/2 up to the server's first SETTINGS.

import { type ClientHttp2Session, connect as connectH2 } from 'node:http2';
import { type Socket, connect as connectTcp } from 'node:net';
import { type SecureContext, type TLSSocket, connect as connectTls } from 'node:tls';
import { IdentityError } from '../../identity/errors.js';
import { expectServerIdentity } from '../../identity/peer-verification.js';
import type { SpiffeId } from '../../state/model.js';
import { formatAuthority } from './connect-headers.js';
import { type HboneErrorReason, type HboneResult, fail, messageOf, ok } from './errors.js';
import type { SocketAddress } from './server.js';
import { HBONE_TLS, type HboneTuning, clientSettings } from './settings.js';

/**
 * Opens the TCP socket. The default binds to `localAddress` when given; the eBPF redirect code replaces
 * it with one that binds transparently (IP_TRANSPARENT) to a pod IP the node does not own.
 */
export type TcpDialer = (target: SocketAddress, localAddress: string | undefined) => Socket;

export const defaultTcpDialer: TcpDialer = (target, localAddress) =>
  connectTcp({ host: target.ip, port: target.port, noDelay: true, ...(localAddress ? { localAddress } : {}) });

export interface DialOptions {
  readonly target: SocketAddress;
  readonly context: SecureContext;
  readonly trustBundlePem: readonly string[];
  readonly expectedIdentities: ReadonlySet<SpiffeId>;
  readonly localAddress?: string;
  readonly tuning: HboneTuning;
  readonly dialTcp?: TcpDialer;
}

type Step<T> = (resolve: (result: HboneResult<T>) => void) => () => void;

/** Runs one setup step under the connect timeout; `start` returns its cleanup. */
function step<T>(timeoutMs: number, onTimeout: () => HboneResult<T>, start: Step<T>): Promise<HboneResult<T>> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: HboneResult<T>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cleanup();
      resolve(result);
    };
    const timer = setTimeout(() => finish(onTimeout()), timeoutMs);
    const cleanup = start(finish);
  });
}

export async function dialHbone(options: DialOptions): Promise<HboneResult<ClientHttp2Session>> {
  const where = formatAuthority(options.target);
  const timeoutMs = options.tuning.connectTimeoutMs;

  const socket = (options.dialTcp ?? defaultTcpDialer)(options.target, options.localAddress);
  const tcp = await step<Socket>(
    timeoutMs,
    () => fail('connect-timeout', `connecting to ${where}: connection timed out, maybe a NetworkPolicy is blocking HBONE port ${options.target.port}`),
    (resolve) => {
      const connected = (): void => resolve(ok(socket));
      const failed = (err: Error): void => resolve(fail('connect-failed', `connecting to ${where} failed: ${messageOf(err)}`));
      socket.once('connect', connected).once('error', failed);
      return () => socket.off('connect', connected).off('error', failed);
    },
  );
  if (!tcp.ok) {
    socket.destroy();
    return tcp;
  }

  const tls: TLSSocket = connectTls({
    socket,
    // An IP host keeps node:tls from sending SNI, as Istio clients (ztunnel disables it outright).
    host: options.target.ip,
    secureContext: options.context,
    ALPNProtocols: [...HBONE_TLS.alpn],
    rejectUnauthorized: true,
    checkServerIdentity: expectServerIdentity(options.expectedIdentities, options.trustBundlePem),
  });
  const secured = await step<TLSSocket>(
    timeoutMs,
    () => fail('tls-failed', `the TLS handshake with ${where} did not finish within ${timeoutMs} ms`),
    (resolve) => {
      const connected = (): void => {
        if (tls.alpnProtocol !== 'h2') return resolve(fail('tls-failed', `${where} did not agree to ALPN h2; is it an HBONE port?`));
        resolve(ok(tls));
      };
      const failed = (err: Error): void => resolve(fail(classifyTlsError(err), `TLS with ${where} failed: ${messageOf(err)}`));
      tls.once('secureConnect', connected).once('error', failed);
      return () => tls.off('secureConnect', connected).off('error', failed);
    },
  );
  if (!secured.ok) {
    tls.destroy();
    return secured;
  }

  const session = connectH2(`https://${where}`, {
    createConnection: () => tls,
    settings: clientSettings(options.tuning),
    maxSessionMemory: options.tuning.maxSessionMemoryMb,
  });
  const refusedHint = 'it most likely refused our certificate (another root or trust domain; see its log)';
  const started = await step<ClientHttp2Session>(
    timeoutMs,
    () => fail('refused-by-server', `${where} sent no HTTP/2 SETTINGS within ${timeoutMs} ms`),
    (resolve) => {
      // In TLS 1.3 the client finishes its handshake first; a server that refuses our certificate can
      // only hang up afterwards, so its verdict shows as a close before its first SETTINGS.
      const settled = (): void => resolve(ok(session));
      const closed = (): void => resolve(fail('refused-by-server', `${where} closed the connection before HTTP/2 started: ${refusedHint}`));
      const failed = (err: Error): void => resolve(fail('refused-by-server', `${where} failed the connection before HTTP/2 started (${messageOf(err)}): ${refusedHint}`));
      session.once('remoteSettings', settled).once('close', closed).once('error', failed);
      return () => session.off('remoteSettings', settled).off('close', closed).off('error', failed);
    },
  );
  if (!started.ok) {
    session.destroy();
    return started;
  }
  session.setLocalWindowSize(options.tuning.connectionWindowBytes);
  return started;
}

function classifyTlsError(err: Error): HboneErrorReason {
  if (err instanceof IdentityError) return 'unexpected-server';
  // OpenSSL's verdicts on the server's chain: it does not lead to our roots.
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return /CERT|VERIFY|SIGNATURE|ISSUER/.test(code) ? 'unexpected-server' : 'tls-failed';
}
