// What `ambit explain` answers: the steps a connection or request takes through the mesh, each with its
// outcome and the configuration object that decided it (and where that object came from), the verdict
// those steps lead to, and for a denial the smallest change that would allow it.

import type { SourceLocation } from '../config/kubernetes.js';

export type StepName = 'capture' | 'destination' | 'transport' | 'l7-route' | 'peer-authentication' | 'authorization' | 'rate-limit';

export type Verdict = 'allow' | 'deny' | 'unreachable';

/** The object that decided a step: `Kind namespace/name`, or what the agent itself decided by default. */
export interface DecidedBy {
  readonly object: string;
  /** `file:line` for local YAML, the API path (and resourceVersion) in cluster mode, `xds:…` from istiod. */
  readonly from?: string;
}

export interface ExplainStep {
  readonly step: StepName;
  /** A short word a script can switch on: `captured`, `hbone`, `denied`, `STRICT`, … */
  readonly outcome: string;
  readonly decidedBy: DecidedBy;
  /** The node whose agent decided it. */
  readonly node?: string;
  /** What the step saw, one fact a line (endpoints, rules, weights). */
  readonly details: readonly string[];
  /** Set when the path ends here: the traffic is refused (deny) or goes nowhere (unreachable). */
  readonly ends?: Exclude<Verdict, 'allow'>;
}

export interface Explanation {
  readonly verdict: Verdict;
  readonly steps: readonly ExplainStep[];
  /** For a deny: the smallest change to configuration that would allow it; for unreachable: what is missing. */
  readonly fix?: string;
  /** The configuration snapshot each agent judged with, by node. */
  readonly snapshots: Readonly<Record<string, number>>;
}

/** The first step that ends the path decides; a path no step ends is allowed. */
export function verdictOf(steps: readonly ExplainStep[]): Verdict {
  return steps.find((s) => s.ends !== undefined)?.ends ?? 'allow';
}

/**
 * Where an object came from, as operators look it up: `file:line` for YAML; the API path and the
 * resourceVersion in force for the Kubernetes source, and `xds:…` for istiod's, whose line (of a one-line
 * JSON document) says nothing.
 */
export function formatSource(source: SourceLocation): string {
  const api = source.file.startsWith('kube-apiserver:') || source.file.startsWith('xds:');
  const where = source.line > 0 && !api ? `${source.file}:${source.line}` : source.file;
  return source.resourceVersion === undefined ? where : `${where} (resourceVersion ${source.resourceVersion})`;
}

/** `decidedBy` for a configuration object. */
export function byObject(object: { readonly kind: string; readonly metadata: { readonly namespace: string; readonly name: string }; readonly source: SourceLocation }): DecidedBy {
  const name = object.metadata.namespace ? `${object.metadata.namespace}/${object.metadata.name}` : object.metadata.name;
  return { object: `${object.kind} ${name}`, from: formatSource(object.source) };
}

/** `decidedBy` for a mesh object the snapshot keeps with its origin (a workload, a service). */
export function byMeshObject(kind: string, key: string, source: SourceLocation): DecidedBy {
  return { object: `${kind} ${key}`, from: formatSource(source) };
}

/** `decidedBy` when no object decided: the agent's built-in rule (Istio's default). */
export function byDefault(what: string): DecidedBy {
  return { object: `(default) ${what}` };
}
