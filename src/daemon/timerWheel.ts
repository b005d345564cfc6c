/** Longest wait on one timer: a wall clock stepped forward is noticed within this. */
const MAX_WAIT_MS = 10_000;

type Entry<K> = { key: K; dueMs: number; seq: number };

/**
 * One timer for every stream's next poll instead of a timer (and a sleeping loop) per stream: a
 * binary heap by due time, and a single `setTimeout` for its earliest entry. Due times are wall
 * clock (ms since the epoch), as the polls' windows are; the timer is re-armed at least every
 * MAX_WAIT_MS so a clock step delays nothing by more than that.
 *
 * Each key has at most one entry: scheduling a key again replaces its entry (the old one stays in
 * the heap, recognised as stale by its sequence number, and is dropped when it surfaces).
 */
export class TimerWheel<K> {
  private heap: Entry<K>[] = [];
  private readonly live = new Map<K, number>();
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  private disposed = false;

  constructor(private readonly onDue: (key: K, dueMs: number) => void, private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.live.size;
  }

  schedule(key: K, dueMs: number): void {
    if (this.disposed) return;
    const seq = ++this.seq;
    this.live.set(key, seq);
    this.push({ key, dueMs, seq });
    if (dueMs < this.armedFor) this.arm();
  }

  cancel(key: K): void {
    this.live.delete(key);
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.heap = [];
    this.live.clear();
  }

  /** Fires every entry due by now, in due order, then waits for the next. */
  private fire(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = this.now();
    while (this.heap.length > 0 && this.heap[0]!.dueMs <= now) {
      const entry = this.pop()!;
      if (this.live.get(entry.key) !== entry.seq) continue;
      this.live.delete(entry.key);
      this.onDue(entry.key, entry.dueMs);
      if (this.disposed) return;
    }
    this.arm();
  }

  private arm(): void {
    while (this.heap.length > 0 && this.live.get(this.heap[0]!.key) !== this.heap[0]!.seq) this.pop();
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
    const first = this.heap[0];
    if (!first) return;
    const wait = Math.min(MAX_WAIT_MS, Math.max(0, first.dueMs - this.now()));
    this.armedFor = first.dueMs;
    this.timer = setTimeout(() => this.fire(), wait);
  }

  private push(entry: Entry<K>): void {
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private pop(): Entry<K> | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  }
}

/** Earlier due first; equal ones in the order they were scheduled. */
function before(a: Entry<unknown>, b: Entry<unknown>): boolean {
  return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);
}
