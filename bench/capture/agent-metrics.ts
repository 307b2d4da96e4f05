// What a lab agent says about itself on :15020/metrics (Prometheus text), read from inside its node's
// network namespace: the request counts the L7 bench checks its paths with, the GC time the capture bench judges.

import { ambit, lab } from './lab.js';
import type { NodeName } from './plan.js';

export async function agentMetrics(node: NodeName): Promise<string> {
  const r = await ambit(['lab', 'exec', '--lab', lab, `node/${node}`, '--', 'curl', '-s', '--max-time', '5', 'http://127.0.0.1:15020/metrics'], 15_000);
  if (r.code !== 0 || !r.stdout.includes('# HELP')) throw new Error(`${node}'s agent did not answer on :15020/metrics (exit ${r.code ?? 'on timeout'}): ${r.stderr.slice(0, 500)}`);
  return r.stdout;
}

/** The sum of every sample of `name` whose labels contain each of `labels` (e.g. `kind="major"`). */
export function metricSum(text: string, name: string, labels: readonly string[] = []): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!labels.every((l) => line.includes(l))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return sum;
}

/**
 * Seconds the agent's JavaScript thread has spent in garbage collection since it started, all kinds:
 * prom-client's default `nodejs_gc_duration_seconds` histogram (a perf_hooks 'gc' observer), its _sum.
 */
export async function agentGcSeconds(node: NodeName): Promise<number> {
  const text = await agentMetrics(node);
  // No sample line until the first collection; the help line is there from the start.
  if (!text.includes('# HELP nodejs_gc_duration_seconds ')) throw new Error(`${node}'s agent exports no nodejs_gc_duration_seconds: prom-client's default metrics are off`);
  return metricSum(text, 'nodejs_gc_duration_seconds_sum');
}
