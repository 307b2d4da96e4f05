// The admin server's `ambit explain` endpoints: POST /explain (a whole path judged on this agent's
// snapshot), POST /explain/admission (the destination side, asked of the destination's own agent) and
// GET /explain/last-denied (the recent denials this agent decided, each explained again).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { admissionQueryOf, type DenialRing } from '../explain/denials.js';
import { explainAdmissionOnly, explainPath, readAdmissionQuery, readExplainQuery } from '../explain/explain.js';
import type { PathNormalization } from '../l7/request-target.js';
import type { MeshSnapshot } from '../state/model.js';

export interface ExplainEndpointOptions {
  readonly node: string;
  readonly snapshot: () => MeshSnapshot | undefined;
  /** Where the data path records its denials; absent: --last-denied has none to show. */
  readonly denials?: DenialRing;
  readonly pathNormalization?: PathNormalization;
}

/** A query is a few hundred bytes; anything far larger is not one. */
const MAX_BODY_BYTES = 64 * 1024;

export const EXPLAIN_PATHS: ReadonlySet<string> = new Set(['/explain', '/explain/admission', '/explain/last-denied']);

export async function serveExplain(req: IncomingMessage, res: ServerResponse, pathname: string, options: ExplainEndpointOptions): Promise<void> {
  const json = (status: number, value: unknown): void => void res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(value)}\n`);
  const problem = (status: number, message: string): void => json(status, { error: message });
  const snapshot = options.snapshot();
  if (!snapshot) return problem(503, 'no configuration loaded yet');
  const { node, pathNormalization } = options;

  if (pathname === '/explain/last-denied') {
    if (req.method !== 'GET') return problem(405, 'GET /explain/last-denied');
    const denials = (options.denials?.list() ?? []).map((denial) => ({ denial, explanation: explainAdmissionOnly(snapshot, node, admissionQueryOf(denial), pathNormalization) }));
    return json(200, { node, denials });
  }
  if (req.method !== 'POST') return problem(405, `POST ${pathname} with a JSON body`);
  const body = await readJson(req);
  if (!body.ok) return problem(400, body.error);
  if (pathname === '/explain/admission') {
    const query = readAdmissionQuery(body.value);
    if (!query.ok) return problem(400, query.error);
    return json(200, { explanation: explainAdmissionOnly(snapshot, node, query.value, pathNormalization) });
  }
  const query = readExplainQuery(body.value);
  if (!query.ok) return problem(400, query.error);
  const answer = explainPath(snapshot, node, query.value, pathNormalization);
  if (!answer.ok) return problem(404, answer.error);
  return json(200, answer.value);
}

async function readJson(req: IncomingMessage): Promise<{ ok: true; value: unknown } | { ok: false; error: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return { ok: false, error: `the body is over ${MAX_BODY_BYTES} bytes` };
    chunks.push(chunk);
  }
  try {
    return { ok: true, value: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown };
  } catch (err) {
    return { ok: false, error: `the body is not JSON: ${(err as Error).message}` };
  }
}
