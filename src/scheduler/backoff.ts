/** Retry delays after failed rotations: 1m, 2m, 4m, ... capped at 1h. Pure. */
export const BACKOFF_BASE_MS = 60_000;
export const BACKOFF_MAX_MS = 3_600_000;

/** Delay before the retry that follows the n-th consecutive failure (n >= 1). */
export function backoffMs(failures: number, baseMs = BACKOFF_BASE_MS, maxMs = BACKOFF_MAX_MS): number {
  const n = Math.max(1, Math.floor(failures));
  // 2 ** 40 already dwarfs any cap; stop the exponent there so the number stays finite.
  return Math.min(maxMs, baseMs * 2 ** Math.min(n - 1, 40));
}
