import { type Instant, microsFromFraction, msFromInstant, US_PER_MS } from './instant.js';
import { zoneOffsetMs } from './zone.js';

/**
 * Java SimpleDateFormat patterns, as AMPLIFY configurations use them. We format and parse them
 * ourselves instead of translating to date-fns tokens because the two disagree on letters that
 * matter here: Java's `S` counts milliseconds (`SSSSSS` is zero-padded millis, not micros),
 * `u` is the ISO day number, `Z` is `+0000`, and `Y` is a week year that users write by mistake.
 */
export type PatternToken =
  | { kind: 'literal'; text: string }
  | { kind: 'field'; letter: string; count: number };

export class PatternError extends Error {}

const SUPPORTED_LETTERS = 'GyMLdDEuaHkKhmsSzZX';
const WHY_UNSUPPORTED: Record<string, string> = {
  Y: "'Y' is Java's week year, which differs from the calendar year around New Year; use 'y'",
  w: "'w' (week in year) is not supported",
  W: "'W' (week in month) is not supported",
  F: "'F' (day of week in month) is not supported",
};

export function tokenizePattern(pattern: string): PatternToken[] {
  const tokens: PatternToken[] = [];
  const pushLiteral = (text: string): void => {
    const last = tokens[tokens.length - 1];
    if (last?.kind === 'literal') last.text += text;
    else tokens.push({ kind: 'literal', text });
  };
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === "'") {
      if (pattern[i + 1] === "'") {
        pushLiteral("'");
        i += 2;
        continue;
      }
      const end = findClosingQuote(pattern, i + 1);
      if (end < 0) throw new PatternError(`unterminated quote at position ${i + 1} in pattern "${pattern}"`);
      pushLiteral(pattern.slice(i + 1, end).replaceAll("''", "'"));
      i = end + 1;
      continue;
    }
    if (/[A-Za-z]/.test(c)) {
      if (!SUPPORTED_LETTERS.includes(c)) {
        throw new PatternError(
          WHY_UNSUPPORTED[c] ?? `unknown pattern letter '${c}' at position ${i + 1} in "${pattern}" (quote literal text: 'T')`,
        );
      }
      let count = 1;
      while (pattern[i + count] === c) count++;
      tokens.push({ kind: 'field', letter: c, count });
      i += count;
      continue;
    }
    pushLiteral(c);
    i++;
  }
  return tokens;
}

function findClosingQuote(pattern: string, from: number): number {
  let i = from;
  while (i < pattern.length) {
    if (pattern[i] === "'") {
      if (pattern[i + 1] === "'") {
        i += 2;
        continue;
      }
      return i;
    }
    i++;
  }
  return -1;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

function formatOffset(offsetMs: number, style: 'Z' | 'X1' | 'X2' | 'X3'): string {
  if (offsetMs === 0 && style !== 'Z') return 'Z';
  const total = Math.round(Math.abs(offsetMs) / 60000);
  const sign = offsetMs < 0 ? '-' : '+';
  const hh = pad(Math.floor(total / 60), 2);
  const mm = pad(total % 60, 2);
  if (style === 'X1') return `${sign}${hh}`;
  if (style === 'X3') return `${sign}${hh}:${mm}`;
  return `${sign}${hh}${mm}`;
}

function zoneName(zone: string, utcMs: number, long: boolean): string {
  if (zone === 'UTC') return long ? 'Coordinated Universal Time' : 'UTC';
  if (/^[+-]/.test(zone)) return `GMT${zone}`;
  const part = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: long ? 'long' : 'short' })
    .formatToParts(new Date(utcMs))
    .find((p) => p.type === 'timeZoneName');
  return part?.value ?? zone;
}

/** Formats an instant with a tokenized Java pattern, as Java would in the given zone (English). */
export function formatInstant(instant: Instant, tokens: PatternToken[], zone: string): string {
  const utcMs = msFromInstant(instant);
  const offsetMs = zoneOffsetMs(zone, utcMs);
  const wall = new Date(utcMs + offsetMs);
  const hours = wall.getUTCHours();
  let out = '';
  for (const t of tokens) {
    if (t.kind === 'literal') {
      out += t.text;
      continue;
    }
    const n = t.count;
    switch (t.letter) {
      case 'G': out += 'AD'; break;
      case 'y': out += n === 2 ? pad(wall.getUTCFullYear() % 100, 2) : pad(wall.getUTCFullYear(), n); break;
      case 'M':
      case 'L': {
        const m = wall.getUTCMonth();
        out += n >= 4 ? MONTHS[m]! : n === 3 ? MONTHS[m]!.slice(0, 3) : pad(m + 1, n);
        break;
      }
      case 'd': out += pad(wall.getUTCDate(), n); break;
      case 'D': {
        const startOfYear = Date.UTC(wall.getUTCFullYear(), 0, 1);
        out += pad(Math.floor((wall.getTime() - startOfYear) / 86_400_000) + 1, n);
        break;
      }
      case 'E': {
        const day = DAYS[wall.getUTCDay()]!;
        out += n >= 4 ? day : day.slice(0, 3);
        break;
      }
      case 'u': out += pad(wall.getUTCDay() === 0 ? 7 : wall.getUTCDay(), n); break;
      case 'a': out += hours < 12 ? 'AM' : 'PM'; break;
      case 'H': out += pad(hours, n); break;
      case 'k': out += pad(hours === 0 ? 24 : hours, n); break;
      case 'K': out += pad(hours % 12, n); break;
      case 'h': out += pad(hours % 12 === 0 ? 12 : hours % 12, n); break;
      case 'm': out += pad(wall.getUTCMinutes(), n); break;
      case 's': out += pad(wall.getUTCSeconds(), n); break;
      // Java: S is the millisecond count, zero-padded to the letter count.
      case 'S': out += pad(wall.getUTCMilliseconds(), n); break;
      case 'z': out += zoneName(zone, utcMs, n >= 4); break;
      case 'Z': out += formatOffset(offsetMs, 'Z'); break;
      case 'X': out += formatOffset(offsetMs, n === 1 ? 'X1' : n === 2 ? 'X2' : 'X3'); break;
    }
  }
  return out;
}

type Fields = {
  year?: number; month?: number; day?: number; dayOfYear?: number; hour?: number; hour12?: number;
  pm?: boolean; minute?: number; second?: number; micros?: number; offsetMs?: number;
};
type Setter = (fields: Fields, text: string) => boolean;
type NumberSetter = (fields: Fields, n: number) => void;

/**
 * A pattern of digits and plain separators only (the common case: Concur's), read by a scan of
 * character codes instead of a regex: no match array, no substrings. Steps in pattern order.
 */
type ScanStep =
  | { kind: 'literal'; text: string }
  /** `width` digits exactly, or one or more when 0. */
  | { kind: 'number'; width: number; set: NumberSetter }
  /** Digits read as a fraction of a second; after `separator`, both may be absent together. */
  | { kind: 'fraction'; separator: string | undefined };

type CompiledParser = { regex: RegExp; setters: Setter[]; scan: ScanStep[] | undefined };

const MONTH_ALTERNATION = MONTHS.map((m) => `${m}|${m.slice(0, 3)}`).join('|');
const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function parseOffset(text: string): number | undefined {
  if (/^(Z|UTC|GMT|UT)$/i.test(text)) return 0;
  const m = /^(?:GMT|UTC)?([+-])(\d{1,2}):?(\d{2})?$/i.exec(text);
  if (!m) return undefined;
  const minutes = Number(m[2]) * 60 + Number(m[3] ?? '0');
  return (m[1] === '-' ? -1 : 1) * minutes * 60000;
}

/** What a numeric field letter sets; undefined for letters that are not plain numbers. */
function numberSetter(letter: string, count: number): NumberSetter | undefined {
  switch (letter) {
    case 'y': return (f, n) => { f.year = count === 2 ? twoDigitYear(n) : n; };
    case 'M':
    case 'L': return count >= 3 ? undefined : (f, n) => { f.month = n; };
    case 'd': return (f, n) => { f.day = n; };
    case 'D': return (f, n) => { f.dayOfYear = n; };
    case 'H': return (f, n) => { f.hour = n; };
    case 'k': return (f, n) => { f.hour = n === 24 ? 0 : n; };
    case 'K': return (f, n) => { f.hour12 = n; };
    case 'h': return (f, n) => { f.hour12 = n % 12; };
    case 'm': return (f, n) => { f.minute = n; };
    case 's': return (f, n) => { f.second = n; };
    default: return undefined;
  }
}

const isDigitCode = (c: number): boolean => c >= 48 && c <= 57;

/**
 * Builds a parser from a Java pattern. Two deliberate departures from SimpleDateFormat, both for
 * what real APIs send: `S` digits are read as a decimal fraction of a second (Concur writes
 * `01.98` for 980 ms), and a `.SSS` part may be absent altogether (`19:46:01`).
 */
export function compileParser(tokens: PatternToken[]): CompiledParser {
  let source = '^';
  const setters: Setter[] = [];
  // The scan serves only where its greedy digit runs read exactly what the regex would: every
  // separator starts with a non-digit. Anything else (names, zones, odd patterns) takes the regex.
  let scan: ScanStep[] | undefined = [];
  tokens.forEach((t, i) => {
    const next = tokens[i + 1];
    if (t.kind === 'literal') {
      const optionalFraction = next?.kind === 'field' && next.letter === 'S' && /[.,]$/.test(t.text);
      if (optionalFraction) {
        source += escapeRegex(t.text.slice(0, -1)) + `(?:${escapeRegex(t.text.slice(-1))}`;
      } else {
        source += escapeRegex(t.text);
      }
      if (isDigitCode(t.text.charCodeAt(0))) scan = undefined;
      const text = optionalFraction ? t.text.slice(0, -1) : t.text;
      if (text !== '') scan?.push({ kind: 'literal', text });
      return;
    }
    const adjacentNumber = next?.kind === 'field';
    const digits = (min = 1): string => (adjacentNumber ? `(\\d{${t.count}})` : `(\\d{${Math.min(min, t.count)},})`);
    const setNumber = numberSetter(t.letter, t.count);
    if (setNumber) {
      source += t.letter === 'y' && t.count === 2 ? '(\\d{2})' : digits();
      setters.push((f, text) => {
        setNumber(f, Number(text));
        return true;
      });
      scan?.push({ kind: 'number', width: t.letter === 'y' && t.count === 2 ? 2 : adjacentNumber ? t.count : 0, set: setNumber });
      return;
    }
    if (t.letter !== 'S') scan = undefined;
    switch (t.letter) {
      case 'G': source += '(?:AD|BC)'; return;
      case 'M':
      case 'L':
        source += `(${MONTH_ALTERNATION})`;
        setters.push((f, text) => {
          f.month = MONTHS.findIndex((m) => m.slice(0, 3).toLowerCase() === text.slice(0, 3).toLowerCase()) + 1;
          return f.month > 0;
        });
        return;
      case 'E': source += '(?:[A-Za-z]+)'; return;
      case 'u': source += '(?:\\d)'; return;
      case 'a':
        source += '(AM|PM|am|pm)';
        setters.push((f, text) => { f.pm = text.toUpperCase() === 'PM'; return true; });
        return;
      case 'S': {
        const prev = tokens[i - 1];
        const separator = prev?.kind === 'literal' && /[.,]$/.test(prev.text) ? prev.text.slice(-1) : undefined;
        source += '(\\d+)' + (separator ? ')?' : '');
        setters.push((f, text) => {
          if (text !== undefined) f.micros = microsFromFraction(text);
          return true;
        });
        scan?.push({ kind: 'fraction', separator });
        return;
      }
      case 'z':
      case 'Z':
      case 'X':
        source += '(Z|(?:GMT|UTC|UT)?[+-]\\d{1,2}(?::?\\d{2})?|GMT|UTC|UT)';
        setters.push((f, text) => {
          f.offsetMs = parseOffset(text);
          return f.offsetMs !== undefined;
        });
        return;
    }
  });
  return { regex: new RegExp(source + '$'), setters, scan };
}

/** The fields of `text` by a scan, or undefined where the scan cannot say (the regex decides). */
function scanFields(text: string, steps: readonly ScanStep[]): Fields | undefined {
  const f: Fields = {};
  const end = text.length;
  let pos = 0;
  for (const step of steps) {
    if (step.kind === 'literal') {
      if (!text.startsWith(step.text, pos)) return undefined;
      pos += step.text.length;
      continue;
    }
    if (step.kind === 'fraction' && step.separator !== undefined) {
      if (text[pos] !== step.separator || !isDigitCode(text.charCodeAt(pos + 1))) continue;
      pos++;
    }
    const from = pos;
    let n = 0;
    if (step.kind === 'number' && step.width > 0) {
      if (pos + step.width > end) return undefined;
      for (; pos < from + step.width; pos++) {
        const c = text.charCodeAt(pos);
        if (!isDigitCode(c)) return undefined;
        n = n * 10 + (c - 48);
      }
    } else {
      // As microsFromFraction: the first six digits count, the rest are cut off.
      for (let c = text.charCodeAt(pos); isDigitCode(c); c = text.charCodeAt(++pos)) {
        if (step.kind === 'number' || pos - from < 6) n = n * 10 + (c - 48);
      }
      if (pos === from) return undefined;
    }
    if (step.kind === 'number') step.set(f, n);
    else f.micros = n * 10 ** Math.max(0, 6 - (pos - from));
  }
  return pos === end ? f : undefined;
}

function regexFields(text: string, parser: CompiledParser): Fields | undefined {
  const match = parser.regex.exec(text.trim());
  if (!match) return undefined;
  const f: Fields = {};
  for (let i = 0; i < parser.setters.length; i++) {
    if (!parser.setters[i]!(f, match[i + 1]!)) return undefined;
  }
  return f;
}

function twoDigitYear(n: number): number {
  // Java's SimpleDateFormat window: within 80 years before and 20 after today.
  const pivot = new Date().getUTCFullYear() + 20;
  const century = Math.floor(pivot / 100) * 100;
  const year = century + n;
  return year > pivot ? year - 100 : year;
}

/**
 * Parses text with a compiled pattern. Without a zone in the text, the wall-clock time is read in
 * `zone`. Returns undefined when the text does not match or names an impossible date.
 */
export function parseWithPattern(text: string, parser: CompiledParser, zone: string): Instant | undefined {
  const f = (parser.scan && scanFields(text, parser.scan)) ?? regexFields(text, parser);
  if (!f) return undefined;
  let hour = f.hour ?? 0;
  if (f.hour12 !== undefined) hour = f.hour12 + (f.pm ? 12 : 0);
  else if (f.pm !== undefined && hour < 12 && f.pm) hour += 12;
  const year = f.year ?? 1970;
  let month = (f.month ?? 1) - 1;
  let day = f.day ?? 1;
  if (f.dayOfYear !== undefined && f.month === undefined) {
    const d = new Date(Date.UTC(year, 0, f.dayOfYear));
    month = d.getUTCMonth();
    day = d.getUTCDate();
  }
  return instantFromWallClock({ year, month, day, hour, minute: f.minute ?? 0, second: f.second ?? 0, micros: f.micros ?? 0 }, f.offsetMs, zone);
}

export type WallClock = { year: number; month: number; day: number; hour: number; minute: number; second: number; micros: number };

/**
 * Wall-clock fields (month 0-based) to an instant, using a fixed offset when the text had one and
 * the zone's offset otherwise. Out-of-range fields (month 13, 25:00) are rejected, not rolled over.
 */
export function instantFromWallClock(w: WallClock, offsetMs: number | undefined, zone: string): Instant | undefined {
  if (w.month < 0 || w.month > 11 || w.day < 1 || w.day > 31 || w.hour > 23 || w.minute > 59 || w.second > 60) return undefined;
  if (w.day > daysInMonth(w.year, w.month)) return undefined;
  const wallMs = Date.UTC(w.year, w.month, w.day, w.hour, w.minute, Math.min(w.second, 59));
  const utcMs = offsetMs !== undefined ? wallMs - offsetMs : wallToUtcInZone(wallMs, zone);
  return utcMs * US_PER_MS + w.micros;
}

const DAY_MS = 86_400_000;
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  // Date.UTC reads years 0 to 99 as 1900 to 1999.
  const y = year >= 0 && year <= 99 ? 1900 + year : year;
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  return month === 1 && leap ? 29 : MONTH_DAYS[month]!;
}

/**
 * A wall-clock reading in a zone to UTC, resolving DST edges as Java does: a time that occurs
 * twice (autumn) is the earlier instant; a time that never occurs (spring gap) is read with the
 * offset in force before the gap, so 02:30 becomes 03:30 of the new offset.
 */
function wallToUtcInZone(wallMs: number, zone: string): number {
  if (zone === 'UTC') return wallMs;
  const before = zoneOffsetMs(zone, wallMs - DAY_MS);
  const after = zoneOffsetMs(zone, wallMs + DAY_MS);
  const valid = [...new Set([before, after])]
    .map((offset) => wallMs - offset)
    .filter((utc) => wallMs - zoneOffsetMs(zone, utc) === utc);
  return valid.length > 0 ? Math.min(...valid) : wallMs - before;
}
