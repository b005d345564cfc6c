/**
 * What the fleet scenario reads from the daemon's JSON log lines, apart from the I/O so that it
 * is tested directly: each poll's due time and lag, the start and the end of the first round.
 */

export type LogLine = Record<string, unknown>;

/** One finished poll: its stream, when it was due and how late it began (ms), when it ended. */
export type Poll = { stream: string; dueMs: number; lagMs: number; finishedMs: number };

const at = (line: LogLine): number => Date.parse(String(line.timestamp));

/**
 * Each `poll finished` line's due time and lag. A line with `dueAt` (ISO) and `lagMs` says them
 * itself. Without them (a daemon of before the timer wheel) they are worked out as its interval
 * loop schedules: a stream's first poll is due when the loops start (`startedMs`), each next one
 * an interval after the one before or, when that one overran, at its end; a poll began
 * `durationMs` before its line (the wait for a free slot counts as lag).
 */
export function pollsOf(lines: LogLine[], startedMs: number, intervalMs: number): Poll[] {
  const previous = new Map<string, { dueMs: number; finishedMs: number }>();
  const polls: Poll[] = [];
  for (const line of lines) {
    if (line.message !== 'poll finished') continue;
    const stream = `${String(line.instance)}/${String(line.resource)}`;
    const finishedMs = at(line);
    let dueMs: number;
    let lagMs: number;
    if (typeof line.dueAt === 'string' && typeof line.lagMs === 'number') {
      dueMs = Date.parse(line.dueAt);
      lagMs = line.lagMs;
    } else {
      const before = previous.get(stream);
      dueMs = before === undefined ? startedMs : Math.max(before.dueMs + intervalMs, before.finishedMs);
      lagMs = Math.max(0, finishedMs - Number(line.durationMs ?? 0) - dueMs);
    }
    previous.set(stream, { dueMs, finishedMs });
    polls.push({ stream, dueMs, lagMs, finishedMs });
  }
  return polls;
}

/** The first poll of each stream (the start-up round) apart from the rest. */
export function splitFirstRound(polls: Poll[]): { first: Poll[]; later: Poll[] } {
  const seen = new Set<string>();
  const first: Poll[] = [];
  const later: Poll[] = [];
  for (const p of [...polls].sort((a, b) => a.dueMs - b.dueMs)) {
    if (seen.has(p.stream)) later.push(p);
    else {
      seen.add(p.stream);
      first.push(p);
    }
  }
  return { first, later };
}

/** The stream count of the `pollbridge started` line: a number, or (older daemons) the list of names. */
export function startedStreams(line: LogLine): number | undefined {
  if (typeof line.streams === 'number') return line.streams;
  return Array.isArray(line.streams) ? line.streams.length : undefined;
}

/**
 * When every stream had been scheduled: a `streams scheduled` line if the daemon writes one; else,
 * for a daemon whose poll lines state `dueAt` (the timer wheel, filled with every stream before
 * the `pollbridge started` line), that line; else (a loop per stream, each scheduled as it first
 * gets to poll) the moment the last first poll began.
 */
export function scheduledAllMs(lines: LogLine[], firstRound: Poll[], streams: number): number | undefined {
  const line = lines.find((l) => l.message === 'streams scheduled');
  if (line) return at(line);
  const started = lines.find((l) => l.message === 'pollbridge started');
  if (started && lines.some((l) => l.message === 'poll finished' && typeof l.dueAt === 'string')) return at(started);
  if (firstRound.length < streams) return undefined;
  return Math.max(...firstRound.map((p) => p.dueMs + p.lagMs));
}

export const timestampMs = at;

/** A poll and the replica whose log it came from. */
export type ReplicaPoll = Poll & { replica: string };

/**
 * How the streams polled in [fromMs, toMs) (by when each poll finished) spread over `replicas`:
 * each stream counts for the replica of its last poll there (the one holding it at the end), and
 * `moved` counts the streams polled there by more than one replica (handed over meanwhile).
 */
export function spreadOf(polls: ReplicaPoll[], replicas: string[], fromMs: number, toMs: number): { held: Map<string, number>; moved: number } {
  const last = new Map<string, ReplicaPoll>();
  const pollers = new Map<string, Set<string>>();
  for (const p of polls) {
    if (p.finishedMs < fromMs || p.finishedMs >= toMs) continue;
    const before = last.get(p.stream);
    if (!before || p.finishedMs >= before.finishedMs) last.set(p.stream, p);
    pollers.set(p.stream, (pollers.get(p.stream) ?? new Set()).add(p.replica));
  }
  const held = new Map(replicas.map((r) => [r, 0]));
  for (const p of last.values()) held.set(p.replica, (held.get(p.replica) ?? 0) + 1);
  return { held, moved: [...pollers.values()].filter((s) => s.size > 1).length };
}
