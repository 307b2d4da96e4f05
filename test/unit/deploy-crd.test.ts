// The CustomResourceDefinition of Ambit's RateLimit (deploy/daemonset/crd-ratelimits.yaml and the Helm
// chart's crds/): it defines what the Kubernetes source watches, and its structural schema keeps every
// field the agent reads. A real API server silently prunes fields its schema does not list, so a field
// missing here would vanish between `kubectl apply` and the agent; the documented examples are walked
// through the schema the way the server prunes and validates them (type, required, enum, bounds).

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfigFile } from '../../agent/config/load.js';
import { RATE_LIMIT_VERSIONS } from '../../agent/config/rate-limit.js';
import { WATCHED_RESOURCES } from '../../agent/sources/kubernetes/resources.js';

const CRD_FILE = fileURLToPath(new URL('../../deploy/daemonset/crd-ratelimits.yaml', import.meta.url));
const CHART_CRDS = fileURLToPath(new URL('../../deploy/helm/ambit/crds', import.meta.url));
const DOC = fileURLToPath(new URL('../../docs/rate-limit.md', import.meta.url));

interface Schema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'boolean';
  properties?: Record<string, Schema>;
  additionalProperties?: Schema;
  items?: Schema;
  required?: string[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
}

interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; listKind: string; singular: string };
    versions: { name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: Schema } }[];
  };
}

const text = readFileSync(CRD_FILE, 'utf8');
const crd = parse(text) as Crd;
const schema = crd.spec.versions[0]!.schema.openAPIV3Schema;

/**
 * What the API server would say about `value` under `s`: the paths it would prune (not in the schema)
 * and the violations it would refuse the object for.
 */
function check(value: unknown, s: Schema, path: string, out: { pruned: string[]; invalid: string[] }): void {
  const kind = Array.isArray(value) ? 'array' : value === null ? 'null' : Number.isInteger(value) ? 'integer' : typeof value;
  if (s.type && kind !== s.type) {
    out.invalid.push(`${path}: ${kind}, schema says ${s.type}`);
    return;
  }
  if (s.enum && !s.enum.includes(value)) out.invalid.push(`${path}: ${JSON.stringify(value)} not in ${JSON.stringify(s.enum)}`);
  if (typeof value === 'number' && ((s.minimum !== undefined && value < s.minimum) || (s.maximum !== undefined && value > s.maximum))) out.invalid.push(`${path}: ${value} out of bounds`);
  if (typeof value === 'string' && s.minLength !== undefined && value.length < s.minLength) out.invalid.push(`${path}: shorter than ${s.minLength}`);
  if (Array.isArray(value)) value.forEach((item, i) => check(item, s.items ?? {}, `${path}[${i}]`, out));
  else if (value !== null && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    for (const key of s.required ?? []) if (!(key in object)) out.invalid.push(`${path}.${key}: required`);
    for (const [key, child] of Object.entries(object)) {
      const childSchema = s.properties?.[key] ?? s.additionalProperties;
      if (childSchema) check(child, childSchema, `${path}.${key}`, out);
      else out.pruned.push(`${path}.${key}`);
    }
  }
}

function verdict(object: { spec: unknown }): { pruned: string[]; invalid: string[] } {
  const out = { pruned: [] as string[], invalid: [] as string[] };
  check({ spec: object.spec }, schema, '', out);
  return out;
}

/** The YAML examples of docs/rate-limit.md, with the first one's commented-out `selector` alternative as another. */
function documentedExamples(): { spec: Record<string, unknown> }[] {
  const doc = readFileSync(DOC, 'utf8');
  const yaml = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(yaml, 'docs/rate-limit.md has a yaml example');
  const example = parse(yaml) as { spec: Record<string, unknown> };
  const selector = /^\s*# (selector: .*)$/m.exec(yaml)?.[1];
  assert.ok(selector, 'the example shows the selector alternative in a comment');
  const { targetRef: _target, ...rest } = example.spec;
  // Every further example (the global limits') goes through the schema too.
  const more = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].slice(1).map((m) => parse(m[1]!) as { spec: Record<string, unknown> });
  return [example, { ...example, spec: { ...rest, ...(parse(selector) as Record<string, unknown>) } }, ...more];
}

test('the CRD defines what the Kubernetes source watches, in the versions the agent reads', () => {
  const watched = WATCHED_RESOURCES.find((r) => r.kind === 'RateLimit');
  assert.ok(watched, 'the Kubernetes source watches RateLimit');
  assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
  assert.equal(crd.kind, 'CustomResourceDefinition');
  assert.equal(crd.metadata.name, `${watched.plural}.${watched.group}`);
  assert.equal(crd.metadata.namespace, undefined, 'CRDs are cluster-scoped');
  assert.equal(crd.spec.group, watched.group);
  assert.equal(crd.spec.scope, 'Namespaced');
  assert.deepEqual(crd.spec.names, { kind: 'RateLimit', listKind: 'RateLimitList', plural: watched.plural, singular: 'ratelimit', categories: ['ambit'] });
  assert.deepEqual(crd.spec.versions.map((v) => `${crd.spec.group}/${v.name}`), [...RATE_LIMIT_VERSIONS]);
  assert.deepEqual(crd.spec.versions.map((v) => v.name), watched.versions);
  assert.equal(crd.spec.versions.filter((v) => v.storage).length, 1, 'exactly one storage version');
  assert.ok(crd.spec.versions.every((v) => v.served));
  assert.equal(parseAllDocuments(text).length, 1);
});

test('the Helm chart installs the same CRD from crds/', () => {
  const files = readdirSync(CHART_CRDS);
  assert.deepEqual(files, ['ratelimits.ambit.dev.yaml']);
  assert.equal(readFileSync(join(CHART_CRDS, files[0]!), 'utf8'), text);
});

test('the documented RateLimits pass the schema whole (nothing pruned) and the agent accepts them', () => {
  for (const example of documentedExamples()) {
    assert.deepEqual(verdict(example), { pruned: [], invalid: [] }, JSON.stringify(example.spec));
    const parsed = parseConfigFile(JSON.stringify({ apiVersion: 'ambit.dev/v1alpha1', kind: 'RateLimit', metadata: { name: 'reviews', namespace: 'bookinfo' }, spec: example.spec }), 'example');
    assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error'), []);
    assert.equal(parsed.objects.length, 1);
  }
});

test('fields the agent refuses with a message reach it (not pruned); unknown fields and wrong types are caught', () => {
  // targetRef.namespace and .group are refused by the agent, by name; pruned, they would pass silently.
  const refusedByAgent = { spec: { targetRef: { group: 'apps', kind: 'Service', name: 'reviews', namespace: 'other' }, tokenBucket: { maxTokens: 1, fillInterval: '1s' } } };
  assert.deepEqual(verdict(refusedByAgent), { pruned: [], invalid: [] });
  const parsed = parseConfigFile(JSON.stringify({ apiVersion: 'ambit.dev/v1alpha1', kind: 'RateLimit', metadata: { name: 'x', namespace: 'ns' }, ...refusedByAgent }), 'refused');
  assert.deepEqual(parsed.diagnostics.filter((d) => d.severity === 'error').map((d) => d.field).sort(), ['spec.targetRef.group', 'spec.targetRef.namespace']);
  // The walk itself can fail: an unknown field is pruned, a string count and a missing name are invalid.
  assert.deepEqual(verdict({ spec: { targetRef: { kind: 'Service' }, tokenBucket: { maxTokens: '10', fillInterval: '1s', burst: 3 } } }), {
    pruned: ['.spec.tokenBucket.burst'],
    invalid: ['.spec.targetRef.name: required', '.spec.tokenBucket.maxTokens: string, schema says integer'],
  });
});
