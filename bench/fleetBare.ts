/**
 * The fleet scenario's baseline: the requests the daemon makes for its streams, made by a bare
 * node:http loop in a process of its own, with nothing else (no store, no schedule state, no
 * logging). A token once per company, then one GET of each stream's window per interval at the
 * stream's stable offset in it, through one keep-alive agent holding at most the daemon's
 * requests per origin at once. fleet.ts reads its CPU from /proc as it reads the daemon's.
 */
import http from 'node:http';
import { concurDate } from '../dist/sim/concurList.js';
import { FLEET_RESOURCES, FLEET_TOKEN_PATH, fleetCredentials } from '../dist/sim/fleetSim.js';

export type BareSetup = { url: string; companies: number; intervalMs: number; maxSockets: number };
export type BareRequest = { type: 'start' } | { type: 'count' };
export type BareReply =
  | { type: 'ready'; pid: number }
  | { type: 'tokens'; ms: number; failed: number }
  /** GETs answered so far, failed ones, and each GET's lag behind its due time (ms). */
  | { type: 'count'; completed: number; failed: number; lagsMs: number[] };

const send = (reply: BareReply): void => void process.send!(reply);

function request(agent: http.Agent, url: string, options: http.RequestOptions, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent, ...options }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const setup = JSON.parse(process.argv[2]!) as BareSetup;
const agent = new http.Agent({ keepAlive: true, maxSockets: setup.maxSockets });
const tokens: string[] = [];
let completed = 0;
let failed = 0;
const lagsMs: number[] = [];

async function refreshAll(): Promise<number> {
  let refused = 0;
  await Promise.all(Array.from({ length: setup.companies }, async (_, company) => {
    const c = fleetCredentials(company);
    const form = new URLSearchParams({ grant_type: 'refresh_token', client_id: c.clientId, client_secret: c.clientSecret, refresh_token: c.refreshToken }).toString();
    const res = await request(agent, `${setup.url}${FLEET_TOKEN_PATH}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, form);
    if (res.status !== 200) refused++;
    tokens[company] = (JSON.parse(res.text) as { access_token: string }).access_token;
  }));
  return refused;
}

/** Each stream's polls, due at the stream's offset in every interval from `originMs`. */
function pollForever(originMs: number): void {
  const resources = Object.keys(FLEET_RESOURCES);
  const streams = setup.companies * resources.length;
  let next = 0;
  const poll = async (stream: number, dueMs: number): Promise<void> => {
    lagsMs.push(Date.now() - dueMs);
    const company = Math.floor(stream / resources.length);
    const path = FLEET_RESOURCES[resources[stream % resources.length] as keyof typeof FLEET_RESOURCES];
    const q = new URLSearchParams({ modifiedDateAfter: concurDate(dueMs - setup.intervalMs), modifiedDateBefore: concurDate(Date.now()), user: 'ALL', limit: '100' });
    try {
      const res = await request(agent, `${setup.url}/api/v3.0/${path}?${q}`, { headers: { authorization: `Bearer ${tokens[company]}` } });
      JSON.parse(res.text);
      if (res.status === 200) completed++;
      else failed++;
    } catch {
      failed++;
    }
  };
  const tick = (): void => {
    const now = Date.now();
    for (;;) {
      const dueMs = originMs + (next * setup.intervalMs) / streams;
      if (dueMs > now) {
        setTimeout(tick, dueMs - now);
        return;
      }
      void poll(next % streams, dueMs);
      next++;
    }
  };
  tick();
}

process.on('message', (m: BareRequest) => {
  if (m.type === 'count') {
    send({ type: 'count', completed, failed, lagsMs: lagsMs.splice(0) });
    return;
  }
  const started = Date.now();
  void refreshAll().then((refused) => {
    send({ type: 'tokens', ms: Date.now() - started, failed: refused });
    pollForever(Date.now());
  });
});
process.once('disconnect', () => agent.destroy());
send({ type: 'ready', pid: process.pid });
