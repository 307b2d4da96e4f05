// The lab kubelet's wait between a pod's sandbox and its containers: it asks the node's agent, on the
// agent's per-pod readiness socket (admin/pod-readiness.ts), whether the pod is set up, as Istio's CNI
// plugin waits for ztunnel's answer before the kubelet may start a pod's containers.

import { request } from 'node:http';
import type { Logger } from '../telemetry/log.js';

const RETRY_MS = 200;
/** How often a pod still waiting is reported in the supervisor's log. */
const REPORT_EVERY_MS = 10_000;

type Answer = { readonly ready: true } | { readonly ready: false; readonly reason: string };

/** One question: 200 is ready; anything else (503, no agent listening yet) says why not. */
function ask(socketPath: string, key: string): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: `/pods/${key}`, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(res.statusCode === 200 ? { ready: true } : { ready: false, reason: body.trim() || `status ${res.statusCode}` }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', (err) => resolve({ ready: false, reason: `cannot ask the agent on ${socketPath}: ${err.message}` }));
    req.end();
  });
}

/**
 * Resolves once the agent says pod `key` is ready, or when the lab stops. It keeps asking while the
 * pod is not (a pod is never started half set up, as Istio's CNI fails the sandbox until ztunnel
 * answers); `lab up` reports a pod stuck here as not started, with the reason in the supervisor's log.
 */
export async function podSandboxReady(socketPath: string, key: string, log: Logger, stop: AbortController): Promise<void> {
  let reported = Date.now();
  while (!stop.signal.aborted) {
    const answer = await ask(socketPath, key);
    if (answer.ready) return;
    if (Date.now() - reported >= REPORT_EVERY_MS) {
      log.warn({ pod: key }, `pod ${key}: containers held until the agent has set it up: ${answer.reason}`);
      reported = Date.now();
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}
