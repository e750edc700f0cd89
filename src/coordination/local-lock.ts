/**
 * A lock file per name, created with O_EXCL and holding the owner's PID and start time.
 * A lock whose owner is dead (or whose PID now belongs to another process) is taken over
 * under a short-lived takeover guard, so two contenders can never both remove it.
 */
import { constants, promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RekeyError } from '../util/errors.js';
import { formatDuration } from '../util/duration.js';
import type { AcquireOptions, LockHandle, LockOwner, LockProvider } from './lock.js';

const GUARD_STALE_MS = 10_000;

/** Start time of a process in clock ticks since boot, or null where /proc is not available. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

export function isAlive(owner: Pick<LockOwner, 'pid' | 'startTicks' | 'hostname'>): boolean {
  if (owner.pid <= 0) return false; // a torn lock file that readOwner judged old enough to be abandoned
  if (owner.hostname !== os.hostname()) return true; // cannot judge another host's process: assume alive
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as { code?: string }).code === 'ESRCH') return false;
  }
  if (owner.startTicks !== null) {
    const now = processStartTicks(owner.pid);
    if (now !== null && now !== owner.startTicks) return false; // the PID was reused
  }
  return true;
}

const SELF_TICKS = processStartTicks(process.pid);

export class LocalLockProvider implements LockProvider {
  readonly dir: string;
  readonly #held = new Set<string>();

  constructor(dir: string) {
    this.dir = dir;
  }

  #file(name: string): string {
    return path.join(this.dir, `${name}.lock`);
  }

  async acquire(name: string, opts: AcquireOptions = {}): Promise<LockHandle> {
    const file = this.#file(name);
    const deadline = Date.now() + (opts.waitMs ?? 0);
    let delay = 25;
    for (;;) {
      if (!this.#held.has(name)) {
        const got = await this.#tryCreate(file, opts.purpose ?? 'rotation');
        if (got) {
          this.#held.add(name);
          return this.#handle(name, file);
        }
        const owner = await readOwner(file);
        if (owner && !isAlive(owner)) {
          if (await this.#takeOver(file, owner, opts.purpose ?? 'rotation')) {
            opts.onTakeover?.(owner);
            this.#held.add(name);
            return this.#handle(name, file);
          }
          continue;
        }
        if (owner === undefined) continue; // vanished between our create and read: try again at once
        if (Date.now() >= deadline) throw busy(name, owner, opts.waitMs);
      } else if (Date.now() >= deadline) {
        throw busy(name, { pid: process.pid, startTicks: SELF_TICKS, hostname: os.hostname(), acquiredAt: '', purpose: 'this process' }, opts.waitMs);
      }
      await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
      delay = Math.min(delay * 2, 250);
    }
  }

  /** Peek at the current owner, for status output. */
  async owner(name: string): Promise<LockOwner | undefined> {
    const owner = await readOwner(this.#file(name));
    return owner && isAlive(owner) ? owner : undefined;
  }

  #handle(name: string, file: string): LockHandle {
    let released = false;
    return {
      name,
      release: async () => {
        if (released) return;
        released = true;
        this.#held.delete(name);
        const owner = await readOwner(file);
        if (owner && owner.pid === process.pid) await fsp.unlink(file).catch(() => undefined);
      },
    };
  }

  async #tryCreate(file: string, purpose: string): Promise<boolean> {
    const owner: LockOwner = { pid: process.pid, startTicks: SELF_TICKS, hostname: os.hostname(), acquiredAt: new Date().toISOString(), purpose };
    let h: fsp.FileHandle | undefined;
    try {
      h = await fsp.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      if ((e as { code?: string }).code === 'EEXIST') return false;
      throw lockError(e, file);
    }
    try {
      // No fsync: a lock only matters while its owner lives; a torn one left by a crash is taken over.
      await h.writeFile(JSON.stringify(owner));
    } finally {
      await h.close();
    }
    return true;
  }

  /** Replace a dead owner's lock. Only one contender at a time may do this (the guard file). */
  async #takeOver(file: string, stale: LockOwner, purpose: string): Promise<boolean> {
    const guard = `${file}.takeover`;
    let g: fsp.FileHandle | undefined;
    try {
      g = await fsp.open(guard, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      if ((e as { code?: string }).code !== 'EEXIST') throw lockError(e, guard);
      const st = await fsp.stat(guard).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > GUARD_STALE_MS) await fsp.unlink(guard).catch(() => undefined);
      return false;
    }
    try {
      await g.close();
      const current = await readOwner(file);
      if (!current || current.pid !== stale.pid || current.acquiredAt !== stale.acquiredAt) return false;
      await fsp.unlink(file);
      return await this.#tryCreate(file, purpose);
    } finally {
      await fsp.unlink(guard).catch(() => undefined);
    }
  }
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw lockError(e, file);
  }
  try {
    const o = JSON.parse(text) as LockOwner;
    if (typeof o.pid === 'number') return o;
  } catch {
    // Empty or torn: either its writer is between create and write (young file: treat as
    // alive), or it was killed there (old file: abandoned).
  }
  const st = await fsp.stat(file).catch(() => undefined);
  if (!st) return undefined;
  const abandoned = Date.now() - st.mtimeMs > 2_000;
  return { pid: abandoned ? -1 : 0x7fffffff, startTicks: null, hostname: abandoned ? os.hostname() : 'unknown', acquiredAt: 'unknown', purpose: 'unknown (incomplete lock file)' };
}

function busy(name: string, owner: LockOwner, waitMs: number | undefined): RekeyError {
  const waited = waitMs ? ` (waited ${formatDuration(waitMs)})` : '; pass --wait <duration> to wait for it';
  return new RekeyError('LOCKED', `policy ${name} is being rotated by pid ${owner.pid}${owner.hostname !== os.hostname() ? ` on ${owner.hostname}` : ''}${waited}`);
}

function lockError(e: unknown, file: string): RekeyError {
  const code = (e as { code?: string }).code ?? 'error';
  return new RekeyError('STATE_UNWRITABLE', `cannot use lock file ${file} (${code})`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
