import type { Instant } from './instant.js';
import { microsFromFraction } from './instant.js';
import { compileParser, instantFromWallClock, parseWithPattern, tokenizePattern } from './javaPattern.js';

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

export type DateParser = (value: unknown) => Instant | undefined;

/**
 * A parser for one configured date field: the Java pattern first, then ISO-8601 (APIs drift
 * between the two), then epoch milliseconds for numbers. Zone-less text is read in `zone`.
 */
export function createDateParser(pattern: string | undefined, zone: string): DateParser {
  const compiled = pattern ? compileParser(tokenizePattern(pattern)) : undefined;
  return (value) => {
    if (typeof value === 'number') return Number.isFinite(value) ? Math.round(value) * 1000 : undefined;
    if (typeof value !== 'string' || value.trim() === '') return undefined;
    const viaPattern = compiled ? parseWithPattern(value, compiled, zone) : undefined;
    return viaPattern ?? parseIso(value.trim(), zone);
  };
}

export function parseIso(text: string, zone: string): Instant | undefined {
  const m = ISO.exec(text);
  if (!m) return undefined;
  let offsetMs: number | undefined;
  if (m[8]) {
    if (m[8].toUpperCase() === 'Z') offsetMs = 0;
    else {
      const digits = m[8].replace(':', '');
      const minutes = Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5) || '0');
      offsetMs = (digits[0] === '-' ? -1 : 1) * minutes * 60000;
    }
  }
  return instantFromWallClock(
    {
      year: Number(m[1]), month: Number(m[2]) - 1, day: Number(m[3]),
      hour: Number(m[4] ?? 0), minute: Number(m[5] ?? 0), second: Number(m[6] ?? 0),
      micros: m[7] ? microsFromFraction(m[7]) : 0,
    },
    offsetMs,
    zone,
  );
}
