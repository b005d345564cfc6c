import { AbortError } from 'p-retry';
import { describe, expect, it } from 'vitest';
import type { Authenticator } from '../src/poll/auth.js';
import { fetchJson } from '../src/poll/fetchJson.js';
import { createGetText } from '../src/poll/httpClient.js';
import { type RetryNotice, retryTransient, retryWaitMs, transient } from '../src/poll/retry.js';
import { ConcurSim, STATIC_TOKEN } from '../src/sim/concurSim.js';
import { harness } from './helpers/harness.js';

const POLICY = { retries: 3, minTimeoutMs: 1000, maxRetryAfterSec: 120 };

describe('the wait before a retry', () => {
  it('doubles from minTimeoutMs with up to as much again of jitter, after a Retry-After capped at maxRetryAfterSec', () => {
    expect(retryWaitMs(0, POLICY, undefined, 0)).toBe(1000);
    expect(retryWaitMs(2, POLICY, undefined, 0.5)).toBe(6000);
    expect(retryWaitMs(0, POLICY, 5, 0)).toBe(6000);
    expect(retryWaitMs(1, POLICY, 3600, 0.999)).toBe(120_000 + 3998);
  });
});

describe('retryTransient tells of each retry before its wait', () => {
  const fast = { retries: 2, minTimeoutMs: 5, maxRetryAfterSec: 1 };

  it('one notice per retry, none for the last failure; the reason is the one the attempt gave', async () => {
    const notices: RetryNotice[] = [];
    let calls = 0;
    const failing = retryTransient(async () => {
      calls++;
      throw transient(new Error(`GET http://x/?key=k answered 503 (call ${calls})`), 'answered 503');
    }, fast, undefined, (n) => notices.push(n));
    await expect(failing).rejects.toThrow(/call 3/);
    expect(calls).toBe(3);
    expect(notices).toEqual([
      { attempt: 1, attempts: 3, waitMs: expect.any(Number), reason: 'answered 503' },
      { attempt: 2, attempts: 3, waitMs: expect.any(Number), reason: 'answered 503' },
    ]);
    expect(notices[0]!.waitMs).toBeGreaterThanOrEqual(5);
    expect(notices[1]!.waitMs).toBeGreaterThanOrEqual(10);
  });

  it('no notice for a final failure (AbortError) or a bug (TypeError): neither is tried again', async () => {
    const notices: RetryNotice[] = [];
    for (const error of [new AbortError('refused'), new TypeError('x is undefined')]) {
      let calls = 0;
      await expect(retryTransient(async () => { calls++; throw error; }, fast, undefined, (n) => notices.push(n))).rejects.toThrow();
      expect(calls).toBe(1);
    }
    expect(notices).toEqual([]);
  });
});

describe('a poll that retries says so at warn, with attempt, wait and reason, and no URL', () => {
  it('pages: a 503, a dropped connection and a 429 with Retry-After, then the page', async () => {
    const h = await harness();
    h.sim.createReport();
    h.sim.faults.listFailures.push({ status: 503 }, { status: 0, reset: true }, { status: 429, retryAfter: '1' });
    const { daemon, logs } = h.daemon({ since: Date.now() * 1000 - 60_000_000 });
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(h.events()).toHaveLength(1);
    const retries = logs.messages('page request failed; retrying');
    expect(retries).toEqual([
      expect.objectContaining({ level: 'warn', instance: 'ConcurTest', resource: 'reports', attempt: 1, attempts: 4, reason: 'answered 503' }),
      expect.objectContaining({ level: 'warn', instance: 'ConcurTest', resource: 'reports', attempt: 2, attempts: 4, reason: expect.stringMatching(/^ECONNRESET/) }),
      expect.objectContaining({ level: 'warn', instance: 'ConcurTest', resource: 'reports', attempt: 3, attempts: 4, reason: 'answered 429' }),
    ]);
    // FAST_FETCH: 10 ms doubling, then a Retry-After of 1 s on top.
    expect(retries.map((r) => r.waitMs)).toEqual([expect.any(Number), expect.any(Number), expect.any(Number)]);
    expect(retries[0]!.waitMs).toBeGreaterThanOrEqual(10);
    expect(retries[2]!.waitMs).toBeGreaterThanOrEqual(1040);
    const raw = logs.raw.filter((l) => l.includes('retrying')).join('\n');
    expect(raw).not.toContain(h.simUrl);
    expect(raw).not.toContain('/api/');
  });

  it('token requests: a 502 from the token endpoint', async () => {
    const h = await harness();
    h.sim.faults.tokenFailures.push({ status: 502 });
    const { daemon, logs } = h.daemon();
    expect(await daemon.runOnce()).toMatchObject({ failedPolls: 0 });
    expect(logs.messages('token request failed; retrying')).toEqual([
      expect.objectContaining({ level: 'warn', instance: 'ConcurTest', attempt: 1, attempts: 4, reason: 'answered 502', waitMs: expect.any(Number) }),
    ]);
    for (const token of h.sim.issuedTokens) expect(logs.raw.join('\n')).not.toContain(token);
  });

  it('a provider that hangs: each timed-out attempt is told, with its reason, before the next', async () => {
    const sim = new ConcurSim();
    const base = await sim.start();
    try {
      sim.createReport();
      sim.faults.listDelayMs = 2000;
      const auth: Authenticator = {
        headers: async () => ({ authorization: `Bearer ${STATIC_TOKEN}` }), invalidate: () => {}, apiBase: () => undefined, problem: () => undefined, close: async () => {},
      };
      const notices: RetryNotice[] = [];
      const url = `${base}/generic/v1/reports?api_key=${STATIC_TOKEN}`;
      const reading = fetchJson(createGetText({ timeoutMs: 100 }), auth, url, { retries: 2, minTimeoutMs: 5, maxRetryAfterSec: 1 }, undefined, undefined, (n) => notices.push(n));
      await expect(reading).rejects.toThrow(/timed out/);
      expect(notices).toEqual([
        { attempt: 1, attempts: 3, waitMs: expect.any(Number), reason: 'timed out (ETIMEDOUT)' },
        { attempt: 2, attempts: 3, waitMs: expect.any(Number), reason: 'timed out (ETIMEDOUT)' },
      ]);
      expect(JSON.stringify(notices)).not.toContain(STATIC_TOKEN);
    } finally {
      await sim.stop();
    }
  });
});
