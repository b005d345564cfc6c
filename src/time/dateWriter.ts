import type { Instant } from './instant.js';
import { compileParser, formatInstant, parseWithPattern, type PatternToken, tokenizePattern } from './javaPattern.js';

/**
 * How one provider writes dates in its URLs: a Java pattern in a zone. Both ends of a window are
 * written with it, so that the provider reads them on one clock.
 */
export type DateWriter = {
  pattern: string;
  zone: string;
  /** Text the provider reads as `at` or an earlier instant: the start of a window. */
  atOrBefore: (at: Instant) => string;
  /** Text the provider reads as `at` or a later instant: the end of a window. */
  atOrAfter: (at: Instant) => string;
};

/**
 * Enough for any gap `atOrAfter` closes: doubling from one microsecond passes a year in 45 steps.
 */
const MAX_STEPS = 64;

/** Throws PatternError on a bad pattern. */
export function compileDateWriter(pattern: string, zone: string): DateWriter {
  const tokens: PatternToken[] = tokenizePattern(pattern);
  const parser = compileParser(tokens);
  const format = (at: Instant): string => formatInstant(at, tokens, zone);
  // Without a year the text names no instant to compare (`HH:mm` reads back as 1970).
  const readable = tokens.some((t) => t.kind === 'field' && t.letter === 'y');
  return {
    pattern,
    zone,
    // Formatting drops what the pattern cannot show, and a wall-clock time that occurs twice is
    // read as the earlier one: either way the provider reads the text at or before `at`.
    atOrBefore: format,
    // The same two losses would end a window early, and what lies between would be read by no
    // window. Formatting a later instant until the text reads back at or after `at` closes both:
    // a truncated fraction, and an end in an autumn repeat, which Java reads as early as the clocks
    // went back.
    atOrAfter: (at) => {
      if (!readable) return format(at);
      let step = 0;
      for (let i = 0; i < MAX_STEPS; i++) {
        const text = format(at + step);
        const read = parseWithPattern(text, parser, zone);
        // A pattern we cannot read back (zone names) can only be written as it is.
        if (read === undefined || read >= at) return text;
        step = Math.max(2 * step, at - read);
      }
      throw new Error(`cannot write ${new Date(at / 1000).toISOString()} with "${pattern}" in ${zone} so that it reads back at or after it`);
    },
  };
}
