import { parseCalloutTarget } from '../sim/calloutSender.js';
import { ConcurSim, DEFAULT_SIM_CREDENTIALS, type SimCalloutTarget } from '../sim/concurSim.js';
import { UserError } from './userError.js';

/** Starts a timer making `ratePerSec` random changes; returns its stopper. */
export function startChangeStream(sim: ConcurSim, ratePerSec: number): () => void {
  if (ratePerSec <= 0) return () => {};
  const timer = setInterval(() => sim.randomChange(), Math.max(1, Math.round(1000 / ratePerSec)));
  return () => clearInterval(timer);
}

export type SimCommandOptions = { port: number; host: string; rate: number; calloutUrl?: string; calloutUser?: string; calloutPassword?: string };

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

export async function simCommand(opts: SimCommandOptions): Promise<void> {
  const { port, rate } = opts;
  const callout = calloutOption(opts);
  const sim = new ConcurSim({ port, host: opts.host, ...(callout ? { callout } : {}) });
  let url: string;
  try {
    url = await sim.start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new UserError(`cannot listen on ${opts.host}:${port}: the port is in use (choose another with --port, or --port 0 for any free one)`);
    if (code === 'EACCES' || code === 'EADDRNOTAVAIL') throw new UserError(`cannot listen on ${opts.host}:${port}: ${code}`);
    throw err;
  }
  const stopChanges = startChangeStream(sim, rate);
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
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  stopChanges();
  await sim.stop();
}
