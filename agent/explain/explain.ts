// `ambit explain` inside an agent: the whole path from a source to a destination judged on this agent's
// snapshot (source side, then the destination side as the destination's agent would judge it), and
// the destination side alone when the CLI asks the destination's own agent. The request bodies of
// the admin endpoints are read here, at the edge, into typed queries.

import type { PathNormalization } from '../l7/request-target.js';
import type { MeshSnapshot, SpiffeId } from '../state/model.js';
import { type AdmissionQuery, type ExplainHttpRequest, explainAdmission } from './admission.js';
import { type Explanation, type ExplainStep, verdictOf } from './explanation.js';
import { fixFor } from './fix.js';
import { explainSourceSide } from './source-side.js';
import { type Resolved, resolveDestination, resolveSource } from './subjects.js';

/** POST /explain: a source and a destination as the user named them, and the request if it is HTTP. */
export interface ExplainQuery {
  readonly source: string;
  readonly destination: string;
  readonly http?: ExplainHttpRequest;
}

/** The answer of POST /explain: the explanation, and who to ask about the destination side. */
export interface PathAnswer {
  readonly explanation: Explanation;
  /** What the destination's agent is asked (POST /explain/admission) when it is another node's. */
  readonly admission?: AdmissionQuery;
  readonly sourceNode?: string;
  readonly destinationNode?: string;
}

export function explainPath(snapshot: MeshSnapshot, node: string, query: ExplainQuery, normalization?: PathNormalization): Resolved<PathAnswer> {
  const source = resolveSource(snapshot, query.source);
  if (!source.ok) return source;
  const destination = resolveDestination(snapshot, query.destination);
  if (!destination.ok) return destination;
  const side = explainSourceSide(snapshot, source.value, destination.value, query.http, normalization);
  const steps: ExplainStep[] = [...side.steps];
  const admitted = side.admission ? explainAdmission(snapshot, side.admission, normalization) : undefined;
  if (admitted) steps.push(...admitted.steps);
  const sourceNode = source.value.kind === 'pod' ? source.value.workload.node : undefined;
  const fix = admitted?.denial && side.admission ? fixFor(admitted.denial, side.admission) : side.unreachable;
  const explanation: Explanation = { verdict: verdictOf(steps), steps, ...(fix ? { fix } : {}), snapshots: { [node]: snapshot.version } };
  return {
    ok: true,
    value: {
      explanation,
      ...(side.admission ? { admission: side.admission } : {}),
      ...(sourceNode ? { sourceNode } : {}),
      ...(side.destinationNode ? { destinationNode: side.destinationNode } : {}),
    },
  };
}

/** POST /explain/admission: the destination side alone, judged by the destination's own agent. */
export function explainAdmissionOnly(snapshot: MeshSnapshot, node: string, query: AdmissionQuery, normalization?: PathNormalization): Explanation {
  const admitted = explainAdmission(snapshot, query, normalization);
  const fix = admitted.denial ? fixFor(admitted.denial, query) : undefined;
  return { verdict: verdictOf(admitted.steps), steps: admitted.steps, ...(fix ? { fix } : {}), snapshots: { [node]: snapshot.version } };
}

/**
 * The source side of one agent's answer joined with the destination side another agent gave: the
 * destination's steps replace those the first agent judged for it, and the verdict is taken again.
 */
export function joinExplanations(path: Explanation, destination: Explanation): Explanation {
  const destinationSteps = new Set(destination.steps.map((s) => s.step));
  const sourceSide = path.steps.filter((s) => !(destinationSteps.has(s.step) || s.step === 'peer-authentication' || s.step === 'authorization' || s.step === 'rate-limit'));
  const steps = [...sourceSide, ...destination.steps];
  const verdict = verdictOf(steps);
  const fix = sourceSide.some((s) => s.ends) ? path.fix : destination.fix;
  return { verdict, steps, ...(fix ? { fix } : {}), snapshots: { ...path.snapshots, ...destination.snapshots } };
}

/** Reads a POST /explain body; a message saying what is wrong otherwise. */
export function readExplainQuery(body: unknown): Resolved<ExplainQuery> {
  if (!isRecord(body)) return { ok: false, error: 'expected a JSON object {"source", "destination", "http"?}' };
  const { source, destination } = body;
  if (typeof source !== 'string' || source === '') return { ok: false, error: '"source" must be a non-empty string (a pod ns/name or an IP)' };
  if (typeof destination !== 'string' || destination === '') return { ok: false, error: '"destination" must be a non-empty string (ns/pod, name.ns, a host or an IP, with :port)' };
  const http = body['http'] === undefined ? undefined : readHttp(body['http']);
  if (typeof http === 'string') return { ok: false, error: http };
  return { ok: true, value: { source, destination, ...(http ? { http } : {}) } };
}

/** Reads a POST /explain/admission body. */
export function readAdmissionQuery(body: unknown): Resolved<AdmissionQuery> {
  if (!isRecord(body)) return { ok: false, error: 'expected a JSON object {"sourceIp", "sourceIdentity"?, "destination": {"ip", "port"}, "http"?}' };
  const { sourceIp, sourceIdentity, destination } = body;
  if (typeof sourceIp !== 'string') return { ok: false, error: '"sourceIp" must be a string' };
  if (sourceIdentity !== undefined && (typeof sourceIdentity !== 'string' || !sourceIdentity.startsWith('spiffe://'))) return { ok: false, error: '"sourceIdentity" must be a spiffe:// id' };
  if (!isRecord(destination) || typeof destination['ip'] !== 'string' || !Number.isInteger(destination['port'])) return { ok: false, error: '"destination" must be {"ip": string, "port": integer}' };
  const http = body['http'] === undefined ? undefined : readHttp(body['http']);
  if (typeof http === 'string') return { ok: false, error: http };
  return {
    ok: true,
    value: {
      sourceIp,
      ...(sourceIdentity !== undefined ? { sourceIdentity: sourceIdentity as SpiffeId } : {}),
      destination: { ip: destination['ip'], port: destination['port'] as number },
      ...(http ? { http } : {}),
    },
  };
}

function readHttp(value: unknown): ExplainHttpRequest | string {
  if (!isRecord(value)) return '"http" must be {"method", "path", "authority", "headers": [[name, value], …]}';
  const { method, path, authority, headers } = value;
  if (typeof method !== 'string' || !/^[A-Z]+$/.test(method)) return '"http.method" must be an upper-case method such as GET';
  if (typeof path !== 'string' || !path.startsWith('/')) return '"http.path" must start with /';
  if (typeof authority !== 'string') return '"http.authority" must be a string';
  if (!Array.isArray(headers) || !headers.every((h): h is [string, string] => Array.isArray(h) && h.length === 2 && typeof h[0] === 'string' && typeof h[1] === 'string')) {
    return '"http.headers" must be a list of [name, value] pairs';
  }
  return { method, path, authority, headers: headers.map(([n, v]) => [n, v] as const) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
