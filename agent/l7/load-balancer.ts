// Choosing an endpoint for the next request, by the DestinationRule's loadBalancer: ROUND_ROBIN,
// LEAST_REQUEST (Istio's default, Envoy's power of two choices), RANDOM, PASSTHROUGH (keep the
// original destination) and consistent hashing (consistent-hash.ts). Balancers keep only their own
// small state (a cursor, a hash table); which endpoints are eligible is decided before they are asked.

import type { LoadBalancerSettings } from '../config/istio-networking.js';
import type { ObjectKey } from '../state/model.js';
import { ConsistentHashBalancer } from './consistent-hash.js';
import { type Random, mathRandom, randomIndex } from './random.js';

/** One endpoint as balancers see it: a pod IP and the target port a Service port maps to there. */
export interface LbEndpoint {
  /** `ip:port`, stable across snapshots for the same endpoint: state (counts, ejections) is keyed by it. */
  readonly key: string;
  readonly ip: string;
  readonly port: number;
  readonly workload: ObjectKey;
  /** 0 for the endpoints the Service's locality policy prefers; higher levels serve only when those cannot. */
  readonly priority: number;
}

export interface PickContext {
  /** The request's hash, for consistent-hash balancers; undefined when the hash key was absent. */
  readonly hash?: number;
  /** Endpoints already tried by this request (Envoy's previous_hosts retry predicate). */
  readonly avoid?: ReadonlySet<string>;
}

export type LbPick =
  | { readonly kind: 'endpoint'; readonly endpoint: LbEndpoint }
  /** PASSTHROUGH: connect to the address the client asked for; no balancing happens. */
  | { readonly kind: 'passthrough' }
  | { readonly kind: 'empty' };

export interface LoadBalancer {
  readonly algorithm: string;
  pick(endpoints: readonly LbEndpoint[], ctx?: PickContext): LbPick;
}

/** In-flight requests per endpoint, which LEAST_REQUEST reads; the data path counts begin and end. */
export class ActiveRequests {
  private readonly counts = new Map<string, number>();

  /** Counts a request as started; call the returned function once when it ends (extra calls are ignored). */
  begin(key: string): () => void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.counts.get(key) ?? 1) - 1;
      if (n <= 0) this.counts.delete(key);
      else this.counts.set(key, n);
    };
  }

  active(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

/** A retry prefers endpoints it has not tried, but takes a tried one rather than none. */
function eligible(endpoints: readonly LbEndpoint[], ctx: PickContext | undefined): readonly LbEndpoint[] {
  const avoid = ctx?.avoid;
  if (!avoid || avoid.size === 0) return endpoints;
  const fresh = endpoints.filter((e) => !avoid.has(e.key));
  return fresh.length > 0 ? fresh : endpoints;
}

export class RoundRobinBalancer implements LoadBalancer {
  readonly algorithm = 'ROUND_ROBIN';
  private cursor: number;

  constructor(random: Random = mathRandom) {
    // Envoy starts each proxy at a random offset, so that agents do not all hit the first endpoint at once.
    this.cursor = Math.floor(random() * 1_000_000);
  }

  pick(endpoints: readonly LbEndpoint[], ctx?: PickContext): LbPick {
    const list = eligible(endpoints, ctx);
    if (list.length === 0) return { kind: 'empty' };
    return { kind: 'endpoint', endpoint: list[this.cursor++ % list.length]! };
  }
}

export class RandomBalancer implements LoadBalancer {
  readonly algorithm = 'RANDOM';
  constructor(private readonly random: Random = mathRandom) {}

  pick(endpoints: readonly LbEndpoint[], ctx?: PickContext): LbPick {
    const list = eligible(endpoints, ctx);
    if (list.length === 0) return { kind: 'empty' };
    return { kind: 'endpoint', endpoint: list[randomIndex(this.random, list.length)]! };
  }
}

/**
 * Envoy's LEAST_REQUEST with equal weights: draw two endpoints at random (with replacement, as Envoy
 * does) and take the one with fewer active requests, the first on a tie. Cheap, and it steers away from
 * busy endpoints without the herd effect of always taking the global minimum.
 */
export class LeastRequestBalancer implements LoadBalancer {
  readonly algorithm = 'LEAST_REQUEST';
  constructor(
    private readonly active: ActiveRequests,
    private readonly random: Random = mathRandom,
    private readonly choices = 2,
  ) {}

  pick(endpoints: readonly LbEndpoint[], ctx?: PickContext): LbPick {
    const list = eligible(endpoints, ctx);
    if (list.length === 0) return { kind: 'empty' };
    let best = list[randomIndex(this.random, list.length)]!;
    for (let i = 1; i < this.choices; i++) {
      const candidate = list[randomIndex(this.random, list.length)]!;
      if (this.active.active(candidate.key) < this.active.active(best.key)) best = candidate;
    }
    return { kind: 'endpoint', endpoint: best };
  }
}

export class PassthroughBalancer implements LoadBalancer {
  readonly algorithm = 'PASSTHROUGH';
  pick(): LbPick {
    return { kind: 'passthrough' };
  }
}

/** The balancer a DestinationRule asks for; no rule, UNSPECIFIED or no algorithm means LEAST_REQUEST. */
export function createLoadBalancer(settings: LoadBalancerSettings | undefined, active: ActiveRequests, random: Random = mathRandom): LoadBalancer {
  const algorithm = settings?.algorithm;
  if (algorithm?.kind === 'consistentHash') return new ConsistentHashBalancer(algorithm.hashAlgorithm, random);
  switch (algorithm?.kind === 'simple' ? algorithm.simple : 'LEAST_REQUEST') {
    case 'ROUND_ROBIN':
      return new RoundRobinBalancer(random);
    case 'RANDOM':
      return new RandomBalancer(random);
    case 'PASSTHROUGH':
      return new PassthroughBalancer();
    default:
      return new LeastRequestBalancer(active, random);
  }
}
