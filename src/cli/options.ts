import { LOG_LEVELS } from '../log.js';
import { UserError } from './userError.js';

export const DEFAULT_CONFIG = 'poller.config.json';

/** `-c` wins, then POLLBRIDGE_CONFIG, then ./poller.config.json. */
export function configPath(flag: string | undefined): string {
  return flag ?? process.env.POLLBRIDGE_CONFIG ?? DEFAULT_CONFIG;
}

/** `--log-level` wins, then POLLBRIDGE_LOG_LEVEL, then info. */
export function logLevel(flag: string | undefined): string {
  const level = flag ?? process.env.POLLBRIDGE_LOG_LEVEL ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new UserError(`log level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return level;
}

export function parseIsoOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new UserError(`${name} must be an ISO-8601 date-time such as 2026-11-01T00:00:00Z, got "${value}"`);
  return ms;
}
