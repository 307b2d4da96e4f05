// `ambit lab upgrade node/<name>`: the command asks the lab's supervisor (a request file, then SIGUSR2)
// to start a new agent for the node beside the running one, from the current build; the new agent
// retires the old one once it is ready (agent/lifecycle/handover.ts); the command waits for that.

import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/log.js';
import type { Kubelet, ProcessStatus } from './kubelet.js';
import type { LabLayout } from './layout.js';

/** The signal that tells the supervisor to read its upgrade requests. */
const UPGRADE_SIGNAL = 'SIGUSR2';

function requestDir(layout: LabLayout): string {
  return join(layout.stateDir, 'upgrade-requests');
}

/** Supervisor side: on each signal, upgrades every node a request names, then removes the request. */
export function serveUpgradeRequests(layout: LabLayout, kubelet: Kubelet, log: Logger): () => void {
  const handle = async (): Promise<void> => {
    const dir = requestDir(layout);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const node of names) {
      await rm(join(dir, node), { force: true });
      if (kubelet.upgrade(`node/${node}`)) log.info({ node }, `upgrading the agent of node ${node}: a new one starts beside it`);
      else log.warn({ node }, `upgrade requested for node ${node}, which this lab does not have`);
    }
  };
  const onSignal = (): void => void handle().catch((err: Error) => log.error({ err }, `reading upgrade requests failed: ${err.message}`));
  process.on(UPGRADE_SIGNAL, onSignal);
  return () => process.off(UPGRADE_SIGNAL, onSignal);
}

export type UpgradeOutcome =
  | { readonly ok: true; readonly oldPid: number; readonly newPid: number; readonly ms: number }
  | { readonly ok: false; readonly message: string };

interface StatusFile {
  readonly processes: readonly ProcessStatus[];
}

function agentStatus(layout: LabLayout, node: string): ProcessStatus | undefined {
  try {
    const status = JSON.parse(readFileSync(layout.statusFile, 'utf8')) as StatusFile;
    return status.processes.find((p) => p.id === `node/${node}`);
  } catch {
    return undefined;
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Command side: asks for the upgrade and waits until the new agent is ready and the old one has exited. */
export async function upgradeLabAgent(layout: LabLayout, supervisorPid: number, node: string, timeoutMs: number): Promise<UpgradeOutcome> {
  const before = agentStatus(layout, node);
  if (!before) return { ok: false, message: `lab "${layout.name}" has no agent for node ${node}; see \`ambit lab status\`` };
  if (before.pid === undefined || !before.ready) return { ok: false, message: `the agent of node ${node} is not running and ready; an upgrade needs one to take over from (see \`ambit lab logs node/${node}\`)` };
  if (before.retiringPid !== undefined) return { ok: false, message: `node ${node} is already being upgraded (pid ${before.retiringPid} is draining)` };
  const oldPid = before.pid;
  const started = Date.now();
  await mkdir(requestDir(layout), { recursive: true });
  await writeFile(join(requestDir(layout), node), new Date().toISOString());
  process.kill(supervisorPid, UPGRADE_SIGNAL);
  while (Date.now() - started < timeoutMs) {
    const now = agentStatus(layout, node);
    if (now?.pid !== undefined && now.pid !== oldPid && now.ready && now.retiringPid === undefined && !alive(oldPid)) {
      return { ok: true, oldPid, newPid: now.pid, ms: Date.now() - started };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const stuck = existsSync(join(requestDir(layout), node)) ? 'the supervisor did not take the request' : alive(oldPid) ? `the old agent (pid ${oldPid}) is still running` : 'the new agent is not ready';
  return { ok: false, message: `the upgrade of node ${node} did not finish within ${timeoutMs / 1000}s: ${stuck}; see \`ambit lab logs node/${node}\`` };
}
