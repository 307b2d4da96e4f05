// The rate-limit steps of `ambit explain`, in the order the inbound request's rate-limit phase applies
// them: each RateLimit's local bucket that would count the request, then each global block with the
// rate limit service the agent would ask (the address the data path would call), the domain, the
// descriptors this request would send (built by the data path's own globalQuestionOf), the timeout and
// the failure mode. Explain never calls the service and never reads how many tokens a bucket holds, so
// only a service it knows cannot be called (no ready endpoint) can decide the verdict here.

import type { DescriptorAction, GlobalDescriptorSpec, RateLimitObject } from '../config/rate-limit.js';
import { authorizerAddress } from '../policy/ext-authz.js';
import { SERVICE_ERROR_DETAILS, entriesOf, globalQuestionOf } from '../policy/global-rate-limit.js';
import { type RateLimitRequest, bucketFor, rateLimitsFor } from '../policy/rate-limit.js';
import { routeFor } from '../policy/rate-limit-routes.js';
import type { MeshSnapshot } from '../state/model.js';
import { type ExplainStep, byDefault, byObject } from './explanation.js';

/** A global block whose service cannot be called and whose failure mode denies: every request is answered 500. */
export interface RateLimitServiceDenial {
  readonly kind: 'rate-limit-service';
  readonly limit: RateLimitObject;
  readonly service: string;
}

export interface RateLimitExplanation {
  readonly steps: readonly ExplainStep[];
  readonly denial?: RateLimitServiceDenial;
}

export function explainRateLimits(snapshot: MeshSnapshot, request: RateLimitRequest, node: string): RateLimitExplanation {
  const limits = rateLimitsFor(snapshot, request.destination, request.port);
  const local = limits.flatMap((limit) => localStep(limit, request, node) ?? []);
  const global = limits.flatMap((limit) => globalStep(snapshot, limit, request, node) ?? []);
  const steps = [...local, ...global.map((g) => g.step)];
  if (steps.length === 0) return { steps: [{ step: 'rate-limit', outcome: 'none', decidedBy: byDefault('no RateLimit applies'), node, details: [] }] };
  const denial = global.find((g) => g.denial)?.denial;
  return { steps, ...(denial ? { denial } : {}) };
}

function localStep(limit: RateLimitObject, request: RateLimitRequest, node: string): ExplainStep | undefined {
  const bucket = bucketFor(limit, request);
  if (!bucket) return undefined;
  const { maxTokens, tokensPerFill, fillIntervalMs } = bucket.spec;
  return {
    step: 'rate-limit',
    outcome: 'local-bucket',
    decidedBy: byObject(limit),
    node,
    details: [
      `route ${bucket.route}: ${maxTokens} tokens, ${tokensPerFill} back every ${fillIntervalMs} ms, per ${request.destination.key}${bucket.perSourceIdentity ? ' and per client identity' : ''}; over it the client gets 429 (flag RL)`,
      'the tokens left are not shown: explaining takes none',
    ],
  };
}

function globalStep(snapshot: MeshSnapshot, limit: RateLimitObject, request: RateLimitRequest, node: string): { step: ExplainStep; denial?: RateLimitServiceDenial } | undefined {
  const global = limit.spec.global;
  if (!global) return undefined;
  const route = routeFor(limit, request);
  const specs = route === 'default' ? global.descriptors : route.descriptors;
  const routeName = route === 'default' ? 'default' : route.name;
  const question = globalQuestionOf(limit, request);
  const sent = new Map((question?.named ?? []).map((d) => [d.name, d.entries]));
  const descriptorLines = specs.map((d) => {
    const entries = sent.get(d.name);
    return entries ? `descriptor ${d.name}: ${entries.map((e) => `${e.key}=${e.value}`).join(', ')}` : `descriptor ${d.name}: not sent (${whyNotSent(d, request)})`;
  });
  const base = { step: 'rate-limit' as const, decidedBy: byObject(limit), node };
  const service = `${global.service}:${global.port}`;
  if (!question) {
    const why = specs.length === 0 ? 'has no descriptors' : 'has no descriptor this request can fill';
    const details = [`route ${routeName} ${why}, so the agent does not ask the rate limit service ${service}`, ...descriptorLines];
    return { step: { ...base, outcome: 'no-descriptor', details } };
  }
  const failure =
    global.failureMode === 'deny' ? `failure mode deny: if it does not answer within ${global.timeoutMs} ms the client gets 500 (flag RLSE)` : `failure mode allow: if it does not answer within ${global.timeoutMs} ms the request is let through`;
  const address = authorizerAddress(snapshot, global);
  if (!address) {
    const outcome = global.failureMode === 'deny' ? `so the client gets 500 (flag RLSE, ${SERVICE_ERROR_DETAILS})` : 'so the request is let through unlimited (failure mode allow)';
    const details = [`the rate limit service ${service} has no ready endpoint on port ${global.port}: the agent cannot ask it, ${outcome}`, `route ${routeName}, domain ${global.domain}`, ...descriptorLines];
    const step: ExplainStep = { ...base, outcome: 'service-unavailable', details, ...(global.failureMode === 'deny' ? { ends: 'deny' as const } : {}) };
    return global.failureMode === 'deny' ? { step, denial: { kind: 'rate-limit-service', limit, service } } : { step };
  }
  const details = [
    `decided by the rate limit service at ${address.host}:${address.port}${address.host === global.service ? '' : ` (${service})`}, ${failure}`,
    `route ${routeName}, domain ${global.domain}: OVER_LIMIT is answered 429 (flag RL); explain does not ask the service`,
    ...descriptorLines,
  ];
  return { step: { ...base, outcome: 'global', details } };
}

/** The fact a descriptor needs that the request lacks (Envoy then sends no such descriptor). */
function whyNotSent(descriptor: GlobalDescriptorSpec, request: RateLimitRequest): string {
  const missing = descriptor.actions.find((action) => entriesOf({ name: descriptor.name, actions: [action] }, request) === undefined);
  return missing ? missingFact(missing) : 'every entry was skipped';
}

function missingFact(action: DescriptorAction): string {
  switch (action.kind) {
    case 'requestHeaders':
      return `the request has no ${action.header} header`;
    case 'remoteAddress':
      return 'the client address is unknown';
    case 'sourceIdentity':
      return 'the client proves no identity (plaintext)';
    case 'destinationService':
      return 'the request is for no Service';
    case 'genericKey':
      return 'a generic key is always sent';
  }
}
