import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { ThreadedStore } from '../dist/store/threadedStore.js';
import type { Store } from '../src/store/types.js';
import { loadConfig } from '../src/config/load.js';
import { Daemon } from '../src/daemon/daemon.js';
import { captureLogger, FAST_FETCH, harness } from './helpers/harness.js';
import { SIM_ENV } from './helpers/simConfig.js';
import { freePort, rewrite } from './helpers/configFile.js';
import { waitFor } from './helpers/tmp.js';



const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve));
});

describe('attacks on the lifecycle queue', () => {
  it('start() asked after stop() on a daemon never started opens nothing: the database is free at once', { timeout: 60_000 }, async () => {
    const h = await harness();
    const { daemon } = h.daemon();
    await daemon.stop();
    await daemon.start();
    const asked = h.sim.listQueries.length;
    const second = h.daemon().daemon;
    await second.start();
    await waitFor('the second daemon polls', () => h.sim.listQueries.length > asked);
    await second.stop();
  });

  it('a start refused at http.listen has closed the database when it rejects: the fixed config starts at once', { timeout: 60_000 }, async () => {
    const busy = createServer();
    servers.push(busy);
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const taken = (busy.address() as AddressInfo).port;
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${taken}` } }));
    const { daemon } = h.daemon();
    await expect(daemon.start()).rejects.toThrow(/EADDRINUSE/);
    const free = await freePort();
    rewrite(h.configFile, (c) => { c.http = { listen: `127.0.0.1:${free}` }; });
    const second = h.daemon().daemon;
    await second.start();
    await second.stop();
  });

  it('a reload that changes only the host of http.listen (same port, held by the daemon itself) is applied', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${port}` } }));
    const { daemon } = h.daemon();
    await daemon.start();
    // Binding 0.0.0.0:P beside 127.0.0.1:P is EADDRINUSE on Linux: the port is busy only because it is ours.
    const next = rewrite(h.configFile, (c) => { c.http = { listen: `0.0.0.0:${port}` }; });
    expect(await daemon.reload(() => next)).toBe(true);
    expect(daemon.httpUrl).toBe(`http://0.0.0.0:${port}`);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });

  it('a same-port host change that still cannot bind once ours is closed is refused, and the old address answers again', { timeout: 60_000 }, async () => {
    // Another program on 127.0.0.2:P makes 0.0.0.0:P unbindable whatever the daemon does.
    const other = createServer();
    servers.push(other);
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.2', resolve));
    const port = (other.address() as AddressInfo).port;
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${port}` } }));
    const { daemon } = h.daemon();
    await daemon.start();
    const next = rewrite(h.configFile, (c) => { c.http = { listen: `0.0.0.0:${port}` }; });
    await expect(daemon.reload(() => next)).rejects.toThrow(`cannot listen on 0.0.0.0:${port} (http.listen): EADDRINUSE`);
    expect(daemon.httpUrl).toBe(`http://127.0.0.1:${port}`);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    expect(daemon.config.http).toEqual({ host: '127.0.0.1', port });
  });
});

describe('the database thread dies at awkward moments', () => {
  it('as the stop begins: `failed` never settles (a stop is not a death)', { timeout: 60_000 }, async () => {
    const h = await harness();
    let store: Store | undefined;
    // Not the harness's daemon: its clean-up would stop it again, and this stop may fail (the
    // database could not be closed), which is fair for a thread that died.
    const config = loadConfig(h.configFile, { env: SIM_ENV });
    const daemon = new Daemon({ config, log: captureLogger(config.secrets).log, fetchPolicy: FAST_FETCH, graceMs: 1000, openStore: async (path) => (store = await ThreadedStore.open(path)) });
    await daemon.start();
    await waitFor('a first poll', () => h.sim.listQueries.length > 0);
    let failed = false;
    void daemon.failed.then(() => { failed = true; });
    const stopping = daemon.stop().catch((err: Error) => err);
    await (store as unknown as { worker: Worker }).worker.terminate();
    await stopping;
    await sleep(100);
    expect(failed).toBe(false);
  });
});

describe('/healthz stall limit across reloads', () => {
  const stallReasons = async (url: string) => {
    const body = await (await fetch(`${url}/healthz`)).json() as { reasons?: string[] };
    return (body.reasons ?? []).filter((r) => r.includes('scheduled polls came and went'));
  };

  it('a reload keeping the schedule keeps a stall reported; one changing it counts its own polls from then', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const h = await harness({}, {}, (c) => ({ ...c, http: { listen: `127.0.0.1:${port}` } }));
    const { daemon } = h.daemon();
    await daemon.start();
    const url = `http://127.0.0.1:${port}`;
    await waitFor('a first poll', () => h.sim.listQueries.length > 0);
    h.sim.faults.listFailures = Array.from({ length: 1000 }, () => ({ status: 500 }));
    // Every second; 3 polls came and went after about 4 s.
    await waitFor('the stall reported', async () => (await stallReasons(url)).length === 1, 20_000);
    const same = rewrite(h.configFile, () => {});
    expect(await daemon.reload(() => same)).toBe(true);
    expect(await stallReasons(url)).toHaveLength(1);
    const slower = rewrite(h.configFile, (c) => { c.instances[0]!.configuration['pollbridge.poller.cron'] = '*/20 * * * * *'; });
    expect(await daemon.reload(() => slower)).toBe(true);
    expect(await stallReasons(url)).toEqual([]);
  });
});

