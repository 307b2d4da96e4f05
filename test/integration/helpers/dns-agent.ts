// The agent's DNS proxy for the DNS capture test, run by it inside the node netns and the agent's
// cgroup: the real DnsProxy on <node IP>:15053 over a snapshot of the YAML given, forwarding what the
// mesh does not know to one upstream. Prints {"ready":true} once listening, and its counts as a JSON
// line for every line read on stdin.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { parseConfigFile } from '../../../agent/config/parse-file.js';
import { DnsProxy } from '../../../agent/dns/dns-proxy.js';
import { buildSnapshot } from '../../../agent/state/build.js';
import { WorkloadStore } from '../../../agent/state/store.js';

const [yamlPath, listenIp, upstreamIp] = process.argv.slice(2);
if (!yamlPath || !listenIp || !upstreamIp) throw new Error('usage: dns-agent.ts <yaml> <listen ip> <upstream ip>');

const store = new WorkloadStore();
const parsed = parseConfigFile(readFileSync(yamlPath, 'utf8'), yamlPath);
store.replace(buildSnapshot(parsed.objects, { version: 1, trustDomain: 'cluster.local', clusterDomain: 'cluster.local' }));
const proxy = new DnsProxy({ store, log: pino({ level: 'silent' }), upstreamOf: () => ({ ip: upstreamIp, port: 53 }) });
await proxy.listen(listenIp);
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
createInterface({ input: process.stdin }).on('line', () => process.stdout.write(`${JSON.stringify(proxy.counts)}\n`));
