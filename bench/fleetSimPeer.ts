/**
 * The fleet scenario's simulators, in a process of their own so that serving thousands of
 * companies is counted against neither the daemon nor the bare loop. Two of them, alike: the bare
 * loop's refreshes rotate its companies' refresh tokens, which the daemon's config must still hold.
 * fleet.ts drives them over IPC.
 */
import { FleetSim, type FleetSimOptions } from '../dist/sim/fleetSim.js';

export type FleetSimSetup = Pick<FleetSimOptions, 'companies' | 'latencyMs' | 'rateLimitPerSec'>;
export type FleetSimRequest =
  | { type: 'stats' }
  /** Answers `seen` at the first list request of `company` asking pages of `limit` records. */
  | { type: 'watch'; company: number; limit: number };
type Counters = FleetSim['counters'];
export type FleetSimReply =
  | { type: 'ready'; bareUrl: string; daemonUrl: string }
  | { type: 'stats'; daemon: Counters; bare: Counters; companiesRateLimited: number }
  | { type: 'seen'; atMs: number; resource: string };

const send = (reply: FleetSimReply): void => void process.send!(reply);

let watch: { company: number; limit: string } | undefined;

async function main(): Promise<void> {
  const setup = JSON.parse(process.argv[2]!) as FleetSimSetup;
  const daemon = new FleetSim({
    ...setup,
    onRequest: (r) => {
      if (!watch || r.kind !== 'list' || r.company !== watch.company || r.query?.get('limit') !== watch.limit) return;
      watch = undefined;
      send({ type: 'seen', atMs: r.atMs, resource: r.resource! });
    },
  });
  const bare = new FleetSim(setup);
  const [daemonUrl, bareUrl] = await Promise.all([daemon.start(), bare.start()]);
  process.on('message', (request: FleetSimRequest) => {
    if (request.type === 'watch') watch = { company: request.company, limit: String(request.limit) };
    else send({ type: 'stats', daemon: daemon.counters, bare: bare.counters, companiesRateLimited: daemon.byCompany.rateLimited.filter((n) => n > 0).length });
  });
  process.once('disconnect', () => void Promise.all([daemon.stop(), bare.stop()]));
  send({ type: 'ready', bareUrl, daemonUrl });
}

await main();
