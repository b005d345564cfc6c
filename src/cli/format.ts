import { isoFromInstant } from '../time/instant.js';

export const isoOrDash = (ms: number | undefined): string => (ms === undefined ? '-' : new Date(ms).toISOString());
export const instantOrDash = (us: number | undefined): string => (us === undefined ? '-' : isoFromInstant(us));

/** A plain text table: columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
