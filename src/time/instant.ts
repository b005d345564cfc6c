/**
 * An instant is a whole number of microseconds since the Unix epoch. Concur and other APIs send
 * fractions with any number of digits; microseconds keep them comparable as instants (two
 * spellings of the same moment compare equal) while staying exact in a double until year 2255.
 */
export type Instant = number;

export const US_PER_MS = 1000;
export const US_PER_SECOND = 1_000_000;

export function instantFromMs(ms: number): Instant {
  return Math.round(ms) * US_PER_MS;
}

export function instantFromDate(date: Date): Instant {
  return instantFromMs(date.getTime());
}

export function msFromInstant(instant: Instant): number {
  return Math.floor(instant / US_PER_MS);
}

const DAY_MS = 86_400_000;
/** 10000-01-01T00:00:00Z: from here on toISOString writes six-digit years; before 1970 is left to it too. */
const YEAR_10000_MS = 253_402_300_800_000;
const TWO_DIGITS = Array.from({ length: 100 }, (_, n) => String(n).padStart(2, '0'));
const THREE_DIGITS = Array.from({ length: 1000 }, (_, n) => String(n).padStart(3, '0'));

/**
 * ISO-8601 UTC with milliseconds, the form used in event payloads: what toISOString writes, by
 * arithmetic (days to civil date, after Howard Hinnant) rather than a Date per event, which
 * showed in the ingest profile.
 */
export function isoFromInstant(instant: Instant): string {
  const ms = msFromInstant(instant);
  if (ms < 0 || ms >= YEAR_10000_MS) return new Date(ms).toISOString();
  const days = Math.floor(ms / DAY_MS);
  const inDay = ms - days * DAY_MS;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const mp = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const seconds = Math.floor(inDay / 1000);
  return `${year}-${TWO_DIGITS[month]}-${TWO_DIGITS[day]}T${TWO_DIGITS[Math.floor(seconds / 3600)]}:`
    + `${TWO_DIGITS[Math.floor(seconds / 60) % 60]}:${TWO_DIGITS[seconds % 60]}.${THREE_DIGITS[inDay % 1000]}Z`;
}

/** Reads a decimal fraction of a second ("98" of ".98") as microseconds, truncating past 6 digits. */
export function microsFromFraction(digits: string): number {
  return Number((digits + '000000').slice(0, 6));
}
