// tcpdump on a lab device, for "nothing in the clear on the wire" checks: it fails loudly when the
// capture never started, never settled or holds nothing, so an empty capture cannot pass such a check.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { eventually } from './lab-cli.js';

export class PacketCapture {
  readonly #tcpdump;
  #stderr = '';

  /** Starts tcpdump on `device` in network namespace `netns`, writing TCP packets to `pcap`; resolves once it listens. */
  static async start(netns: string, device: string, pcap: string): Promise<PacketCapture> {
    const capture = new PacketCapture(netns, device, pcap);
    await eventually('tcpdump to listen', async () =>
      /listening on/.test(capture.#stderr) ? true : capture.#tcpdump.exitCode !== null ? assert.fail(`tcpdump on ${device} in ${netns} exited: ${capture.#stderr}`) : undefined,
    10_000);
    return capture;
  }

  private constructor(
    netns: string,
    readonly device: string,
    readonly pcap: string,
  ) {
    // --immediate-mode: without it libpcap hands packets over in blocks retired every second, and a
    // SIGINT before a block is retired loses it (CI once saw '32 packets received by filter, 0 captured').
    this.#tcpdump = spawn('ip', ['netns', 'exec', netns, 'tcpdump', '-i', device, '--immediate-mode', '-U', '-s', '0', '-w', pcap, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#tcpdump.stderr.on('data', (d: Buffer) => (this.#stderr += d.toString()));
  }

  /**
   * Waits until the file holds packets and has stopped growing for 300 ms; throws when that does not
   * happen within `timeoutMs`, since a check of a capture still being written (or empty) proves nothing.
   */
  async settled(timeoutMs = 5_000): Promise<void> {
    let last = -1;
    let stableSince = Date.now();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const size = (await stat(this.pcap).catch(() => undefined))?.size ?? 0;
      if (size !== last) [last, stableSince] = [size, Date.now()];
      else if (size > 24 && Date.now() - stableSince >= 300) return; // 24 bytes: the pcap file header alone
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`the capture on ${this.device} did not settle within ${timeoutMs} ms (${last} bytes; an empty capture proves nothing): ${this.#stderr}`);
  }

  /** Stops tcpdump and returns what it captured; fails when it captured no packet. */
  async stop(): Promise<Buffer> {
    if (this.#tcpdump.exitCode === null) {
      const exited = new Promise((resolve) => this.#tcpdump.once('exit', resolve));
      this.#tcpdump.kill('SIGINT');
      await exited;
    }
    const wire = await readFile(this.pcap).catch(() => Buffer.alloc(0));
    assert.ok(wire.length > 200, `the capture on ${this.device} is empty (${wire.length} bytes): ${this.#stderr}`);
    return wire;
  }
}
