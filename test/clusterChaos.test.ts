import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { ConcurSim, type SimReport } from '../src/sim/concurSim.js';
import { type CliProcess, startCli } from './helpers/cli.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { hash, rng } from './helpers/rng.js';
import { SIM_ENV, simConfig } from './helpers/simConfig.js';
import { tempDir, waitFor, writeJson } from './helpers/tmp.js';

/**
 * Issue 16's "done when": three replicas of the built CLI on one PostgreSQL database, the
 * simulator changing records throughout, a receiver that fails now and then; 30 kill -9 of
 * random replicas (each restarted at once, the next step waiting for its "pollbridge started"),
 * 5 SIGSTOP/SIGCONT pauses outlasting the lease, and 3 revocations of every access token (every
 * replica refreshing at once). Afterwards: every change delivered, none under two notification
 * ids, no notification ever in flight twice at once (the receiver checks as requests arrive),
 * no invalid_grant in any replica's output.
 *
 * Every step waits for a moment it can see (a log line of its victim, a lease gone in the
 * database, new tokens stored), never a bare delay. CHAOS_SEED=n replays a run's choices.
 */

const LEASE_SECONDS = 2;
const REPLICAS = 3;
const INSTANCES = 3;
const KILLS = 30;
const PAUSES = 5;
const REVOCATIONS = 3;

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

type Accepted = { id: string; events: { objectId: string; date: string }[] };

/**
 * The receiver: per notification id, whether a request for it is in flight; a second one arriving
 * meanwhile is recorded. Answers 500 to about one request in six (by the seed, the id and the try).
 */
async function startReceiver(seed: number) {
  const inFlight = new Map<string, number>();
  const twice: string[] = [];
  const accepted: Accepted[] = [];
  const tries = new Map<string, number>();
  let requests = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void (async () => {
      requests++;
      const { message } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { message: { eventId: string; events: Accepted['events'] } };
      const id = message.eventId;
      if ((inFlight.get(id) ?? 0) > 0) twice.push(id);
      inFlight.set(id, (inFlight.get(id) ?? 0) + 1);
      const nth = (tries.get(id) ?? 0) + 1;
      tries.set(id, nth);
      const h = hash(`${seed}:${id}:${nth}`);
      await new Promise((r) => setTimeout(r, h % 40));
      const ok = (h >>> 8) % 6 !== 0;
      if (ok) accepted.push({ id, events: message.events });
      inFlight.set(id, inFlight.get(id)! - 1);
      res.writeHead(ok ? 200 : 500).end(ok ? 'ok' : 'not now');
    })());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanup.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, twice, accepted, requests: () => requests };
}

const keyOf = (objectId: string, date: string): string => `${objectId}@${date}`;

/** The latest version of every report: what a poller must have announced, whatever it missed between versions. */
const finalKeys = (reports: SimReport[]): string[] => reports.map((r) => keyOf(r.ID, new Date(`${r.LastModifiedDate}Z`).toISOString()));

describePg('a cluster of three replicas under kill -9 and pauses (issue 16)', () => {
  it('delivers every change, none under two ids, none in flight twice, no invalid_grant', { timeout: 300_000 }, async () => {
    const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`cluster chaos seed ${seed} (CHAOS_SEED=${seed} replays its choices)`);
    const random = rng(seed);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;

    const url = await freshPgDatabase('chaos');
    const db = new pg.Pool({ connectionString: url, max: 2 });
    cleanup.push(() => db.end());
    const receiver = await startReceiver(seed);
    // A simulator per instance: each has its own rotating refresh token, as each company's Concur does.
    const sims = await Promise.all(Array.from({ length: INSTANCES }, async () => {
      const sim = new ConcurSim();
      await sim.start();
      cleanup.push(() => sim.stop());
      return sim;
    }));
    const key = 'whsec_' + randomBytes(24).toString('base64');
    // A short delivery timeout: a claim need outlast no longer a request. Many slots per callback
    // URL: a killed replica's claims hold theirs until they run out.
    const template = simConfig(sims[0]!.baseUrl, receiver.url, key, {
      'pollbridge.delivery.retrySchedule': Array.from({ length: 60 }, () => 0.2),
      'pollbridge.delivery.timeoutMs': 2000,
      'pollbridge.delivery.concurrency': 16,
    });
    const dir = tempDir();
    const config = writeJson(dir, 'poller.config.json', {
      ...template,
      database: url,
      'pollbridge.cluster.leaseSeconds': LEASE_SECONDS,
      instances: sims.map((sim, i) => {
        const base = template.instances[0]!;
        return {
          ...base,
          name: `Co${i}`,
          // A callback URL each: one instance's claims never hold another's slots.
          configuration: { ...base.configuration, 'event.notification.callback.url': `${receiver.url}/${i}` },
          provider: { ...base.provider, baseUrl: sim.baseUrl, auth: { ...base.provider.auth, tokenUrl: `${sim.baseUrl}/oauth2/v0/token` } },
        };
      }),
    });
    for (const sim of sims) for (let i = 0; i < 5; i++) sim.createReport();

    const since = new Date(Date.now() - 3_600_000).toISOString();
    /** Every process each replica ran, oldest first: their output is checked at the end. */
    const generations: CliProcess[][] = Array.from({ length: REPLICAS }, () => []);
    const current = (r: number): CliProcess => generations[r]!.at(-1)!;
    const start = async (r: number): Promise<void> => {
      const p = startCli(['run', '-c', config, '--replica', `r${r}`, '--since', since, '--log-level', 'info'], SIM_ENV);
      generations[r]!.push(p);
      await p.waitForLog('pollbridge started', 1, 30_000);
    };
    cleanup.push(async () => {
      for (const list of generations) {
        for (const p of list) {
          if (p.child.exitCode === null && p.child.signalCode === null) {
            p.child.kill('SIGCONT');
            p.child.kill('SIGKILL');
            await p.exited;
          }
        }
      }
    });
    await Promise.all(Array.from({ length: REPLICAS }, (_, r) => start(r)));

    const tokens = async (): Promise<Map<string, string>> => new Map(
      (await db.query<{ instance: string; access_token: string | null }>('SELECT instance, access_token FROM auth_state')).rows
        .filter((row) => row.access_token !== null).map((row) => [row.instance, row.access_token!]),
    );
    // Kills come once every instance has a stored token: a kill inside the first refresh, after
    // Concur rotated the refresh token and before it was stored, strands any pollbridge (README).
    await waitFor('every instance\'s first token stored', async () => (await tokens()).size === INSTANCES, 30_000);

    // The records change throughout, a seeded few every tick, until the chaos is over.
    let changing = true;
    const changer = (async () => {
      while (changing) {
        const sim = pick(sims);
        const ids = sim.allReports().map((r) => r.ID);
        if (ids.length === 0 || random() < 0.4) sim.createReport();
        else sim.updateReport(pick(ids));
        await new Promise((r) => setTimeout(r, 40 + Math.floor(random() * 80)));
      }
    })();

    const steps = [...Array<string>(KILLS).fill('kill'), ...Array<string>(PAUSES).fill('pause'), ...Array<string>(REVOCATIONS).fill('revoke')];
    for (let i = steps.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [steps[i], steps[j]] = [steps[j]!, steps[i]!];
    }
    const done = { kill: 0, pause: 0, revoke: 0 } as Record<string, number>;
    /** What a failure says besides its own message: the seed, the steps done, each replica's last lines. */
    const state = (): string => `seed ${seed}, steps done ${JSON.stringify(done)}, receiver: ${receiver.requests()} requests, ${receiver.accepted.length} accepted\n`
      + Array.from({ length: REPLICAS }, (_, r) => `r${r}:\n  ${[...current(r).stdout.slice(-8), ...current(r).stderr.slice(-3)].join('\n  ')}`).join('\n');
    try {
      for (const step of steps) {
        // Some delivery between steps: the cluster is working when it is hit again.
        const acceptedBefore = receiver.accepted.length;
        await waitFor('a delivery since the last step', () => receiver.accepted.length > acceptedBefore, 60_000);
        if (step === 'revoke') {
          const before = await tokens();
          for (const sim of sims) sim.revokeAccessTokens();
          await waitFor('new tokens for every instance after the revocation', async () => {
            const after = await tokens();
            return [...before].every(([instance, token]) => after.has(instance) && after.get(instance) !== token);
          }, 60_000);
        } else {
          const r = Math.floor(random() * REPLICAS);
          const victim = current(r);
          // The moment: the victim's next line of output, whatever it is doing then.
          const lines = victim.stdout.length;
          await waitFor(`a line from r${r}`, () => victim.stdout.length > lines, 30_000);
          if (step === 'kill') {
            victim.child.kill('SIGKILL');
            await victim.exited;
            await start(r);
          } else {
            victim.child.kill('SIGSTOP');
            // Paused past its lease: the database shows none of its leases alive any more.
            const stoppedAt = Date.now();
            await waitFor(`r${r}'s leases expired while it is stopped`, async () => Date.now() - stoppedAt > (LEASE_SECONDS + 1) * 1000
              && Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM stream_leases WHERE replica_name = $1 AND expires_at > now()', [`r${r}`])).rows[0]!.n) === 0, 30_000);
            victim.child.kill('SIGCONT');
          }
        }
        done[step]!++;
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${state()}`, { cause: err });
    } finally {
      changing = false;
      await changer;
    }
    expect(done).toEqual({ kill: KILLS, pause: PAUSES, revoke: REVOCATIONS });

    const expected = sims.flatMap((sim) => finalKeys(sim.allReports()));
    const delivered = (): Set<string> => new Set(receiver.accepted.flatMap((a) => a.events.map((e) => keyOf(e.objectId, e.date))));
    try {
      // A killed replica's claims run out before another sends what it held: this wait covers them.
      await waitFor(`all ${expected.length} changes delivered`, () => expected.every((k) => delivered().has(k)), 150_000);
    } catch (err) {
      const got = delivered();
      const missing = expected.filter((k) => !got.has(k));
      throw new Error(`${(err as Error).message}; missing ${missing.length}, e.g. ${missing.slice(0, 3).join(', ')}\n${state()}`);
    }

    expect(receiver.twice, `seed ${seed}: notifications in flight twice at once`).toEqual([]);
    const idOf = new Map<string, string>();
    const underTwo: string[] = [];
    for (const a of receiver.accepted) {
      for (const e of a.events) {
        const k = keyOf(e.objectId, e.date);
        if (idOf.has(k) && idOf.get(k) !== a.id) underTwo.push(`${k}: ${idOf.get(k)} and ${a.id}`);
        idOf.set(k, a.id);
      }
    }
    expect(underTwo, `seed ${seed}: changes announced under two notification ids`).toEqual([]);
    const output = generations.flat().flatMap((p) => [...p.stdout, ...p.stderr]);
    expect(output.filter((line) => line.includes('invalid_grant')), `seed ${seed}: invalid_grant`).toEqual([]);

    for (let r = 0; r < REPLICAS; r++) {
      current(r).child.kill('SIGTERM');
      expect((await current(r).exited).code, `seed ${seed}: r${r} stopped cleanly`).toBe(0);
    }
  });
});
