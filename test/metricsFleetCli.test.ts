import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FleetSim, fleetConfigFor } from '../src/sim/fleetSim.js';
import { startCli } from './helpers/cli.js';
import { startReceiver } from './helpers/receiver.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

/*
 * issue 15: /metrics of the built daemon with an instance directory and http.metricsPerInstance
 * unset. Above 100 instances the series carry no instance label, and the totals and the fleet
 * gauges (late streams, worst lags) are there; at 100 the per-instance series are.
 */
describe('/metrics of the built daemon, http.metricsPerInstance unset', () => {
  for (const [companies, perInstance] of [[150, false], [100, true]] as const) {
    it(`${companies} instances × 2 resources: ${perInstance ? 'series by instance' : 'no instance label, totals and the fleet gauges'}`, { timeout: 90_000 }, async () => {
      const key = 'whsec_' + randomBytes(24).toString('base64');
      const sim = new FleetSim({ companies, latencyMs: 20 });
      const simUrl = await sim.start();
      const receiver = await startReceiver(key);
      const root = tempDir();
      mkdirSync(join(root, 'instances.d'));
      for (const instance of fleetConfigFor(companies, simUrl, receiver.url, { signatureKey: key, refreshInterval: '0.1' })) {
        writeJson(join(root, 'instances.d'), `${instance.name}.json`, instance);
      }
      const config = writeJson(root, 'poller.config.json', { database: 'p.db', http: { listen: '127.0.0.1:0' }, instancesDir: 'instances.d' });
      const p = startCli(['run', '-c', config]);
      try {
        const url = `${String((await p.waitForLog('health and metrics listening', 1, 30_000)).url)}/metrics`;
        const okPolls = (text: string) => [...text.matchAll(/^pollbridge_polls_total\{[^}]*result="ok"[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
        // Every stream polls within its 6 s interval: well over one poll per stream in 12 s.
        const text = await waitFor('a poll of most streams', async () => {
          const t = await (await fetch(url)).text();
          return okPolls(t) >= companies * 2 ? t : undefined;
        }, 30_000);
        expect(text).toMatch(/^pollbridge_streams \d+$/m);
        expect(Number(/^pollbridge_streams (\d+)$/m.exec(text)![1])).toBe(companies * 2);
        expect(text).toMatch(/^pollbridge_streams_late \d+$/m);
        expect(text).toMatch(/^pollbridge_schedule_lag_seconds_max [\d.e+-]+$/m);
        expect(text).toMatch(/^pollbridge_cursor_lag_seconds_max [\d.e+-]+$/m);
        // Per instance, the same names carry the label (their sum is the total); else the totals themselves.
        if (perInstance) expect(text).toMatch(/^pollbridge_polls_total\{instance="Company0099",resource="reports",result="ok"\} \d+$/m);
        else {
          expect(text).toMatch(/^pollbridge_polls_total\{resource="reports",result="ok"\} \d+$/m);
          expect(text).not.toContain('instance=');
        }
      } finally {
        p.child.kill('SIGTERM');
        expect((await p.exited).code).toBe(0);
        await receiver.close();
        await sim.stop();
      }
    });
  }
});
