// Turns the text of one YAML file (many documents, `kind: List` included) into typed objects: each
// document is checked for kind, apiVersion and metadata, then handed to its kind's parser. An invalid
// object is rejected on its own; a file whose YAML does not parse yields nothing that can be trusted.

import { LineCounter, type Node, isScalar } from 'yaml';
import type { ConfigDiagnostic, ObjectRef } from './diagnostics.js';
import { parseYamlBounded } from './input-limits.js';
import { DNS1123_LABEL_EXPECTED, DNS1123_SUBDOMAIN_EXPECTED, isDns1123Label, isDns1123Subdomain } from './formats.js';
import { parseGrpcRoute } from './gateway-api/parse-grpc-route.js';
import { parseHttpRoute } from './gateway-api/parse-http-route.js';
import { parseGateway, parseTcpRoute } from './gateway-api/parse-tcp-route.js';
import { GATEWAY_VERSIONS, GRPC_ROUTE_VERSIONS, HTTP_ROUTE_VERSIONS, TCP_ROUTE_VERSIONS } from './gateway-api/types.js';
import { NETWORKING_VERSIONS, SECURITY_VERSIONS } from './istio-common.js';
import { parseAuthorizationPolicy, parsePeerAuthentication } from './istio-security.js';
import type { ObjectBase, SourceLocation } from './kubernetes.js';
import type { MeshKind, MeshObject } from './objects.js';
import { parseConfigMap } from './mesh-config.js';
import { parseDestinationRule } from './parse-destination-rule.js';
import { parseNamespace, parseNode, parsePod, parseService, parseServiceAccount } from './parse-kubernetes.js';
import { parseRequestAuthentication } from './parse-request-authentication.js';
import { parseServiceEntry, parseWorkloadEntry } from './parse-service-entry.js';
import { TELEMETRY_VERSIONS, parseTelemetry } from './parse-telemetry.js';
import { parseVirtualService } from './parse-virtual-service.js';
import { RATE_LIMIT_VERSIONS, parseRateLimit } from './rate-limit.js';
import { type MapReader, ReadContext, readRoot } from './yaml-reader.js';

/** An object that was identified (kind, namespace, name) but failed validation, and where it is. */
export interface RejectedObject extends ObjectRef {
  readonly source: SourceLocation;
}

export interface FileParseResult {
  readonly file: string;
  /** False when the file could not be read or its YAML does not parse: then nothing in it is trusted. */
  readonly readable: boolean;
  /** The valid objects, in document order. */
  readonly objects: readonly MeshObject[];
  /** Identifiable objects that failed validation (see `diagnostics` for why). */
  readonly rejected: readonly RejectedObject[];
  readonly diagnostics: readonly ConfigDiagnostic[];
}

interface KindRule<K extends MeshKind> {
  readonly apiVersions: readonly string[];
  readonly namespaced: boolean;
  /** Namespaces and Services become DNS labels, so their names must be one label. */
  readonly name: 'label' | 'subdomain';
  /** Istio objects are read in full, so a field nobody read is reported (a typo, or unsupported). */
  readonly strict: boolean;
  readonly parse: (root: MapReader, base: ObjectBase<K>) => Extract<MeshObject, { kind: K }> | undefined;
  /** Gateway API routes keep creationTimestamp (their precedence) and generation (their status); others drop them, so that a source's bookkeeping never changes them. */
  readonly keepsCreation?: true;
}

const CORE = ['v1'];
const KINDS: { readonly [K in MeshKind]: KindRule<K> } = {
  Node: { apiVersions: CORE, namespaced: false, name: 'subdomain', strict: false, parse: parseNode },
  Namespace: { apiVersions: CORE, namespaced: false, name: 'label', strict: false, parse: parseNamespace },
  ServiceAccount: { apiVersions: CORE, namespaced: true, name: 'subdomain', strict: false, parse: parseServiceAccount },
  Pod: { apiVersions: CORE, namespaced: true, name: 'subdomain', strict: false, parse: parsePod },
  Service: { apiVersions: CORE, namespaced: true, name: 'label', strict: false, parse: parseService },
  VirtualService: { apiVersions: NETWORKING_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseVirtualService },
  DestinationRule: { apiVersions: NETWORKING_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseDestinationRule },
  AuthorizationPolicy: { apiVersions: SECURITY_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseAuthorizationPolicy },
  PeerAuthentication: { apiVersions: SECURITY_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parsePeerAuthentication },
  RequestAuthentication: { apiVersions: SECURITY_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseRequestAuthentication },
  ServiceEntry: { apiVersions: NETWORKING_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseServiceEntry },
  WorkloadEntry: { apiVersions: NETWORKING_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseWorkloadEntry },
  Telemetry: { apiVersions: TELEMETRY_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseTelemetry },
  ConfigMap: { apiVersions: CORE, namespaced: true, name: 'subdomain', strict: false, parse: parseConfigMap },
  HTTPRoute: { apiVersions: HTTP_ROUTE_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseHttpRoute, keepsCreation: true },
  GRPCRoute: { apiVersions: GRPC_ROUTE_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseGrpcRoute, keepsCreation: true },
  TCPRoute: { apiVersions: TCP_ROUTE_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseTcpRoute, keepsCreation: true },
  Gateway: { apiVersions: GATEWAY_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseGateway },
  RateLimit: { apiVersions: RATE_LIMIT_VERSIONS, namespaced: true, name: 'subdomain', strict: true, parse: parseRateLimit },
};

const READ_KINDS = `${Object.keys(KINDS).join(', ')} and List`;

function isMeshKind(kind: string): kind is MeshKind {
  return Object.hasOwn(KINDS, kind);
}

/** A file (or API object) that yields nothing that can be trusted: its last good objects stay. */
export function unreadableFile(file: string, diagnostic: ConfigDiagnostic): FileParseResult {
  return { file, readable: false, objects: [], rejected: [], diagnostics: [diagnostic] };
}

export function parseConfigFile(text: string, file: string): FileParseResult {
  const lines = new LineCounter();
  const parsed = parseYamlBounded(text, file, lines);
  if (!parsed.ok) return unreadableFile(file, parsed.problem);
  const documents = parsed.documents;
  const diagnostics: ConfigDiagnostic[] = [];
  const at = (pos: readonly [number, number]): SourceLocation => ({ file, line: lines.linePos(pos[0]).line });
  // The first error of a document explains it; the ones after it are mostly the parser losing its way.
  const syntaxErrors = documents.flatMap((d) => d.errors.slice(0, 1));
  if (syntaxErrors.length > 0) {
    for (const error of syntaxErrors) diagnostics.push({ severity: 'error', location: at(error.pos), message: `invalid YAML: ${error.message}` });
    return { file, readable: false, objects: [], rejected: [], diagnostics };
  }

  const objects: MeshObject[] = [];
  const rejected: RejectedObject[] = [];
  const readObject = (node: Node, path: string, insideList: boolean): void => {
    const ctx = new ReadContext(file, lines);
    const outcome = readDocument(ctx, node, path, insideList, readObject);
    // Parsers read in their own order; users read top to bottom.
    diagnostics.push(...ctx.diagnostics.sort((a, b) => a.location.line - b.location.line));
    if (outcome?.object) objects.push(outcome.object);
    else if (outcome?.rejected) rejected.push(outcome.rejected);
  };
  for (const document of documents) {
    for (const warning of document.warnings) diagnostics.push({ severity: 'warning', location: at(warning.pos), message: warning.message });
    // An empty document (a stray `---`, or only comments) is fine: there is nothing in it.
    const contents = document.contents;
    if (contents && !(isScalar(contents) && contents.value === null)) readObject(contents, '', false);
  }
  return { file, readable: true, objects, rejected, diagnostics };
}

type Outcome = { readonly object: MeshObject; readonly rejected?: never } | { readonly object?: never; readonly rejected: RejectedObject };

function readDocument(
  ctx: ReadContext,
  node: Node,
  path: string,
  insideList: boolean,
  readItem: (node: Node, path: string, insideList: boolean) => void,
): Outcome | undefined {
  const root = readRoot(ctx, node, path);
  if (!root) return undefined;
  const kind = root.string('kind');
  const apiVersion = root.string('apiVersion');
  if (kind === undefined || apiVersion === undefined) {
    if (ctx.errors === 0) ctx.warn(root.line, path, `skipped: not a Kubernetes object (no kind or apiVersion); Ambit reads ${READ_KINDS}`);
    return undefined;
  }
  if (kind === 'List' && !insideList) {
    // kubectl expands a List into its items, and so do we; each item stands on its own.
    for (const item of root.list('items')) readItem(item.node, item.path, true);
    return undefined;
  }
  if (!isMeshKind(kind)) {
    ctx.warn(root.line, path, `skipped: Ambit does not read kind ${kind}; it reads ${READ_KINDS}`);
    return undefined;
  }
  return readObject(ctx, root, kind, apiVersion);
}

function readObject<K extends MeshKind>(ctx: ReadContext, root: MapReader, kind: K, apiVersion: string): Outcome | undefined {
  const rule: KindRule<K> = KINDS[kind];
  const metadata = root.get('metadata')?.map();
  const nameField = metadata?.get('name');
  const namespaceField = metadata?.get('namespace');
  const rawName = nameField?.scalar;
  const rawNamespace = namespaceField?.scalar;
  const namespace = !rule.namespaced ? '' : typeof rawNamespace === 'string' && rawNamespace !== '' ? rawNamespace : 'default';
  // Name the object in every message from here on, even if its name turns out to be invalid.
  ctx.object = { kind, namespace, name: typeof rawName === 'string' ? rawName : '' };

  if (!rule.apiVersions.includes(apiVersion)) {
    const expected = rule.apiVersions.length === 1 ? rule.apiVersions[0] : `one of ${rule.apiVersions.join(', ')}`;
    root.get('apiVersion')?.fail(`expected ${expected} for a ${kind}, got ${JSON.stringify(apiVersion)}`);
  }
  if (!metadata) root.require('metadata');
  const name = metadata?.require('name')?.nonEmptyString();
  if (name !== undefined && !(rule.name === 'label' ? isDns1123Label(name) : isDns1123Subdomain(name))) {
    nameField?.fail(`expected ${rule.name === 'label' ? DNS1123_LABEL_EXPECTED : DNS1123_SUBDOMAIN_EXPECTED}, got ${JSON.stringify(name)}`);
  }
  const ns = namespaceField?.string();
  if (ns !== undefined && !rule.namespaced) namespaceField?.warn(`a ${kind} is cluster-scoped; metadata.namespace is ignored`);
  else if (ns !== undefined && ns !== '' && !isDns1123Label(ns)) namespaceField?.fail(`expected a namespace name, ${DNS1123_LABEL_EXPECTED}, got ${JSON.stringify(ns)}`);
  const labels = metadata?.labels('labels') ?? {};
  const annotations = metadata?.stringMap('annotations') ?? {};
  // The uid names a pod's kubepods cgroup; resourceVersion and the like mean nothing here.
  const uid = metadata?.get('uid')?.nonEmptyString();
  const created = rule.keepsCreation ? metadata?.get('creationTimestamp')?.scalar : undefined;
  const creationTimestamp = typeof created === 'string' && !Number.isNaN(Date.parse(created)) ? created : undefined;
  const generation = rule.keepsCreation ? metadata?.get('generation')?.scalar : undefined;
  metadata?.ignoreRest();
  root.ignore('status');

  const source: SourceLocation = { file: ctx.file, line: root.line };
  const base: ObjectBase<K> = { kind, apiVersion, metadata: {
      name: name ?? '',
      namespace,
      ...(uid !== undefined ? { uid } : {}),
      ...(creationTimestamp !== undefined ? { creationTimestamp } : {}),
      ...(typeof generation === 'number' ? { generation } : {}),
      labels,
      annotations,
    }, source };
  // Parse even when metadata is wrong, so that one pass reports every problem of the object.
  const object = rule.parse(root, base);
  if (ctx.errors > 0) return ctx.object.name === '' ? undefined : { rejected: { ...ctx.object, source } };
  if (rule.strict) ctx.warnUnknownFields();
  return object ? { object } : undefined;
}
