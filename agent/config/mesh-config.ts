// MeshConfig, the part Ambit reads: the extension providers a CUSTOM AuthorizationPolicy names, and the
// serviceScopeConfigs that say which Services other clusters share (docs/multicluster.md). Istio
// keeps MeshConfig as YAML text under the key `mesh` of the ConfigMap `istio` in istio-system; Ambit
// reads that ConfigMap from local YAML and from the API server alike, and parses the text here.

import { LineCounter, parseDocument } from 'yaml';
import type { Labels, ObjectBase } from './kubernetes.js';
import { type Field, type MapReader, PORT_RANGE, ReadContext, readRoot } from './yaml-reader.js';

/** Where MeshConfig lives, as istiod reads it. */
export const MESH_CONFIG_MAP = { namespace: 'istio-system', name: 'istio', key: 'mesh' } as const;

/** What both ext_authz providers share. */
interface ExtAuthzProviderBase {
  readonly name: string;
  /** `[<namespace>/]<hostname>`: a mesh Service's hostname, or an address the agent can reach as it is. */
  readonly service: string;
  readonly port: number;
  /** Istio's default: 600 s. */
  readonly timeoutMs: number;
  /** Allow the request when the authorizer cannot be reached or fails. */
  readonly failOpen: boolean;
  /** The status a client gets when the authorizer cannot be reached (and failOpen is false); Istio's default 403. */
  readonly statusOnError: number;
  /**
   * Send the request body's first maxRequestBytes with the check (held, then sent on to the pod); a longer
   * body is 413 unless allowPartialMessage; packAsBytes puts it in the gRPC check's raw_body.
   */
  readonly includeRequestBodyInCheck?: { readonly maxRequestBytes: number; readonly allowPartialMessage: boolean; readonly packAsBytes: boolean };
}

export interface ExtAuthzHttpProvider extends ExtAuthzProviderBase {
  readonly kind: 'envoyExtAuthzHttp';
  readonly pathPrefix: string;
  /** Client headers sent with the check besides Host, Method, Path and Content-Length. Lowercase. */
  readonly includeRequestHeadersInCheck: readonly string[];
  readonly includeAdditionalHeadersInCheck: Readonly<Record<string, string>>;
  /** Headers of the authorizer's OK answer copied onto the request to the pod. */
  readonly headersToUpstreamOnAllow: readonly string[];
  /** Headers of the authorizer's denial sent to the client (all of them when empty). */
  readonly headersToDownstreamOnDeny: readonly string[];
  readonly headersToDownstreamOnAllow: readonly string[];
}

export interface ExtAuthzGrpcProvider extends ExtAuthzProviderBase {
  readonly kind: 'envoyExtAuthzGrpc';
}

export type ExtAuthzProvider = ExtAuthzHttpProvider | ExtAuthzGrpcProvider;

/** Kubernetes' LabelSelector: every pair of matchLabels and every expression holds; an empty one matches all. */
export interface LabelSelector {
  readonly matchLabels: Labels;
  readonly matchExpressions: readonly LabelExpression[];
}

export interface LabelExpression {
  readonly key: string;
  readonly operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  readonly values: readonly string[];
}

/** One of MeshConfig's serviceScopeConfigs: Services matching both selectors are GLOBAL (shared) or LOCAL. */
export interface ServiceScopeConfig {
  readonly namespaceSelector: LabelSelector;
  readonly servicesSelector: LabelSelector;
  readonly scope: 'GLOBAL' | 'LOCAL';
}

export interface MeshConfig {
  /** The ext_authz providers by name; other provider types (tracing, logging) are not Ambit's concern here. */
  readonly extAuthzProviders: ReadonlyMap<string, ExtAuthzProvider>;
  /** Which Services are shared across clusters; absent: not configured (the ambient profile's rule applies). */
  readonly serviceScopeConfigs?: readonly ServiceScopeConfig[];
}

export const EMPTY_MESH_CONFIG: MeshConfig = { extAuthzProviders: new Map() };

export interface ConfigMapObject extends ObjectBase<'ConfigMap'> {
  /** Set only for istio-system/istio: its `mesh` key, parsed. */
  readonly meshConfig?: MeshConfig;
}

/** Any ConfigMap is accepted; only Istio's mesh ConfigMap is read, and its `mesh` text must parse. */
export function parseConfigMap(root: MapReader, base: ObjectBase<'ConfigMap'>): ConfigMapObject | undefined {
  const isMesh = base.metadata.namespace === MESH_CONFIG_MAP.namespace && base.metadata.name === MESH_CONFIG_MAP.name;
  const meshField = isMesh ? root.map('data')?.get(MESH_CONFIG_MAP.key) : undefined;
  root.ignoreRest();
  if (!isMesh) return base;
  const text = meshField?.string();
  if (text === undefined) return { ...base, meshConfig: EMPTY_MESH_CONFIG };
  return { ...base, meshConfig: parseMeshConfigText(text, root, meshField?.line ?? root.line) };
}

/** The `mesh` text, with problems reported at their line in the file (the key's line plus the line inside). */
function parseMeshConfigText(text: string, outer: MapReader, keyLine: number): MeshConfig {
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const inner = new ReadContext(outer.ctx.file, lines, outer.ctx.object);
  const at = (line: number): number => keyLine + line;
  if (document.errors.length > 0) {
    outer.ctx.error(keyLine, `data.${MESH_CONFIG_MAP.key}`, `invalid YAML in MeshConfig: ${document.errors[0]!.message}`);
    return EMPTY_MESH_CONFIG;
  }
  const root = document.contents ? readRoot(inner, document.contents, `data.${MESH_CONFIG_MAP.key}`) : undefined;
  const providers = new Map<string, ExtAuthzProvider>();
  for (const item of root?.list('extensionProviders') ?? []) {
    const provider = parseProvider(item);
    if (provider && providers.has(provider.name)) item.fail(`extension provider ${JSON.stringify(provider.name)} is defined twice`);
    else if (provider) providers.set(provider.name, provider);
  }
  const scopes = root?.has('serviceScopeConfigs') ? root.list('serviceScopeConfigs').flatMap((item) => parseServiceScope(item) ?? []) : undefined;
  for (const d of inner.diagnostics) (d.severity === 'error' ? outer.ctx.error : outer.ctx.warn).call(outer.ctx, at(d.location.line), d.field ?? '', d.message);
  return { extAuthzProviders: providers, ...(scopes ? { serviceScopeConfigs: scopes } : {}) };
}

function parseServiceScope(item: Field): ServiceScopeConfig | undefined {
  const m = item.map();
  if (!m) return undefined;
  // Istio's enum: LOCAL is 0, the default.
  const scope = m.enum('scope', ['GLOBAL', 'LOCAL']) ?? 'LOCAL';
  return { namespaceSelector: parseLabelSelector(m.map('namespaceSelector')), servicesSelector: parseLabelSelector(m.map('servicesSelector')), scope };
}

function parseLabelSelector(m: MapReader | undefined): LabelSelector {
  if (!m) return { matchLabels: {}, matchExpressions: [] };
  const matchExpressions = m.maps('matchExpressions').flatMap((e): LabelExpression[] => {
    const key = e.require('key')?.nonEmptyString();
    const operator = e.require('operator')?.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']);
    if (key === undefined || operator === undefined) return [];
    return [{ key, operator, values: e.strings('values') }];
  });
  return { matchLabels: m.stringMap('matchLabels'), matchExpressions };
}

function parseProvider(item: Field): ExtAuthzProvider | undefined {
  const m = item.map();
  const name = m?.require('name')?.nonEmptyString();
  if (!m || name === undefined) return undefined;
  const http = m.map('envoyExtAuthzHttp');
  const grpc = m.map('envoyExtAuthzGrpc');
  // Tracing, logging and metrics providers are read by their own features; a CUSTOM policy naming one is refused at use.
  m.ignoreRest();
  if (http) {
    return {
      kind: 'envoyExtAuthzHttp',
      ...common(name, http),
      pathPrefix: http.string('pathPrefix') ?? '',
      includeRequestHeadersInCheck: headerNames(http, 'includeRequestHeadersInCheck'),
      includeAdditionalHeadersInCheck: Object.fromEntries(Object.entries(http.stringMap('includeAdditionalHeadersInCheck')).map(([k, v]) => [k.toLowerCase(), v])),
      headersToUpstreamOnAllow: headerNames(http, 'headersToUpstreamOnAllow'),
      headersToDownstreamOnDeny: headerNames(http, 'headersToDownstreamOnDeny'),
      headersToDownstreamOnAllow: headerNames(http, 'headersToDownstreamOnAllow'),
    };
  }
  if (grpc) return { kind: 'envoyExtAuthzGrpc', ...common(name, grpc) };
  return undefined;
}

function headerNames(m: MapReader, key: string): string[] {
  return m.strings(key, (item) => item.nonEmptyString()?.toLowerCase());
}

function common(name: string, m: MapReader): Omit<ExtAuthzProviderBase, never> {
  const service = m.require('service')?.nonEmptyString() ?? '';
  const port = m.require('port')?.int(PORT_RANGE) ?? 0;
  const statusField = m.get('statusOnError');
  const statusText = statusField?.scalar;
  const status = statusText === undefined ? 403 : Number(statusText);
  if (statusField && !(Number.isInteger(status) && status >= 100 && status <= 599)) statusField.fail(`expected an HTTP status code such as "403", got ${JSON.stringify(statusText)}`);
  const body = m.map('includeRequestBodyInCheck');
  // clearRouteCache: Ambit routes on the client's side, before the destination's check; there is no route to clear.
  m.ignore('clearRouteCache');
  const includeRequestBodyInCheck = body && {
    // Absent: 4096 bytes, Ambit's choice: Envoy has no default and refuses 0.
    maxRequestBytes: body.int('maxRequestBytes', { min: 1 }) ?? 4096,
    allowPartialMessage: body.bool('allowPartialMessage') ?? false,
    packAsBytes: body.bool('packAsBytes') ?? false,
  };
  return {
    name,
    service,
    port,
    timeoutMs: m.duration('timeout', { min: 1 }) ?? 600_000,
    failOpen: m.bool('failOpen') ?? false,
    statusOnError: Number.isInteger(status) ? status : 403,
    ...(includeRequestBodyInCheck ? { includeRequestBodyInCheck } : {}),
  };
}
