import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FLEET_RESOURCES, type FleetChange, type FleetResource, FleetSim, fleetConfigFor } from '../src/sim/fleetSim.js';
import { startCli } from './helpers/cli.js';
import { startReceiver } from './helpers/receiver.js';
import { rng } from './helpers/rng.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

/*
 * issue 15, end to end at 500 streams: 250 Concur companies × 2 resources, one instance file
 * each, against the fleet simulator (each company its own client and rotating refresh token),
 * a short schedule and changes across the companies all along. Every change must reach the
 * receiver exactly once, from its own company's instance, and no refresh token may be lost.
 */

const COMPANIES = 250;
const RESOURCES = Object.keys(FLEET_RESOURCES) as FleetResource[];
/** 6 s: each stream polls a few times while the changes are made. */
const REFRESH_MINUTES = '0.1';
const CHANGE_EVERY_MS = 40;
const CHANGES = 350;
const SEED = Number(process.env.FLEET_SEED ?? 15);

/** One version of a record, as the receiver's event names it. */
const versionKey = (instance: string, resource: string, id: string, date: string) => `${instance} ${resource} ${id}@${date}`;
const isoOf = (concur: string) => new Date(`${concur}Z`).toISOString();

describe('a fleet of 500 streams, end to end', () => {
  it(`delivers every change of ${COMPANIES} companies × ${RESOURCES.length} resources exactly once, with no refresh token lost (seed ${SEED})`, async () => {
    const random = rng(SEED);
    const key = 'whsec_' + randomBytes(24).toString('base64');
    const sim = new FleetSim({ companies: COMPANIES, latencyMs: 50 });
    const simUrl = await sim.start();
    const receiver = await startReceiver(key);
    const root = tempDir();
    const dir = join(root, 'instances.d');
    mkdirSync(dir);
    const instances = fleetConfigFor(COMPANIES, simUrl, receiver.url, { signatureKey: key, refreshInterval: REFRESH_MINUTES });
    for (const instance of instances) writeJson(dir, `${instance.name.toLowerCase()}.json`, instance);
    const mainConfig = writeJson(root, 'poller.config.json', { database: 'pollbridge.db', instancesDir: 'instances.d' });

    /** Every version made, and per version how often the receiver got it. */
    const made = new Map<string, number>();
    /** The current version of each record, by company, resource and id: updated only once delivered. */
    const current = new Map<string, { company: number; resource: FleetResource; id: string; key: string }>();
    let read = 0;
    const sync = () => {
      for (; read < receiver.accepted.length; read++) {
        const r = receiver.accepted[read]!;
        const instance = (JSON.parse(r.body) as { message: { instanceName: string } }).message.instanceName;
        for (const e of r.events) {
          const k = versionKey(instance, e.objectType, e.objectId, e.date);
          made.set(k, (made.get(k) ?? 0) + 1);
        }
      }
    };
    const record = (c: FleetChange) => {
      const k = versionKey(instances[c.company]!.name, c.resource, c.id, isoOf(c.lastModified));
      // Received before it was made would be a version the poller made up.
      made.set(k, made.get(k) ?? 0);
      current.set(`${c.company}/${c.resource}/${c.id}`, { company: c.company, resource: c.resource, id: c.id, key: k });
    };
    const missing = () => {
      sync();
      return [...made].filter(([, n]) => n === 0).map(([k]) => k);
    };

    const p = startCli(['run', '-c', mainConfig]);
    try {
      await p.waitForLog('pollbridge started', 1, 30_000);
      // Changes across the companies while they poll: new records, and updates of records whose
      // current version has been delivered (so that every version, not only the last, is due).
      for (let n = 0; n < CHANGES; n++) {
        sync();
        const delivered = [...current.values()].filter((v) => (made.get(v.key) ?? 0) > 0);
        if (delivered.length > 0 && random() < 0.3) {
          const v = delivered[Math.floor(random() * delivered.length)]!;
          record(sim.change(v.company, v.resource, v.id));
        } else {
          record(sim.change(Math.floor(random() * COMPANIES), RESOURCES[Math.floor(random() * RESOURCES.length)]!));
        }
        await new Promise((r) => setTimeout(r, CHANGE_EVERY_MS));
      }
      await waitFor('every change delivered', () => missing().length === 0, 60_000).catch((err: Error) => {
        throw new Error(`${err.message}: ${missing().length} of ${made.size} missing, e.g. ${missing().slice(0, 3).join(', ')}`);
      });
      // Two more intervals' polls, which must announce nothing again.
      const polledBefore = sim.counters.lists;
      await waitFor('another round of every stream', () => sim.counters.lists >= polledBefore + 2 * COMPANIES * RESOURCES.length, 30_000);
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
      await receiver.close();
      await sim.stop();
    }
    expect(p.child.exitCode, p.stderr.join('\n')).toBe(0);
    sync();
    expect([...made].filter(([, n]) => n !== 1), 'versions not received exactly once').toEqual([]);
    expect(made.size).toBe(CHANGES);
    expect(new Set(sim.changes.map((c) => c.company)).size).toBeGreaterThan(COMPANIES / 2);
    expect(sim.changes.length - new Set(sim.changes.map((c) => `${c.company}/${c.resource}/${c.id}`)).size, 'updates made').toBeGreaterThan(20);
    expect(receiver.failures).toEqual([]);
    // Every stream polled, every company's tokens kept: no refresh refused, no request unauthorized.
    for (const resource of RESOURCES) expect([...sim.byCompany.lists[resource]].filter((n) => n < 2)).toEqual([]);
    expect([...sim.byCompany.tokens].filter((n) => n < 1)).toEqual([]);
    expect({ invalidGrant: sim.counters.invalidGrant, invalidClient: sim.counters.invalidClient, unauthorized: sim.counters.unauthorized, rateLimited: sim.counters.rateLimited })
      .toEqual({ invalidGrant: 0, invalidClient: 0, unauthorized: 0, rateLimited: 0 });
    const logs = p.logs();
    expect(logs.filter((l) => l.message === 'poll failed; the next poll goes on from its last committed part')).toEqual([]);
    expect(logs.filter((l) => l.message === 'instance file refused')).toEqual([]);
  }, 120_000);
});
