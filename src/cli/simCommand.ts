import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCalloutTarget } from '../sim/calloutSender.js';
import { ConcurSim, DEFAULT_SIM_CREDENTIALS, type SimCalloutTarget } from '../sim/concurSim.js';
import { FLEET_RESOURCES, FLEET_TOKEN_PATH, type FleetResource, FleetSim, fleetConfigFor } from '../sim/fleetSim.js';
import { UserError } from './userError.js';

/** Starts a timer making `ratePerSec` random changes; returns its stopper. */
export function startChangeStream(change: () => unknown, ratePerSec: number): () => void {
  if (ratePerSec <= 0) return () => {};
  const timer = setInterval(change, Math.max(1, Math.round(1000 / ratePerSec)));
  return () => clearInterval(timer);
}

export type SimCommandOptions = {
  port: number; host: string; rate: number; calloutUrl?: string; calloutUser?: string; calloutPassword?: string;
  /** Many companies (the fleet simulator) instead of one. */
  companies?: number; latencyMs?: number; instancesDir?: string; callbackUrl?: string;
};

/** The connector to push to, from the three --callout-* options: all of them or none. */
export function calloutOption(opts: SimCommandOptions): SimCalloutTarget | undefined {
  const given = { '--callout-url': opts.calloutUrl, '--callout-user': opts.calloutUser, '--callout-password': opts.calloutPassword };
  const missing = Object.entries(given).filter(([, v]) => v === undefined).map(([k]) => k);
  if (missing.length === 3) return undefined;
  if (missing.length > 0) throw new UserError(`the callout needs --callout-url, --callout-user and --callout-password together; missing ${missing.join(', ')}`);
  try {
    return parseCalloutTarget({ url: opts.calloutUrl, username: opts.calloutUser, password: opts.calloutPassword });
  } catch {
    // The strings are given, so only the URL can be wrong.
    throw new UserError(`--callout-url must be an http or https URL such as http://127.0.0.1:8443/concur/v1.0/notify, got "${opts.calloutUrl}"`);
  }
}

/** Starts a simulator, turning what the operator can fix (the port, the address) into one clear line. */
async function startOrExplain(start: () => Promise<string>, host: string, port: number): Promise<string> {
  try {
    return await start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new UserError(`cannot listen on ${host}:${port}: the port is in use (choose another with --port, or --port 0 for any free one)`);
    if (code === 'EACCES' || code === 'EADDRNOTAVAIL') throw new UserError(`cannot listen on ${host}:${port}: ${code}`);
    throw err;
  }
}

const untilStopped = (): Promise<void> => new Promise<void>((resolve) => {
  process.once('SIGINT', () => resolve());
  process.once('SIGTERM', () => resolve());
});

export async function simCommand(opts: SimCommandOptions): Promise<void> {
  const { port, rate } = opts;
  const callout = calloutOption(opts);
  if (opts.companies !== undefined) return fleetCommand(opts, opts.companies, callout);
  if (opts.latencyMs !== undefined || opts.instancesDir !== undefined) throw new UserError('--latency-ms and --instances-dir go with --companies (the simulator of many companies)');
  const sim = new ConcurSim({ port, host: opts.host, ...(callout ? { callout } : {}) });
  const url = await startOrExplain(() => sim.start(), opts.host, port);
  const stopChanges = startChangeStream(() => sim.randomChange(), rate);
  const c = DEFAULT_SIM_CREDENTIALS;
  process.stdout.write(
    `Concur simulator on ${url} (${rate} change(s)/s)\n` +
      `  token:   POST ${url}/oauth2/v0/token  client_id=${c.clientId} client_secret=${c.clientSecret} refresh_token=${c.refreshToken}\n` +
      // As Concur's does: a client that does not keep the new refresh token is locked out on its next refresh.
      `           the refresh token rotates: each refresh answers a new one and the old one stops working (restart the simulator to start again from ${c.refreshToken})\n` +
      `  reports: GET  ${url}/api/v3.0/expense/reports?modifiedDateAfter=…\n` +
      `  report:  GET  ${url}/api/expense/expensereport/v1.1/report/ID (XML), GET ${url}/api/v3.0/expense/reports/ID\n` +
      `  failed:  GET  ${url}/api/platform/notifications/v1.0/notification?status=failed, DELETE …/notification/ID\n` +
      (callout
        ? `  callout: POST ${callout.url} as ${callout.username} when a report enters Submitted (retried, then failed)\n`
        : `  callout: off (--callout-url, --callout-user, --callout-password push when a report enters Submitted)\n`) +
      `  control: POST ${url}/_sim/reports, POST ${url}/_sim/reports/ID/update, GET ${url}/_sim/reports, POST ${url}/_sim/callout, GET ${url}/_sim/callouts\n`,
  );
  await untilStopped();
  stopChanges();
  await sim.stop();
}

/**
 * Many companies on one host, each with its own client and rotating refresh token; with
 * `--instances-dir`, one instance file per company pointing at it (the simulator's throwaway
 * secrets, readable by the owner alone; the signature key is left to the environment).
 */
async function fleetCommand(opts: SimCommandOptions, companies: number, callout: SimCalloutTarget | undefined): Promise<void> {
  if (callout) throw new UserError('the callout (--callout-*) is served by the one-company simulator: leave out --companies');
  if (opts.instancesDir !== undefined && opts.callbackUrl === undefined) throw new UserError('--instances-dir needs --callback-url, the URL the instances deliver their events to');
  const sim = new FleetSim({ companies, port: opts.port, host: opts.host, ...(opts.latencyMs === undefined ? {} : { latencyMs: opts.latencyMs }) });
  const url = await startOrExplain(() => sim.start(), opts.host, opts.port);
  try {
    if (opts.instancesDir !== undefined) writeInstanceFiles(opts.instancesDir, fleetConfigFor(companies, url, opts.callbackUrl!, { signatureKey: '${env:POLLBRIDGE_SIGNATURE_KEY}' }));
  } catch (err) {
    await sim.stop();
    throw err;
  }
  const resources = Object.keys(FLEET_RESOURCES) as FleetResource[];
  const stopChanges = startChangeStream(() => sim.change(Math.floor(Math.random() * companies), resources[Math.floor(Math.random() * resources.length)]), opts.rate);
  process.stdout.write(
    `Concur simulator of ${companies} companies on ${url} (${opts.rate} change(s)/s in random companies, every answer ${opts.latencyMs ?? 0} ms late)\n` +
      `  token:   POST ${url}${FLEET_TOKEN_PATH}  client_id=fleet-client-0 … fleet-client-${companies - 1}, each with its own secret and refresh token\n` +
      `           each refresh token rotates: each refresh answers a new one and the old one stops working\n` +
      resources.map((r) => `  ${`${r}:`.padEnd(8)} GET  ${url}/api/v3.0/${FLEET_RESOURCES[r]}?modifiedDateAfter=…  (the company its access token names)\n`).join('') +
      (opts.instancesDir === undefined
        ? '  instances: --instances-dir DIR --callback-url URL writes one instance file per company, with its credentials\n'
        : `  instances: ${companies} files in ${opts.instancesDir}, signature key from $POLLBRIDGE_SIGNATURE_KEY; point "instancesDir" at it\n`),
  );
  await untilStopped();
  stopChanges();
  await sim.stop();
}

/** One file per instance, refusing to replace any file already there (they may hold live credentials). */
function writeInstanceFiles(dir: string, instances: { name: string }[]): void {
  const files = instances.map((instance) => ({ path: join(dir, `${instance.name}.json`), instance }));
  const taken = files.filter((f) => existsSync(f.path));
  if (taken.length > 0) throw new UserError(`${taken.length} instance file(s) already exist in ${dir} (the first: ${taken[0]!.path}); choose an empty --instances-dir`);
  mkdirSync(dir, { recursive: true });
  for (const f of files) writeFileSync(f.path, `${JSON.stringify(f.instance, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
}
