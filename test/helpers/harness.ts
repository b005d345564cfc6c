import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { afterEach } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { Daemon, type DaemonOptions } from '../../src/daemon/daemon.js';
import { createLogger } from '../../src/log.js';
import { ConcurSim, type SimOptions } from '../../src/sim/concurSim.js';
import { ThreadedStore } from '../../dist/store/threadedStore.js';
import { type Respond, startReceiver } from './receiver.js';
import { SIM_ENV, simConfig } from './simConfig.js';
import { tempDir, writeJson } from './tmp.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

export function captureLogger(secrets: string[] = []) {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  const log = createLogger({ level: 'debug', secrets, stream });
  return { log, lines, raw, messages: (m: string) => lines.filter((l) => l.message === m) };
}

/** Fast in-poll retries for tests: the policy is the same, only the waits are short. */
export const FAST_FETCH = { retries: 3, minTimeoutMs: 10, maxRetryAfterSec: 2 };

/**
 * The simulator, a verifying receiver and a config file pointing one at the other; daemons run
 * in-process against a real SQLite file (tests of the CLI itself use child processes instead).
 */
export async function harness(
  configuration: Record<string, unknown> = {},
  simOptions: SimOptions = {},
  edit?: (config: ReturnType<typeof simConfig>) => unknown,
  respond?: Respond,
) {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const sim = new ConcurSim(simOptions);
  const simUrl = await sim.start();
  cleanups.push(() => sim.stop());
  const receiver = await startReceiver(key, respond);
  cleanups.push(() => receiver.close());
  const dir = tempDir();
  const base = simConfig(simUrl, receiver.url, key, configuration);
  const configFile = writeJson(dir, 'poller.config.json', edit ? edit(base) : base);
  const daemons: Daemon[] = [];
  cleanups.push(async () => {
    for (const d of daemons) await d.stop();
  });
  return {
    sim, receiver, dir, configFile, key, simUrl,
    daemon(options: Partial<DaemonOptions> = {}) {
      const config = loadConfig(configFile, { env: SIM_ENV });
      const logs = captureLogger(config.secrets);
      // In-process daemons run from the TypeScript sources; the database thread, as in production,
      // runs the built code.
      const daemon = new Daemon({ config, log: logs.log, fetchPolicy: FAST_FETCH, graceMs: 1000, openStore: (path) => ThreadedStore.open(path), ...options });
      daemons.push(daemon);
      return { daemon, logs, config };
    },
    events: () => receiver.accepted.flatMap((r) => r.events.map((e) => ({ ...e, notificationId: r.id }))),
  };
}
