// Writes Gateway API route status back to the API server, as the API asks of every implementation:
// one `status.parents[]` entry per parentRef Ambit binds (a Service), with its controllerName and the
// Accepted and ResolvedRefs conditions of agent/config/gateway-api/to-virtual-service.ts. Entries of
// other controllers are kept as they are; an entry is written only when it differs from what the
// object already holds, so that every agent of a cluster, agreeing, writes it once between them.

import { formatObjectRef } from '../../config/diagnostics.js';
import type { RouteCondition } from '../../config/gateway-api/parent-status.js';
import type { MeshSnapshot } from '../../state/model.js';
import type { Logger } from '../../telemetry/log.js';
import type { KubeApiClient, RawObject } from './api-client.js';
import { type WatchedResource, collectionPath } from './resources.js';

/** The controllerName Ambit's entries carry (a domain-prefixed path, as GatewayController requires). */
export const GATEWAY_CONTROLLER_NAME = 'ambit.dev/gateway-controller';

const ROUTE_KINDS = new Set(['HTTPRoute', 'GRPCRoute', 'TCPRoute']);

interface Observed {
  readonly resource: WatchedResource;
  readonly raw: RawObject;
  /** Why the object's current version was refused by validation, when it was. */
  readonly refusal?: string;
}

type JsonParent = { parentRef: Record<string, unknown>; controllerName: string; conditions: Record<string, unknown>[] };

export class RouteStatusWriter {
  readonly #client: KubeApiClient;
  readonly #log: Logger;
  readonly #observed = new Map<string, Observed>();
  readonly #inFlight = new Set<string>();
  readonly #again = new Set<string>();
  readonly #failures = new Map<string, string>();
  /** What was last written per route: never the same twice, so that a server that stores it differently cannot start a write loop. */
  readonly #written = new Map<string, string>();
  #snapshot: MeshSnapshot | undefined;
  readonly #pending = new Set<Promise<void>>();

  constructor(client: KubeApiClient, log: Logger) {
    this.#client = client;
    this.#log = log;
  }

  /** A route as the API server has it now (status included), and whether its current version was refused. */
  observe(resource: WatchedResource, raw: RawObject, refusal: string | undefined): void {
    if (!ROUTE_KINDS.has(resource.kind)) return;
    const key = keyOf(resource.kind, raw);
    if (!key) return;
    this.#observed.set(key, { resource, raw, ...(refusal !== undefined ? { refusal } : {}) });
    this.#check(key);
  }

  /** The route is gone (`kind/namespace/name`, the source's own key). */
  forget(key: string): void {
    this.#observed.delete(key);
    this.#written.delete(key);
  }

  /** A new snapshot is in force: every route's status is compared with what it now says. */
  reconcile(snapshot: MeshSnapshot): void {
    this.#snapshot = snapshot;
    for (const key of this.#observed.keys()) this.#check(key);
  }

  /** Resolves once every write started so far has finished. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  #check(key: string): void {
    if (!this.#snapshot) return;
    if (this.#inFlight.has(key)) {
      this.#again.add(key);
      return;
    }
    const observed = this.#observed.get(key);
    if (!observed) return;
    const desired = this.#desired(observed, this.#snapshot);
    if (!desired) return;
    const current = parentsOf(observed.raw);
    const others = current.filter((p) => p.controllerName !== GATEWAY_CONTROLLER_NAME);
    const ours = current.filter((p) => p.controllerName === GATEWAY_CONTROLLER_NAME);
    const want = JSON.stringify(desired.map(comparable));
    if (JSON.stringify(ours.map(comparable)) === want || this.#written.get(key) === want) return;
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    // lastTransitionTime moves only when a condition's status changes, as metav1.Condition intends.
    const stamped = desired.map((p) => {
      const before = ours.find((o) => JSON.stringify(o.parentRef) === JSON.stringify(p.parentRef));
      return {
        ...p,
        conditions: p.conditions.map((c) => {
          const old = before?.conditions.find((o) => o['type'] === c['type']);
          return { ...c, lastTransitionTime: old && old['status'] === c['status'] && typeof old['lastTransitionTime'] === 'string' ? old['lastTransitionTime'] : now };
        }),
      };
    });
    this.#write(key, observed, [...others, ...stamped], want);
  }

  #desired(observed: Observed, snapshot: MeshSnapshot): JsonParent[] | undefined {
    const { raw } = observed;
    const generation = typeof raw.metadata?.['generation'] === 'number' ? (raw.metadata['generation'] as number) : undefined;
    const gen = generation !== undefined ? { observedGeneration: generation } : {};
    const entry = snapshot.gatewayApi.statuses.find(
      (s) => s.route.kind === raw.kind && s.route.metadata.namespace === raw.metadata?.namespace && s.route.metadata.name === raw.metadata?.name,
    );
    const current = entry && (generation === undefined || entry.route.metadata.generation === undefined || entry.route.metadata.generation === generation);
    if (entry && current) {
      return entry.parents.map((p) => ({
        parentRef: {
          group: p.parentRef.group,
          kind: p.parentRef.kind,
          namespace: p.parentRef.namespace,
          name: p.parentRef.name,
          ...(p.parentRef.port !== undefined ? { port: p.parentRef.port } : {}),
          ...(p.parentRef.sectionName !== undefined ? { sectionName: p.parentRef.sectionName } : {}),
        },
        controllerName: GATEWAY_CONTROLLER_NAME,
        conditions: p.conditions.map((c: RouteCondition) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message, ...gen })),
      }));
    }
    if (observed.refusal === undefined) return undefined;
    // The version on the server was refused (the agent keeps serving the last good one, if any): say so
    // on every Service it names, so that `kubectl get httproute -o yaml` shows why.
    const spec = raw['spec'] as { parentRefs?: unknown } | undefined;
    const refs = Array.isArray(spec?.parentRefs) ? (spec.parentRefs as Record<string, unknown>[]) : [];
    return refs
      .filter((r) => r['kind'] === 'Service' && (r['group'] ?? '') === '')
      .map((r) => ({
        parentRef: { group: '', kind: 'Service', namespace: typeof r['namespace'] === 'string' ? r['namespace'] : raw.metadata?.namespace, name: r['name'], ...(r['port'] !== undefined ? { port: r['port'] } : {}) },
        controllerName: GATEWAY_CONTROLLER_NAME,
        conditions: [{ type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message: observed.refusal ?? '', ...gen }],
      }));
  }

  #write(key: string, observed: Observed, parents: JsonParent[], want: string): void {
    this.#inFlight.add(key);
    const { resource, raw } = observed;
    const version = raw.apiVersion?.split('/').pop() ?? resource.versions[0]!;
    const collection = collectionPath(resource, version).replace(new RegExp(`/${resource.plural}$`), `/namespaces/${raw.metadata?.namespace ?? 'default'}/${resource.plural}`);
    const path = `${collection}/${raw.metadata?.name}/status`;
    const body = { metadata: { resourceVersion: raw.metadata?.resourceVersion }, status: { parents } };
    const done = this.#client.mergePatch(path, body).then((result) => {
      this.#inFlight.delete(key);
      const name = formatObjectRef({ kind: resource.kind, namespace: raw.metadata?.namespace ?? '', name: raw.metadata?.name ?? '' });
      if (result.ok) {
        this.#failures.delete(key);
        this.#written.set(key, want);
        this.#log.info({ route: name }, `${name}: status written (${parents.filter((p) => p.controllerName === GATEWAY_CONTROLLER_NAME).length} parents)`);
        const updated = result.value as RawObject;
        // The answer is the object as stored: comparing against it stops a second, identical write.
        if (updated && typeof updated === 'object' && updated.metadata) this.#observed.set(key, { ...observed, raw: updated });
      } else if (result.error.status !== 409 && this.#failures.get(key) !== result.error.message) {
        // 409: someone changed the route meanwhile; its watch event brings the new version to write from.
        this.#failures.set(key, result.error.message);
        this.#log.warn({ route: name, status: result.error.status }, `${name}: writing its status failed: ${result.error.message}; the routes apply all the same, and the agent writes again on the next change (RBAC: patch on ${resource.plural}/status)`);
      }
      if (this.#again.delete(key)) this.#check(key);
    });
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
  }
}

function keyOf(kind: string, raw: RawObject): string | undefined {
  const name = raw.metadata?.name;
  return typeof name === 'string' && name !== '' ? `${kind}/${raw.metadata?.namespace ?? ''}/${name}` : undefined;
}

function parentsOf(raw: RawObject): JsonParent[] {
  const status = raw['status'] as { parents?: unknown } | undefined;
  return Array.isArray(status?.parents) ? (status.parents as JsonParent[]) : [];
}

/** An entry without its timestamps, keys in a fixed order: what decides whether a write is needed. */
function comparable(p: JsonParent): unknown {
  const ref = p.parentRef ?? {};
  return {
    parentRef: Object.fromEntries(Object.keys(ref).sort().map((k) => [k, ref[k]])),
    controllerName: p.controllerName,
    conditions: (p.conditions ?? []).map((c) => [c['type'], c['status'], c['reason'], c['message'], c['observedGeneration']]),
  };
}
