import { type Instant } from '../time/instant.js';
import { formatInstant, PatternError, type PatternToken, tokenizePattern } from '../time/javaPattern.js';
import { normalizeTimeZone } from '../time/zone.js';

/** A URL with AMPLIFY macros, compiled once so that a bad pattern is a config error, not a poll error. */
export type UrlTemplate = (windowStart: Instant, encode: (value: string) => string) => string;

type Part = string | ((at: Instant) => string);

const MACRO = /\$\{([A-Za-z]+)(?::([^}]*))?\}/g;

/**
 * Compiles `${date:FMT}`, `${gmtDate:FMT}`, `${dateTimeZone:TZ:FMT}`, `${epoch}`, `${epoch:s}`,
 * `${epoch:ms}` and `${epoch:us}`. `zone` is the zone of `date`/`gmtDate` (UTC unless configured).
 */
export function compileUrlTemplate(template: string, zone: string): UrlTemplate {
  const parts: Part[] = [];
  let last = 0;
  for (const m of template.matchAll(MACRO)) {
    parts.push(template.slice(last, m.index));
    parts.push(compileMacro(m[1]!, m[2], zone, m[0]));
    last = m.index + m[0].length;
  }
  parts.push(template.slice(last));
  return (at, encode) => parts.map((p) => (typeof p === 'string' ? p : encode(p(at)))).join('');
}

function compileMacro(name: string, arg: string | undefined, zone: string, text: string): (at: Instant) => string {
  const withPattern = (pattern: string | undefined, tz: string): ((at: Instant) => string) => {
    if (!pattern) throw new PatternError(`${text} needs a date pattern, e.g. \${${name}:yyyy-MM-dd'T'HH:mm:ss}`);
    const tokens: PatternToken[] = tokenizePattern(pattern);
    return (at) => formatInstant(at, tokens, tz);
  };
  switch (name) {
    case 'date':
    case 'gmtDate':
      return withPattern(arg, zone);
    case 'dateTimeZone': {
      const split = splitZoneAndPattern(arg ?? '');
      if (!split) throw new PatternError(`${text}: expected \${dateTimeZone:ZONE:PATTERN} with a known zone`);
      return withPattern(split.pattern, split.zone);
    }
    case 'epoch': {
      const divisor = { undefined: 1000, ms: 1000, s: 1_000_000, us: 1 }[String(arg)];
      if (divisor === undefined) throw new PatternError(`${text}: epoch unit must be s, ms or us`);
      return (at) => String(Math.floor(at / divisor));
    }
    default:
      throw new PatternError(`unknown macro ${text} (known: date, gmtDate, dateTimeZone, epoch)`);
  }
}

/** Zones may hold colons themselves (`-8:00`), so the longest prefix that names a zone wins. */
function splitZoneAndPattern(arg: string): { zone: string; pattern: string } | undefined {
  for (let i = arg.lastIndexOf(':'); i > 0; i = arg.lastIndexOf(':', i - 1)) {
    const zone = normalizeTimeZone(arg.slice(0, i));
    if (zone) return { zone, pattern: arg.slice(i + 1) };
  }
  return undefined;
}
