import { compileDateWriter, type DateWriter } from '../time/dateWriter.js';
import { type Instant } from '../time/instant.js';
import { PatternError } from '../time/javaPattern.js';
import { normalizeTimeZone } from '../time/zone.js';

/** A URL with AMPLIFY macros, compiled once so that a bad pattern is a config error, not a poll error. */
export type UrlTemplate = {
  expand: (windowStart: Instant, encode: (value: string) => string) => string;
  /**
   * How the provider writes the dates it is asked about: the URL's first date macro (the one in
   * `modifiedDateAfter`), or, without one, ISO local time with milliseconds in the configured
   * zone. A window's end is written with it too, so that both ends are read on one clock.
   */
  providerDates: DateWriter;
};

type Part = string | ((at: Instant) => string);

/** What Concur reads in modifiedDateAfter/Before, and the zone-less form most APIs take. */
const ISO_LOCAL_MS = "yyyy-MM-dd'T'HH:mm:ss.SSS";

const MACRO = /\$\{([A-Za-z]+)(?::([^}]*))?\}/g;

/**
 * Compiles `${date:FMT}`, `${gmtDate:FMT}`, `${dateTimeZone:TZ:FMT}`, `${epoch}`, `${epoch:s}`,
 * `${epoch:ms}` and `${epoch:us}`. `zone` is the zone of `date` (UTC unless configured); `gmtDate`
 * is GMT whatever is configured, as in AMPLIFY.
 */
export function compileUrlTemplate(template: string, zone: string): UrlTemplate {
  const parts: Part[] = [];
  let providerDates: DateWriter | undefined;
  let last = 0;
  for (const m of template.matchAll(MACRO)) {
    parts.push(template.slice(last, m.index));
    const macro = compileMacro(m[1]!, m[2], zone, m[0]);
    if (typeof macro === 'function') {
      parts.push(macro);
    } else {
      providerDates ??= macro;
      parts.push(macro.atOrBefore);
    }
    last = m.index + m[0].length;
  }
  parts.push(template.slice(last));
  return {
    expand: (at, encode) => parts.map((p) => (typeof p === 'string' ? p : encode(p(at)))).join(''),
    providerDates: providerDates ?? compileDateWriter(ISO_LOCAL_MS, zone),
  };
}

function compileMacro(name: string, arg: string | undefined, zone: string, text: string): DateWriter | ((at: Instant) => string) {
  const withPattern = (pattern: string | undefined, tz: string): DateWriter => {
    if (!pattern) throw new PatternError(`${text} needs a date pattern, e.g. \${${name}:yyyy-MM-dd'T'HH:mm:ss}`);
    return compileDateWriter(pattern, tz);
  };
  switch (name) {
    case 'date':
      return withPattern(arg, zone);
    case 'gmtDate':
      return withPattern(arg, 'UTC');
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
