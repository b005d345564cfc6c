import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import type { Placeable } from '../src/daemon/assignment.js';
import { LeaseLoop } from '../src/daemon/cluster.js';
import { PgStore } from '../src/store/pg/pgStore.js';
import { captureLogger } from './helpers/harness.js';
import { describePg, freshPgDatabase } from './helpers/pg.js';
import { startTcpProxy } from './helpers/tcpProxy.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => {});
});

async function addStreams(url: string, n: number): Promise<Placeable[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string; instance: string; resource: string }>(
      `INSERT INTO streams (instance, resource, cursor_us, origin_us) SELECT 'company-' || i, 'reports', 0, 0 FROM generate_series(1, $1) i RETURNING id, instance, resource`, [n]);
    return rows.map((r) => ({ id: Number(r.id), instance: r.instance, resource: r.resource }));
  } finally {
    await client.end();
  }
}

/** Every event of every replica, in the order they happened in this process. */
type Event = { replica: string; kind: 'gained' | 'lost'; stream: number };

async function startReplica(url: string, name: string, streams: Placeable[], leaseMs: number, events: Event[]) {
  const store = await PgStore.open(url, { replicaName: name, max: 3, connectTimeoutMs: 60_000 });
  const told = new Set<number>();
  const loop = new LeaseLoop({
    cluster: store.cluster,
    leaseMs,
    log: captureLogger().log,
    streams: () => streams,
    onLost: (ids) => { for (const id of ids) { told.delete(id); events.push({ replica: name, kind: 'lost', stream: id }); } },
    onGained: async (leases) => { for (const l of leases) { told.add(l.streamId); events.push({ replica: name, kind: 'gained', stream: l.streamId }); } },
  });
  cleanup.push(() => store.close(), () => loop.stop());
  loop.start();
  return { name, store, loop, told };
}

type Replica = Awaited<ReturnType<typeof startReplica>>;

/** Waits, driving rounds now and then, until `done` holds; at most `limitMs`. */
async function until(replicas: Replica[], done: () => boolean, what: string, limitMs = 15_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`not reached in ${limitMs} ms: ${what}`);
    for (const r of replicas) r.loop.wake();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Each stream told to exactly one replica, every replica with some. */
function spread(replicas: Replica[], streams: Placeable[]): boolean {
  const owners = streams.map((s) => replicas.filter((r) => r.told.has(s.id)).length);
  return owners.every((n) => n === 1) && replicas.every((r) => r.told.size > 0);
}

/** For every stream, a replica is told it gained it only after the one before was told it lost it. */
function neverTwoAtOnce(events: Event[]): string | undefined {
  const holder = new Map<number, string>();
  for (const e of events) {
    if (e.kind === 'gained') {
      const h = holder.get(e.stream);
      if (h !== undefined && h !== e.replica) return `stream ${e.stream} gained by ${e.replica} while ${h} still used it`;
      holder.set(e.stream, e.replica);
    } else if (holder.get(e.stream) === e.replica) holder.delete(e.stream);
  }
  return undefined;
}

describePg('the lease loop of replicas on one database', () => {
  it('spreads the streams, and a replica stopped cleanly hands its streams over at once (long before its leases would run out)', async () => {
    const url = await freshPgDatabase();
    const events: Event[] = [];
    // A lease of a minute: only the release on stopping can move streams within the wait.
    const leaseMs = 60_000;
    const first = await startReplica(url, 'vm-a', [], leaseMs, events);
    const streams = await addStreams(url, 30);
    const replicas = [first, await startReplica(url, 'vm-b', streams, leaseMs, events), await startReplica(url, 'vm-c', streams, leaseMs, events)];
    await first.loop.stop();
    replicas[0] = await startReplica(url, 'vm-a', streams, leaseMs, events);
    await until(replicas, () => spread(replicas, streams), 'the streams spread over three replicas');
    const leaving = replicas[1]!;
    const theirs = [...leaving.told];
    const mark = events.length;
    await leaving.loop.stop();
    expect(leaving.told.size).toBe(0);
    const rest = [replicas[0]!, replicas[2]!];
    await until(rest, () => spread(rest, streams), 'the leaver\'s streams taken over');
    // Only the leaver's streams moved.
    const after = events.slice(mark);
    expect(after.filter((e) => !theirs.includes(e.stream))).toEqual([]);
    expect(after.filter((e) => e.kind === 'gained').map((e) => e.stream).sort()).toEqual([...theirs].sort());
    expect(neverTwoAtOnce(events)).toBeUndefined();
  });

  it('a replica cut off from the database stops using its leases before the others take them, and gets its streams back when it returns', async () => {
    const url = await freshPgDatabase();
    const proxy = await startTcpProxy(url);
    const events: Event[] = [];
    // Run first among the clean-ups: a replica stopping waits for its round held by the partition.
    cleanup.push(async () => proxy.heal());
    const leaseMs = 1500;
    const a = await startReplica(proxy.url, 'vm-a', [], leaseMs, events);
    const streams = await addStreams(url, 20);
    await a.loop.stop();
    const replicas = [await startReplica(proxy.url, 'vm-a', streams, leaseMs, events), await startReplica(url, 'vm-b', streams, leaseMs, events)];
    const [cutOff, other] = replicas as [Replica, Replica];
    await until(replicas, () => spread(replicas, streams), 'the streams spread over two replicas');
    const share = new Set(cutOff.told);
    expect(cutOff.loop.problem()).toBeUndefined();
    proxy.cut();
    await until(replicas, () => other.told.size === streams.length, 'the other replica took every stream');
    expect(cutOff.told.size).toBe(0);
    expect(cutOff.loop.usable).toBe(0);
    expect(neverTwoAtOnce(events)).toBeUndefined();
    await until(replicas, () => cutOff.loop.problem() !== undefined, '/healthz told of the failing rounds');
    expect(cutOff.loop.problem()).toMatch(/cluster lease rounds failing for \d+ s/);
    proxy.heal();
    await until(replicas, () => spread(replicas, streams) && [...share].every((id) => cutOff.told.has(id)), 'the returning replica got its own streams back', 30_000);
    expect(cutOff.told).toEqual(share);
    expect(cutOff.loop.problem()).toBeUndefined();
    expect(neverTwoAtOnce(events)).toBeUndefined();
  }, 60_000);
});
