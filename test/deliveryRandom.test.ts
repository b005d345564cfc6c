import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Deliverer, type DeliveryTarget } from '../src/deliver/deliverer.js';
import { createHttpClient } from '../src/poll/httpClient.js';
import { captureLogger } from './helpers/harness.js';
import { enqueue, openOutboxStore } from './helpers/outbox.js';
import { startReceiver } from './helpers/receiver.js';
import { hash, rng } from './helpers/rng.js';
import { waitFor } from './helpers/tmp.js';

const SEEDS = Number(process.env.DELIVERY_SEEDS ?? 30);
const FIRST_SEED = Number(process.env.DELIVERY_FIRST_SEED ?? 1);
/** Failed attempts a notification may get at most: fewer than the schedule's retries, so none dies. */
const MAX_FAILURES = 3;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One world: 2–4 instances, ordered and unordered, on 1–2 receivers (instances may share one),
 * each receiver failing some attempts. Whether an attempt fails is decided by (seed, record,
 * attempt number), not by arrival order, so a seed replays the same failures. Notifications are
 * queued in several batches while the deliverer runs.
 */
async function runSeed(seed: number): Promise<void> {
  const random = rng(seed);
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const store = await openOutboxStore();
  const tries = new Map<string, number>();
  const receivers = await Promise.all(Array.from({ length: 1 + Math.floor(random() * 2) }, () => startReceiver(key, async (_n, body) => {
    const record = /"ID":"([^"]+)"/.exec(body)![1]!;
    const attempt = (tries.get(record) ?? 0) + 1;
    tries.set(record, attempt);
    const fate = rng(hash(`${seed}/${record}/${attempt}`));
    const failRate = Number(/"instanceName":"I\d+-(\d)"/.exec(body)![1]) / 10;
    await sleep(Math.floor(fate() * 4));
    return attempt <= MAX_FAILURES && fate() < failRate ? 500 : 200;
  })));
  const instances = Array.from({ length: 2 + Math.floor(random() * 3) }, (_, i) => ({
    // The fail rate (tenths) rides in the name: the receiver reads it from the body.
    name: `I${i}-${Math.floor(random() * 6)}`,
    // At least one of each kind.
    ordered: i === 0 ? true : i === 1 ? false : random() < 0.5,
    concurrency: 1 + Math.floor(random() * 4),
    receiver: Math.floor(random() * receivers.length),
  }));
  const targets = new Map(instances.map((i): [string, DeliveryTarget] => [i.name, {
    url: receivers[i.receiver]!.url, keys: { current: key, previous: [] }, timeoutMs: 5000, concurrency: i.concurrency, ordered: i.ordered,
    policy: { scheduleSec: Array.from({ length: MAX_FAILURES + 2 }, () => 0.01), maxRetryAfterSec: 5, jitter: 0 },
  }]));
  const deliverer = new Deliverer({ store, http: createHttpClient({ timeoutMs: 5000 }), log: captureLogger().log, targets: () => targets, idleCheckMs: 20 });
  const queued = new Map(instances.map((i) => [i.name, [] as string[]]));
  const queue = async () => {
    for (const i of instances) {
      const count = Math.floor(random() * 6);
      if (count > 0) queued.get(i.name)!.push(...await enqueue(store, i.name, count, queued.get(i.name)!.length));
    }
    deliverer.wake();
  };
  try {
    await queue();
    const running = deliverer.start();
    for (let batch = 0; batch < 3; batch++) {
      await sleep(Math.floor(random() * 30));
      await queue();
    }
    const total = [...queued.values()].reduce((n, ids) => n + ids.length, 0);
    await waitFor(`seed ${seed}: ${total} notifications delivered`, async () => (await store.notificationCounts()).delivered === total, 10_000);
    await deliverer.stop(1000);
    await running;

    const instanceOf = new Map([...queued].flatMap(([name, ids]) => ids.map((id) => [id, name] as const)));
    const accepted = receivers.flatMap((r) => r.accepted.map((a) => a.id));
    const requests = receivers.flatMap((r) => r.seenIds);
    for (const i of instances) {
      const ids = queued.get(i.name)!;
      const mine = accepted.filter((id) => instanceOf.get(id) === i.name);
      expect(mine.toSorted(), `${i.name}: each notification accepted exactly once`).toEqual(ids.toSorted());
      if (i.ordered) {
        expect(mine, `${i.name} (ordered): accepted in queue order`).toEqual(ids);
        // Never a request for a notification while an older one is still unaccepted.
        const positions = receivers[i.receiver]!.seenIds.filter((id) => instanceOf.get(id) === i.name).map((id) => ids.indexOf(id));
        expect(positions, `${i.name} (ordered): requests in queue order`).toEqual(positions.toSorted((a, b) => a - b));
      }
    }
    for (const [id] of instanceOf) {
      const n = (await store.getNotification(id))!;
      const sent = requests.filter((r) => r === id).length;
      expect(n.attempts, `${id}: one attempt row per request`).toBe(sent);
      expect(n.attemptLog.map((a) => [a.attempt, a.statusCode]), `${id}: attempts numbered, the last one accepted`)
        .toEqual(Array.from({ length: sent }, (_, k) => [k + 1, k === sent - 1 ? 200 : 500]));
    }
  } finally {
    await deliverer.stop(100);
    await store.close();
    await Promise.all(receivers.map((r) => r.close()));
  }
}

describe('delivery, randomized (seeded)', () => {
  it(`sends each notification once, ordered instances in order, with consistent attempts (${SEEDS} seeds)`, async () => {
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      try {
        await runSeed(seed);
      } catch (err) {
        // The seed replays the same world: DELIVERY_FIRST_SEED=<seed> DELIVERY_SEEDS=1.
        throw new Error(`failing seed ${seed} (rerun with DELIVERY_FIRST_SEED=${seed} DELIVERY_SEEDS=1): ${(err as Error).message}`);
      }
    }
  }, 300_000);
});
