/**
 * PostgreSQL's text cannot hold U+0000, which SQLite keeps, and refuses the whole statement that
 * brings one. Text from outside (a receiver's answer, a callout's fields, a record's id, an error
 * quoting a provider's body) may carry it: refused, it is a delivery whose attempt is never
 * recorded (sent again and again), or a callout or page that can never be committed. It is kept
 * as U+FFFD instead, the same way every time, so a key stays one key.
 */
export function pgText(value: string): string {
  return value.includes('\u0000') ? value.replaceAll('\u0000', '\uFFFD') : value;
}

export function pgTextOrNull(value: string | undefined): string | null {
  return value === undefined ? null : pgText(value);
}
