/** A holder's slot, which it may give up while it only waits (`idle`), and take again after. */
export type Slot = { idle<T>(wait: () => Promise<T>): Promise<T> };

/** Bounds how many holders run at once (polls across all streams, requests to one origin). */
export class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async use<T>(fn: (slot: Slot) => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn({
        idle: async (wait) => {
          this.release();
          try {
            return await wait();
          } finally {
            await this.acquire();
          }
        },
      });
    } finally {
      this.release();
    }
  }

  private async acquire(): Promise<void> {
    // A released slot passes straight to the next waiter, so no newcomer can slip in between.
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}
