// The lab's rate limit service, run by a test inside a lab pod (`ambit lab exec`): Envoy's
// RateLimitService/ShouldRateLimit on every address of the pod, counting in a real Redis reached by its
// Unix socket (the filesystem is shared with the lab's namespaces), so agents on every node share one quota.
// argv: <port> <redis socket> <limits: JSON of descriptor key → requests per minute>.
// Its first line says where it listens and its pid, so the test can stop it (SIGKILL) or hang it (SIGSTOP).

import { startRateLimitService } from '../../unit/helpers/rate-limit-service.js';
import { RedisCounters, RespClient } from './redis.js';

const [port, redisSocket, limits] = process.argv.slice(2);
if (!port || !redisSocket || !limits) throw new Error('usage: rate-limit-service-process.ts <port> <redis socket> <limits JSON>');

const redis = await RespClient.connect(redisSocket);
const perMinute = JSON.parse(limits) as Record<string, number>;
await startRateLimitService({ counters: new RedisCounters(redis), perMinute, listen: { host: '0.0.0.0', port: Number(port) } });
console.log(JSON.stringify({ listening: Number(port), pid: process.pid }));
