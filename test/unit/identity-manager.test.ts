// The workload certificate manager against the real embedded CA: shared in-flight fetches, renewal at
// half life, exponential backoff while the old certificate stays in use, expiry, forgetting, close.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CaClient } from '../../agent/identity/ca-client.js';
import { type CertificateEvent, WorkloadCertificateManager } from '../../agent/identity/certificate-manager.js';
import { EmbeddedCa } from '../../agent/identity/embedded-ca.js';
import { type IdentityResult, fail } from '../../agent/identity/errors.js';
import { type SpiffeId, spiffeId } from '../../agent/state/model.js';
import { tempDir } from '../fixtures/identity/test-ca.js';

const TD = 'cluster.local';
const PRODUCTPAGE = spiffeId(TD, 'default', 'productpage');
const REVIEWS = spiffeId(TD, 'default', 'reviews');
const RATINGS = spiffeId(TD, 'default', 'ratings');
const NOT_HERE = spiffeId(TD, 'default', 'not-on-this-node');

/** The embedded CA behind a switch that makes it fail, counting when it was asked. */
class SwitchableCa implements CaClient {
  readonly calls: number[] = [];
  failing = false;
  delayMs = 0;
  constructor(private readonly inner: CaClient) {}
  async requestCertificate(csrPem: string, identity: SpiffeId, ttlSeconds: number): Promise<IdentityResult<readonly string[]>> {
    this.calls.push(Date.now());
    if (this.delayMs > 0) await sleep(this.delayMs);
    if (this.failing) return fail('ca-unavailable', 'the test CA is down');
    return this.inner.requestCertificate(csrPem, identity, ttlSeconds);
  }
}

/** Resolves with the first event that matches, or fails the test after `timeoutMs`. */
function nextEvent<T extends CertificateEvent['type']>(
  manager: WorkloadCertificateManager,
  type: T,
  timeoutMs: number,
): Promise<Extract<CertificateEvent, { type: T }> & { at: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no ${type} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const unsubscribe = manager.subscribe((event) => {
      if (event.type !== type) return;
      clearTimeout(timer);
      unsubscribe();
      resolve({ ...(event as Extract<CertificateEvent, { type: T }>), at: Date.now() });
    });
  });
}

/**
 * Waits for `promise` for at most `timeoutMs`. The manager's timers are unref'd, so a test waiting on
 * them alone would let the process exit; this timer keeps it alive.
 */
async function within<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`nothing within ${timeoutMs} ms`)), timeoutMs)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Subscribes `listener` so that an assertion failing inside it fails the test. The manager logs and
 * drops a listener's exception (one listener must not break the others), so the test catches it here
 * and `failed` rejects with it: race it against what the test waits for.
 */
function subscribeChecked(manager: WorkloadCertificateManager, listener: (event: CertificateEvent) => void): { failed: Promise<never>; unsubscribe: () => void } {
  let fail: (err: unknown) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => undefined); // rejected only matters when raced; never an unhandled rejection
  const unsubscribe = manager.subscribe((event) => {
    try {
      listener(event);
    } catch (err) {
      fail(err);
    }
  });
  return { failed, unsubscribe };
}

describe('WorkloadCertificateManager', { concurrency: true }, () => {
  let stateDir: string;
  let ca: EmbeddedCa;
  before(async () => {
    stateDir = await tempDir('manager');
    const opened = await EmbeddedCa.open({ stateDir, trustDomain: TD, identitiesOnNode: () => new Set([PRODUCTPAGE, REVIEWS, RATINGS]) });
    assert.ok(opened.ok);
    ca = opened.value;
  });
  after(() => rm(stateDir, { recursive: true, force: true }));

  it('shares one CA request among concurrent fetches, then serves from cache', async () => {
    const backend = new SwitchableCa(ca.clientFor('node-a'));
    backend.delayMs = 50;
    const manager = new WorkloadCertificateManager({ caClient: backend });
    try {
      const results = await Promise.all(Array.from({ length: 10 }, () => manager.fetch(PRODUCTPAGE)));
      assert.equal(backend.calls.length, 1);
      const first = results[0];
      assert.ok(first?.ok);
      for (const result of results) assert.ok(result.ok && result.value === first.value);
      const again = await manager.fetch(PRODUCTPAGE);
      assert.ok(again.ok && again.value === first.value);
      assert.equal(manager.current(PRODUCTPAGE), first.value);
      assert.equal(backend.calls.length, 1);
      assert.deepEqual(manager.status().map((s) => [s.identity, s.state]), [[PRODUCTPAGE, 'Available']]);
      // The material node:tls needs, ready to use.
      assert.match(first.value.tls.key, /^-----BEGIN PRIVATE KEY-----/);
      assert.equal(first.value.tls.ca, first.value.rootsPem.join(''));
    } finally {
      manager.close();
    }
  });

  it('renews at half life and tells listeners', async () => {
    const manager = new WorkloadCertificateManager({ caClient: ca.clientFor('node-a'), ttlSeconds: 4 });
    try {
      const issuedAt = Date.now();
      const first = await manager.fetch(REVIEWS);
      assert.ok(first.ok);
      // The renewal is scheduled once the fetch has answered; on a busy machine issuing alone can take a second.
      const scheduledAt = Date.now();
      const renewed = await nextEvent(manager, 'issued', 6000);
      // About 2 s; X.509 times have whole seconds, so NotAfter (and the half life) can come up to 1 s early,
      // and a renewal at 3/4 life or later would end past 3 s after the certificate was in hand.
      const early = renewed.at - issuedAt;
      const late = renewed.at - scheduledAt;
      assert.ok(early >= 1400 && late < 3000, `renewed ${early} ms after the fetch began and ${late} ms after it answered, expected about 2000`);
      assert.equal(renewed.previous, first.value);
      assert.notEqual(renewed.certificate.serialNumber, first.value.serialNumber);
      // A new key with every certificate.
      assert.notEqual(renewed.certificate.keyPem, first.value.keyPem);
      assert.equal(manager.current(REVIEWS), renewed.certificate);
    } finally {
      manager.close();
    }
  });

  it('keeps the old certificate while the CA fails, backing off, and recovers', async () => {
    const backend = new SwitchableCa(ca.clientFor('node-a'));
    // 6 s leaves room for the retries below inside the lifetime even on a slow machine.
    const manager = new WorkloadCertificateManager({ caClient: backend, ttlSeconds: 6, retry: { initialMs: 200, maxMs: 800, jitter: 0 } });
    try {
      const first = await manager.fetch(RATINGS);
      assert.ok(first.ok);
      backend.failing = true;
      const failures: number[] = [];
      let threeFailures: () => void = () => undefined;
      const failedThrice = new Promise<void>((resolve) => (threeFailures = resolve));
      const checked = subscribeChecked(manager, (event) => {
        if (event.type !== 'failed') return;
        failures.push(event.retryInMs);
        assert.equal(event.stillValid, true);
        assert.equal(manager.current(RATINGS), first.value, 'the old certificate stays in use');
        if (failures.length === 3) threeFailures();
      });
      await within(Promise.race([failedThrice, checked.failed]), 8000); // the renewal at about 3 s, then retries 200 ms and 400 ms later
      assert.deepEqual(failures, [200, 400, 800]);
      // Timers may fire late on a busy machine, never early.
      const gaps = backend.calls.slice(1).map((t, i) => t - backend.calls[i]!);
      assert.ok(gaps[1]! >= 195 && gaps[2]! >= 395, `retry gaps ${gaps.join(', ')} ms`);
      assert.equal((await manager.fetch(RATINGS)).ok, true, 'fetch still answers with the valid certificate');
      backend.failing = false;
      const renewed = await Promise.race([nextEvent(manager, 'issued', 2000), checked.failed]);
      checked.unsubscribe();
      assert.equal(renewed.previous, first.value);
      assert.equal(manager.current(RATINGS), renewed.certificate);
    } finally {
      manager.close();
    }
  });

  it('drops an expired certificate when renewal keeps failing, and fails fast until the CA answers', async () => {
    const backend = new SwitchableCa(ca.clientFor('node-a'));
    const manager = new WorkloadCertificateManager({ caClient: backend, ttlSeconds: 2, retry: { initialMs: 300, maxMs: 300, jitter: 0 } });
    try {
      assert.ok((await manager.fetch(PRODUCTPAGE)).ok);
      backend.failing = true;
      await nextEvent(manager, 'expired', 4000);
      assert.equal(manager.current(PRODUCTPAGE), undefined);
      const calls = backend.calls.length;
      const result = await manager.fetch(PRODUCTPAGE);
      assert.ok(!result.ok);
      assert.equal(result.error.reason, 'ca-unavailable');
      assert.equal(result.error.message, 'the test CA is down');
      // The failed fetch waits for the scheduled retry: no CA call off the 300 ms schedule. A retry that
      // comes due while the fetch runs is on schedule, and on a busy machine one sometimes does.
      const sinceExpiry = backend.calls.slice(calls - 1);
      const gaps = sinceExpiry.slice(1).map((t, i) => t - sinceExpiry[i]!);
      assert.ok(gaps.every((gap) => gap >= 295), `the failed fetch waits for the scheduled retry: CA calls ${gaps.join(', ')} ms apart`);
      assert.deepEqual(manager.status().map((s) => [s.state, s.error]), [['Unavailable', 'the test CA is down']]);
    } finally {
      manager.close();
    }
  });

  it('reports the CA refusing an identity not on this node', async () => {
    const manager = new WorkloadCertificateManager({ caClient: ca.clientFor('node-a') });
    try {
      const result = await manager.fetch(NOT_HERE);
      assert.ok(!result.ok);
      assert.equal(result.error.reason, 'not-authorized');
      assert.equal(result.error.message, `node node-a asked for ${NOT_HERE} but no enrolled pod with that identity runs on node-a`);
    } finally {
      manager.close();
    }
  });

  it('prefetches tracked identities and forgets the ones no longer needed', async () => {
    const backend = new SwitchableCa(ca.clientFor('node-a'));
    const manager = new WorkloadCertificateManager({ caClient: backend });
    try {
      manager.track([PRODUCTPAGE, REVIEWS]);
      // The fetches join the prefetches already in flight.
      const fetched = await Promise.all([manager.fetch(PRODUCTPAGE), manager.fetch(REVIEWS)]);
      assert.ok(fetched.every((result) => result.ok));
      assert.equal(backend.calls.length, 2);
      const forgotten = nextEvent(manager, 'forgotten', 1000);
      manager.track([REVIEWS]);
      assert.equal((await forgotten).identity, PRODUCTPAGE);
      assert.equal(manager.current(PRODUCTPAGE), undefined);
      assert.ok(manager.current(REVIEWS));
    } finally {
      manager.close();
    }
  });

  it('stops renewing after close()', async () => {
    const backend = new SwitchableCa(ca.clientFor('node-a'));
    const manager = new WorkloadCertificateManager({ caClient: backend, ttlSeconds: 2 });
    assert.ok((await manager.fetch(REVIEWS)).ok);
    manager.close();
    await sleep(1500);
    assert.equal(backend.calls.length, 1);
    const result = await manager.fetch(REVIEWS);
    assert.ok(!result.ok);
    assert.equal(result.error.reason, 'closed');
  });
});
