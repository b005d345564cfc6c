import { ConcurSim, DEFAULT_SIM_CREDENTIALS } from '../sim/concurSim.js';
import { UserError } from './userError.js';

/** Starts a timer making `ratePerSec` random changes; returns its stopper. */
export function startChangeStream(sim: ConcurSim, ratePerSec: number): () => void {
  if (ratePerSec <= 0) return () => {};
  const timer = setInterval(() => sim.randomChange(), Math.max(1, Math.round(1000 / ratePerSec)));
  return () => clearInterval(timer);
}

export async function simCommand(opts: { port: number; host: string; rate: number }): Promise<void> {
  const { port, rate } = opts;
  const sim = new ConcurSim({ port, host: opts.host });
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
      `  control: POST ${url}/_sim/reports, POST ${url}/_sim/reports/ID/update, GET ${url}/_sim/reports\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  stopChanges();
  await sim.stop();
}
