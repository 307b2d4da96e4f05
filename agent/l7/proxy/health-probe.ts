// The real probes behind active health checks: a TCP connect, or an HTTP/1.1 GET (over TLS for an
// HTTPS probe, the certificate not verified) whose status 200-399 is healthy, as a kubelet judges a
// readinessProbe, each over a connection the caller opens.
//
// Which connection: a probe travels the way the traffic it stands for travels. An enrolled endpoint on
// another node is probed over HBONE on behalf of the local workload whose request first used the
// cluster, with that workload's identity and address (tunnel/probe-dialer.ts): under STRICT
// PeerAuthentication a plaintext probe from the agent would be refused, and the destination's policy
// sees the probe as it sees that workload's requests. The consequence: an AuthorizationPolicy that
// denies the probe's path (or port) to that identity makes the endpoint fail its checks, exactly as the
// data would fail; the destination also counts probes in its request metrics and rate limits. An
// endpoint on this node, or one outside the mesh, is probed directly from the agent, as a kubelet would:
// the agent's own sockets are never captured. Nothing here parses HTTP: Node's client does.

import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { ProbeHeader } from '../../config/kubernetes.js';
import type { Workload } from '../../state/model.js';
import type { HealthCheckSpec, HealthTarget, ProbeAnswer } from '../health-check.js';
import type { CapturedAddress } from './http-destination.js';

/** What a kubelet sends as User-Agent is `kube-probe/<version>`; ours names the agent's health checker. */
export const PROBE_USER_AGENT = 'ambit-health-check/1';

/** Opens a byte stream to `address` on behalf of `source`, or says why it could not. */
export type ProbeDialer = (source: Workload, endpoint: Workload, address: CapturedAddress) => Promise<Duplex | string>;

/** One endpoint to probe, with the workloads that decide how the probe travels. */
export interface EndpointProbeTarget extends HealthTarget {
  readonly source: Workload;
  readonly endpoint: Workload;
}

export type EndpointProbe = (target: EndpointProbeTarget, signal: AbortSignal) => Promise<ProbeAnswer>;

/** The probe the agent runs: the spec's kind, on the spec's port of the endpoint, within its timeout. */
export function endpointProbe(dial: ProbeDialer): EndpointProbe {
  return (target, signal) => {
    const address = { ip: target.ip, port: target.spec.port };
    const open = (): Promise<Duplex | string> => dial(target.source, target.endpoint, address);
    return runProbe(target.spec, address, open, signal);
  };
}

/** Runs one probe of `spec` over what `open` returns; never rejects. */
export function runProbe(spec: HealthCheckSpec, address: CapturedAddress, open: () => Promise<Duplex | string>, signal: AbortSignal): Promise<ProbeAnswer> {
  if (spec.kind === 'tcp') return tcpProbe(open, spec.timeoutMs, signal);
  return httpGetProbe(open, address, { path: spec.path ?? '/', https: spec.https ?? false, headers: spec.headers ?? [] }, spec.timeoutMs, signal);
}

/** What an HTTP probe asks for. */
export interface HttpGet {
  readonly path: string;
  readonly https: boolean;
  readonly headers: readonly ProbeHeader[];
}

/**
 * The probe's request headers, as a kubelet builds them: Host (the endpoint), User-Agent and Accept,
 * each replaced by an httpHeaders entry of the same name; the other entries are added, repeats kept.
 */
function probeRequestHeaders(authority: string, headers: readonly ProbeHeader[]): OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = { host: authority, 'user-agent': PROBE_USER_AGENT, accept: '*/*' };
  // The defaults an httpHeaders entry has not replaced yet.
  const defaults = new Set(Object.keys(out));
  for (const { name, value } of headers) {
    const key = name.toLowerCase();
    const existing = out[key];
    if (defaults.delete(key) || existing === undefined) out[key] = value;
    else out[key] = [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  return out;
}

/** Healthy when the connection opens (over HBONE: when the destination's agent has connected to the pod). */
export async function tcpProbe(open: () => Promise<Duplex | string>, timeoutMs: number, signal: AbortSignal): Promise<ProbeAnswer> {
  const opened = await openWithin(open, timeoutMs, signal);
  if (typeof opened === 'string') return { ok: false, reason: opened };
  opened.destroy();
  return true;
}

/** GET with Node's client over one connection (TLS over it for HTTPS); 200-399 is healthy, anything else fails with its status. */
export async function httpGetProbe(open: () => Promise<Duplex | string>, address: CapturedAddress, get: HttpGet, timeoutMs: number, signal: AbortSignal): Promise<ProbeAnswer> {
  const deadline = Date.now() + timeoutMs;
  const opened = await openWithin(open, timeoutMs, signal);
  if (typeof opened === 'string') return { ok: false, reason: opened };
  const authority = `${address.ip}:${address.port}`;
  const url = `${get.https ? 'https' : 'http'}://${authority}${get.path}`;
  // As in upstream-connections.ts: an HBONE stream mangles the writev that ClientRequest corks its head into.
  if (!(opened instanceof Socket)) (opened as { _writev?: unknown })._writev = undefined;
  // A kubelet's HTTPS probe checks nothing of the certificate; no SNI, as the host is an IP.
  const stream = get.https ? tlsConnect({ socket: opened, host: address.ip, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }) : opened;
  return new Promise<ProbeAnswer>((resolve) => {
    let settled = false;
    const finish = (answer: ProbeAnswer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      request.destroy();
      stream.destroy();
      opened.destroy();
      resolve(answer);
    };
    const onAbort = (): void => finish({ ok: false, reason: `GET ${url} aborted` });
    const timer = setTimeout(() => finish({ ok: false, reason: `GET ${url}: no answer within ${timeoutMs} ms` }), Math.max(0, deadline - Date.now()));
    signal.addEventListener('abort', onAbort, { once: true });
    // No agent (agent: false would make a new Agent that ignores createConnection): Node then sends
    // Connection: close, and the probe's connection serves this one request only.
    const request = http.request({
      createConnection: () => stream as Socket,
      method: 'GET',
      path: get.path,
      setHost: false,
      headers: probeRequestHeaders(authority, get.headers),
    });
    request.once('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      res.resume();
      finish(status >= 200 && status < 400 ? true : { ok: false, reason: `GET ${url} answered ${status}` });
    });
    request.once('error', (err: Error) => finish({ ok: false, reason: `GET ${url}: ${err.message}` }));
    stream.once('error', (err: Error) => finish({ ok: false, reason: `GET ${url}: ${err.message}` }));
    request.end();
    if (signal.aborted) onAbort();
  });
}

/** Opens the connection unless the signal or the timeout comes first; a late connection is closed. */
async function openWithin(open: () => Promise<Duplex | string>, timeoutMs: number, signal: AbortSignal): Promise<Duplex | string> {
  if (signal.aborted) return 'aborted before connecting';
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const opening = open().catch((err: Error) => `connect failed: ${err.message}`);
  const cut = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`connect: no answer within ${timeoutMs} ms`), timeoutMs);
    onAbort = () => resolve('aborted while connecting');
    signal.addEventListener('abort', onAbort, { once: true });
  });
  const first = await Promise.race([opening, cut]);
  clearTimeout(timer);
  signal.removeEventListener('abort', onAbort!);
  if (typeof first === 'string') {
    void opening.then((late) => typeof late === 'string' || late.destroy());
    return first;
  }
  return first;
}
