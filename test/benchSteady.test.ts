import { afterEach, describe, expect, it } from 'vitest';
import { accountVersions, type MadeVersion, type Receipt } from '../bench/steadyVersions.js';
import { ConcurSim, DEFAULT_SIM_CREDENTIALS } from '../src/sim/concurSim.js';
import { waitFor } from './helpers/tmp.js';

/** The steady bench's accounting (bench/steadyVersions.ts) and the simulator switches it relies on. */

const STANDING_MS = 20_000;
const version = (id: string, lastModified: string, madeMs: number): MadeVersion => ({ id, lastModified, madeMs });
const receipt = (objectId: string, date: string, notificationId: string, receivedMs: number): Receipt => ({ objectId, date, notificationId, receivedMs });

describe('steady bench: which versions were announced, when, and which were missed', () => {
  it('counts a version as missed only when it stood unchanged 20 s and was never announced', () => {
    const versions = [
      version('A', '2026-11-22T07:00:00', 0),
      version('B', '2026-11-22T07:00:01', 1_000),
      // Replaces A after 5 s: A's first version was never current long enough to be owed an event.
      version('A', '2026-11-22T07:00:05', 5_000),
    ];
    const account = accountVersions(versions, [receipt('A', '2026-11-22T07:00:05.000Z', 'n1', 7_000)], 30_000, STANDING_MS);
    expect(account).toMatchObject({ made: 3, announced: 1, standing: 2, standingNeverAnnounced: 1, missedStillCurrent: 1, latenciesMs: [2_000] });
  });

  it('tells a missed version replaced unannounced from one still current, which may yet be announced', () => {
    const versions = [
      version('A', '2026-11-22T07:00:00', 0),
      version('A', '2026-11-22T07:00:25', 25_000),
    ];
    expect(accountVersions(versions, [], 50_000, STANDING_MS)).toMatchObject({ standing: 2, standingNeverAnnounced: 2, missedStillCurrent: 1 });
  });

  it('lets a version still current when the receipts were taken stand until then', () => {
    const versions = [version('A', '2026-11-22T07:00:15', 15_000)];
    expect(accountVersions(versions, [], 34_999, STANDING_MS)).toMatchObject({ standing: 0, standingNeverAnnounced: 0 });
    expect(accountVersions(versions, [], 35_000, STANDING_MS)).toMatchObject({ standing: 1, standingNeverAnnounced: 1 });
  });

  it('matches events to versions by instant (Concur fraction digits against ISO) and measures from the first receipt', () => {
    const versions = [version('A', '2026-11-22T07:00:00.98', 1_000)];
    const account = accountVersions(versions, [
      receipt('A', '2026-11-22T07:00:00.980Z', 'n1', 2_200),
      receipt('A', '2026-11-22T07:00:00.980Z', 'n1', 6_000),
    ], 10_000, STANDING_MS);
    expect(account).toMatchObject({ announced: 1, latenciesMs: [1_200], redeliveries: 1, duplicates: 0, unknown: 0 });
  });

  it('counts a version under two notification ids as a duplicate, and an event of no version made as unknown', () => {
    const versions = [version('A', '2026-11-22T07:00:00', 0), version('B', '2026-11-22T07:00:01', 1_000)];
    const account = accountVersions(versions, [
      receipt('A', '2026-11-22T07:00:00.000Z', 'n1', 500),
      receipt('A', '2026-11-22T07:00:00.000Z', 'n2', 900),
      receipt('B', '2026-11-22T07:00:02.000Z', 'n2', 900),
    ], 10_000, STANDING_MS);
    expect(account).toMatchObject({ announced: 1, duplicates: 1, redeliveries: 0, unknown: 1, latenciesMs: [500] });
  });
});

describe('simulator switches of the steady bench', () => {
  const sims: ConcurSim[] = [];
  afterEach(async () => {
    for (const s of sims.splice(0)) await s.stop();
  });

  async function listRequest(sim: ConcurSim): Promise<{ Items: { ID: string }[] }> {
    const c = DEFAULT_SIM_CREDENTIALS;
    const token = await fetch(`${sim.baseUrl}/oauth2/v0/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', client_id: c.clientId, client_secret: c.clientSecret, refresh_token: c.refreshToken }),
    }).then((r) => r.json() as Promise<{ access_token: string }>);
    const response = await fetch(`${sim.baseUrl}/api/v3.0/expense/reports?limit=100`, { headers: { authorization: `Bearer ${token.access_token}` } });
    expect(response.status).toBe(200);
    return response.json() as Promise<{ Items: { ID: string }[] }>;
  }

  it('listDelayMs (set over POST /_sim/faults) holds each list answer back: a change made after the request arrived is in its answer', async () => {
    const sim = new ConcurSim();
    sims.push(sim);
    await sim.start();
    const set = await fetch(`${sim.baseUrl}/_sim/faults`, { method: 'POST', body: JSON.stringify({ listDelayMs: 300 }) });
    expect(set.status).toBe(200);
    const answer = listRequest(sim);
    await waitFor('the list request to arrive', () => sim.listQueries.length === 1);
    const made = sim.createReport();
    expect((await answer).Items.map((r) => r.ID)).toEqual([made.ID]);
  });

  it('records when each version was made on the host clock, whatever date the report carries', () => {
    const sim = new ConcurSim();
    const before = Date.now();
    const { ID } = sim.createReport({}, { modifiedMs: before - 3_600_000 });
    sim.updateReport(ID);
    const after = Date.now();
    expect(sim.changes).toHaveLength(2);
    for (const change of sim.changes) {
      expect(change.madeMs).toBeGreaterThanOrEqual(before);
      expect(change.madeMs).toBeLessThanOrEqual(after);
    }
  });
});
