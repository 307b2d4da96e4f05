// Active health checks: each endpoint is probed on its own schedule (TCP connect or HTTP GET), leaves
// the balancing set after `unhealthyThreshold` failures in a row and returns after `healthyThreshold`
// successes. Configured from the pod's readinessProbe (Kubernetes semantics: periodSeconds,
// timeoutSeconds, failureThreshold, successThreshold), so users configure nothing new; a pod without a
// readinessProbe is not actively checked. The probe and the clock are injected: the data path supplies
// real TCP/HTTP probes, tests supply scripted ones.

import type { Probe } from '../config/kubernetes.js';
import type { Workload } from '../state/model.js';
import type { Clock, TimerHandle } from './clock.js';

export interface HealthCheckSpec {
  readonly kind: 'http' | 'tcp';
  readonly port: number;
  /** HTTP only: the GET path; 200-399 is healthy, as for a kubelet. */
  readonly path?: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
}

export type HealthCheckConfig = { readonly ok: true; readonly spec: HealthCheckSpec } | { readonly ok: false; readonly reason: string };

/** The health check a workload's readinessProbe describes; a named port is resolved on the pod. */
export function healthCheckFromProbe(workload: Workload, probe: Probe | undefined = workload.readinessProbe): HealthCheckConfig {
  if (!probe) return { ok: false, reason: `${workload.key} has no readinessProbe` };
  const port = typeof probe.port === 'number' ? probe.port : workload.namedPorts.get(probe.port);
  if (port === undefined) return { ok: false, reason: `${workload.key}: readinessProbe port "${probe.port}" is not a container port` };
  return {
    ok: true,
    spec: {
      kind: probe.kind === 'httpGet' ? 'http' : 'tcp',
      port,
      ...(probe.kind === 'httpGet' ? { path: probe.path } : {}),
      intervalMs: probe.periodSeconds * 1000,
      timeoutMs: probe.timeoutSeconds * 1000,
      unhealthyThreshold: Math.max(1, probe.failureThreshold),
      healthyThreshold: Math.max(1, probe.successThreshold),
    },
  };
}

export interface HealthTarget {
  /** The balancing key of the endpoint (`ip:port` of its serving port). */
  readonly key: string;
  readonly ip: string;
  readonly spec: HealthCheckSpec;
}

/** Resolves true when the endpoint answered healthily; false or rejection means a failure. */
export type HealthProbe = (target: { readonly ip: string; readonly spec: HealthCheckSpec }, signal: AbortSignal) => Promise<boolean>;

export type HealthEvent = { readonly kind: 'unhealthy' | 'healthy'; readonly endpoint: string };

interface TargetState {
  target: HealthTarget;
  healthy: boolean;
  failures: number;
  successes: number;
  timer?: TimerHandle;
  inFlight?: AbortController;
}

export class HealthChecker {
  private readonly targets = new Map<string, TargetState>();

  constructor(
    private readonly probe: HealthProbe,
    private readonly clock: Clock,
    private readonly onEvent: (event: HealthEvent) => void = () => {},
  ) {}

  /**
   * The endpoints to check now. New ones start healthy, because Kubernetes already found the pod Ready
   * before it became an endpoint; ones that left stop being probed. A changed spec restarts the schedule.
   */
  setTargets(targets: readonly HealthTarget[]): void {
    const wanted = new Map(targets.map((t) => [t.key, t]));
    for (const [key, state] of this.targets) {
      const next = wanted.get(key);
      if (!next || JSON.stringify(next.spec) !== JSON.stringify(state.target.spec) || next.ip !== state.target.ip) {
        this.halt(state);
        this.targets.delete(key);
      }
    }
    for (const target of targets) {
      if (this.targets.has(target.key)) continue;
      const state: TargetState = { target, healthy: true, failures: 0, successes: 0 };
      this.targets.set(target.key, state);
      this.schedule(state, target.spec.intervalMs);
    }
  }

  /** Endpoints without a health check are healthy as far as this checker knows. */
  isHealthy(key: string): boolean {
    return this.targets.get(key)?.healthy ?? true;
  }

  unhealthyEndpoints(): string[] {
    return [...this.targets.values()].filter((s) => !s.healthy).map((s) => s.target.key);
  }

  stop(): void {
    for (const state of this.targets.values()) this.halt(state);
    this.targets.clear();
  }

  private halt(state: TargetState): void {
    state.timer?.cancel();
    state.inFlight?.abort();
    state.timer = undefined;
    state.inFlight = undefined;
  }

  private schedule(state: TargetState, delayMs: number): void {
    state.timer = this.clock.setTimer(delayMs, () => void this.check(state));
  }

  private async check(state: TargetState): Promise<void> {
    const { spec, ip } = state.target;
    const controller = new AbortController();
    state.inFlight = controller;
    // The timeout runs on the injected clock, so a probe that never answers fails on schedule in tests too.
    let timedOut = false;
    const timeout = this.clock.setTimer(spec.timeoutMs, () => {
      timedOut = true;
      controller.abort();
    });
    const answer = await Promise.race([
      this.probe({ ip, spec }, controller.signal).then((ok) => ok, () => false),
      new Promise<false>((resolve) => controller.signal.addEventListener('abort', () => resolve(false), { once: true })),
    ]);
    timeout.cancel();
    // A target removed or replaced while its probe ran must not be updated or rescheduled.
    if (this.targets.get(state.target.key) !== state || (controller.signal.aborted && !timedOut)) return;
    state.inFlight = undefined;
    this.record(state, answer && !timedOut);
    this.schedule(state, spec.intervalMs);
  }

  private record(state: TargetState, ok: boolean): void {
    const { spec, key } = state.target;
    if (ok) {
      state.failures = 0;
      state.successes++;
      if (!state.healthy && state.successes >= spec.healthyThreshold) {
        state.healthy = true;
        this.onEvent({ kind: 'healthy', endpoint: key });
      }
    } else {
      state.successes = 0;
      state.failures++;
      if (state.healthy && state.failures >= spec.unhealthyThreshold) {
        state.healthy = false;
        this.onEvent({ kind: 'unhealthy', endpoint: key });
      }
    }
  }
}
