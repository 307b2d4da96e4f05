// The peer node's agent killed mid-transfer (issue 14 §3): a client streaming through HBONE to a pod on
// that node sees its connection fail promptly with a reset, not a hang, and connects again once the
// agent is back.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { STREAM_CLIENT, TRANSFER_CLIENT } from './helpers/fault-clients.js';
import { type FaultMesh, agentPid, agentReady, clientPod, echoIp, faultMeshYaml, isDead, labStatus } from './helpers/fault-lab.js';
import { eventually } from './helpers/lab-cli.js';
import { LabProcess } from './helpers/lab-process.js';
import { LabSession } from './helpers/lab-session.js';

const LAB = `fk${process.pid % 10000}`;
const MESH: FaultMesh = { netOctet: 81, podOctet: 248, clients: 1 };
const session = LabSession.inTempDir(LAB, 'ambit-faults-kill-');
/** What "promptly" means: the client must see its connection fail this soon after the peer agent died. */
const PROMPT_MS = 2_000;

before(() => session.up(faultMeshYaml(MESH), 90));
after(() => session.down());

test('the peer agent killed mid-transfer: the client gets a reset within 2 s, and new connections succeed once the agent is back', { timeout: 240_000 }, async () => {
  const stream = new LabProcess(LAB, clientPod(0), ['node', '-e', STREAM_CLIENT, echoIp(MESH), '9000', '120000']);
  let supervisorStopped = false;
  const { supervisorPid } = labStatus(LAB);
  try {
    // Mid-transfer: several MiB already echoed through both agents.
    await stream.line('the stream to carry 4 MiB', (r) => r['event'] === 'progress' && Number(r['echoed']) > 4 << 20, 60_000);
    const pid = agentPid(LAB, 'beta');
    // The supervisor restarts an agent at once; paused, the client's view is of a dead peer alone.
    process.kill(supervisorPid, 'SIGSTOP');
    supervisorStopped = true;
    process.kill(pid, 'SIGKILL');
    await eventually("beta's agent to die", async () => (isDead(pid) ? true : undefined), 10_000);
    const diedAt = Date.now();
    const end = await stream.line('the client to see its connection end', (r) => r['event'] === 'end', 30_000);
    const afterMs = Number(end['at']) - diedAt;
    console.log(`# the client saw '${String(end['error'])}' ${afterMs} ms after beta's agent died, having echoed ${String(end['echoed'])} bytes`);
    assert.equal(end['error'], 'ECONNRESET', `the client's connection ended with '${String(end['error'])}', not a reset: ${JSON.stringify(end)}`);
    assert.ok(afterMs <= PROMPT_MS, `the client saw the reset ${afterMs} ms after the peer agent died (more than ${PROMPT_MS} ms)`);
  } finally {
    stream.kill();
    if (supervisorStopped) process.kill(supervisorPid, 'SIGCONT');
  }
  await agentReady(session, 'beta');
  // Back: a fresh connection carries data whole again.
  const transfer = new LabProcess(LAB, clientPod(0), ['node', '-e', TRANSFER_CLIENT, echoIp(MESH), '9000', String(1 << 20), '20000']);
  try {
    const done = await transfer.line('a new transfer after the restart', (r) => r['event'] === 'done', 40_000);
    assert.equal(done['same'], true, `a new connection after the agent came back did not carry 1 MiB intact: ${JSON.stringify(done)}`);
  } finally {
    transfer.kill();
  }
});
