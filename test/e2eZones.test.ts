import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ConcurSim, parseConcurDate } from '../src/sim/concurSim.js';
import { runCli } from './helpers/cli.js';
import { type Received, startReceiver } from './helpers/receiver.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, writeJson } from './helpers/tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const events = (received: Received[]) => received.flatMap((r) => r.events);

describe('end to end: a provider that writes its dates in a zone other than UTC', () => {
  it.each(['Asia/Tokyo', 'America/Los_Angeles'])(
    'in %s, with the zone configured: every change is announced exactly once, and every window ends when it was asked',
    async (zone) => {
      const key = 'whsec_' + randomBytes(24).toString('base64');
      const sim = new ConcurSim({ dateZone: zone });
      const simUrl = await sim.start();
      cleanups.push(() => sim.stop());
      const receiver = await startReceiver(key);
      cleanups.push(() => receiver.close());
      const config = writeJson(tempDir(), 'poller.config.json', simConfig(simUrl, receiver.url, key, { 'pollbridge.poller.timezone': zone }));

      const since = new Date(Date.now() - 1000).toISOString();
      const created = Array.from({ length: 4 }, () => sim.createReport());
      const first = await runCli(['run', '-c', config, '--once', '--since', since], SIM_ENV);
      expect(first.code).toBe(0);
      sim.updateReport(created[0]!.ID);
      sim.updateReport(created[1]!.ID);
      const late = sim.createReport();
      const second = await runCli(['run', '-c', config, '--once'], SIM_ENV);
      expect(second.code).toBe(0);
      const askedBy = sim.now();

      const got = events(receiver.accepted).map((e) => `${e.eventType} ${e.objectId} ${e.date}`).sort();
      const expected = [
        ...created.map((r) => `CREATED ${r.ID} ${new Date(parseConcurDate(r.CreateDate, zone)!).toISOString()}`),
        ...sim.allReports()
          .filter((r) => r.LastModifiedDate !== r.CreateDate)
          .map((r) => `UPDATED ${r.ID} ${new Date(parseConcurDate(r.LastModifiedDate, zone)!).toISOString()}`),
        `CREATED ${late.ID} ${new Date(parseConcurDate(late.CreateDate, zone)!).toISOString()}`,
      ].sort();
      expect(expected).toHaveLength(7);
      expect(got).toEqual(expected);
      expect(receiver.failures).toEqual([]);

      // A window the provider reads as ending later than it was asked (UTC wall clock read in
      // Los Angeles is eight hours ahead) reads records that belong to the next one.
      const windows = sim.listQueries.filter((q) => q.has('modifiedDateBefore'));
      expect(windows.length).toBeGreaterThanOrEqual(2);
      for (const q of windows) {
        const after = parseConcurDate(q.get('modifiedDateAfter')!, zone)!;
        const before = parseConcurDate(q.get('modifiedDateBefore')!, zone)!;
        expect(after).toBeLessThanOrEqual(before);
        expect(before).toBeLessThanOrEqual(askedBy);
      }
    },
  );
});
