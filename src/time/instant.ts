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

/** ISO-8601 UTC with milliseconds, the form used in event payloads. */
export function isoFromInstant(instant: Instant): string {
  return new Date(msFromInstant(instant)).toISOString();
}

/** Reads a decimal fraction of a second ("98" of ".98") as microseconds, truncating past 6 digits. */
export function microsFromFraction(digits: string): number {
  return Number((digits + '000000').slice(0, 6));
}
