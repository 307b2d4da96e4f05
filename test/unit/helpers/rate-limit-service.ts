// A rate limit service for tests, speaking Envoy's RateLimitService/ShouldRateLimit on loopback with
// grpc-js, and counting as envoyproxy/ratelimit does: a fixed window per descriptor (domain, entries,
// window start), incremented by hits_addend, over the limit once the count passes requests_per_unit.
// The counters live in a CounterStore: a Map here, a real Redis in the shared-quota test.

import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { RATE_LIMIT_SERVICE } from '../../../agent/policy/global-rate-limit.js';
import {
  type RateLimitRequest,
  type RateLimitResponse,
  RateLimitResponseSchema,
  RateLimitResponse_Code,
  type RateLimitResponse_DescriptorStatus,
  RateLimitResponse_DescriptorStatusSchema,
  RateLimitResponse_RateLimit_Unit,
} from '../../../agent/proto/envoy/service/ratelimit/v3/rls_pb.js';

/** Adds `by` to the key's count (creating it to expire after `ttlSeconds`) and returns the new count. */
export interface CounterStore {
  increment(key: string, by: number, ttlSeconds: number): Promise<number>;
}

export class MapCounters implements CounterStore {
  readonly #counts = new Map<string, number>();
  increment(key: string, by: number): Promise<number> {
    const count = (this.#counts.get(key) ?? 0) + by;
    this.#counts.set(key, count);
    return Promise.resolve(count);
  }
}

/** A RateLimit on bookinfo's reviews whose global block asks the service on 127.0.0.1:`port`; `settings` and `descriptors` are YAML lines as written under global. */
export function globalRateLimitYaml(name: string, port: number, domain: string, settings: readonly string[], descriptors: string): string {
  return `
apiVersion: ambit.dev/v1alpha1
kind: RateLimit
metadata: {name: ${name}, namespace: bookinfo}
spec:
  targetRef: {kind: Service, name: reviews}
  global:
    service: 127.0.0.1
    port: ${port}
    domain: ${domain}
${settings.map((l) => `    ${l}\n`).join('')}    descriptors:
${descriptors}`;
}

export interface TestRateLimitServiceOptions {
  readonly counters: CounterStore;
  /** Requests per minute for every descriptor whose first entry's key is listed; others are unlimited. */
  readonly perMinute: Readonly<Record<string, number>>;
  /** Milliseconds to wait before answering (for the timeout test). */
  readonly delayMs?: number;
  /** Where to listen: loopback on a free port unless given (a lab pod listens on its own address). */
  readonly listen?: { readonly host: string; readonly port: number };
}

export interface TestRateLimitService {
  readonly port: number;
  /** Every request received, in order. */
  readonly requests: RateLimitRequest[];
  close(): Promise<void>;
}

export async function startRateLimitService(options: TestRateLimitServiceOptions): Promise<TestRateLimitService> {
  const requests: RateLimitRequest[] = [];
  const server = new grpc.Server();
  server.addService(RATE_LIMIT_SERVICE, {
    ShouldRateLimit: (call: grpc.ServerUnaryCall<RateLimitRequest, RateLimitResponse>, callback: grpc.sendUnaryData<RateLimitResponse>) => {
      requests.push(call.request);
      const answer = answerOf(options, call.request);
      const delayed = options.delayMs ? new Promise((r) => setTimeout(r, options.delayMs)) : Promise.resolve();
      void delayed.then(() => answer).then(
        (response) => callback(null, response),
        (err: Error) => callback({ code: grpc.status.INTERNAL, details: err.message }),
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${options.listen?.host ?? '127.0.0.1'}:${options.listen?.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    requests,
    // The agents' channels stay open (they are kept for the next check), so a graceful shutdown would wait for them.
    close: () => {
      server.forceShutdown();
      return Promise.resolve();
    },
  };
}

async function answerOf(options: TestRateLimitServiceOptions, request: RateLimitRequest): Promise<RateLimitResponse> {
  const hits = request.hitsAddend || 1;
  const now = Date.now();
  const windowStart = Math.floor(now / 60_000) * 60_000;
  const untilReset = windowStart + 60_000 - now;
  const statuses: RateLimitResponse_DescriptorStatus[] = [];
  for (const d of request.descriptors) {
    const limit = options.perMinute[d.entries[0]?.key ?? ''];
    if (limit === undefined) {
      statuses.push(create(RateLimitResponse_DescriptorStatusSchema, { code: RateLimitResponse_Code.OK }));
      continue;
    }
    const key = [request.domain, ...d.entries.map((e) => `${e.key}_${e.value}`), windowStart].join('_');
    const count = await options.counters.increment(key, hits, 60);
    statuses.push(
      create(RateLimitResponse_DescriptorStatusSchema, {
        code: count > limit ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK,
        currentLimit: { requestsPerUnit: limit, unit: RateLimitResponse_RateLimit_Unit.MINUTE },
        limitRemaining: Math.max(0, limit - count),
        durationUntilReset: { seconds: BigInt(Math.floor(untilReset / 1000)), nanos: (untilReset % 1000) * 1_000_000 },
      }),
    );
  }
  const over = statuses.some((s) => s.code === RateLimitResponse_Code.OVER_LIMIT);
  return create(RateLimitResponseSchema, { overallCode: over ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK, statuses });
}

