/** Time and timers, injected so tests can drive the scheduler without sleeping. */
export interface Clock {
  now(): Date;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Node's timers can wait at most 2^31-1 ms; longer waits are cut and re-armed. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => new Date(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.min(MAX_TIMER_MS, Math.max(0, ms))),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
