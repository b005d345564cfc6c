/**
 * Optimal string alignment distance: insertions, deletions, substitutions and transpositions of
 * two neighbours each cost one ("databse" → "database" is 1, "adn" → "and" is 1).
 */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  // Three rows suffice: a transposition looks two rows back.
  let twoBack: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, twoBack[j - 2]! + 1);
      current.push(d);
    }
    twoBack = previous;
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The candidate `word` was most likely meant to be, if one is near enough to say so: the same
 * but for letter case, or within a third of the word's length in edits (at most 3), so that a
 * short word does not "mean" every other short word.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.min(3, Math.floor(word.length / 3));
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance <= limit && (!best || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}

