import { describe, expect, it } from 'vitest';
import { createDateParser } from '../src/time/dateParser.js';
import { instantFromMs, isoFromInstant } from '../src/time/instant.js';
import { compileParser, formatInstant, parseWithPattern, PatternError, tokenizePattern } from '../src/time/javaPattern.js';
import { normalizeTimeZone } from '../src/time/zone.js';

const at = (iso: string) => instantFromMs(Date.parse(iso));
const fmt = (iso: string, pattern: string, zone = 'UTC') => formatInstant(at(iso), tokenizePattern(pattern), zone);

describe('Java SimpleDateFormat patterns: formatting', () => {
  it('formats the Concur pattern with quoted T and milliseconds', () => {
    expect(fmt('2026-11-22T07:05:09.042Z', "yyyy-MM-dd'T'HH:mm:ss.SSS")).toBe('2026-11-22T07:05:09.042');
  });

  it('treats S as zero-padded milliseconds, as Java does (not a fraction, as date-fns does)', () => {
    expect(fmt('2026-11-22T07:05:09.042Z', 's.S')).toBe('9.42');
    expect(fmt('2026-11-22T07:05:09.042Z', 'SSSSSS')).toBe('000042');
  });

  it("reads '' as a single quote, inside and outside quoted text", () => {
    expect(fmt('2026-11-22T07:05:09Z', "HH'h''s' ''mm")).toBe("07h's '05");
  });

  it('formats zones: Z as +hhmm, X as Z or offsets, z as a name', () => {
    expect(fmt('2026-11-22T07:00:00Z', 'Z')).toBe('+0000');
    expect(fmt('2026-11-22T07:00:00Z', 'XXX')).toBe('Z');
    expect(fmt('2026-11-22T07:00:00Z', 'z')).toBe('UTC');
    expect(fmt('2026-11-22T07:00:00Z', "yyyy-MM-dd'T'HH:mmZ", 'America/New_York')).toBe('2026-11-22T02:00-0500');
    expect(fmt('2026-07-22T07:00:00Z', 'HH:mmXXX', 'America/New_York')).toBe('03:00-04:00');
    expect(fmt('2026-07-22T07:00:00Z', 'HH:mm X', 'Asia/Kolkata')).toBe('12:30 +05');
  });

  it('formats names, 12-hour clocks, day of year and ISO day number', () => {
    expect(fmt('2026-11-22T19:05:00Z', 'EEE, d MMM yyyy hh:mm a')).toBe('Sun, 22 Nov 2026 07:05 PM');
    expect(fmt('2026-11-22T00:05:00Z', 'EEEE MMMM k K h')).toBe('Sunday November 24 0 12');
    expect(fmt('2026-02-01T00:00:00Z', 'D u yy')).toBe('32 7 26');
  });

  it('rejects letters Java would reject or that mean something else than users think', () => {
    expect(() => tokenizePattern('YYYY-MM-dd')).toThrow(/week year.*use 'y'/);
    expect(() => tokenizePattern("yyyy-MM-ddTHH")).toThrow(PatternError);
    expect(() => tokenizePattern("yyyy'T")).toThrow(/unterminated quote/);
  });
});

describe('zone-less and zoned dates: parsing', () => {
  const concur = createDateParser("yyyy-MM-dd'T'HH:mm:ss.SSS", 'UTC');

  it.each([
    ['2013-09-02T19:46:01.98', '2013-09-02T19:46:01.980Z'],
    ['2013-09-02T19:46:01.9', '2013-09-02T19:46:01.900Z'],
    ['2013-09-02T19:05:57.687', '2013-09-02T19:05:57.687Z'],
    ['2013-09-02T19:05:57', '2013-09-02T19:05:57.000Z'],
  ])('reads %s as UTC %s (fraction digits are a decimal fraction)', (text, iso) => {
    expect(isoFromInstant(concur(text)!)).toBe(iso);
  });

  it('keeps sub-millisecond digits so that different instants stay different', () => {
    expect(concur('2013-09-02T19:05:57.6871')).not.toBe(concur('2013-09-02T19:05:57.687'));
    expect(concur('2013-09-02T19:05:57.6870')).toBe(concur('2013-09-02T19:05:57.687'));
  });

  it('reads zone-less dates in the configured zone, and an explicit offset wins', () => {
    const ny = createDateParser("yyyy-MM-dd'T'HH:mm:ss", 'America/New_York');
    expect(isoFromInstant(ny('2026-01-15T10:00:00')!)).toBe('2026-01-15T15:00:00.000Z');
    expect(isoFromInstant(ny('2026-07-15T10:00:00')!)).toBe('2026-07-15T14:00:00.000Z');
    expect(isoFromInstant(ny('2026-07-15T10:00:00Z')!)).toBe('2026-07-15T10:00:00.000Z');
    const withZone = createDateParser("yyyy-MM-dd'T'HH:mm:ssXXX", 'UTC');
    expect(isoFromInstant(withZone('2026-07-15T10:00:00+02:00')!)).toBe('2026-07-15T08:00:00.000Z');
  });

  it('resolves DST edges as Java does: the earlier of a repeated hour, the old offset in a gap', () => {
    const ny = createDateParser("yyyy-MM-dd'T'HH:mm:ss", 'America/New_York');
    expect(isoFromInstant(ny('2026-11-01T01:30:00')!)).toBe('2026-11-01T05:30:00.000Z');
    expect(isoFromInstant(ny('2026-11-01T02:30:00')!)).toBe('2026-11-01T07:30:00.000Z');
    expect(isoFromInstant(ny('2026-03-08T02:30:00')!)).toBe('2026-03-08T07:30:00.000Z');
    expect(isoFromInstant(ny('2026-03-08T03:30:00')!)).toBe('2026-03-08T07:30:00.000Z');
    expect(isoFromInstant(ny('2026-03-08T01:59:59')!)).toBe('2026-03-08T06:59:59.000Z');
  });

  it('falls back to ISO-8601 and epoch milliseconds, and refuses garbage and impossible dates', () => {
    expect(isoFromInstant(concur('2026-11-22T07:00:00.5Z')!)).toBe('2026-11-22T07:00:00.500Z');
    expect(isoFromInstant(concur(Date.parse('2026-11-22T07:00:00Z'))!)).toBe('2026-11-22T07:00:00.000Z');
    expect(concur('yesterday')).toBeUndefined();
    expect(concur('2026-02-30T10:00:00')).toBeUndefined();
    expect(concur('2026-13-01T10:00:00')).toBeUndefined();
    expect(concur(null)).toBeUndefined();
  });

  it('parses patterns with month names, 12-hour clocks and no separators', () => {
    expect(isoFromInstant(createDateParser('dd MMM yyyy hh:mm a', 'UTC')('05 Nov 2026 07:30 PM')!)).toBe('2026-11-05T19:30:00.000Z');
    expect(isoFromInstant(createDateParser('yyyyMMddHHmmss', 'UTC')('20261105193001')!)).toBe('2026-11-05T19:30:01.000Z');
  });
});

/** A fixed sequence of pseudo-random numbers in [0, 1): the same cases on every run. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe('numeric patterns: the fast scan', () => {
  const patterns = [
    "yyyy-MM-dd'T'HH:mm:ss.SSS", "yyyy-MM-dd'T'HH:mm:ss", 'yyyyMMddHHmmss', 'dd/MM/yy HH:mm', 'yyyy-MM-dd HH:mm:ss,SSS',
    'D.yyyy h:mm', "yyyy-MM-dd'T'HH:mm:ss.SSSSSS", 'ssSSS',
  ];
  const random = seeded(7);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const mutate = (text: string): string => {
    const i = Math.floor(random() * (text.length + 1));
    return pick([
      () => text.slice(0, i), () => text.slice(0, i) + text.slice(i + 1), () => `${text.slice(0, i)}7${text.slice(i)}`,
      () => ` ${text} `, () => `${text}.`, () => `${text}.123456789`, () => `${text.slice(0, i)}x${text.slice(i)}`, () => text,
    ])();
  };

  it.each(patterns)('reads %s exactly as the regex does, well-formed or not', (pattern) => {
    const tokens = tokenizePattern(pattern);
    const parser = compileParser(tokens);
    expect(parser.scan).toBeDefined();
    const regexOnly = { ...parser, scan: undefined };
    let read = 0;
    for (let n = 0; n < 400; n++) {
      const instant = instantFromMs(Date.UTC(1990, 0, 1) + Math.floor(random() * 50 * 365 * 86_400_000));
      const text = mutate(formatInstant(instant, tokens, 'UTC'));
      const viaScan = parseWithPattern(text, parser, 'UTC');
      expect([text, viaScan]).toEqual([text, parseWithPattern(text, regexOnly, 'UTC')]);
      if (viaScan !== undefined) read++;
    }
    expect(read).toBeGreaterThan(50);
  });

  it('is not used for patterns with names, zones or digits in separators', () => {
    for (const pattern of ['dd MMM yyyy', "yyyy-MM-dd'T'HH:mmXXX", 'hh:mm a', "yyyy'1'MM"]) {
      expect(compileParser(tokenizePattern(pattern)).scan).toBeUndefined();
    }
  });
});

describe('ISO-8601 of an instant', () => {
  it('is what toISOString writes, from 1970 to 9999 and on either side', () => {
    const random = seeded(11);
    const edges = [0, 1, -1, 951_782_400_000, 951_868_800_000, 4_107_456_000_000, 253_402_300_799_999, 253_402_300_800_000, -62_167_219_200_000];
    for (const ms of edges) expect([ms, isoFromInstant(instantFromMs(ms))]).toEqual([ms, new Date(ms).toISOString()]);
    // Microseconds below the millisecond are cut, not rounded.
    for (let n = 0; n < 5000; n++) {
      const ms = Math.floor(random() * 9_000_000_000_000);
      expect([ms, isoFromInstant(instantFromMs(ms) + 999)]).toEqual([ms, new Date(ms).toISOString()]);
    }
  });
});

describe('time zones as AMPLIFY users write them', () => {
  it.each([
    ['GMT', 'UTC'], ['UTC', 'UTC'], ['-8:00', '-08:00'], ['GMT+5:30', '+05:30'], ['PST', 'America/Los_Angeles'],
    ['EST', '-05:00'], ['Europe/Paris', 'Europe/Paris'],
  ])('%s is %s', (input, expected) => {
    expect(normalizeTimeZone(input)).toBe(expected);
  });

  it('names nothing for an unknown zone', () => {
    expect(normalizeTimeZone('Mars/Olympus')).toBeUndefined();
  });
});
