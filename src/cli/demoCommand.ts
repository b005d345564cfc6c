import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CALLOUT_PATH } from '../config/callout.js';
import { loadConfig } from '../config/load.js';
import { Daemon } from '../daemon/daemon.js';
import { startVerifyingReceiver } from '../demo/verifyingReceiver.js';
import { createLogger } from '../log.js';
import { concurHubResource } from '../sim/concurList.js';
import { ConcurSim, DEFAULT_SIM_CREDENTIALS } from '../sim/concurSim.js';
import { logLevel } from './options.js';
import { startChangeStream } from './simCommand.js';

/** The config the demo runs: the sample's shape, pointed at the simulator and the local receiver. */
export function demoConfig(simUrl: string, callbackUrl: string, key: string) {
  const c = DEFAULT_SIM_CREDENTIALS;
  return {
    database: './pollbridge.db',
    instances: [{
      name: 'ConcurDemo',
      element: { key: 'concur' },
      provider: {
        baseUrl: simUrl,
        auth: { type: 'oauth2_refresh_token', tokenUrl: `${simUrl}/oauth2/v0/token`, clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: c.refreshToken },
      },
      configuration: {
        'event.notification.enabled': 'true',
        'event.vendor.type': 'polling',
        'event.notification.callback.url': callbackUrl,
        'event.notification.signature.key': key,
        'event.poller.refresh_interval': '1',
        'pollbridge.poller.cron': '* * * * * *',
        'event.poller.configuration': {
          reports: concurHubResource('expense/reports'),
        },
      },
      tags: [],
    }],
  };
}

export type CalloutSetup = {
  listen: string;
  username: string;
  password: string;
  tls?: { cert: string; key: string };
  /** More keys of the instance's configuration (`pollbridge.callout.path`, …). */
  configuration?: Record<string, unknown>;
};

/** A config whose first instance is Concur's application connector too (the demo's; tests use it on theirs). */
export function withCallout<T extends { instances: { configuration: Record<string, unknown> }[] }>(config: T, setup: CalloutSetup) {
  const [instance, ...rest] = config.instances;
  return {
    ...config,
    callout: { listen: setup.listen, ...(setup.tls ? { tls: setup.tls } : {}) },
    instances: [{
      ...instance!,
      configuration: {
        ...instance!.configuration,
        'pollbridge.callout.enabled': 'true',
        'pollbridge.callout.username': setup.username,
        'pollbridge.callout.password': setup.password,
        ...setup.configuration,
      },
    }, ...rest],
  };
}

const DEMO_CONNECTOR_USER = 'demo-connector';

/**
 * Everything on one machine: the Concur simulator making changes (and pushing the reports that
 * enter Submitted to the daemon's callout connector), the daemon polling it every second, and a receiver that verifies both signatures of every notification and prints its
 * events. Stops on Ctrl-C, or after `--events N` / `--seconds N`.
 */
export async function demoCommand(opts: { events?: number; seconds?: number; rate: number; logLevel?: string; keep?: boolean }): Promise<void> {
  const maxEvents = opts.events ?? Infinity;
  const { seconds, rate } = opts;
  const level = logLevel(opts.logLevel ?? 'warn');
  const dir = mkdtempSync(join(tmpdir(), 'pollbridge-demo-'));
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  // `demo | head -2` ends the process from the closed pipe's handler, never reaching the end below.
  if (!opts.keep) process.once('exit', removeDir);
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const sim = new ConcurSim();
  const simUrl = await sim.start();
  let received = 0;
  let finish: (() => void) | undefined;
  const finished = new Promise<void>((resolve) => { finish = resolve; });
  const receiver = await startVerifyingReceiver(
    key,
    (e) => {
      received++;
      process.stdout.write(`verified  ${e.via}  ${e.eventType.padEnd(7)}  ${e.objectType}  ${e.objectId}  ${e.date}  notification ${e.notificationId}\n`);
      if (received >= maxEvents) finish?.();
    },
    (reason) => process.stdout.write(`REJECTED  ${reason}\n`),
  );
  const configFile = join(dir, 'poller.config.json');
  const connectorPassword = randomBytes(18).toString('base64url');
  writeFileSync(configFile, JSON.stringify(withCallout(demoConfig(simUrl, receiver.url, key), {
    listen: '127.0.0.1:0', username: DEMO_CONNECTOR_USER, password: connectorPassword,
  }), null, 2), { mode: 0o600 });
  const config = loadConfig(configFile);
  const daemon = new Daemon({ config, log: createLogger({ level, secrets: config.secrets, stream: process.stderr }), graceMs: 2000 });
  process.stdout.write(`pollbridge demo: simulator ${simUrl}, receiver ${receiver.url}, config ${configFile}\n`);
  process.stdout.write('Waiting for changes (Ctrl-C to stop)…\n');
  await daemon.start();
  // The simulator plays Concur's callout too: a report entering Submitted is pushed at once.
  sim.setCallout({ url: `${daemon.calloutUrl}${DEFAULT_CALLOUT_PATH}`, username: DEMO_CONNECTOR_USER, password: connectorPassword });
  const stopChanges = startChangeStream(() => sim.randomChange(), rate);
  const timer = seconds === undefined ? undefined : setTimeout(() => finish?.(), seconds * 1000);
  process.once('SIGINT', () => finish?.());
  process.once('SIGTERM', () => finish?.());
  await finished;
  clearTimeout(timer);
  stopChanges();
  await daemon.stop();
  await receiver.close();
  await sim.stop();
  process.stdout.write(`${received} event(s) received and verified\n`);
  if (!opts.keep) {
    process.off('exit', removeDir);
    removeDir();
  }
}
