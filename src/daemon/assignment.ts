/**
 * Which replica polls which stream: rendezvous (highest-random-weight) hashing. Every replica
 * scores every stream; the highest score takes it. Each replica computes the same answer from the
 * same list of live replicas, with no coordination; a replica leaving moves only its own streams
 * (each to its runner-up), and coming back under the same name takes back exactly those.
 */
/** A stream to place: its row id, and the key every replica names it by. */
export type Placeable = { id: number; instance: string; resource: string };

/** A live replica: scored by `name` (stable across restarts), ties broken by `id` (unique). */
export type Candidate = { id: string; name: string };

/**
 * The score of `replicaName` for a stream: cyrb53, a 53-bit string hash even enough to spread
 * thousands of streams, and cheap enough to score them all every lease round without a cache.
 */
export function weight(replicaName: string, instance: string, resource: string): number {
  // NUL separates the parts: no name or key holds one, so no two triples hash the same text.
  const text = `${replicaName}\0${instance}\0${resource}`;
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** The replica (by id) that should hold each stream, by stream id; none when no replica is live. */
export function assign(streams: readonly Placeable[], replicas: readonly Candidate[]): Map<number, string> {
  const owners = new Map<number, string>();
  if (replicas.length === 0) return owners;
  for (const s of streams) {
    let best: Candidate | undefined;
    let bestWeight = -1;
    for (const r of replicas) {
      const w = weight(r.name, s.instance, s.resource);
      if (w > bestWeight || (w === bestWeight && best !== undefined && r.id < best.id)) {
        best = r;
        bestWeight = w;
      }
    }
    owners.set(s.id, best!.id);
  }
  return owners;
}

/** The ids of the streams `replicaId` should hold. */
export function desiredStreams(streams: readonly Placeable[], replicas: readonly Candidate[], replicaId: string): Set<number> {
  const desired = new Set<number>();
  for (const [streamId, owner] of assign(streams, replicas)) if (owner === replicaId) desired.add(streamId);
  return desired;
}
