/**
 * Commits items in groups: while one commit runs, the items that arrive wait and go together in
 * the next. Each commit of the store is a transaction with its fsync; one per callout would cap
 * the connector at the disk's fsync rate, one per group costs the same fsync for all of them.
 * Each `add` settles with its own item's result, or the group's error.
 */
export class GroupCommit<T, R> {
  private waiting: { item: T; resolve(result: R): void; reject(err: unknown): void }[] = [];
  private running = false;

  constructor(private readonly commit: (items: T[]) => Promise<R[]>, private readonly maxGroup = 512) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (!this.running) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    // Items added in the same turn of the event loop join the first group too.
    await Promise.resolve();
    while (this.waiting.length > 0) {
      const group = this.waiting.splice(0, this.maxGroup);
      try {
        const results = await this.commit(group.map((g) => g.item));
        group.forEach((g, i) => g.resolve(results[i]!));
      } catch (err) {
        for (const g of group) g.reject(err);
      }
    }
    this.running = false;
  }
}
