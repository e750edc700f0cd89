/**
 * Plumbing shared by the env-file and file targets: an in-process mutex per file, atomic writes
 * that keep the file's owner, the snapshot both targets record, and errno explanations.
 * (Kept here rather than in a target module because a target never imports another target.)
 */
import { promises as fsp } from 'node:fs';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { RekeyError } from '../util/errors.js';
import { fsError, fsyncDir, resolveTargetPath, writeFileAtomic } from '../util/fs-atomic.js';
import type { Snapshot, TargetEnv } from './contract.js';

// ---------------------------------------------------------------------------------------------
// The mutex

const tails = new Map<string, Promise<void>>();

/**
 * Run fn while holding an in-process lock on `key` (a file path). Policies rotating in parallel
 * in one process that share a file take turns at its read-modify-write, so none loses another's
 * update. Waiters run in arrival order. With `lockFile` (from the engine) it also locks the file
 * against other rekey processes.
 */
export async function withFileMutex<T>(key: string, fn: () => Promise<T>, lockFile?: TargetEnv['lockFile']): Promise<T> {
  const prev = tails.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((resolve) => {
    release = resolve;
  });
  const tail = prev.then(() => mine);
  tails.set(key, tail);
  await prev;
  try {
    // Other processes next: taken inside the in-process turn, so one process never waits on itself.
    const unlock = lockFile ? await lockFile(key) : undefined;
    try {
      return await fn();
    } finally {
      await unlock?.();
    }
  } finally {
    release();
    if (tails.get(key) === tail) tails.delete(key);
  }
}

/** The key under which a file is locked: its directory resolved through symlinks, plus its name. */
export async function mutexKey(file: string): Promise<string> {
  const abs = path.resolve(file);
  try {
    return path.join(await fsp.realpath(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

/** A path as it may appear inside a one-line message: control characters become "?". */
export function showPath(p: string): string {
  return p.replace(/[\x00-\x1f\x7f]/g, '?');
}

function errnoOf(e: unknown): string | undefined {
  const direct = (e as { code?: unknown } | null)?.code;
  if (typeof direct === 'string' && !(e instanceof RekeyError)) return direct;
  if (e instanceof RekeyError) {
    const c = (e.cause as { code?: unknown } | null | undefined)?.code;
    return typeof c === 'string' ? c : undefined;
  }
  return undefined;
}

/**
 * fsError's one line (it names the file and the errno, never the data) plus what to do about it.
 * EACCES/EPERM become TARGET_PERMISSION.
 */
export function explainFsError(e: unknown, what: string, op: 'read' | 'inspect' | 'write' | 'remove' | 'resolve symlink', file: string): RekeyError {
  const base = fsError(e, what, op);
  const errno = errnoOf(e);
  if (!errno) return base;
  const dir = showPath(path.dirname(file));
  const writing = op === 'write' || op === 'remove';
  const hints: Record<string, string> = {
    EACCES: writing
      ? `rekey needs write access to the directory ${dir} (it writes a temporary file there and renames it over the file)`
      : `give the user rekey runs as read access to ${showPath(file)} and search access to its directories`,
    EROFS: `${dir} is on a read-only file system; point path at a writable location`,
    ENOSPC: `free some space on the file system that holds ${dir}`,
    EDQUOT: `free some space (or raise the quota) on the file system that holds ${dir}`,
    ENOENT: writing ? `create the directory ${dir} first (rekey does not create directories)` : `check that ${dir} exists`,
    ENOTDIR: 'fix path in the policy',
    EISDIR: `${showPath(file)} is a directory; path must name a file`,
    ELOOP: `${showPath(file)} is a symlink loop; fix the link`,
  };
  hints.EPERM = hints.EACCES!;
  const hint = hints[errno];
  const code = errno === 'EACCES' || errno === 'EPERM' ? 'TARGET_PERMISSION' : base.code;
  if (!hint && code === base.code) return base;
  return new RekeyError(code, hint ? `${base.message}; ${hint}` : base.message, {
    cause: base.cause ?? e,
    transient: base.transient,
  });
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface OwnedWriteOptions {
  mode: number;
  /** Owner to keep (the replaced file's). Omitted for a new file: it belongs to rekey's user. */
  owner?: { uid: number; gid: number };
  what: string;
}

/**
 * Atomic write (temp file in the same directory, fsync, rename, fsync the directory) that also
 * keeps the replaced file's owner and group: a rename would otherwise hand a root-run rekey's
 * file to root, and an app reading its 0600/0640 env file would lose access. The chown happens
 * on the temp file, before the rename, so no reader ever sees the file with the wrong owner.
 * On any failure the temp file is removed and the original file is untouched.
 */
export async function writeFileKeepingOwner(file: string, data: Buffer, opts: OwnedWriteOptions): Promise<void> {
  try {
    await writeFileAtomic(file, data, { mode: opts.mode, what: opts.what, ...(opts.owner ? { owner: opts.owner } : {}) });
  } catch (e) {
    if (e instanceof RekeyError && e.code === 'TARGET_PERMISSION') throw e;
    throw explainFsError(e, opts.what, 'write', file);
  }
}

/** Remove a file; a missing file is fine. */
export async function removeFile(file: string, what: string): Promise<void> {
  try {
    await fsp.unlink(file);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return;
    throw explainFsError(e, what, 'remove', file);
  }
  await fsyncDir(path.dirname(file));
}

// ---------------------------------------------------------------------------------------------
// Reading and the snapshot

export interface CurrentFile {
  bytes: Buffer;
  mode: number;
  uid: number;
  gid: number;
}

/** The file as it is now, or undefined when it does not exist. Refuses anything but a regular file. */
export async function readCurrent(file: string, what: string): Promise<CurrentFile | undefined> {
  let st: Stats;
  try {
    st = await fsp.stat(file);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw explainFsError(e, what, 'inspect', file);
  }
  if (!st.isFile()) {
    throw new RekeyError('TARGET', `${what}: ${showPath(file)} is not a regular file; point path at a file`);
  }
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw explainFsError(e, what, 'read', file);
  }
  return { bytes, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

/** Where the target writes: the path itself, or a symlink's destination when that is allowed. */
export async function resolveWritePath(file: string, followSymlinks: boolean, what: string): Promise<string> {
  try {
    return await resolveTargetPath(file, followSymlinks, what);
  } catch (e) {
    throw explainFsError(e, what, 'inspect', file);
  }
}

/** Non-secret facts of a file snapshot (journal). The old bytes go to snapshot.secret.content. */
export interface FileSnapshotMeta {
  existed: boolean;
  /** Permission bits of the old file; null when it did not exist. */
  mode: number | null;
  /** The path written to (a symlink's destination when followSymlinks). */
  realPath: string;
  uid: number | null;
  gid: number | null;
}

export interface ParsedFileSnapshot {
  meta: FileSnapshotMeta;
  /** The old bytes; undefined when the file did not exist. */
  old: Buffer | undefined;
}

export async function takeFileSnapshot(file: string, followSymlinks: boolean, what: string): Promise<{ snap: Snapshot; parsed: ParsedFileSnapshot }> {
  const realPath = await resolveWritePath(file, followSymlinks, what);
  const cur = await readCurrent(realPath, what);
  const meta: FileSnapshotMeta = {
    existed: cur !== undefined,
    mode: cur?.mode ?? null,
    realPath,
    uid: cur?.uid ?? null,
    gid: cur?.gid ?? null,
  };
  return {
    snap: { meta: { ...meta }, secret: { content: cur ? cur.bytes.toString('base64') : null } },
    parsed: { meta, old: cur?.bytes },
  };
}

/**
 * Run a write step of a file target: take the file's locks (in-process, then across processes),
 * resolve the path again and refuse it if it now names another file than the snapshot's.
 */
export async function withSnapshotFile<T>(
  target: { file: string; followSymlinks: boolean; description: string; lockFile: TargetEnv['lockFile'] },
  snap: ParsedFileSnapshot,
  fn: (real: string) => Promise<T>,
): Promise<T> {
  return withFileMutex(
    await mutexKey(snap.meta.realPath),
    async () => {
      const real = await resolveWritePath(target.file, target.followSymlinks, target.description);
      conflictIfMoved(real, snap, target.file, target.description);
      return fn(real);
    },
    target.lockFile,
  );
}

/** Read a snapshot back (possibly from the journal, after JSON); refuse an incomplete one. */
export function parseFileSnapshot(snap: Snapshot, what: string): ParsedFileSnapshot {
  const m = (snap?.meta ?? {}) as Record<string, unknown>;
  const content = (snap?.secret as Record<string, unknown> | undefined)?.content;
  const int = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : null);
  const bad = (why: string) =>
    new RekeyError('TARGET', `${what}: the snapshot of this target is incomplete (${why}); check the file by hand and run the rotation again`);
  if (typeof m.existed !== 'boolean') throw bad('no "existed"');
  if (typeof m.realPath !== 'string' || !path.isAbsolute(m.realPath)) throw bad('no "realPath"');
  if (m.existed) {
    if (int(m.mode) === null) throw bad('no "mode"');
    if (typeof content !== 'string') throw bad('the old content is missing');
  }
  return {
    meta: { existed: m.existed, mode: int(m.mode), realPath: m.realPath, uid: int(m.uid), gid: int(m.gid) },
    old: m.existed ? Buffer.from(content as string, 'base64') : undefined,
  };
}

/** Refuse to write when the path now leads somewhere else than it did at the snapshot. */
export function conflictIfMoved(now: string, snap: ParsedFileSnapshot, file: string, what: string): void {
  if (now !== snap.meta.realPath) {
    throw new RekeyError(
      'TARGET_CONFLICT',
      `${what}: ${showPath(file)} now leads to ${showPath(now)}, not ${showPath(snap.meta.realPath)} as when the rotation began; check the path and run the rotation again`,
    );
  }
}

export function ownerOf(cur: CurrentFile | undefined, snap: ParsedFileSnapshot): { uid: number; gid: number } | undefined {
  if (cur) return { uid: cur.uid, gid: cur.gid };
  if (snap.meta.uid !== null && snap.meta.gid !== null) return { uid: snap.meta.uid, gid: snap.meta.gid };
  return undefined;
}
