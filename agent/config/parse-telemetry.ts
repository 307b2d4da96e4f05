// Telemetry (telemetry.istio.io): the access-logging, tracing and metrics settings of the mesh (root
// namespace), a namespace or some workloads (selector or targetRefs), parsed with their CEL
// expressions checked here, so that agent/telemetry/telemetry-policy.ts only merges accepted values.

import { readWorkloadSelector } from './istio-common.js';
import type { WorkloadSelector } from './istio-networking.js';
import { type PolicyTargetReference, readTargetRefs } from './istio-security.js';
import type { ObjectBase } from './kubernetes.js';
import { type Expression, parseTelemetryExpression } from './telemetry-expression.js';
import type { Field, MapReader } from './yaml-reader.js';

export const TELEMETRY_VERSIONS = ['telemetry.istio.io/v1', 'telemetry.istio.io/v1alpha1'] as const;

/** CLIENT: the workload sends (outbound, reporter=source); SERVER: it receives (inbound). */
export const WORKLOAD_MODES = ['CLIENT_AND_SERVER', 'CLIENT', 'SERVER'] as const;
export type WorkloadMode = (typeof WORKLOAD_MODES)[number];

/** Istio's standard metrics, as MetricSelector.IstioMetric names them (gRPC message counts Ambit does not keep). */
export const ISTIO_METRICS = [
  'ALL_METRICS',
  'REQUEST_COUNT',
  'REQUEST_DURATION',
  'REQUEST_SIZE',
  'RESPONSE_SIZE',
  'TCP_OPENED_CONNECTIONS',
  'TCP_CLOSED_CONNECTIONS',
  'TCP_SENT_BYTES',
  'TCP_RECEIVED_BYTES',
] as const;
export type IstioMetric = (typeof ISTIO_METRICS)[number];
export type StandardMetric = Exclude<IstioMetric, 'ALL_METRICS'>;

export type TagOverride = { readonly operation: 'REMOVE' } | { readonly operation: 'UPSERT'; readonly value: Expression };

export interface MetricsOverride {
  readonly metric: IstioMetric;
  readonly mode: WorkloadMode;
  /** undefined: inherits what a less specific level said. */
  readonly disabled?: boolean;
  readonly tagOverrides: readonly (readonly [string, TagOverride])[];
}

export type CustomTag =
  | { readonly kind: 'literal'; readonly value: string }
  | { readonly kind: 'environment'; readonly name: string; readonly defaultValue: string }
  | { readonly kind: 'header'; readonly name: string; readonly defaultValue: string };

export interface TracingRule {
  readonly mode: WorkloadMode;
  readonly randomSamplingPercentage?: number;
  readonly disableSpanReporting?: boolean;
  /** undefined inherits; written (even empty) replaces the parent's whole map, as Istio documents. */
  readonly customTags?: readonly (readonly [string, CustomTag])[];
}

export interface AccessLoggingRule {
  readonly mode: WorkloadMode;
  readonly disabled?: boolean;
  readonly filter?: { readonly text: string; readonly expression: Expression };
}

export interface TelemetryObject extends ObjectBase<'Telemetry'> {
  readonly spec: {
    readonly selector?: WorkloadSelector;
    readonly targetRefs: readonly PolicyTargetReference[];
    readonly tracing: readonly TracingRule[];
    readonly metrics: readonly MetricsOverride[];
    readonly accessLogging: readonly AccessLoggingRule[];
  };
}

const TAG_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const ONE_PROVIDER = "Ambit has one provider per signal (its access log, its OTLP trace exporter, its /metrics); providers is ignored";

export function parseTelemetry(root: MapReader, base: ObjectBase<'Telemetry'>): TelemetryObject {
  const spec = root.map('spec');
  const selector = spec && readWorkloadSelector(spec, 'selector');
  const targetRefs = spec ? readTargetRefs(spec) : [];
  if (spec && selector && targetRefs.length > 0) root.ctx.error(spec.line, spec.path, 'expected only one of selector and targetRefs, got both');
  const tracing = (spec?.maps('tracing') ?? []).map(parseTracing);
  const metrics = (spec?.maps('metrics') ?? []).flatMap(parseMetrics);
  const accessLogging = (spec?.maps('accessLogging') ?? []).map(parseAccessLogging);
  return { ...base, spec: { ...(selector ? { selector } : {}), targetRefs, tracing, metrics, accessLogging } };
}

/** A pair as a one-item list (flatMap would spread the pair itself). */
function present<T>(value: T | undefined): T[] {
  return value === undefined ? [] : [value];
}

function readMode(m: MapReader): WorkloadMode {
  return m.map('match')?.enum('mode', WORKLOAD_MODES) ?? 'CLIENT_AND_SERVER';
}

function ignoreProviders(m: MapReader): void {
  const providers = m.get('providers');
  if (providers) providers.warn(ONE_PROVIDER);
}

function parseTracing(m: MapReader): TracingRule {
  ignoreProviders(m);
  const mode = readMode(m);
  const randomSamplingPercentage = m.get('randomSamplingPercentage')?.number({ min: 0, max: 100 });
  const disableSpanReporting = m.bool('disableSpanReporting');
  const tagsField = m.get('customTags');
  const customTags = tagsField ? (tagsField.map()?.entries() ?? []).flatMap(([name, f]) => present(readCustomTag(name, f))) : undefined;
  for (const key of ['useRequestIdForTraceSampling', 'enableIstioTags']) m.get(key)?.warn(`${key} is not supported by Ambit's tracer; ignored`);
  return {
    mode,
    ...(randomSamplingPercentage !== undefined ? { randomSamplingPercentage } : {}),
    ...(disableSpanReporting !== undefined ? { disableSpanReporting } : {}),
    ...(customTags ? { customTags } : {}),
  };
}

function readCustomTag(name: string, field: Field): readonly [string, CustomTag] | undefined {
  const m = field.map();
  if (!m) return undefined;
  const literal = m.map('literal');
  const environment = m.map('environment');
  const header = m.map('header');
  const written = [literal, environment, header].filter((x) => x !== undefined).length;
  if (written !== 1) return field.fail(`expected exactly one of literal, environment and header, got ${written}`);
  if (literal) return [name, { kind: 'literal', value: literal.require('value')?.string() ?? '' }];
  const source = (environment ?? header)!;
  const sourceName = source.require('name')?.nonEmptyString();
  if (sourceName === undefined) return undefined;
  const defaultValue = source.string('defaultValue') ?? '';
  return [name, environment ? { kind: 'environment', name: sourceName, defaultValue } : { kind: 'header', name: sourceName.toLowerCase(), defaultValue }];
}

function parseMetrics(m: MapReader): MetricsOverride[] {
  ignoreProviders(m);
  m.get('reportingInterval')?.warn('reportingInterval is not supported: Prometheus scrapes /metrics when it likes and OTLP export has its own interval; ignored');
  return m.maps('overrides').flatMap((o) => {
    const match = o.map('match');
    const custom = match?.get('customMetric');
    if (custom) return custom.fail('customMetric is not supported: Ambit reports only Istio\'s standard metrics') ?? [];
    const metric = match?.enum('metric', ISTIO_METRICS) ?? 'ALL_METRICS';
    const mode = match?.enum('mode', WORKLOAD_MODES) ?? 'CLIENT_AND_SERVER';
    const disabled = o.bool('disabled');
    const tagOverrides = (o.map('tagOverrides')?.entries() ?? []).flatMap(([tag, f]) => present(readTagOverride(tag, f)));
    // Ambit's TCP counters have Istio's fixed label set; only the HTTP metrics take edits.
    if (metric.startsWith('TCP_') && tagOverrides.length > 0) o.get('tagOverrides')?.warn(`tagOverrides apply to Ambit's HTTP metrics only; ignored for ${metric}`);
    return [{ metric, mode, ...(disabled !== undefined ? { disabled } : {}), tagOverrides }];
  });
}

function readTagOverride(tag: string, field: Field): readonly [string, TagOverride] | undefined {
  if (!TAG_NAME.test(tag)) return field.fail(`expected a Prometheus label name, got ${JSON.stringify(tag)}`);
  const m = field.map();
  if (!m) return undefined;
  const operation = m.enum('operation', ['UPSERT', 'REMOVE']) ?? 'UPSERT';
  const valueField = m.get('value');
  if (operation === 'REMOVE') {
    valueField?.warn('value is ignored when the operation is REMOVE');
    return [tag, { operation }];
  }
  const text = (valueField ?? m.require('value'))?.nonEmptyString();
  if (text === undefined) return undefined;
  const parsed = parseTelemetryExpression(text, 'string');
  if (!parsed.ok) return valueField?.fail(`tag ${tag}: cannot use value ${JSON.stringify(text)}: ${parsed.message}`);
  return [tag, { operation, value: parsed.expression }];
}

function parseAccessLogging(m: MapReader): AccessLoggingRule {
  ignoreProviders(m);
  const mode = readMode(m);
  const disabled = m.bool('disabled');
  const filterMap = m.map('filter');
  const exprField = filterMap?.require('expression');
  const text = exprField?.nonEmptyString();
  let filter: AccessLoggingRule['filter'];
  if (text !== undefined) {
    const parsed = parseTelemetryExpression(text, 'bool');
    if (parsed.ok) filter = { text, expression: parsed.expression };
    else exprField?.fail(`cannot use filter ${JSON.stringify(text)}: ${parsed.message}`);
  }
  return { mode, ...(disabled !== undefined ? { disabled } : {}), ...(filter ? { filter } : {}) };
}
