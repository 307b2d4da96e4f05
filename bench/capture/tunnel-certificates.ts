// The certificates of the bench's baseline tunnels (HAProxy, and the bare Node ones): a CA and one
// P-256 leaf per side, made with openssl for each run in a temporary directory, so the baselines do
// mutual TLS 1.3 the way the agents do.
//
//   ca.pem, ca.key                 the CA both sides trust
//   client.crt, client.key, .pem   node-a's side (clientAuth); .pem is cert + key, as HAProxy's `crt` wants
//   server.crt, server.key, .pem   node-b's side (serverAuth), named TUNNEL_SERVER_NAME

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The name node-b's side presents and node-a's side verifies. */
export const TUNNEL_SERVER_NAME = 'tunnel.node-b.tbench';

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Makes a fresh directory with the files above and returns its path (baseline-tunnel.ts removes it). */
export function makeTunnelCertificates(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const openssl = (args: readonly string[]): void => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  };
  openssl(['req', '-x509', '-new', ...P256, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=ambit bench tunnel CA', '-days', '1']);
  const leaf = (name: string, cn: string, usage: string): void => {
    openssl(['req', '-x509', '-new', ...P256, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${cn}`, '-days', '1', '-CA', 'ca.pem', '-CAkey', 'ca.key',
      '-addext', `subjectAltName=DNS:${cn}`, '-addext', `extendedKeyUsage=${usage}`, '-addext', 'basicConstraints=critical,CA:FALSE']);
    writeFileSync(join(dir, `${name}.pem`), readFileSync(join(dir, `${name}.crt`), 'utf8') + readFileSync(join(dir, `${name}.key`), 'utf8'));
  };
  leaf('client', 'tunnel.node-a.tbench', 'clientAuth');
  leaf('server', TUNNEL_SERVER_NAME, 'serverAuth');
  return dir;
}

/** One side's certificate, key and the CA, as node:tls takes them. */
export function readTunnelCertificate(dir: string, side: 'client' | 'server'): { key: Buffer; cert: Buffer; ca: Buffer } {
  return { key: readFileSync(join(dir, `${side}.key`)), cert: readFileSync(join(dir, `${side}.crt`)), ca: readFileSync(join(dir, 'ca.pem')) };
}
