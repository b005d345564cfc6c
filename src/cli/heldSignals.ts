/**
 * A signal that arrives while the program's modules are still loading (`systemctl reload` or
 * `stop` right after the start) would take its default action and kill the process. The entry
 * point holds them from its first line until a command takes them over.
 */
const HELD = ['SIGHUP', 'SIGTERM', 'SIGINT'] as const;
const held: NodeJS.Signals[] = [];
const hold = (signal: NodeJS.Signals): void => {
  held.push(signal);
};

export function holdSignals(): void {
  for (const s of HELD) process.on(s, hold);
}

/**
 * Hands the signals held so far to `handle`, whose listeners are in place; without one, gives
 * each signal its default action back and raises again those that came.
 */
export function releaseSignals(handle?: (signal: NodeJS.Signals) => void): void {
  for (const s of HELD) process.off(s, hold);
  for (const s of held.splice(0)) {
    if (handle) handle(s);
    else process.kill(process.pid, s);
  }
}
