/**
 * At most one rotation per policy at a time. The interface lets a fleet-wide lock (PostgreSQL
 * advisory locks) replace the local lock file later.
 */
export interface LockOwner {
  pid: number;
  /** Process start time in clock ticks since boot (Linux), to tell a reused PID from the owner. */
  startTicks: number | null;
  hostname: string;
  acquiredAt: string;
  purpose: string;
}

export interface LockHandle {
  readonly name: string;
  release(): Promise<void>;
}

export interface AcquireOptions {
  /** How long to wait for a busy lock; 0 means fail at once. */
  waitMs?: number;
  /** Shown to others, e.g. "rotate-now" or "daemon". */
  purpose?: string;
  /** Called when a lock left by a dead process is taken over. */
  onTakeover?: (previous: LockOwner) => void;
}

export interface LockProvider {
  /** Throws RekeyError LOCKED ("policy X is being rotated by pid N") when busy past waitMs. */
  acquire(name: string, opts?: AcquireOptions): Promise<LockHandle>;
}
