/**
 * A `Retry-After` header in seconds: delta-seconds, or an HTTP date counted from `nowMs`. Both
 * the poller (pages, token refreshes) and the deliverer read it, so it lives below both.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - nowMs) / 1000));
}
