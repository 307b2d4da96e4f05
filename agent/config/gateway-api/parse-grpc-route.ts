// Reads a GRPCRoute (gateway.networking.k8s.io v1, and v1alpha2 as older experimental channels served
// it): method matches by service and method, header matches, header modifiers and mirrors.

import type { ObjectBase } from '../kubernetes.js';
import type { Field, MapReader } from '../yaml-reader.js';
import { readFilteredBackendRef, readHeaderModifier, readNamedMatches, readRequestMirror, readRouteSpec, readSectionName } from './parse-common.js';
import { ignoreHostnames } from './parse-http-route.js';
import type { GrpcMethodMatch, GrpcRouteFilter, GrpcRouteMatch, GrpcRouteObject, GrpcRouteRule } from './types.js';

// The CRD's patterns for Exact matches: a dotted protobuf service name and a method name.
const SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;
const FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'ExtensionRef'] as const;

export function parseGrpcRoute(root: MapReader, base: ObjectBase<'GRPCRoute'>): GrpcRouteObject | undefined {
  const ns = base.metadata.namespace;
  const spec = readRouteSpec(root, ns, (s): GrpcRouteRule[] => {
    ignoreHostnames(s);
    return s.has('rules') ? s.list('rules').flatMap((f) => readRule(f, ns) ?? []) : [{ matches: [], filters: [], backendRefs: [] }];
  });
  return spec && { ...base, spec };
}

function readRule(field: Field, ns: string): GrpcRouteRule | undefined {
  const m = field.map();
  if (!m) return undefined;
  const name = readSectionName(m, 'name');
  const matches = m.list('matches').flatMap((f) => readMatch(f) ?? []);
  const filters = m.list('filters').flatMap((f) => readFilter(f, ns) ?? []);
  for (const type of ['RequestHeaderModifier', 'ResponseHeaderModifier'] as const) {
    if (filters.filter((f) => f.type === type).length > 1) m.get('filters')?.fail(`${type} may appear only once in a rule`);
  }
  const backendRefs = m.maps('backendRefs').flatMap((b) => readFilteredBackendRef(b, ns, FILTER_TYPES) ?? []);
  if (m.has('sessionPersistence')) m.get('sessionPersistence')?.warn('session persistence is not applied by Ambit yet; requests are balanced as without it');
  return { ...(name !== undefined ? { name } : {}), matches, filters, backendRefs };
}

function readMatch(field: Field): GrpcRouteMatch | undefined {
  const m = field.map();
  if (!m) return undefined;
  const methodField = m.get('method');
  const method = methodField ? readMethod(methodField) : undefined;
  const headers = readNamedMatches(m, 'headers', 'header');
  if (methodField && !method) return undefined;
  return { ...(method ? { method } : {}), headers };
}

function readMethod(field: Field): GrpcMethodMatch | undefined {
  const m = field.map();
  if (!m) return undefined;
  const type = m.enum('type', ['Exact', 'RegularExpression']) ?? 'Exact';
  const service = m.get('service')?.nonEmptyString();
  const method = m.get('method')?.nonEmptyString();
  if (service === undefined && method === undefined) return field.fail('expected service, method or both');
  if (type === 'Exact') {
    if (service !== undefined && !SERVICE.test(service)) return m.get('service')?.fail(`expected a protobuf service name such as "helloworld.Greeter", got ${JSON.stringify(service)}`);
    if (method !== undefined && !METHOD.test(method)) return m.get('method')?.fail(`expected a method name such as "SayHello", got ${JSON.stringify(method)}`);
  } else {
    // Checked here so that a bad pattern is refused with the object, not when the route is built.
    if (service !== undefined && !m.get('service')?.regex({ fullMatch: true })) return undefined;
    if (method !== undefined && !m.get('method')?.regex({ fullMatch: true })) return undefined;
  }
  return { type, ...(service !== undefined ? { service } : {}), ...(method !== undefined ? { method } : {}) };
}

function readFilter(field: Field, ns: string): GrpcRouteFilter | undefined {
  const m = field.map();
  const type = m?.require('type')?.enum(FILTER_TYPES);
  if (!m || type === undefined) return undefined;
  switch (type) {
    case 'RequestHeaderModifier': {
      const modifier = m.require('requestHeaderModifier') && readHeaderModifier(m.get('requestHeaderModifier')!);
      return modifier ? { type, modifier } : undefined;
    }
    case 'ResponseHeaderModifier': {
      const modifier = m.require('responseHeaderModifier') && readHeaderModifier(m.get('responseHeaderModifier')!);
      return modifier ? { type, modifier } : undefined;
    }
    case 'RequestMirror': {
      const mirror = m.require('requestMirror') && readRequestMirror(m.get('requestMirror')!, ns);
      return mirror ? { type, mirror } : undefined;
    }
    default:
      return field.fail(`filter type ${type} is not supported by Ambit; remove it`);
  }
}

