/** Secrets shorter than this are not redacted: they would garble lines for nothing. */
export const MIN_SECRET = 4;
/** Shorter starts tell little of a secret, and would often match the end of an innocent id. */
const MIN_CUT = 6;
const KEY = MIN_SECRET;

/**
 * Every secret a daemon knows, found in a text in one pass whatever their number: secrets are
 * indexed by their first MIN_SECRET characters, so each position of the text costs one map
 * lookup, not one comparison per secret (2,000 companies make thousands of keys and tokens, and
 * every field of every log line is searched).
 */
export class SecretIndex {
  private readonly byKey = new Map<string, Set<string>>();
  private longest = 0;

  constructor(secrets: Iterable<string> = []) {
    for (const s of secrets) this.add(s);
  }

  get size(): number {
    let n = 0;
    for (const set of this.byKey.values()) n += set.size;
    return n;
  }

  add(secret: string): void {
    if (secret.length < MIN_SECRET) return;
    const key = secret.slice(0, KEY);
    let set = this.byKey.get(key);
    if (!set) this.byKey.set(key, (set = new Set()));
    set.add(secret);
    this.longest = Math.max(this.longest, secret.length);
  }

  delete(secret: string): void {
    const key = secret.slice(0, KEY);
    const set = this.byKey.get(key);
    if (!set?.delete(secret)) return;
    if (set.size === 0) this.byKey.delete(key);
  }

  /**
   * The text with every occurrence of a secret replaced, overlapping ones as one, and the start
   * of a secret that ends a line (an excerpt cut inside it), at least MIN_CUT characters long.
   */
  redact(text: string): string {
    if (this.byKey.size === 0 || text.length < MIN_SECRET) return text;
    const spans: [number, number][] = [];
    for (let i = 0; i + KEY <= text.length; i++) {
      const set = this.byKey.get(text.slice(i, i + KEY));
      if (!set) continue;
      let end = -1;
      for (const s of set) if (s.length > end - i && text.startsWith(s, i)) end = i + s.length;
      if (end > 0) spans.push([i, end]);
    }
    this.cutEnds(text, spans);
    if (spans.length === 0) return text;
    spans.sort((a, b) => a[0] - b[0]);
    // Overlapping and touching spans are one: no part of either secret stays between them.
    const merged: [number, number][] = [];
    for (const [from, to] of spans) {
      const last = merged[merged.length - 1];
      if (last && from <= last[1]) last[1] = Math.max(last[1], to);
      else merged.push([from, to]);
    }
    let out = '';
    let at = 0;
    for (const [from, to] of merged) {
      out += `${text.slice(at, from)}[redacted]`;
      at = to;
    }
    return out + text.slice(at);
  }

  /** Spans for the start of a secret cut off by the end of a line (or of the text). */
  private cutEnds(text: string, spans: [number, number][]): void {
    let lineEnd = text.indexOf('\n');
    if (lineEnd < 0) lineEnd = text.length;
    for (let lineStart = 0; lineStart <= text.length;) {
      for (let i = Math.max(lineStart, lineEnd - this.longest + 1); i <= lineEnd - MIN_CUT; i++) {
        const set = this.byKey.get(text.slice(i, i + KEY));
        if (!set) continue;
        const tail = text.slice(i, lineEnd);
        for (const s of set) {
          if (s.length > tail.length && s.startsWith(tail)) {
            spans.push([i, lineEnd]);
            break;
          }
        }
      }
      if (lineEnd >= text.length) break;
      lineStart = lineEnd + 1;
      const next = text.indexOf('\n', lineStart);
      lineEnd = next < 0 ? text.length : next;
    }
  }
}
