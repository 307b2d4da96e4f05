// The Telemetry settings in force for one workload in one role (CLIENT for its outbound traffic, SERVER
// for its inbound), merged as Istio merges them: mesh (root namespace, no selector), then its namespace,
// then the workload's own (selector, or targetRefs naming the Service it serves); computed once per
// workload, role and snapshot, so the request path only looks the answer up.

import { type CustomTag, ISTIO_METRICS, type MetricsOverride, type StandardMetric, type TelemetryObject, type WorkloadMode } from '../config/parse-telemetry.js';
import { type Attributes, type Expression, evaluate } from '../config/telemetry-expression.js';
import { ROOT_NAMESPACE } from '../policy/authorization.js';
import { policiesTargeting } from '../policy/policy-targets.js';
import { matchesLabels } from '../state/build.js';
import type { MeshService, MeshSnapshot, Workload } from '../state/model.js';
import type { WorkloadStore } from '../state/store.js';
import type { RequestHeaders } from '../l7/request.js';
import type { ConnectionDescription } from './connections.js';
import type { RequestDescription, RequestOutcome } from './requests.js';

/** What one metric keeps for the workload: whether it is reported, and its label edits in order. */
export interface MetricPlan {
  readonly enabled: boolean;
  readonly remove: ReadonlySet<string>;
  readonly upsert: readonly (readonly [string, Expression])[];
}

export interface EffectiveTelemetry {
  /** Distinct per merged result, so label caches can key on it. */
  readonly id: number;
  /** True when no Telemetry applies: the callers keep their fast paths. */
  readonly isDefault: boolean;
  readonly accessLog: { readonly enabled: boolean; readonly filter?: Expression };
  readonly tracing: {
    readonly randomSamplingPercentage?: number;
    readonly disableSpanReporting: boolean;
    readonly customTags: readonly (readonly [string, CustomTag])[];
  };
  readonly metrics: Readonly<Record<StandardMetric, MetricPlan>>;
}

const STANDARD_METRICS = ISTIO_METRICS.filter((m): m is StandardMetric => m !== 'ALL_METRICS');

const KEEP: MetricPlan = { enabled: true, remove: new Set(), upsert: [] };
let nextId = 1;

/** Ambit's behaviour without any Telemetry: every metric, every access-log record, the tracer's own sampling. */
export const DEFAULT_TELEMETRY: EffectiveTelemetry = {
  id: 0,
  isDefault: true,
  accessLog: { enabled: true },
  tracing: { disableSpanReporting: false, customTags: [] },
  metrics: Object.fromEntries(STANDARD_METRICS.map((m) => [m, KEEP])) as Record<StandardMetric, MetricPlan>,
};

export type Role = 'CLIENT' | 'SERVER';

const hasScope = (t: TelemetryObject): boolean => t.spec.selector !== undefined || t.spec.targetRefs.length > 0;

/** The Telemetry objects that apply, least specific first (mesh, namespace, workload). */
export function telemetriesFor(snapshot: MeshSnapshot, workload: Workload | undefined, role: Role, service?: MeshService): TelemetryObject[] {
  const all = snapshot.istio.telemetries;
  const mesh = all.filter((t) => t.metadata.namespace === ROOT_NAMESPACE && !hasScope(t));
  if (!workload) return mesh;
  const ns = workload.namespace;
  const namespace = ns === ROOT_NAMESPACE ? [] : all.filter((t) => t.metadata.namespace === ns && !hasScope(t));
  const selecting = all.filter((t) => t.metadata.namespace === ns && t.spec.selector !== undefined && matchesLabels(t.spec.selector.matchLabels, workload.labels));
  // targetRefs bind to a Service's waypoint in Istio, i.e. the serving side of that Service's traffic.
  const targeting = role === 'SERVER' ? policiesTargeting(snapshot, all.filter((t) => t.spec.targetRefs.length > 0), service) : [];
  return [...mesh, ...namespace, ...selecting, ...targeting];
}

const inRole = (mode: WorkloadMode, role: Role): boolean => mode === 'CLIENT_AND_SERVER' || mode === role;

/** Merges the applying objects: later (more specific) values override, metric overrides apply in order. */
export function mergeTelemetry(objects: readonly TelemetryObject[], role: Role): EffectiveTelemetry {
  if (objects.length === 0) return DEFAULT_TELEMETRY;
  let logEnabled = true;
  let filter: Expression | undefined;
  for (const rule of objects.flatMap((o) => o.spec.accessLogging).filter((r) => inRole(r.mode, role))) {
    if (rule.disabled !== undefined) logEnabled = !rule.disabled;
    if (rule.filter) filter = rule.filter.expression;
  }
  let sampling: number | undefined;
  let disableSpanReporting = false;
  let customTags: readonly (readonly [string, CustomTag])[] = [];
  for (const rule of objects.flatMap((o) => o.spec.tracing).filter((r) => inRole(r.mode, role))) {
    if (rule.randomSamplingPercentage !== undefined) sampling = rule.randomSamplingPercentage;
    if (rule.disableSpanReporting !== undefined) disableSpanReporting = rule.disableSpanReporting;
    // Istio: written customTags replace the parent's map whole.
    if (rule.customTags) customTags = rule.customTags;
  }
  const overrides = objects.flatMap((o) => o.spec.metrics).filter((o) => inRole(o.mode, role));
  const metrics = Object.fromEntries(STANDARD_METRICS.map((m) => [m, metricPlan(m, overrides)])) as Record<StandardMetric, MetricPlan>;
  return {
    id: nextId++,
    isDefault: false,
    accessLog: { enabled: logEnabled, ...(filter ? { filter } : {}) },
    tracing: { ...(sampling !== undefined ? { randomSamplingPercentage: sampling } : {}), disableSpanReporting, customTags },
    metrics,
  };
}

function metricPlan(metric: StandardMetric, overrides: readonly MetricsOverride[]): MetricPlan {
  let enabled = true;
  const remove = new Set<string>();
  const upsert = new Map<string, Expression>();
  for (const o of overrides) {
    if (o.metric !== 'ALL_METRICS' && o.metric !== metric) continue;
    if (o.disabled !== undefined) enabled = !o.disabled;
    for (const [tag, op] of o.tagOverrides) {
      if (op.operation === 'REMOVE') {
        remove.add(tag);
        upsert.delete(tag);
      } else {
        upsert.set(tag, op.value);
        remove.delete(tag);
      }
    }
  }
  return enabled && remove.size === 0 && upsert.size === 0 ? KEEP : { enabled, remove, upsert: [...upsert] };
}

/** A metric's labels after its plan: removed tags gone, upserted ones set (an absent attribute gives "unknown"). */
export function applyTagOverrides(labels: Readonly<Record<string, string>>, plan: MetricPlan, attributes: Attributes): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) if (!plan.remove.has(k)) out[k] = v;
  for (const [tag, expression] of plan.upsert) {
    const value = evaluate(expression, attributes);
    out[tag] = value === undefined ? 'unknown' : String(value);
  }
  return out;
}

/** Whether a record passes the access-log settings (a filter that cannot be evaluated drops it, as Envoy's CEL filter does). */
export function shouldLog(policy: EffectiveTelemetry, attributes: Attributes): boolean {
  if (!policy.accessLog.enabled) return false;
  return policy.accessLog.filter === undefined || evaluate(policy.accessLog.filter, attributes) === true;
}

/** Looks up the merged Telemetry of a connection's reporting workload, cached per snapshot. */
export class TelemetryPolicies {
  #snapshot: MeshSnapshot | undefined;
  /** Per workload, per role: 'CLIENT', or the Service served ('SERVER' when none). */
  #byWorkload = new WeakMap<object, Map<MeshService | Role, EffectiveTelemetry>>();
  readonly #noWorkload = {};

  constructor(private readonly store?: WorkloadStore) {}

  /** The reporter's settings: the source workload for outbound, the destination for inbound. */
  of(c: ConnectionDescription): EffectiveTelemetry {
    return c.direction === 'outbound' ? this.forWorkload(c.src.workload, 'CLIENT') : this.forWorkload(c.dst.workload, 'SERVER', c.dst.service);
  }

  /** The settings of `workload` in `role`; `service` is the Service it serves (SERVER only), for targetRefs. */
  forWorkload(workload: Workload | undefined, role: Role, service?: MeshService): EffectiveTelemetry {
    const snapshot = this.store?.current;
    if (!snapshot || snapshot.istio.telemetries.length === 0) return DEFAULT_TELEMETRY;
    if (snapshot !== this.#snapshot) {
      this.#snapshot = snapshot;
      this.#byWorkload = new WeakMap();
    }
    let perService = this.#byWorkload.get(workload ?? this.#noWorkload);
    if (!perService) {
      perService = new Map();
      this.#byWorkload.set(workload ?? this.#noWorkload, perService);
    }
    const slot = role === 'CLIENT' ? role : (service ?? role);
    let merged = perService.get(slot);
    if (!merged) {
      merged = mergeTelemetry(telemetriesFor(snapshot, workload, role, service), role);
      perService.set(slot, merged);
    }
    return merged;
  }
}

/** What a connection offers expressions: the request attributes are absent. */
export function connectionAttributes(c: ConnectionDescription): Attributes {
  const port = Number(/:(\d+)$/.exec(c.dst.addr)?.[1]);
  return { 'connection.mtls': c.securityPolicy === 'mutual_tls', ...(port > 0 ? { 'destination.port': port } : {}) };
}

/** What a finished request offers expressions. */
export function requestAttributes(d: RequestDescription, o: RequestOutcome): Attributes {
  return {
    ...connectionAttributes(d.connection),
    'response.code': o.responseCode,
    'request.method': d.method,
    // Envoy's request.path keeps the query string, as the request line has it.
    'request.path': d.path,
    'request.url_path': d.path.split('?', 1)[0]!,
    'request.host': d.authority,
  };
}

/** Telemetry customTags: a literal, an environment variable of the agent, or a request header, each with its default. */
export function customTagValues(tags: EffectiveTelemetry['tracing']['customTags'], headers: RequestHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, tag] of tags) {
    if (tag.kind === 'literal') out[name] = tag.value;
    else if (tag.kind === 'environment') out[name] = process.env[tag.name] ?? tag.defaultValue;
    else out[name] = headers.get(tag.name)?.[0] ?? tag.defaultValue;
  }
  return out;
}
