/**
 * The accounting of the steady scenario, apart from its processes: which record versions the
 * simulator made, which of them the receiver got and when, and which stood long enough that a
 * poller should have seen them but never announced them.
 */

/** One version as the simulator recorded it (its `changes`). */
export type MadeVersion = { id: string; lastModified: string; madeMs: number };

/** One event as the receiver got it: `date` is the event's ISO date, `receivedMs` the receiver's clock. */
export type Receipt = { objectId: string; date: string; notificationId: string; receivedMs: number };

export type VersionAccount = {
  /** Versions made. */
  made: number;
  /** Versions announced at least once. */
  announced: number;
  /** First receipt − made, per announced version, ms. */
  latenciesMs: number[];
  /** Versions that stood unchanged at least `standingMs` (until replaced, or until `untilMs`). */
  standing: number;
  /** Of those, the ones never announced: each is a change the poller missed. */
  standingNeverAnnounced: number;
  /**
   * Of the missed, the ones still current at `untilMs`: late, and may yet be announced. The
   * others were replaced unannounced, so polling can never announce them.
   */
  missedStillCurrent: number;
  /** Versions announced under two or more notification ids. */
  duplicates: number;
  /** Receipts of a version again under a notification id it already came with (at-least-once redelivery). */
  redeliveries: number;
  /** Receipts that match no version made (expected 0: a sign the accounting is wrong). */
  unknown: number;
};

/** Concur's zone-less UTC date (`2026-11-22T07:00:00.98`) or an ISO date with its zone, as ms. */
const instantMs = (date: string): number => Date.parse(/Z|[+-]\d\d:\d\d$/.test(date) ? date : `${date}Z`);

/**
 * `versions` in the order they were made; each is replaced by the next version of its report.
 * `untilMs` is when the receipts were taken: a version still current then has stood until then.
 */
export function accountVersions(versions: MadeVersion[], receipts: Receipt[], untilMs: number, standingMs: number): VersionAccount {
  const keyOf = (id: string, ms: number): string => `${id}@${ms}`;
  const receiptsOf = new Map<string, Receipt[]>();
  for (const v of versions) receiptsOf.set(keyOf(v.id, instantMs(v.lastModified)), []);
  let unknown = 0;
  for (const r of receipts) {
    const list = receiptsOf.get(keyOf(r.objectId, instantMs(r.date)));
    if (list) list.push(r);
    else unknown++;
  }
  const replacedAt = new Map<number, number>();
  const latest = new Map<string, number>();
  versions.forEach((v, i) => {
    const previous = latest.get(v.id);
    if (previous !== undefined) replacedAt.set(previous, v.madeMs);
    latest.set(v.id, i);
  });
  const account: VersionAccount = { made: versions.length, announced: 0, latenciesMs: [], standing: 0, standingNeverAnnounced: 0, missedStillCurrent: 0, duplicates: 0, redeliveries: 0, unknown };
  versions.forEach((v, i) => {
    const got = receiptsOf.get(keyOf(v.id, instantMs(v.lastModified)))!;
    const replaced = replacedAt.get(i);
    const stood = (replaced ?? untilMs) - v.madeMs;
    if (stood >= standingMs) account.standing++;
    if (got.length === 0) {
      if (stood >= standingMs) account.standingNeverAnnounced++;
      if (stood >= standingMs && replaced === undefined) account.missedStillCurrent++;
      return;
    }
    account.announced++;
    account.latenciesMs.push(Math.min(...got.map((r) => r.receivedMs)) - v.madeMs);
    const ids = new Set(got.map((r) => r.notificationId));
    if (ids.size > 1) account.duplicates++;
    account.redeliveries += got.length - ids.size;
  });
  return account;
}
