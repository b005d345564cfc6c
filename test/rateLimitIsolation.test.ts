import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConcurSim } from '../src/sim/concurSim.js';
import { startApiProxy } from './helpers/apiProxy.js';
import { startCli } from './helpers/cli.js';
import { startReceiver } from './helpers/receiver.js';
import { linesOf, tenantInstance } from './helpers/tenants.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

/*
 * Concur limits each company, not the host: a 429 must slow that company alone, and the
 * per-origin request limit must hold whatever the number of companies. The built CLI polls the
 * simulator through a recording proxy, which plays the API's per-company rate limiter (the
 * simulator is one company) and counts what is in flight at the API.
 */

const EVERY_SECOND = { 'pollbridge.poller.cron': '* * * * * *' };
const POLL_FINISHED = 'poll finished';

async function fleet(answer?: Parameters<typeof startApiProxy>[1], listDelayMs = 0) {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const sim = new ConcurSim();
  await sim.start();
  sim.faults.listDelayMs = listDelayMs;
  const proxy = await startApiProxy(sim.baseUrl, answer);
  const receiver = await startReceiver(key);
  const dir = tempDir();
  return {
    sim, proxy, receiver, dir,
    instance: (name: string, apiUrl = proxy.url) => tenantInstance(name, apiUrl, receiver.url, key, EVERY_SECOND),
    async close() {
      await receiver.close();
      await sim.stop();
    },
  };
}

async function stopped(p: ReturnType<typeof startCli>) {
  p.child.kill('SIGTERM');
  const { code } = await p.exited;
  expect(code, p.stderr.join('\n')).toBe(0);
}

describe('a 429 slows that company alone', () => {
  it('pauses A for its Retry-After while B, on the same API origin, polls every second; /metrics counts A\'s 429s', async () => {
    // Every list request of A is answered 429 with Retry-After 30; B's go through.
    const f = await fleet((r) => (r.query.get('tenant') === 'A' ? { status: 429, headers: { 'retry-after': '30' } } : undefined));
    const config = writeJson(f.dir, 'c.json', { database: 'p.db', http: { listen: '127.0.0.1:0' }, instances: [f.instance('A'), f.instance('B')] });
    const p = startCli(['run', '-c', config]);
    try {
      const metricsUrl = `${String((await p.waitForLog('health and metrics listening')).url)}/metrics`;
      const first429 = await waitFor('A\'s first request', () => f.proxy.withQuery('tenant', 'A')[0]);
      // Six of B's polls due after A was told to wait: a few seconds, well inside A's 30 s pause.
      const after = (l: Record<string, unknown>) => Date.parse(String(l.dueAt)) > first429.startMs;
      await waitFor('six polls of B after A\'s 429', () => linesOf(p.logs(), POLL_FINISHED, 'B').filter(after).length >= 6, 20_000);

      const aRequests = f.proxy.withQuery('tenant', 'A');
      // Not hammering: one request, then nothing until the pause ends.
      expect(aRequests.map((r) => r.status)).toEqual([429]);
      expect(f.proxy.withQuery('tenant', 'B').filter((r) => r.startMs > first429.startMs).length).toBeGreaterThanOrEqual(6);
      // A's poll is waiting out the pause, not failing: it neither finished nor failed meanwhile.
      expect(linesOf(p.logs(), POLL_FINISHED, 'A')).toEqual([]);

      const metrics = await (await fetch(metricsUrl)).text();
      expect(metrics).toMatch(/^pollbridge_upstream_429_total\{instance="A",resource="reports"\} 1$/m);
      expect(metrics).not.toMatch(/^pollbridge_upstream_429_total\{instance="B"/m);
    } finally {
      await stopped(p);
      await f.close();
    }
  });
});

describe('polling.maxConcurrentPerOrigin', () => {
  // The unlimited case shows the proxy would see more than one at once if the limit let them.
  for (const [limit, expectOne] of [[1, true], [4, false]] as const) {
    it(`keeps the requests in flight at one API origin to ${limit} while four companies poll every second and the API holds each request 400 ms`, async () => {
      const f = await fleet(undefined, 400);
      const names = ['C1', 'C2', 'C3', 'C4'];
      const config = writeJson(f.dir, 'c.json', { database: 'p.db', polling: { maxConcurrentPerOrigin: limit }, instances: names.map((n) => f.instance(n)) });
      await untilThreePollsEach(config, names, f.close);
      expect(f.proxy.requests.length).toBeGreaterThanOrEqual(12);
      if (expectOne) expect(f.proxy.maxInFlight).toBe(1);
      else expect(f.proxy.maxInFlight).toBeGreaterThan(1);
    });
  }
});

/** Runs the built daemon on `config` until every named company has finished three polls, then stops it and `close`s. */
async function untilThreePollsEach(config: string, names: string[], close: () => Promise<void>): Promise<void> {
  const p = startCli(['run', '-c', config]);
  try {
    await waitFor('three polls of every company', () => names.every((n) => linesOf(p.logs(), POLL_FINISHED, n).length >= 3), 30_000);
  } finally {
    await stopped(p);
    await close();
  }
}

/** Most requests in flight at once over several proxies: an answer sent before a request comes in at the same ms. */
function maxOverlap(requests: { startMs: number; endMs: number | undefined }[]): number {
  const edges = requests.flatMap((r) => [{ at: r.startMs, step: 1 }, { at: r.endMs ?? Infinity, step: -1 }])
    .sort((a, b) => a.at - b.at || a.step - b.step);
  let now = 0;
  let max = 0;
  for (const e of edges) max = Math.max(max, (now += e.step));
  return max;
}

describe('polling.maxConcurrent', () => {
  // Two API origins, each well under its own limit: only the total limit can hold them to one.
  for (const [limit, expectOne] of [[1, true], [8, false]] as const) {
    it(`keeps the polls in flight over all origins to ${limit}: two origins, two companies each, polling every second, each request held 400 ms`, async () => {
      const f = await fleet(undefined, 400);
      const other = await startApiProxy(f.sim.baseUrl);
      const names = ['A1', 'A2', 'B1', 'B2'];
      const instances = names.map((n) => f.instance(n, n.startsWith('A') ? f.proxy.url : other.url));
      const config = writeJson(f.dir, 'c.json', { database: 'p.db', polling: { maxConcurrent: limit }, instances });
      await untilThreePollsEach(config, names, f.close);
      expect(f.proxy.requests.length).toBeGreaterThanOrEqual(6);
      expect(other.requests.length).toBeGreaterThanOrEqual(6);
      const overlap = maxOverlap([...f.proxy.requests, ...other.requests]);
      if (expectOne) expect(overlap).toBe(1);
      else expect(overlap).toBeGreaterThan(1);
    });
  }
});
