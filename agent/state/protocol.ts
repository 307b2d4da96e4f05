// Which protocol a Service port speaks, decided the way Istio decides it: appProtocol first, then the
// port name's prefix (`http`, `http-web`, `grpc-api`, ...). Unnamed or unknown ports are plain TCP.

export type AppProtocol =
  | 'HTTP'
  | 'HTTP2'
  | 'GRPC'
  | 'GRPC-Web'
  | 'HTTPS'
  | 'TLS'
  | 'TCP'
  | 'Mongo'
  | 'MySQL'
  | 'Redis'
  | 'UDP';

const BY_NAME: ReadonlyMap<string, AppProtocol> = new Map<string, AppProtocol>([
  ['http', 'HTTP'],
  ['http2', 'HTTP2'],
  ['h2c', 'HTTP2'],
  ['grpc', 'GRPC'],
  ['grpc-web', 'GRPC-Web'],
  ['https', 'HTTPS'],
  ['tls', 'TLS'],
  ['tcp', 'TCP'],
  ['mongo', 'Mongo'],
  ['mysql', 'MySQL'],
  ['redis', 'Redis'],
  ['udp', 'UDP'],
  // Kubernetes' standard application protocols (KEP-3726).
  ['kubernetes.io/h2c', 'HTTP2'],
  ['kubernetes.io/ws', 'HTTP'],
  ['kubernetes.io/wss', 'HTTPS'],
]);

/** Istio's rule: `appProtocol` wins; otherwise the port name up to the first `-` names the protocol. */
export function portProtocol(port: { readonly name?: string; readonly appProtocol?: string; readonly protocol: string }): AppProtocol {
  if (port.protocol === 'UDP') return 'UDP';
  const fromAppProtocol = port.appProtocol ? BY_NAME.get(port.appProtocol.toLowerCase()) : undefined;
  if (fromAppProtocol) return fromAppProtocol;
  const name = (port.name ?? '').toLowerCase();
  // grpc-web must be matched whole before the prefix rule would read it as grpc.
  if (name === 'grpc-web' || name.startsWith('grpc-web-')) return 'GRPC-Web';
  const prefix = name.split('-', 1)[0] ?? '';
  return BY_NAME.get(prefix) ?? 'TCP';
}

/** Ports whose traffic Ambit handles at L7 (routing, retries, request metrics). */
export function speaksHttp(protocol: AppProtocol): boolean {
  return protocol === 'HTTP' || protocol === 'HTTP2' || protocol === 'GRPC' || protocol === 'GRPC-Web';
}
