import { isoFromInstant } from '../time/instant.js';

export const isoOrDash = (ms: number | undefined): string => (ms === undefined ? '-' : new Date(ms).toISOString());
export const instantOrDash = (us: number | undefined): string => (us === undefined ? '-' : isoFromInstant(us));

/** A plain text table: columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** How far `ms` is from `nowMs`, as a person reads it: "12 s ago", "in 40 s", "3 min ago". */
export function relativeTime(ms: number, nowMs: number): string {
  const deltaSec = Math.round((ms - nowMs) / 1000);
  const abs = Math.abs(deltaSec);
  if (abs === 0) return 'now';
  const span = abs < 120 ? `${abs} s` : abs < 7200 ? `${Math.round(abs / 60)} min` : abs < 172_800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86_400)} d`;
  return deltaSec < 0 ? `${span} ago` : `in ${span}`;
}

export const relativeOrDash = (ms: number | undefined, nowMs: number): string => (ms === undefined ? '-' : relativeTime(ms, nowMs));

/** `--json` gives every time one way: ISO-8601 in UTC, or null. */
export const isoOrNull = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
