// A real Redis for tests: Debian's redis-server (installed with apt when missing) on a Unix socket in a
// temporary directory, with no persistence, and a minimal RESP2 client over that socket; the counter
// store of the in-test rate limit service, so that its quota lives where envoyproxy/ratelimit keeps it.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CounterStore } from '../../unit/helpers/rate-limit-service.js';

const REDIS_SERVER = '/usr/bin/redis-server';

type Resp = string | number | null | Error | Resp[];

/** Installs Debian's redis-server when it is not there yet (the test machine starts without it). */
export async function ensureRedisServer(): Promise<void> {
  if (existsSync(REDIS_SERVER)) return;
  await promisify(execFile)('apt-get', ['install', '-y', '--no-install-recommends', 'redis-server'], { timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (!existsSync(REDIS_SERVER)) throw new Error(`apt-get install redis-server finished but ${REDIS_SERVER} is missing; install it by hand and run the test again`);
}

/** Parses one RESP2 value at `at`; undefined when the buffer does not hold all of it yet. */
function parse(buf: Buffer, at: number): { value: Resp; next: number } | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const line = buf.toString('utf8', at + 1, eol);
  switch (String.fromCharCode(buf[at]!)) {
    case '+':
      return { value: line, next: eol + 2 };
    case '-':
      return { value: new Error(line), next: eol + 2 };
    case ':':
      return { value: Number(line), next: eol + 2 };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, next: eol + 2 };
      if (buf.length < eol + 2 + length + 2) return undefined;
      return { value: buf.toString('utf8', eol + 2, eol + 2 + length), next: eol + 2 + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: eol + 2 };
      const items: Resp[] = [];
      let next = eol + 2;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, next);
        if (!item) return undefined;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new Error(`not a RESP reply: ${JSON.stringify(buf.toString('utf8', at, Math.min(buf.length, at + 40)))}`);
  }
}

/** One connection; commands are answered in order (RESP's pipelining), each promise by its reply. */
export class RespClient {
  readonly #socket: Socket;
  readonly #waiting: { resolve: (v: Resp) => void; reject: (e: Error) => void }[] = [];
  #buffer = Buffer.alloc(0);

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      for (let reply = parse(this.#buffer, 0); reply; reply = this.#buffer.length > 0 ? parse(this.#buffer, 0) : undefined) {
        this.#buffer = this.#buffer.subarray(reply.next);
        const waiter = this.#waiting.shift();
        if (reply.value instanceof Error) waiter?.reject(reply.value);
        else waiter?.resolve(reply.value);
      }
    });
    socket.on('close', () => {
      for (const w of this.#waiting.splice(0)) w.reject(new Error('the Redis connection closed before answering'));
    });
  }

  static connect(path: string): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path, () => resolve(new RespClient(socket)));
      socket.once('error', reject);
    });
  }

  command(...args: (string | number)[]): Promise<Resp> {
    const parts = args.map(String);
    const wire = `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`;
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#socket.write(wire);
    });
  }

  close(): void {
    this.#socket.end();
  }
}

/** Redis counters as envoyproxy/ratelimit keeps them: INCRBY, and an expiry set when the key is new. */
export class RedisCounters implements CounterStore {
  constructor(private readonly client: RespClient) {}

  async increment(key: string, by: number, ttlSeconds: number): Promise<number> {
    const count = await this.client.command('INCRBY', key, by);
    if (typeof count !== 'number') throw new Error(`INCRBY ${key} answered ${JSON.stringify(count)}, not an integer`);
    if (count === by) await this.client.command('EXPIRE', key, ttlSeconds);
    return count;
  }
}

export interface RedisServer {
  readonly socketPath: string;
  readonly client: RespClient;
  stop(): Promise<void>;
}

/** Starts redis-server on a Unix socket in a fresh temporary directory (no TCP port), ready when it says so. */
export async function startRedis(): Promise<RedisServer> {
  await ensureRedisServer();
  const dir = await mkdtemp(join(tmpdir(), 'ambit-redis-'));
  const socketPath = join(dir, 'redis.sock');
  const child: ChildProcess = spawn(REDIS_SERVER, ['--port', '0', '--unixsocket', socketPath, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not report ready within 10 s; it said: ${output.slice(-500)}`));
    }, 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      // "Ready to accept connections" (Redis 6) or "...ready to accept connections at <socket>" (Redis 7).
      if (/ready to accept connections/i.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}) before it was ready: ${output.slice(-500)}`));
    });
  });
  const client = await RespClient.connect(socketPath);
  return {
    socketPath,
    client,
    stop: async () => {
      client.close();
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
