import { isTransient } from '../util/errors.js';
import { sleep } from '../util/limit.js';

export interface RetryPolicy {
  /** Total attempts, including the first. */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseMs: 200, maxMs: 5_000 };

/** Delay before retry n (1-based): exponential with full jitter, capped. */
export function backoffDelay(n: number, p: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(p.maxMs, p.baseMs * 2 ** (n - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Retry fn while it fails with a transient error (timeout, ECONNRESET, EAGAIN, 5xx). */
export async function withRetry<T>(fn: () => Promise<T>, p: RetryPolicy, onRetry?: (attempt: number, e: unknown) => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= p.attempts || !isTransient(e)) throw e;
      onRetry?.(attempt, e);
      await sleep(backoffDelay(attempt, p));
    }
  }
}
