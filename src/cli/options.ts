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

export type NumberSpec = { min?: number; max?: number; integer?: boolean; unit?: string };

/**
 * A numeric option, read strictly: plain decimal digits (and a fraction unless `integer`), in
 * range. `Number()` alone would take "", " ", "0x10", "1e3" and "Infinity", and turn "abc" into a
 * NaN that every later comparison silently fails.
 */
export function parseNumberOption(flag: string, value: string, spec: NumberSpec): number {
  const pattern = spec.integer ? /^-?\d+$/ : /^-?\d+(?:\.\d+)?$/;
  const n = pattern.test(value) ? Number(value) : NaN;
  const inRange = (spec.min === undefined || n >= spec.min) && (spec.max === undefined || n <= spec.max);
  if (Number.isFinite(n) && Math.abs(n) <= Number.MAX_SAFE_INTEGER && inRange) return n;
  const what = `${spec.integer ? 'a whole number' : 'a number'}${spec.unit ? ` of ${spec.unit}` : ''}`;
  const range =
    spec.max === undefined ? (spec.min === undefined ? '' : ` of at least ${spec.min}`)
      : spec.min === undefined ? ` of at most ${spec.max}` : ` from ${spec.min} to ${spec.max}`;
  throw new UserError(`${flag} must be ${what}${range}, got "${value}"`);
}

/** `parseNumberOption` as a commander argument parser, so an action only ever sees a valid number. */
export function numberOption(flag: string, spec: NumberSpec): (value: string) => number {
  return (value) => parseNumberOption(flag, value, spec);
}
