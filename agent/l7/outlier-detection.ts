// Passive health (Istio's outlierDetection, Envoy's outlier detector): consecutive 5xx or gateway errors
// eject an endpoint from its cluster's balancing set for baseEjectionTime × the times it has been
// ejected lately; it returns on the first interval tick after that. Ejections are capped by
// maxEjectionPercent. Time comes from an injectable clock.

import type { OutlierDetection } from '../config/istio-networking.js';
import type { Clock, TimerHandle } from './clock.js';

export interface OutlierSettings {
  /** 0 disables. Istio leaves it to Envoy's default, 5, when unset. */
  readonly consecutive5xxErrors: number;
  /** 502, 503, 504 and local-origin failures; 0 (Istio's default) disables. */
  readonly consecutiveGatewayErrors: number;
  /** Counted only with splitExternalLocalOriginErrors; Envoy's default 5. */
  readonly consecutiveLocalOriginFailures: number;
  readonly splitExternalLocalOriginErrors: boolean;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  /** Envoy's max_ejection_time: 300 s, or baseEjectionTime when that is longer. */
  readonly maxEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  /** Below this share of healthy endpoints the cluster balances over all of them (Envoy's panic mode). */
  readonly minHealthPercent: number;
}

/** Istio's translation of outlierDetection; undefined when the policy has none (no detection at all). */
export function outlierSettings(od: OutlierDetection | undefined): OutlierSettings | undefined {
  if (!od) return undefined;
  const base = od.baseEjectionTimeMs ?? 30_000;
  return {
    consecutive5xxErrors: od.consecutive5xxErrors ?? 5,
    consecutiveGatewayErrors: od.consecutiveGatewayErrors ?? 0,
    consecutiveLocalOriginFailures: od.consecutiveLocalOriginFailures ?? 5,
    splitExternalLocalOriginErrors: od.splitExternalLocalOriginErrors,
    intervalMs: od.intervalMs ?? 10_000,
    baseEjectionTimeMs: base,
    maxEjectionTimeMs: Math.max(300_000, base),
    maxEjectionPercent: od.maxEjectionPercent ?? 10,
    minHealthPercent: od.minHealthPercent ?? 0,
  };
}

/** How one request to an endpoint ended, as the detector needs it. */
export type UpstreamResult =
  | { readonly kind: 'response'; readonly status: number }
  /** Failures of the proxy's own making: the connection failed, timed out or was reset. */
  | { readonly kind: 'local-failure'; readonly reason: 'connect-failure' | 'timeout' | 'reset' };

export type OutlierEvent =
  | { readonly kind: 'ejected'; readonly endpoint: string; readonly reason: 'consecutive-5xx' | 'consecutive-gateway' | 'consecutive-local-origin'; readonly untilMs: number; readonly ejections: number }
  | { readonly kind: 'ejection-refused'; readonly endpoint: string; readonly reason: 'max-ejection-percent' }
  | { readonly kind: 'returned'; readonly endpoint: string };

interface Monitor {
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocal: number;
  /** Envoy's eject-time back-off: grows with each ejection, shrinks by one per healthy interval. */
  multiplier: number;
  ejectedAt?: number;
  returnedAt?: number;
}

export class OutlierDetector {
  private readonly monitors = new Map<string, Monitor>();
  private timer?: TimerHandle;

  constructor(
    private settings: OutlierSettings,
    private readonly clock: Clock,
    private readonly onEvent: (event: OutlierEvent) => void = () => {},
  ) {}

  updateSettings(settings: OutlierSettings): void {
    const restart = this.timer !== undefined && settings.intervalMs !== this.settings.intervalMs;
    this.settings = settings;
    if (restart) {
      this.stop();
      this.start();
    }
  }

  /** The cluster's endpoints now: new ones start healthy, departed ones are forgotten. */
  setEndpoints(keys: Iterable<string>): void {
    const current = new Set(keys);
    for (const key of this.monitors.keys()) if (!current.has(key)) this.monitors.delete(key);
    for (const key of current) if (!this.monitors.has(key)) this.monitors.set(key, freshMonitor());
  }

  isEjected(key: string): boolean {
    return this.monitors.get(key)?.ejectedAt !== undefined;
  }

  ejectedEndpoints(): string[] {
    return [...this.monitors].filter(([, m]) => m.ejectedAt !== undefined).map(([k]) => k);
  }

  /** Records one result; may eject the endpoint at once, as Envoy's consecutive-error detectors do. */
  report(key: string, result: UpstreamResult): OutlierEvent | undefined {
    const m = this.monitors.get(key);
    if (!m || m.ejectedAt !== undefined) return undefined;
    const s = this.settings;
    let status: number | undefined;
    if (result.kind === 'response') status = result.status;
    else if (s.splitExternalLocalOriginErrors) {
      m.consecutiveLocal++;
      return s.consecutiveLocalOriginFailures > 0 && m.consecutiveLocal >= s.consecutiveLocalOriginFailures ? this.eject(key, m, 'consecutive-local-origin') : undefined;
    } else {
      // Without the split, Envoy counts its own failures as the status it answers: 504 on timeout, else 503.
      status = result.reason === 'timeout' ? 504 : 503;
    }
    if (result.kind === 'response' && s.splitExternalLocalOriginErrors) m.consecutiveLocal = 0;
    if (status < 500 || status > 599) {
      m.consecutive5xx = 0;
      m.consecutiveGateway = 0;
      return undefined;
    }
    m.consecutive5xx++;
    if (status === 502 || status === 503 || status === 504) m.consecutiveGateway++;
    else m.consecutiveGateway = 0;
    if (s.consecutiveGatewayErrors > 0 && m.consecutiveGateway >= s.consecutiveGatewayErrors) return this.eject(key, m, 'consecutive-gateway');
    if (s.consecutive5xxErrors > 0 && m.consecutive5xx >= s.consecutive5xxErrors) return this.eject(key, m, 'consecutive-5xx');
    return undefined;
  }

  /**
   * The interval tick: returns endpoints whose ejection time is over, and lets the back-off of endpoints
   * that stayed healthy for a whole interval decay. Runs by itself after start(); tests may call it.
   */
  sweep(): OutlierEvent[] {
    const now = this.clock.now();
    const events: OutlierEvent[] = [];
    for (const [key, m] of this.monitors) {
      if (m.ejectedAt === undefined) {
        if (m.multiplier > 0 && m.returnedAt !== undefined && now - m.returnedAt >= this.settings.intervalMs) {
          m.multiplier--;
          m.returnedAt = now;
        }
        continue;
      }
      if (now - m.ejectedAt >= this.ejectionTime(m)) {
        m.ejectedAt = undefined;
        m.returnedAt = now;
        const event: OutlierEvent = { kind: 'returned', endpoint: key };
        events.push(event);
        this.onEvent(event);
      }
    }
    return events;
  }

  start(): void {
    if (this.timer) return;
    const tick = (): void => {
      this.sweep();
      this.timer = this.clock.setTimer(this.settings.intervalMs, tick);
    };
    this.timer = this.clock.setTimer(this.settings.intervalMs, tick);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private ejectionTime(m: Monitor): number {
    return Math.min(this.settings.baseEjectionTimeMs * Math.max(1, m.multiplier), this.settings.maxEjectionTimeMs);
  }

  private eject(key: string, m: Monitor, reason: 'consecutive-5xx' | 'consecutive-gateway' | 'consecutive-local-origin'): OutlierEvent {
    m.consecutive5xx = 0;
    m.consecutiveGateway = 0;
    m.consecutiveLocal = 0;
    const ejectedNow = [...this.monitors.values()].filter((x) => x.ejectedAt !== undefined).length;
    // Envoy checks the share the cluster would have ejected after this one; with Istio's default of 10%
    // a cluster needs ten endpoints before any can go, which is why examples raise the cap.
    if ((100 * (ejectedNow + 1)) / this.monitors.size > this.settings.maxEjectionPercent) {
      const refused: OutlierEvent = { kind: 'ejection-refused', endpoint: key, reason: 'max-ejection-percent' };
      this.onEvent(refused);
      return refused;
    }
    const now = this.clock.now();
    if (this.settings.baseEjectionTimeMs * m.multiplier < this.settings.maxEjectionTimeMs) m.multiplier++;
    m.ejectedAt = now;
    const event: OutlierEvent = { kind: 'ejected', endpoint: key, reason, untilMs: now + this.ejectionTime(m), ejections: m.multiplier };
    this.onEvent(event);
    return event;
  }
}

function freshMonitor(): Monitor {
  return { consecutive5xx: 0, consecutiveGateway: 0, consecutiveLocal: 0, multiplier: 0 };
}
