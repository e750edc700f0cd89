/**
 * A lock file per name, created atomically (link of a complete temp file; O_EXCL where the file
 * system has no hard links) and holding the owner's PID and start time. A lock whose owner is
 * dead (or whose PID now belongs to another process) is taken over under a takeover guard, so
 * two contenders can never both take it; the takeover renames our record over the dead one.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RekeyError } from '../util/errors.js';
import { formatDuration } from '../util/duration.js';
import type { AcquireOptions, LockHandle, LockOwner, LockProvider } from './lock.js';
import { fsError } from '../util/fs-atomic.js';

/** readOwner's stand-in pid for a lock file that exists but is still empty or torn (being written). */
const WRITING_PID = 0x7fffffff;
/** How long a caller that would fail at once waits for a lock file being written, or taken over, to settle. */
const SETTLE_MS = 500;

function beingWritten(o: LockOwner): boolean {
  return o.pid === WRITING_PID && o.acquiredAt === 'unknown';
}

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
          await this.#sweepTemps();
          return this.#handle(name, file);
        }
        const owner = await readOwner(file);
        if (owner && !isAlive(owner)) {
          if (await this.#takeOver(file, owner, opts.purpose ?? 'rotation')) {
            opts.onTakeover?.(owner);
            this.#held.add(name);
            await this.#sweepTemps();
            return this.#handle(name, file);
          }
          // Another contender holds the takeover guard (or has just taken the lock over): look
          // again in a moment rather than spin. Past the deadline (plus a short grace for a
          // takeover in flight, so the message can name the new owner) give up.
          if (Date.now() >= deadline + SETTLE_MS) throw takingOver(name, owner, opts.waitMs);
          await sleep(10);
          continue;
        }
        if (owner === undefined) continue; // vanished between our create and read: try again at once
        if (Date.now() >= deadline) {
          // Its owner is between creating the file and writing its pid: ask again in a moment,
          // so that the message names the real pid rather than a placeholder.
          if (beingWritten(owner) && Date.now() < deadline + SETTLE_MS) {
            await sleep(5);
            continue;
          }
          throw busy(name, owner, opts.waitMs);
        }
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
        // Ours for as long as we live: a lock is taken over only when its owner is dead.
        await fsp.unlink(file).catch(() => undefined);
      },
    };
  }

  /**
   * Create the lock file with its owner already in it: write a private temp file, then link()
   * it to the lock name (atomic, and EEXIST when the lock exists). A process killed at any
   * instant so leaves no empty or torn lock file that would block everyone for 2 s. Where the
   * file system has no hard links, fall back to O_EXCL + write.
   */
  async #tryCreate(file: string, purpose: string): Promise<boolean> {
    const { tmp, owner } = await writeOwnerTemp(file, purpose);
    try {
      await fsp.link(tmp, file);
      return true;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EEXIST') return false;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') return this.#tryCreateExcl(file, owner);
      throw lockError(e, file);
    } finally {
      await fsp.unlink(tmp).catch(() => undefined);
    }
  }

  async #tryCreateExcl(file: string, owner: LockOwner): Promise<boolean> {
    let h: fsp.FileHandle | undefined;
    try {
      h = await fsp.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      if ((e as { code?: string }).code === 'EEXIST') return false;
      throw lockError(e, file);
    }
    try {
      // A torn file left by a crash here is judged by readOwner (respected for 2 s, then taken over).
      await h.writeFile(JSON.stringify(owner));
    } finally {
      await h.close();
    }
    return true;
  }

  /**
   * Replace a dead owner's lock. Only one contender at a time may do this: it must first create
   * a guard file, `<lock>.takeover.<k>`, holding its own owner record (linked, so it is never
   * empty). A guard is removed only by its creator, so a name never changes hands while a
   * takeover may be running; a guard whose creator died is stepped over (k+1) instead of
   * removed, which is what made two contenders able to take over the same lock before.
   */
  async #takeOver(file: string, stale: LockOwner, purpose: string): Promise<boolean> {
    const { tmp } = await writeOwnerTemp(file, purpose);
    let guard: string | undefined;
    let replaced = false;
    try {
      for (let k = 0; guard === undefined; ) {
        const g = `${file}.takeover.${k}`;
        try {
          await fsp.link(tmp, g);
          guard = g;
        } catch (e) {
          if ((e as { code?: string }).code !== 'EEXIST') throw lockError(e, g);
          const taker = await readOwner(g);
          if (taker === undefined) continue; // its creator just removed it: try this name again
          if (isAlive(taker)) return false; // someone else is taking it over
          k++; // left by a taker that died: step over it
        }
      }
      const current = await readOwner(file);
      if (!current || current.pid !== stale.pid || current.acquiredAt !== stale.acquiredAt) return false;
      // Replace it in one step (rename over it): the lock file never goes missing, so nobody
      // can slip in with a plain create and leave the takeover unreported.
      try {
        await fsp.rename(tmp, file);
      } catch (e) {
        throw lockError(e, file);
      }
      replaced = true;
      return true;
    } finally {
      if (!replaced) await fsp.unlink(tmp).catch(() => undefined);
      if (guard) await fsp.unlink(guard).catch(() => undefined);
      if (replaced) await this.#dropDeadGuards(file);
    }
  }

  /**
   * Temp files ("<lock>.<pid>-<hex>.tmp") of processes killed while creating a lock. One listing
   * per provider, at its first acquire: a listing per acquire is quadratic in a batch of 1,000.
   */
  #swept = false;

  async #sweepTemps(): Promise<void> {
    if (this.#swept) return;
    this.#swept = true;
    const re = /\.lock\.(\d+)-[0-9a-f]+\.tmp$/;
    const names = await fsp.readdir(this.dir).catch(() => [] as string[]);
    for (const n of names) {
      const pid = Number(re.exec(n)?.[1]);
      if (pid && pid !== process.pid && !isAlive({ pid, startTicks: null, hostname: os.hostname() })) {
        await fsp.unlink(path.join(this.dir, n)).catch(() => undefined);
      }
    }
  }

  /** Guards left by takers that died; only the live lock holder removes them. */
  async #dropDeadGuards(file: string): Promise<void> {
    const prefix = `${path.basename(file)}.takeover.`;
    const names = await fsp.readdir(this.dir).catch(() => [] as string[]);
    for (const n of names.filter((x) => x.startsWith(prefix))) {
      const g = path.join(this.dir, n);
      const taker = await readOwner(g).catch(() => undefined);
      if (taker && !isAlive(taker)) await fsp.unlink(g).catch(() => undefined);
    }
  }
}

/** Our owner record in a private temp file next to the lock (no fsync: a lock only matters while its owner lives). */
async function writeOwnerTemp(file: string, purpose: string): Promise<{ tmp: string; owner: LockOwner }> {
  const owner: LockOwner = { pid: process.pid, startTicks: SELF_TICKS, hostname: os.hostname(), acquiredAt: new Date().toISOString(), purpose };
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fsp.writeFile(tmp, JSON.stringify(owner), { mode: 0o600, flag: 'wx' });
  } catch (e) {
    throw lockError(e, tmp);
  }
  return { tmp, owner };
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
  return { pid: abandoned ? -1 : WRITING_PID, startTicks: null, hostname: abandoned ? os.hostname() : 'unknown', acquiredAt: 'unknown', purpose: 'unknown (incomplete lock file)' };
}

function busy(name: string, owner: LockOwner, waitMs: number | undefined): RekeyError {
  const waited = waitMs ? ` (waited ${formatDuration(waitMs)})` : '; pass --wait <duration> to wait for it';
  if (beingWritten(owner)) return new RekeyError('LOCKED', `policy ${name} is being rotated by another process (its lock file is still being written)${waited}`);
  return new RekeyError('LOCKED', `policy ${name} is being rotated by pid ${owner.pid}${owner.hostname !== os.hostname() ? ` on ${owner.hostname}` : ''}${waited}`);
}

function takingOver(name: string, stale: LockOwner, waitMs: number | undefined): RekeyError {
  const waited = waitMs ? ` (waited ${formatDuration(waitMs)})` : '; try again, or pass --wait <duration> to wait for it';
  return new RekeyError('LOCKED', `policy ${name}: another process is taking over the lock left by dead process ${stale.pid}${waited}`);
}

function lockError(e: unknown, file: string): RekeyError {
  // The state directory cannot hold a lock: an environment problem (exit 3), said plainly.
  return new RekeyError('STATE_UNWRITABLE', `${fsError(e, `lock file ${file}`, 'use').message}; check the state directory (state.dir or REKEY_STATE_DIR)`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
