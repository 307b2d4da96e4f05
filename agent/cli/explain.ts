// `ambit explain`: why a source can (or cannot) reach a destination, step by step, asked of the agents
// involved: the source's node judges capture, destination, transport and L7 routing, the destination's
// node judges admission (a lab node through its network namespace, a cluster agent on its admin port).

import { parseArgs } from 'node:util';
import type { ExplainHttpRequest } from '../explain/admission.js';
import type { Denial } from '../explain/denials.js';
import { type ExplainQuery, type PathAnswer, joinExplanations } from '../explain/explain.js';
import type { Explanation } from '../explain/explanation.js';
import { explanationJson, renderExplanation } from '../explain/render.js';
import { LabError, labLayout, readLabState } from '../lab/lab-state.js';
import { enterNodeNetns } from '../lab/kubelet.js';
import { DEFAULT_LAB, checkLabName } from '../lab/layout.js';
import { CommandError, requireTool, runCommand } from '../system/commands.js';
import { UsageError, parseListenAddress } from './usage.js';

export const EXPLAIN_USAGE = `Usage: ambit explain <source> <destination>[:port] [--http 'GET /path' [-H 'name: value']...] [--json]
         [--node <name> [--lab <name>] | --admin-address 127.0.0.1:15000 [--destination-admin-address <host:port>]]
       ambit explain --last-denied [--node <name> | --admin-address …] [--json]

Walks one connection (or HTTP request) through the mesh and prints each decision with the object that
made it and where that object came from: capture, destination (VIP to endpoint), transport (HBONE,
same node, passthrough, L7), the L7 route, PeerAuthentication, every AuthorizationPolicy in scope,
the rate limit, then the verdict (allow, deny, unreachable) and, for a deny, the change that allows it.
  <source>       a pod (namespace/name) or an IP
  <destination>  a pod (namespace/name), a Service (name.namespace or its hostname), a ServiceEntry
                 host, or an IP; :port is needed unless it has only one
--node asks that lab node's agent, then the agents of the source's and the destination's nodes;
without it the agent on --admin-address judges both sides (give --destination-admin-address, e.g.
a port-forward, to have the destination's agent judge admission). --json prints one object with
verdict and steps (step, outcome, decidedBy). --last-denied explains the denials the agent saw last.
  ambit explain bookinfo/productpage-v1 reviews.bookinfo:9080 --http 'GET /reviews/0' --node node-a
`;

/** How the CLI reaches an agent: a lab node's namespace, or an admin address on this host. */
type AgentAddress = { readonly kind: 'lab'; readonly lab: string; readonly node: string } | { readonly kind: 'admin'; readonly host: string; readonly port: number };

export async function explainCommand(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      http: { type: 'string' },
      header: { type: 'string', short: 'H', multiple: true },
      node: { type: 'string' },
      lab: { type: 'string', default: process.env['AMBIT_LAB'] ?? DEFAULT_LAB },
      'admin-address': { type: 'string', default: '127.0.0.1:15000' },
      'destination-admin-address': { type: 'string' },
      json: { type: 'boolean', default: false },
      'last-denied': { type: 'boolean', default: false },
    },
  });
  const lab = values.lab;
  if (values.node !== undefined) {
    const problem = checkLabName(lab);
    if (problem) throw new UsageError(problem);
  }
  const admin = parseListenAddress('--admin-address', values['admin-address']);
  const first: AgentAddress = values.node !== undefined ? { kind: 'lab', lab, node: values.node } : { kind: 'admin', ...admin };
  const write = (text: string): void => void process.stdout.write(text);

  if (values['last-denied']) {
    if (positionals.length > 0) throw new UsageError('--last-denied takes no source or destination');
    const answer = (await ask(first, 'GET', '/explain/last-denied')) as { node: string; denials: { denial: Denial; explanation: Explanation }[] };
    if (values.json) return write(`${JSON.stringify(answer, null, 2)}\n`), 0;
    if (answer.denials.length === 0) return write(`no denial seen by node ${answer.node}'s agent since it started\n`), 0;
    for (const { denial, explanation } of answer.denials) write(`\n${renderExplanation(explanation, denialHeading(denial))}`);
    return 0;
  }

  const [source, destination, ...extra] = positionals;
  if (source === undefined || destination === undefined || extra.length > 0) throw new UsageError(`ambit explain: expected <source> <destination>[:port]\n${EXPLAIN_USAGE}`);
  const http = values.http !== undefined ? parseHttp(values.http, values.header ?? [], destination) : undefined;
  if (http === undefined && (values.header ?? []).length > 0) throw new UsageError('-H needs --http: headers belong to an HTTP request');
  const query: ExplainQuery = { source, destination, ...(http ? { http } : {}) };

  let asked = first;
  let answer = (await ask(asked, 'POST', '/explain', query)) as PathAnswer;
  // The source's own agent judges the source side (its balancer, its node's locality).
  if (first.kind === 'lab' && answer.sourceNode && answer.sourceNode !== first.node) {
    asked = { ...first, node: answer.sourceNode };
    answer = (await ask(asked, 'POST', '/explain', query)) as PathAnswer;
  }
  let explanation = answer.explanation;
  const destinationAgent: AgentAddress | undefined =
    first.kind === 'lab'
      ? answer.destinationNode && asked.kind === 'lab' && answer.destinationNode !== asked.node
        ? { ...first, node: answer.destinationNode }
        : undefined
      : values['destination-admin-address'] !== undefined
        ? { kind: 'admin', ...parseListenAddress('--destination-admin-address', values['destination-admin-address']) }
        : undefined;
  if (destinationAgent && answer.admission) {
    const judged = (await ask(destinationAgent, 'POST', '/explain/admission', answer.admission)) as { explanation: Explanation };
    explanation = joinExplanations(explanation, judged.explanation);
  }
  write(values.json ? explanationJson(explanation) : renderExplanation(explanation, `${source} -> ${destination}${http ? ` ${http.method} ${http.path}` : ''}`));
  return 0;
}

/** `GET /path` and `-H 'name: value'` lines into the request; Host sets the authority, else the destination as written. */
export function parseHttp(line: string, headers: readonly string[], destination: string): ExplainHttpRequest {
  const m = /^\s*([A-Za-z]+)\s+(\/\S*)\s*$/.exec(line);
  if (!m) throw new UsageError(`--http ${JSON.stringify(line)}: expected a method and a path, e.g. 'GET /reviews/0'`);
  const pairs = headers.map((h) => {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new UsageError(`-H ${JSON.stringify(h)}: expected 'name: value'`);
    return [h.slice(0, colon).trim().toLowerCase(), h.slice(colon + 1).trim()] as const;
  });
  const host = pairs.find(([n]) => n === 'host')?.[1];
  return { method: m[1]!.toUpperCase(), path: m[2]!, authority: host ?? destination, headers: pairs.filter(([n]) => n !== 'host') };
}

function denialHeading(d: Denial): string {
  const what = d.http ? `${d.http.method} ${d.http.path}` : 'connection';
  return `denied at ${d.at}: ${what} from ${d.sourceIdentity ?? d.sourceIp} to ${d.destination.ip}:${d.destination.port} (${d.reason}); explained with the configuration in force now:`;
}

/** One admin call; the agent's JSON answer, or an error saying which agent failed and what to check. */
async function ask(agent: AgentAddress, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const text = agent.kind === 'admin' ? await askAdmin(agent, method, path, body) : await askLabNode(agent, method, path, body);
  let value: unknown;
  try {
    value = JSON.parse(text.body);
  } catch {
    throw new Error(`${describe(agent)} answered ${text.status} with something that is not JSON: ${text.body.slice(0, 200)}`);
  }
  if (text.status !== 200) {
    const error = typeof value === 'object' && value !== null && 'error' in value ? String((value as { error: unknown }).error) : text.body;
    throw new Error(`${describe(agent)}: ${error}`);
  }
  return value;
}

function describe(agent: AgentAddress): string {
  return agent.kind === 'lab' ? `node ${agent.node}'s agent (lab ${agent.lab})` : `the agent at ${agent.host}:${agent.port}`;
}

async function askAdmin(agent: Extract<AgentAddress, { kind: 'admin' }>, method: string, path: string, body: unknown): Promise<{ status: number; body: string }> {
  const url = `http://${agent.host.includes(':') ? `[${agent.host}]` : agent.host}:${agent.port}${path}`;
  const response = await fetch(url, { method, signal: AbortSignal.timeout(10_000), ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}) }).catch((err: Error) => {
    throw new Error(`cannot reach the agent's admin server at ${url}: ${err.cause instanceof Error ? err.cause.message : err.message}; is \`ambit run\` running here (in the lab: ambit explain … --node <name>)?`);
  });
  return { status: response.status, body: await response.text() };
}

/** A lab node's agent listens on loopback in the node's network namespace: curl from inside it. */
async function askLabNode(agent: Extract<AgentAddress, { kind: 'lab' }>, method: string, path: string, body: unknown): Promise<{ status: number; body: string }> {
  const state = readLabState(labLayout(agent.lab));
  if (!state) throw new LabError(`lab "${agent.lab}" is not up; start it with \`ambit lab up <yaml…>\` (or name it with --lab)`);
  const node = state.plan.nodes.find((n) => n.name === agent.node);
  if (!node) throw new LabError(`--node ${agent.node}: no such node in lab "${agent.lab}"; nodes: ${state.plan.nodes.map((n) => n.name).join(', ')}`);
  const enter = enterNodeNetns(node.netns);
  const curl = requireTool('curl', 'curl');
  const args = [...enter.slice(1), curl, '-sS', '--max-time', '10', '-X', method, '-w', '\n%{http_code}', ...(body !== undefined ? ['-H', 'content-type: application/json', '--data-binary', '@-'] : []), `http://127.0.0.1:15000${path}`];
  let out: string;
  try {
    out = await runCommand(enter[0]!, args, body !== undefined ? JSON.stringify(body) : undefined, 15_000);
  } catch (err) {
    const why = err instanceof CommandError ? err.message : (err as Error).message;
    throw new Error(`cannot reach ${describe(agent)}: ${why}; is the lab's agent on that node running (ambit lab status)?`);
  }
  const cut = out.lastIndexOf('\n');
  return { status: Number(out.slice(cut + 1).trim()), body: out.slice(0, cut) };
}
