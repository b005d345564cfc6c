import { formatIssue } from '../config/issues.js';
import { loadConfig, readConfig } from '../config/load.js';
import { Daemon } from '../daemon/daemon.js';
import type { PollbridgeConfig } from '../config/types.js';
import { createLogger, type Logger } from '../log.js';
import { instantFromMs } from '../time/instant.js';
import { releaseSignals } from './heldSignals.js';
import { stdoutLogOutput, writeError } from './logOutput.js';
import { configPath, logLevel, parseIsoOption } from './options.js';
import { UserError } from './userError.js';

export type RunOptions = { config?: string; db?: string; once?: boolean; since?: string; logLevel?: string; logFormat?: string; graceMs?: number; replica?: string };

/**
 * The daemon. The first SIGTERM/SIGINT stops it gracefully (exit 0), even one that arrives while
 * it is still starting; a second one exits at once. SIGHUP reloads the config; reloads and the
 * stop are applied one after another, in the order they came, and a burst of SIGHUPs reads the
 * file once more, not once each. `--once` reads its config once: SIGHUP is ignored there. The
 * database is safe either way: every commit is durable before it is acknowledged.
 */
export async function runCommand(opts: RunOptions): Promise<void> {
  let signals = 0;
  let requestStop: (() => void) | undefined;
  const stopRequested = new Promise<void>((resolve) => { requestStop = resolve; });
  const onStopSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      writeError(`pollbridge: second ${signal}: exiting now`);
      process.exit(1);
    }
    requestStop?.();
  };
  // Until the daemon can reload, a SIGHUP is remembered and applied once it has started. One that
  // comes after a stop was asked is not: signals are applied in the order they came.
  let hangups = 0;
  let onHangup = (): void => { if (signals === 0) hangups++; };
  process.on('SIGTERM', onStopSignal);
  process.on('SIGINT', onStopSignal);
  process.on('SIGHUP', () => onHangup());
  releaseSignals((signal) => (signal === 'SIGHUP' ? onHangup() : onStopSignal(signal)));

  const level = logLevel(opts.logLevel);
  const output = stdoutLogOutput(opts.logFormat);
  const since = parseIsoOption('--since', opts.since);
  if (opts.replica !== undefined && opts.replica.trim() === '') throw new UserError('--replica: give this replica a name, or leave the option out for the host name');
  const file = configPath(opts.config);
  const config = loadConfig(file, { databaseOverride: opts.db });
  const log = createLogger({ level, secrets: config.secrets, ...output });
  for (const warning of config.warnings) log.warn('config warning', { problem: formatIssue(warning) });
  if (opts.replica !== undefined && !config.databaseUrl) log.warn('--replica names a replica on a PostgreSQL database; on SQLite (one daemon, its lock file) it is ignored', { replica: opts.replica });
  logRefused(log, config);
  const daemon = new Daemon({
    config,
    log,
    since: since === undefined ? undefined : instantFromMs(since),
    graceMs: opts.graceMs,
    replicaName: opts.replica,
  });
  const failed = daemon.failed.then((err) => {
    writeError(`pollbridge: ${err.message}; exiting`);
    process.exitCode = 1;
  });
  if (opts.once) {
    onHangup = () => log.warn('SIGHUP ignored: run --once reads its config once');
    if (hangups > 0) onHangup();
    void Promise.race([stopRequested, failed]).then(() => {
      log.info('stopping');
      return daemon.stop();
    });
    const { failedPolls, pending, interrupted } = await daemon.runOnce();
    if (interrupted) return;
    if (pending > 0) log.warn('notifications still pending after --once; the next run retries them', { pending });
    if (failedPolls > 0) process.exitCode = 1;
    return;
  }
  const started = daemon.start();
  let reloadWaiting = false;
  const reload = (): void => {
    // A reload that has not begun yet will read the file as it is then: one is enough.
    if (reloadWaiting) return;
    reloadWaiting = true;
    let before = new Map<string, string>();
    const reading = () => {
      reloadWaiting = false;
      before = fingerprints(daemon.config);
      const result = readConfig(file, { databaseOverride: opts.db });
      if (!result.config) log.error('config reload refused: the running config stays', { problems: result.issues.map(formatIssue) });
      else {
        // Before the daemon takes the config: a refused file's line may be the first to meet its secrets.
        log.addSecrets(result.config.secrets);
        logRefused(log, result.config);
      }
      return result.config;
    };
    daemon.reload(reading).then(
      (applied) => { if (applied) log.info('config reloaded', { instances: daemon.config.instances.length, ...reloadDifference(before, fingerprints(daemon.config)) }); },
      (err: unknown) => log.error('config reload refused: the running config stays', { error: (err as Error).message }),
    );
  };
  onHangup = () => { if (signals === 0) reload(); };
  // Held ones came before any stop that was asked.
  if (hangups > 0) reload();
  await started;
  await Promise.race([stopRequested, failed]);
  log.info('stopping');
  await daemon.stop();
}

/** An `instancesDir` file refused does not stop the run: one line each says which and why. */
function logRefused(log: Logger, config: PollbridgeConfig): void {
  for (const { file, name, issues } of config.refused) log.error('instance file refused', { file, instance: name, problems: issues.map(formatIssue) });
}

/** How many instance names a reload line lists of each kind: a fleet's reload line stays one screen. */
const RELOAD_NAMED = 20;

const fingerprints = (config: PollbridgeConfig): Map<string, string> => new Map(config.instances.map((i) => [i.name, i.fingerprint]));

/**
 * What a reload did, by instance name: the instances it started, stopped and restarted. Those it
 * kept (a file renamed or rewritten as it was) are not named: at thousands of instances a line
 * naming all of them says nothing about the one that changed.
 */
export function reloadDifference(before: Map<string, string>, after: Map<string, string>): { added: string[]; removed: string[]; changed: string[] } {
  const named = (names: string[]): string[] =>
    names.length > RELOAD_NAMED ? [...names.slice(0, RELOAD_NAMED), `… and ${names.length - RELOAD_NAMED} more`] : names;
  return {
    added: named([...after.keys()].filter((n) => !before.has(n))),
    removed: named([...before.keys()].filter((n) => !after.has(n))),
    changed: named([...after].filter(([n, f]) => before.has(n) && before.get(n) !== f).map(([n]) => n)),
  };
}
