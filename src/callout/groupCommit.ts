/**
 * Commits items in groups: while a commit runs, the items that arrive wait and go together in the
 * next. Each commit of the store is a transaction with its fsync; one per callout would cap the
 * connector at the disk's fsync rate, one per group costs the same fsync for all of them. With
 * `maxInFlight` 2, the next group is handed to the store while one commits, so that the store
 * (the database thread, which shares one commit among the writes that reach it together) can
 * commit it with the writes queued beside it instead of one commit later.
 * Each `add` settles with its own item's result, or the group's error.
 */
export class GroupCommit<T, R> {
  private waiting: { item: T; resolve(result: R): void; reject(err: unknown): void }[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(private readonly commit: (items: T[]) => Promise<R[]>, private readonly maxGroup = 512, private readonly maxInFlight = 1) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.waiting.length === 0) return;
    this.scheduled = true;
    // Items added in the same turn of the event loop join the group too.
    queueMicrotask(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    if (this.inFlight >= this.maxInFlight || this.waiting.length === 0) return;
    const group = this.waiting.splice(0, this.maxGroup);
    this.inFlight++;
    this.schedule();
    try {
      const results = await this.commit(group.map((g) => g.item));
      group.forEach((g, i) => g.resolve(results[i]!));
    } catch (err) {
      for (const g of group) g.reject(err);
    } finally {
      this.inFlight--;
      this.schedule();
    }
  }
}
