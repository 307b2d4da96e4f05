// TLS origination (a DestinationRule's trafficPolicy.tls, mode SIMPLE or MUTUAL) on an L7 upstream
// connection to a host outside the mesh: the pod sends plain HTTP, the agent speaks TLS to the server,
// as Envoy's upstream TLS transport socket does for istiod's sidecars and waypoints.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { type ConnectionOptions, type PeerCertificate, type TLSSocket, checkServerIdentity, connect } from 'node:tls';
import type { ClientTLSSettings } from '../../config/istio-networking.js';

/** What Node's TLS client is given besides the socket: the files a DestinationRule names, read once. */
type FileMaterial = Pick<ConnectionOptions, 'ca' | 'cert' | 'key'>;

/** Settings objects live as long as their snapshot: a new configuration reads the files again. */
const materialOf = new WeakMap<ClientTLSSettings, Promise<FileMaterial | string>>();

/** Whether these settings make the agent originate TLS (DISABLE and ISTIO_MUTUAL do not, outside the mesh). */
export function originatesTls(settings: ClientTLSSettings | undefined): settings is ClientTLSSettings {
  return settings?.mode === 'SIMPLE' || settings?.mode === 'MUTUAL';
}

/**
 * Speaks TLS over `stream` to `host` (the ServiceEntry host, the SNI unless `sni` says otherwise), offering
 * the ALPN of the HTTP version the upstream speaks; resolves with the TLS stream once the handshake and
 * verification passed, or with why they did not.
 */
export async function originateTls(stream: Duplex, settings: ClientTLSSettings, host: string, protocol: 'h1' | 'h2'): Promise<Duplex | string> {
  let material = materialOf.get(settings);
  if (!material) materialOf.set(settings, (material = readMaterial(settings)));
  const files = await material;
  if (typeof files === 'string') {
    stream.destroy();
    return files;
  }
  const servername = settings.sni ?? host;
  const socket: TLSSocket = connect({
    socket: stream,
    servername,
    ...files,
    ALPNProtocols: [protocol === 'h2' ? 'h2' : 'http/1.1'],
    rejectUnauthorized: settings.insecureSkipVerify !== true,
    checkServerIdentity: (name, cert) => verifyNames(settings.subjectAltNames, name, cert),
  });
  return await new Promise<Duplex | string>((resolve) => {
    const failed = (err: Error): void => {
      socket.destroy();
      const code = (err as NodeJS.ErrnoException).code;
      resolve(`TLS origination to ${servername} failed: ${code ? `${code}: ` : ''}${err.message}`);
    };
    socket.once('error', failed);
    socket.once('secureConnect', () => {
      socket.off('error', failed);
      resolve(socket);
    });
  });
}

/** The server's names: one of `subjectAltNames` when the rule lists some (Envoy's match_subject_alt_names), else the SNI. */
function verifyNames(subjectAltNames: readonly string[], servername: string, cert: PeerCertificate): Error | undefined {
  if (subjectAltNames.length === 0) return checkServerIdentity(servername, cert);
  const presented = (cert.subjectaltname ?? '').split(',').map((entry) => entry.trim().replace(/^(DNS|URI|IP Address):/, ''));
  if (subjectAltNames.some((name) => presented.includes(name))) return undefined;
  return new Error(`the server's certificate names ${presented.join(', ') || 'nothing'}, none of the DestinationRule's subjectAltNames (${subjectAltNames.join(', ')})`);
}

/** Where a Secret's keys are when it is mounted: a TLS Secret's names first, then a generic Secret's (Istio reads both). */
const SECRET_KEYS: Readonly<Record<keyof FileMaterial, readonly string[]>> = { ca: ['ca.crt', 'cacert'], cert: ['tls.crt', 'cert'], key: ['tls.key', 'key'] };

/**
 * The CA and key pair: `caCertificates`, `clientCertificate`, `privateKey` as files; `credentialName`
 * (a Kubernetes Secret in Istio) as a directory holding the Secret's keys as files, as a Secret is
 * mounted. Without a CA, Node's own roots verify the server (Envoy's system roots).
 */
async function readMaterial(settings: ClientTLSSettings): Promise<FileMaterial | string> {
  const mutual = settings.mode === 'MUTUAL';
  const wanted: Record<keyof FileMaterial, string | undefined> = { ca: settings.caCertificates, cert: mutual ? settings.clientCertificate : undefined, key: mutual ? settings.privateKey : undefined };
  const material: { -readonly [K in keyof FileMaterial]: string } = {};
  for (const field of ['ca', 'cert', 'key'] as const) {
    const secret = settings.credentialName;
    const path = wanted[field];
    if (path !== undefined) {
      const text = await readText(path);
      if (typeof text !== 'string') return unreadable(field, path, text.message);
      material[field] = text;
    } else if (secret !== undefined && (field === 'ca' || mutual)) {
      const found = await firstReadable(SECRET_KEYS[field].map((name) => join(secret, name)));
      // A Secret without a CA verifies with the default roots; one without the key pair cannot do MUTUAL.
      if (found === undefined && field !== 'ca') return unreadable(field, join(secret, SECRET_KEYS[field].join(' or ')), 'no such file');
      if (found !== undefined) material[field] = found;
    }
  }
  return material;
}

async function readText(path: string): Promise<string | Error> {
  return readFile(path, 'utf8').catch((err: Error) => err);
}

async function firstReadable(paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) {
    const text = await readText(path);
    if (typeof text === 'string') return text;
  }
  return undefined;
}

function unreadable(field: keyof FileMaterial, path: string, why: string): string {
  const what = field === 'ca' ? 'the CA certificates' : field === 'cert' ? 'the client certificate' : 'the private key';
  return `TLS origination: cannot read ${what} ${path} (${why}); fix the DestinationRule's tls paths`;
}
