// The node console in the browser: polls the agent's /console/api/* and /explain endpoints (same
// origin) every few seconds and draws the traffic graph (SVG), flows, denials, certificates and capture.

interface Edge {
  readonly source: string;
  readonly destination: string;
  readonly requests: number;
  readonly errors: number;
  readonly tcpConnections: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly mtls: boolean;
}
interface Graph {
  readonly at: number;
  readonly workloads: readonly { readonly id: string; readonly name: string; readonly namespace: string }[];
  readonly edges: readonly Edge[];
}
interface Flow {
  readonly direction: string;
  readonly transport: string;
  readonly src: string;
  readonly dst: string;
  readonly originalDst?: string;
  readonly srcIdentity?: string;
  readonly dstIdentity?: string;
  readonly workload?: string;
}
/** An attached eBPF program (agent/redirect/capture-links.ts). */
interface CaptureLink {
  readonly program: string;
  readonly attachPoint:
    | { readonly kind: 'cgroup'; readonly cgroup: string; readonly pod?: string }
    | { readonly kind: 'tcx'; readonly direction: string; readonly device: string; readonly ifindex?: number; readonly role: 'uplink' | 'pod-veth' };
  readonly pin: string;
  readonly linkId?: number;
  readonly error?: string;
}
interface NodeState {
  readonly node: string;
  readonly certificates: readonly { readonly identity: string; readonly state: string; readonly expiresInSeconds?: number; readonly error?: string }[];
  readonly capture: { readonly decisions: Readonly<Record<string, number>>; readonly links: readonly CaptureLink[] };
}
interface Step {
  readonly step: string;
  readonly outcome: string;
  readonly decidedBy: { readonly object: string; readonly from?: string };
  readonly node?: string;
  readonly details: readonly string[];
}
interface Explanation {
  readonly verdict: 'allow' | 'deny' | 'unreachable';
  readonly steps: readonly Step[];
  readonly fix?: string;
}
/** POST /explain's answer: this agent's judgment of the whole path, and which node admits. */
interface PathAnswer {
  readonly explanation: Explanation;
  readonly sourceNode?: string;
  readonly destinationNode?: string;
}
interface Denials {
  readonly denials: readonly {
    readonly denial: { readonly at: string; readonly sourceIp: string; readonly sourceIdentity?: string; readonly destination: { readonly ip: string; readonly port: number }; readonly http?: { readonly method: string; readonly path: string }; readonly reason: string };
    readonly explanation: Explanation;
  }[];
}

const POLL_MS = 3000;
const SVG = 'http://www.w3.org/2000/svg';
let previous: Graph | undefined;
let thisNode = '';

function byId<T extends HTMLElement | SVGElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the console page has no #${id}`);
  return found as T;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const made = document.createElement(tag);
  if (text !== undefined) made.textContent = text;
  if (className) made.className = className;
  return made;
}

function svg(tag: string, attributes: Record<string, string | number>, text?: string): SVGElement {
  const made = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) made.setAttribute(k, String(v));
  if (text !== undefined) made.textContent = text;
  return made;
}

/** Replaces a table's rows; `empty` is said when there are none. */
function fillTable(id: string, rows: readonly (readonly (string | HTMLElement)[])[], empty: string): void {
  const body = byId<HTMLTableElement>(id).tBodies[0];
  if (!body) return;
  body.replaceChildren();
  if (rows.length === 0) {
    const cell = el('td', empty, 'empty');
    cell.colSpan = 6;
    body.append(el('tr'));
    body.lastElementChild?.append(cell);
    return;
  }
  for (const row of rows) {
    const tr = el('tr');
    for (const cell of row) tr.append(typeof cell === 'string' ? el('td', cell) : wrap(cell));
    body.append(tr);
  }
}

function wrap(content: HTMLElement): HTMLTableCellElement {
  const td = el('td');
  td.append(content);
  return td;
}

async function getJson<T>(path: string, init?: RequestInit): Promise<T> {
  const response = await fetch(path, { cache: 'no-store', ...init });
  const body = (await response.json()) as T & { error?: string };
  if (!response.ok) throw new Error(body.error ?? `${path} answered ${response.status}`);
  return body;
}

function bytes(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`;
}

/** Requests per second over the last poll (the totals themselves on the first one). */
function rateOf(edge: Edge, graph: Graph): string {
  const before = previous?.edges.find((e) => e.source === edge.source && e.destination === edge.destination);
  if (!previous || !before) return `${edge.requests} req`;
  const seconds = Math.max((graph.at - previous.at) / 1000, 0.001);
  return `${((edge.requests - before.requests) / seconds).toFixed(1)} req/s`;
}

function drawGraph(graph: Graph): void {
  const area = byId<SVGSVGElement>('graph');
  area.replaceChildren();
  const width = area.clientWidth || 800;
  const height = area.clientHeight || 460;
  const radius = Math.min(width, height) / 2 - 60;
  const at = new Map<string, { x: number; y: number }>();
  graph.workloads.forEach((w, i) => {
    const angle = (2 * Math.PI * i) / Math.max(graph.workloads.length, 1) - Math.PI / 2;
    at.set(w.id, { x: width / 2 + radius * Math.cos(angle), y: height / 2 + radius * Math.sin(angle) });
  });
  area.append(svg('defs', {}));
  area.firstElementChild?.append(markerArrow());
  for (const edge of graph.edges) {
    const from = at.get(edge.source);
    const to = at.get(edge.destination);
    if (!from || !to) continue;
    const classes = ['edge', edge.mtls ? 'mtls' : 'plain', edge.errors > 0 ? 'errors' : ''].join(' ').trim();
    const group = svg('g', { class: classes, 'data-source': edge.source, 'data-destination': edge.destination });
    // Stop short of the circles so the arrow head shows.
    const dx = to.x - from.x;
    const dy = to.y - from.y;
    const length = Math.hypot(dx, dy) || 1;
    const cut = 28 / length;
    group.append(svg('line', { x1: from.x + dx * cut, y1: from.y + dy * cut, x2: to.x - dx * cut, y2: to.y - dy * cut, 'marker-end': 'url(#arrow)' }));
    const errorRate = edge.requests > 0 ? `${Math.round((100 * edge.errors) / edge.requests)}% err` : `${edge.tcpConnections} conn`;
    const label = `${rateOf(edge, graph)} · ${errorRate} · ${bytes(edge.bytesSent + edge.bytesReceived)}${edge.mtls ? ' · mTLS' : ' · plaintext'}`;
    // A third of the way from the source and along the edge (turned to read left to right), so that
    // edges leaving one workload or crossing the middle do not stack their labels on one line.
    const x = from.x + dx * 0.35;
    const y = from.y + dy * 0.35;
    const degrees = (Math.atan2(dy, dx) * 180) / Math.PI;
    const upright = degrees > 90 ? degrees - 180 : degrees < -90 ? degrees + 180 : degrees;
    group.append(svg('text', { x, y: y - 4, 'text-anchor': 'middle', transform: `rotate(${upright.toFixed(1)} ${x.toFixed(1)} ${y.toFixed(1)})` }, label));
    area.append(group);
  }
  for (const w of graph.workloads) {
    const p = at.get(w.id);
    if (!p) continue;
    const group = svg('g', { class: 'node', 'data-workload': w.id });
    group.append(svg('circle', { cx: p.x, cy: p.y, r: 24 }));
    group.append(svg('text', { x: p.x, y: p.y + 4 }, w.name));
    group.append(svg('text', { x: p.x, y: p.y + 38, fill: '#777' }, w.namespace));
    area.append(group);
  }
  fillTable(
    'edges',
    graph.edges.map((e) => [e.source, e.destination, rateOf(e, graph), e.requests > 0 ? `${e.errors}/${e.requests}` : '-', bytes(e.bytesSent + e.bytesReceived), e.mtls ? 'yes' : 'no']),
    'no traffic seen by this node yet',
  );
  previous = graph;
}

function markerArrow(): SVGElement {
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#3b6fd8' }));
  return marker;
}

function drawFlows(flows: readonly Flow[]): void {
  fillTable(
    'flows',
    flows.map((f) => [f.direction, f.transport, f.workload ?? '', f.src, f.originalDst ? `${f.dst} (${f.originalDst})` : f.dst, (f.direction === 'inbound' ? f.srcIdentity : f.dstIdentity) ?? '']),
    'no open flows',
  );
}

function drawNode(state: NodeState): void {
  thisNode = state.node;
  byId('node').textContent = `node ${state.node}`;
  fillTable(
    'certificates',
    state.certificates.map((c) => [c.identity, c.error ? `${c.state}: ${c.error}` : c.state, c.expiresInSeconds === undefined ? '-' : duration(c.expiresInSeconds)]),
    'no certificates (no enrolled pod on this node)',
  );
  // Only the reasons that happened, most frequent first: dozens of counters stay at zero on a healthy node.
  const decisions = Object.entries(state.capture.decisions).filter(([, count]) => count > 0).sort((a, b) => b[1] - a[1]);
  fillTable('capture', decisions.map(([reason, count]) => [reason, String(count)]), 'no capture decision counted (capture off, or not eBPF)');
  fillTable(
    'capture-links',
    state.capture.links.map((link) => [link.program, attachedTo(link), link.linkId === undefined ? el('span', `missing: ${link.error ?? '?'}`, 'deny') : String(link.linkId), link.pin]),
    'no eBPF program attached (capture off, or not eBPF)',
  );
}

function attachedTo(link: CaptureLink): string {
  const at = link.attachPoint;
  if (at.kind === 'tcx') return `tcx ${at.direction} of ${at.device}${at.ifindex === undefined ? '' : ` (ifindex ${at.ifindex})`}, ${at.role === 'uplink' ? 'uplink' : "a pod's veth"}`;
  return `${at.pod !== undefined ? `pod ${at.pod}` : 'the agent'}: cgroup ${at.cgroup}`;
}

function duration(seconds: number): string {
  if (seconds < 0) return 'expired';
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h > 0 ? `${h}h ${m}m` : `${m}m ${seconds % 60}s`;
}

function drawDenials(answer: Denials): void {
  fillTable(
    'denials',
    [...answer.denials].reverse().map(({ denial, explanation }) => {
      const show = el('a', `${explanation.verdict}: why?`, explanation.verdict === 'deny' ? 'deny' : 'allow');
      show.href = '#explain-panel';
      show.addEventListener('click', () => showExplanation(explanation, `denial at ${denial.at}`));
      const what = denial.http ? `${denial.http.method} ${denial.http.path} ` : '';
      return [new Date(denial.at).toLocaleTimeString(), denial.sourceIdentity ?? denial.sourceIp, `${what}${denial.destination.ip}:${denial.destination.port}`, denial.reason, show];
    }),
    'no denials recently',
  );
}

function showExplanation(e: Explanation, title: string): void {
  const out = byId('explain-result');
  out.replaceChildren();
  const verdict = el('div', `${title}: `);
  verdict.append(el('span', e.verdict, e.verdict === 'allow' ? 'allow' : 'deny'));
  verdict.id = 'explain-verdict';
  out.append(verdict);
  const lines = e.steps.map((s) => `${s.step}: ${s.outcome}, by ${s.decidedBy.object}${s.decidedBy.from ? ` (${s.decidedBy.from})` : ''}${s.node ? ` on ${s.node}` : ''}${s.details.map((d) => `\n    ${d}`).join('')}`);
  if (e.fix) lines.push(`fix: ${e.fix}`);
  out.append(el('pre', lines.join('\n')));
}

async function explainFromForm(form: HTMLFormElement): Promise<void> {
  const data = new FormData(form);
  const source = String(data.get('source') ?? '').trim();
  const destination = String(data.get('destination') ?? '').trim();
  const request = /^([A-Z]+)\s+(\/\S*)$/.exec(String(data.get('http') ?? '').trim());
  const http = request ? { method: request[1], path: request[2], authority: destination, headers: [] } : undefined;
  try {
    const answer = await getJson<PathAnswer>('/explain', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ source, destination, ...(http ? { http } : {}) }) });
    showExplanation(answer.explanation, `${source} → ${destination}`);
    // The page reaches this node's agent only; `ambit explain` also asks the other nodes' agents.
    const others = [answer.sourceNode, answer.destinationNode].filter((n): n is string => n !== undefined && n !== thisNode);
    if (others.length > 0) byId('explain-result').append(el('div', `judged with node ${thisNode}'s configuration; node ${others.join(' and ')} decides its own side: open its console or run ambit explain`, 'empty'));
  } catch (err) {
    byId('explain-result').replaceChildren(el('div', `explain failed: ${(err as Error).message}`, 'deny'));
  }
}

async function poll(): Promise<void> {
  const status = byId('status');
  const results = await Promise.allSettled([
    getJson<Graph>('/console/api/graph').then(drawGraph),
    getJson<{ flows: readonly Flow[] }>('/console/api/flows').then((f) => drawFlows(f.flows)),
    getJson<NodeState>('/console/api/node').then(drawNode),
    getJson<Denials>('/explain/last-denied').then(drawDenials),
  ]);
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  status.textContent = failed.length === 0 ? `updated ${new Date().toLocaleTimeString()}` : `could not read the agent: ${String(failed[0]?.reason)}`;
}

byId<HTMLFormElement>('explain-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void explainFromForm(event.target as HTMLFormElement);
});
void poll();
setInterval(() => void poll(), POLL_MS);
