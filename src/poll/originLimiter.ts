import { Semaphore } from '../util/semaphore.js';

/**
 * Bounds the requests in flight to each provider origin (scheme, host and port): thousands of
 * companies on one Concur host share its limit, another provider has its own. Held only for the
 * request itself, never for a wait between retries, so a company told to slow down (429) keeps
 * no slot from the others.
 */
export class OriginLimiter {
  private readonly origins = new Map<string, Semaphore>();

  constructor(private perOrigin: number) {}

  /** A reload's new limit applies to origins from now on; requests in flight finish as they are. */
  setLimit(perOrigin: number): void {
    if (perOrigin === this.perOrigin) return;
    this.perOrigin = perOrigin;
    this.origins.clear();
  }

  run<T>(url: string, request: () => Promise<T>): Promise<T> {
    const origin = new URL(url).origin;
    let semaphore = this.origins.get(origin);
    if (!semaphore) {
      semaphore = new Semaphore(this.perOrigin);
      this.origins.set(origin, semaphore);
    }
    return semaphore.use(request);
  }
}
