/**
 * The callout scenario's load generator, in a process of its own so that its work is not counted
 * against the server it loads (the daemon, or the bare baseline). callouts.ts sends it one `load`
 * at a time over IPC; it answers with what came back. Closed loop: `connections` requests in
 * flight, each sent as the one before it is answered. Open loop: `perSecond` requests at a fixed
 * pace whatever the answers, each one's latency taken from the moment it was due (so a slow
 * server is not flattered by the requests it delayed).
 */
import http from 'node:http';

export type LoadShape = { mode: 'closed'; connections: number } | { mode: 'open'; perSecond: number };

export type Load = {
  type: 'load';
  url: string;
  authorization: string;
  /** Sent in turn, one a request. */
  bodies: string[];
  warmupMs: number;
  measureMs: number;
} & LoadShape;

export type LoadReply =
  | { type: 'ready' }
  | {
    type: 'done';
    /** 200s within the measured window (closed loop: answered in it; open loop: due in it), and its length. */
    ok: number; seconds: number;
    /** 200s of the whole load, warm-up included (each should be a committed row). */
    okTotal: number;
    /** Every other outcome of the whole load, by status (`error` for a failed connection). */
    others: Record<string, number>;
    /** Open loop: due → answered, ms, of each 200 due within the measured window. */
    latenciesMs: number[];
  };

const send = (reply: LoadReply): void => void process.send!(reply);

function post(agent: http.Agent, target: URL, authorization: string, body: string): Promise<number | 'error'> {
  return new Promise((resolve) => {
    const req = http.request(target, {
      method: 'POST', agent,
      headers: { authorization, 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('error', () => resolve('error'));
    });
    req.once('error', () => resolve('error'));
    req.end(body);
  });
}

async function run(load: Load): Promise<LoadReply> {
  const target = new URL(load.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: load.mode === 'closed' ? load.connections : 256 });
  const started = performance.now();
  const from = started + load.warmupMs;
  const until = from + load.measureMs;
  let next = 0;
  let ok = 0;
  let okTotal = 0;
  const others: Record<string, number> = {};
  const latenciesMs: number[] = [];
  const one = async (dueAt: number): Promise<void> => {
    const status = await post(agent, target, load.authorization, load.bodies[next++ % load.bodies.length]!);
    const at = performance.now();
    if (status !== 200) {
      others[status] = (others[status] ?? 0) + 1;
      return;
    }
    okTotal++;
    // Closed loop: the answers within the window; open loop: the requests due within it, however late answered.
    const when = load.mode === 'open' ? dueAt : at;
    if (when < from || when > until) return;
    ok++;
    if (load.mode === 'open') latenciesMs.push(at - dueAt);
  };
  if (load.mode === 'closed') {
    await Promise.all(Array.from({ length: load.connections }, async () => {
      while (performance.now() < until) await one(performance.now());
    }));
  } else {
    const interval = 1000 / load.perSecond;
    const inFlight = new Set<Promise<void>>();
    let sent = 0;
    // Catches up on the requests due by now: a late timer does not lower the pace.
    while (started + sent * interval < until) {
      while (started + sent * interval <= performance.now()) {
        const p: Promise<void> = one(started + sent * interval).finally(() => inFlight.delete(p));
        inFlight.add(p);
        sent++;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all([...inFlight]);
  }
  agent.destroy();
  return { type: 'done', ok, seconds: load.measureMs / 1000, okTotal, others, latenciesMs };
}

process.on('message', (load: Load) => void run(load).then(send));
send({ type: 'ready' });
