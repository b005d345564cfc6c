/** Margin kept on top of a measured skew: the `Date` header has one-second resolution. */
const SKEW_MARGIN_SEC = 5;

/**
 * The overlap a window needs: the configured one, or more when the provider's clock is further
 * off ours than it covers. A record stamped by a clock S seconds behind ours can carry a date up
 * to S seconds before our cursor, so the window must reach back at least that far.
 */
export function overlapWithSkewSec(configuredSec: number, skewMs: number | undefined): number {
  if (skewMs === undefined) return configuredSec;
  return Math.max(configuredSec, Math.abs(skewMs) / 1000 + SKEW_MARGIN_SEC);
}
