// Active health checks: each endpoint is probed on its own schedule (TCP connect or HTTP GET), leaves
// the balancing set after `unhealthyThreshold` failures in a row and returns after `healthyThreshold`
// successes. Configured from the pod's readinessProbe (Kubernetes semantics: periodSeconds,
// timeoutSeconds, failureThreshold, successThreshold), so users configure nothing new; a pod without a
// readinessProbe is not actively checked. The probe and the clock are injected: the data path supplies
// real TCP/HTTP probes (proxy/health-probe.ts) for the targets cluster-health.ts picks, tests supply
// scripted ones.

import type { Probe, ProbeHeader } from '../config/kubernetes.js';
import type { Workload } from '../state/model.js';
import type { Clock, TimerHandle } from './clock.js';

export interface HealthCheckSpec {
  readonly kind: 'http' | 'tcp';
  readonly port: number;
  /** HTTP only: the GET path; 200-399 is healthy, as for a kubelet. */
  readonly path?: string;
  /** HTTP only: over TLS, the certificate not verified (a kubelet's HTTPS probe). */
  readonly https?: boolean;
  /** HTTP only: the readinessProbe's httpHeaders. */
  readonly headers?: readonly ProbeHeader[];
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
      ...(probe.kind === 'httpGet'
        ? { path: probe.path, ...(probe.scheme === 'HTTPS' ? { https: true } : {}), ...(probe.httpHeaders.length > 0 ? { headers: probe.httpHeaders } : {}) }
        : {}),
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

/** A probe's verdict: true is healthy; false, a failure with its reason, or a rejection is a failure. */
export type ProbeAnswer = boolean | { readonly ok: false; readonly reason: string };

/** Probes one endpoint; `signal` aborts when the spec's timeout passes or the target goes away. */
export type HealthProbe<T extends HealthTarget = HealthTarget> = (target: T, signal: AbortSignal) => Promise<ProbeAnswer>;

export type HealthEvent = {
  readonly kind: 'unhealthy' | 'healthy';
  readonly endpoint: string;
  /** Why the last probe failed (unhealthy only). */
  readonly reason?: string;
};

interface TargetState<T extends HealthTarget> {
  target: T;
  healthy: boolean;
  failures: number;
  successes: number;
  timer?: TimerHandle;
  inFlight?: AbortController;
}

/** Checks targets of type T; the probe receives the target as last given, with whatever T carries besides. */
export class HealthChecker<T extends HealthTarget = HealthTarget> {
  private readonly targets = new Map<string, TargetState<T>>();

  constructor(
    private readonly probe: HealthProbe<T>,
    private readonly clock: Clock,
    private readonly onEvent: (event: HealthEvent) => void = () => {},
  ) {}

  /**
   * The endpoints to check now. New ones start healthy, because Kubernetes already found the pod Ready
   * before it became an endpoint; ones that left stop being probed. A changed spec or IP restarts the
   * schedule; other changes (what T adds) apply from the next probe on, keeping the verdict.
   */
  setTargets(targets: readonly T[]): void {
    const wanted = new Map(targets.map((t) => [t.key, t]));
    for (const [key, state] of this.targets) {
      const next = wanted.get(key);
      if (!next || JSON.stringify(next.spec) !== JSON.stringify(state.target.spec) || next.ip !== state.target.ip) {
        this.halt(state);
        this.targets.delete(key);
      }
    }
    for (const target of targets) {
      const existing = this.targets.get(target.key);
      if (existing) {
        existing.target = target;
        continue;
      }
      const state: TargetState<T> = { target, healthy: true, failures: 0, successes: 0 };
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

  private halt(state: TargetState<T>): void {
    state.timer?.cancel();
    state.inFlight?.abort();
    state.timer = undefined;
    state.inFlight = undefined;
  }

  private schedule(state: TargetState<T>, delayMs: number): void {
    state.timer = this.clock.setTimer(delayMs, () => void this.check(state));
  }

  private async check(state: TargetState<T>): Promise<void> {
    const { spec } = state.target;
    const controller = new AbortController();
    state.inFlight = controller;
    // The timeout runs on the injected clock, so a probe that never answers fails on schedule in tests too.
    let timedOut = false;
    const timeout = this.clock.setTimer(spec.timeoutMs, () => {
      timedOut = true;
      controller.abort();
    });
    const answer = await Promise.race([
      this.probe(state.target, controller.signal).catch((err: unknown): ProbeAnswer => ({ ok: false, reason: err instanceof Error ? err.message : String(err) })),
      new Promise<ProbeAnswer>((resolve) => controller.signal.addEventListener('abort', () => resolve(false), { once: true })),
    ]);
    timeout.cancel();
    // A target removed or replaced while its probe ran must not be updated or rescheduled.
    if (this.targets.get(state.target.key) !== state || (controller.signal.aborted && !timedOut)) return;
    state.inFlight = undefined;
    if (timedOut) this.record(state, false, `no answer within ${spec.timeoutMs} ms`);
    else if (answer === true) this.record(state, true);
    else this.record(state, false, answer === false ? 'probe failed' : answer.reason);
    this.schedule(state, spec.intervalMs);
  }

  private record(state: TargetState<T>, ok: boolean, reason?: string): void {
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
        this.onEvent({ kind: 'unhealthy', endpoint: key, ...(reason ? { reason } : {}) });
      }
    }
  }
}
