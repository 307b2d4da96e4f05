// The active health checks' counter: how often an endpoint left or rejoined a cluster's balancing set
// because of its probes (Envoy counts the same per cluster). Which endpoint it was is in the agent log.

import { Counter, type Registry } from 'prom-client';
import type { HealthEvent } from '../l7/health-check.js';

/** Registers ambit_health_check_transitions_total{cluster,state} and returns what counts one transition. */
export function healthCheckTransitions(registry: Registry): (cluster: string, event: HealthEvent) => void {
  const counter = new Counter({
    name: 'ambit_health_check_transitions_total',
    help: 'Endpoints that became unhealthy (left the balancing set) or healthy (rejoined it) by active health checks, per cluster',
    labelNames: ['cluster', 'state'],
    registers: [registry],
  });
  return (cluster, event) => counter.inc({ cluster, state: event.kind });
}
