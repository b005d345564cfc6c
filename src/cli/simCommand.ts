import { ConcurSim, DEFAULT_SIM_CREDENTIALS } from '../sim/concurSim.js';
import { UserError } from './userError.js';

/** Starts a timer making `ratePerSec` random changes; returns its stopper. */
export function startChangeStream(sim: ConcurSim, ratePerSec: number): () => void {
  if (ratePerSec <= 0) return () => {};
  const timer = setInterval(() => sim.randomChange(), Math.max(1, Math.round(1000 / ratePerSec)));
  return () => clearInterval(timer);
}

export function parseRate(value: string | undefined, fallback: number): number {
  const rate = value === undefined ? fallback : Number(value);
  if (!Number.isFinite(rate) || rate < 0 || rate > 1000) throw new UserError(`--rate must be between 0 and 1000 changes per second, got "${value}"`);
  return rate;
}

export async function simCommand(opts: { port?: string; host?: string; rate?: string }): Promise<void> {
  const port = Number(opts.port ?? '8080');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port must be 0-65535, got "${opts.port}"`);
  const rate = parseRate(opts.rate, 1);
  const sim = new ConcurSim({ port, host: opts.host ?? '127.0.0.1' });
  const url = await sim.start();
  const stopChanges = startChangeStream(sim, rate);
  const c = DEFAULT_SIM_CREDENTIALS;
  process.stdout.write(
    `Concur simulator on ${url} (${rate} change(s)/s)\n` +
      `  token:   POST ${url}/oauth2/v0/token  client_id=${c.clientId} client_secret=${c.clientSecret} refresh_token=${c.refreshToken}\n` +
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
