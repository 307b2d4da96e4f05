// `ambit explain`'s text: one block per step (its outcome, the object that decided it and where it came
// from, then what it saw), the verdict, and the fix for a denial. `--json` prints the Explanation itself.

import type { Explanation, ExplainStep } from './explanation.js';

const TITLES: Readonly<Record<ExplainStep['step'], string>> = {
  capture: 'capture',
  destination: 'destination',
  transport: 'transport',
  'l7-route': 'L7 route',
  'peer-authentication': 'PeerAuthentication',
  authorization: 'authorization',
  'rate-limit': 'rate limit',
};

export function renderExplanation(explanation: Explanation, heading?: string): string {
  const lines: string[] = [];
  if (heading) lines.push(heading);
  explanation.steps.forEach((step, i) => {
    const where = step.decidedBy.from ? ` (${step.decidedBy.from})` : '';
    const node = step.node ? ` [node ${step.node}]` : '';
    lines.push(`${i + 1}. ${TITLES[step.step]}: ${step.outcome}${step.ends ? ` -> ${step.ends.toUpperCase()}` : ''}${node}`);
    lines.push(`   decided by ${step.decidedBy.object}${where}`);
    for (const detail of step.details) lines.push(`   ${detail}`);
  });
  lines.push(`verdict: ${explanation.verdict.toUpperCase()}`);
  if (explanation.fix) lines.push(`${explanation.verdict === 'deny' ? 'to allow it' : 'why'}: ${explanation.fix}`);
  const snapshots = Object.entries(explanation.snapshots).map(([node, version]) => `${node} v${version}`);
  if (snapshots.length > 0) lines.push(`(configuration: ${snapshots.join(', ')})`);
  return `${lines.join('\n')}\n`;
}

/** The one object `--json` prints: `verdict` and `steps` (each with `step`, `outcome`, `decidedBy`), and more. */
export function explanationJson(explanation: Explanation): string {
  return `${JSON.stringify(explanation, null, 2)}\n`;
}
