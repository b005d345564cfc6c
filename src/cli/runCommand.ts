import { formatIssue } from '../config/issues.js';
import { loadConfig, readConfig } from '../config/load.js';
import { Daemon } from '../daemon/daemon.js';
import { createLogger } from '../log.js';
import { instantFromMs } from '../time/instant.js';
import { configPath, logLevel, parseIsoOption } from './options.js';

export type RunOptions = { config?: string; db?: string; once?: boolean; since?: string; logLevel?: string; graceMs?: number };

/**
 * The daemon. The first SIGTERM/SIGINT stops it gracefully (exit 0), even one that arrives while
 * it is still starting; a second one exits at once; SIGHUP reloads the config (the database is safe either way: every
 * commit is durable before it is acknowledged).
 */
export async function runCommand(opts: RunOptions): Promise<void> {
  let signals = 0;
  let requestStop: (() => void) | undefined;
  const stopRequested = new Promise<void>((resolve) => { requestStop = resolve; });
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`pollbridge: second ${signal}: exiting now\n`);
      process.exit(1);
    }
    requestStop?.();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const level = logLevel(opts.logLevel);
  const since = parseIsoOption('--since', opts.since);
  const file = configPath(opts.config);
  const config = loadConfig(file, { databaseOverride: opts.db });
  const log = createLogger({ level, secrets: config.secrets });
  const daemon = new Daemon({
    config,
    log,
    since: since === undefined ? undefined : instantFromMs(since),
    graceMs: opts.graceMs,
  });
  if (opts.once) {
    void stopRequested.then(() => {
      log.info('stopping');
      return daemon.stop();
    });
    const { failedPolls, pending, interrupted } = await daemon.runOnce();
    if (interrupted) return;
    if (pending > 0) log.warn('notifications still pending after --once; the next run retries them', { pending });
    if (failedPolls > 0) process.exitCode = 1;
    return;
  }
  // SIGHUP: re-read and check the file; apply it only if it is valid, else keep the running one.
  process.on('SIGHUP', () => {
    const result = readConfig(file, { databaseOverride: opts.db });
    if (!result.config) {
      log.error('config reload refused: the running config stays', { problems: result.issues.map(formatIssue) });
      return;
    }
    daemon.reload(result.config).then(
      () => log.info('config reloaded', { instances: result.config.instances.map((i) => i.name) }),
      (err: unknown) => log.error('config reload refused: the running config stays', { error: (err as Error).message }),
    );
  });
  await daemon.start();
  await stopRequested;
  log.info('stopping');
  await daemon.stop();
}
