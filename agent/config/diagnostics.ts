// Problems found in a user's configuration, each naming the file, line, object and field so that the
// operator can fix it without guessing. Errors reject one object; warnings are reported and kept.

import type { SourceLocation } from './kubernetes.js';

/** Identifies an object the way `kubectl` users name it: kind, namespace and name. */
export interface ObjectRef {
  readonly kind: string;
  /** "" for cluster-scoped kinds. */
  readonly namespace: string;
  /** "" when the object has no usable name (it is then reported, but cannot be identified). */
  readonly name: string;
}

export interface ConfigDiagnostic {
  readonly severity: 'error' | 'warning';
  readonly location: SourceLocation;
  /** Absent when the problem is with the document itself (YAML syntax, no kind). */
  readonly object?: ObjectRef;
  /** A path such as `spec.containers[0].ports[1].containerPort`; absent for whole-object problems. */
  readonly field?: string;
  /** What is wrong and what is expected, e.g. `expected an integer from 1 to 65535, got "http"`. */
  readonly message: string;
}

export function formatObjectRef(ref: ObjectRef): string {
  // An object whose name is missing is still worth naming by kind: "Pod: metadata.name: ...".
  if (ref.name === '') return ref.kind;
  return ref.namespace === '' ? `${ref.kind} ${ref.name}` : `${ref.kind} ${ref.namespace}/${ref.name}`;
}

/** `file:line: Kind ns/name: field: message` — one line, the format every Ambit config message uses. */
export function formatDiagnostic(d: ConfigDiagnostic): string {
  const parts = [`${d.location.file}:${d.location.line}`];
  if (d.object) parts.push(formatObjectRef(d.object));
  if (d.field) parts.push(d.field);
  parts.push(d.severity === 'warning' ? `warning: ${d.message}` : d.message);
  return parts.join(': ');
}
