import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { RekeyError, describeForeign } from './errors.js';

/** Read once: process.umask() with no argument is deprecated, and the umask does not change under us. */
const UMASK = (() => {
  const m = process.umask(0o022);
  process.umask(m);
  return m;
})();

export interface AtomicWriteOptions {
  /** File mode of the result. Applied with fchmod, so the umask cannot widen or narrow it. */
  mode: number;
  /** Names the writer in error messages, e.g. "env-file target /etc/app.env". */
  what?: string;
  /** Owner to give the file before it replaces the old one (keeps an app's access when root writes). */
  owner?: { uid: number; gid: number };
  /** false: still atomic (rename), but no fsync; for records that may be lost in a power cut. */
  durable?: boolean;
}

/**
 * No reader ever sees a half-written file: write a temp file in the same directory,
 * fsync it, rename it over the target, fsync the directory.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, opts: AtomicWriteOptions): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.rekey-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    if (opts.owner) {
      const st = await handle.stat();
      if (st.uid !== opts.owner.uid || st.gid !== opts.owner.gid) {
        try {
          await handle.chown(opts.owner.uid, opts.owner.gid);
        } catch (e) {
          const errno = (e as { code?: string }).code ?? 'error';
          throw new RekeyError(
            'TARGET_PERMISSION',
            `cannot write ${opts.what ?? file}: cannot keep its owner ${opts.owner.uid}:${opts.owner.gid} (${errno}); run rekey as root or as the file's owner`,
            { cause: e },
          );
        }
      }
    }
    // The file was created 0600 minus the umask: fchmod only when that is not the mode wanted.
    if (opts.mode !== (0o600 & ~UMASK)) await handle.chmod(opts.mode);
    await handle.write(typeof data === 'string' ? Buffer.from(data) : data);
    if (opts.durable !== false) await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, file);
  } catch (e) {
    if (handle) await handle.close().catch(() => undefined);
    await fsp.unlink(tmp).catch(() => undefined);
    throw fsError(e, opts.what ?? file, 'write');
  }
  if (opts.durable !== false) await fsyncDir(dir);
}

/**
 * fsync a directory, coalescing concurrent requests: everyone who asks while a sync is running
 * shares the next one (which starts after their rename), so a batch of writes into one
 * directory costs a few directory syncs instead of one each.
 */
interface DirSyncState {
  running?: Promise<void>;
  next?: { promise: Promise<void>; start: () => void };
}
const dirSyncs = new Map<string, DirSyncState>();

export function fsyncDir(dir: string): Promise<void> {
  let st = dirSyncs.get(dir);
  if (!st) {
    st = {};
    dirSyncs.set(dir, st);
  }
  if (!st.running) return runDirSync(dir, st);
  if (!st.next) {
    const state = st;
    let start!: () => void;
    const promise = new Promise<void>((resolve) => {
      start = () => void runDirSync(dir, state).then(resolve);
    });
    st.next = { promise, start };
  }
  return st.next.promise;
}

function runDirSync(dir: string, st: DirSyncState): Promise<void> {
  const running = syncDirNow(dir).finally(() => {
    st.running = undefined;
    const next = st.next;
    st.next = undefined;
    if (next) next.start();
    else dirSyncs.delete(dir);
  });
  st.running = running;
  return running;
}

async function syncDirNow(dir: string): Promise<void> {
  let h: fsp.FileHandle | undefined;
  try {
    h = await fsp.open(dir, constants.O_RDONLY);
    await h.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is already done.
  } finally {
    await h?.close().catch(() => undefined);
  }
}

/** A one-line error for a failed file operation: names the file and the errno, never the data. */
export function fsError(e: unknown, what: string, op: string): RekeyError {
  if (e instanceof RekeyError) return e;
  const code = (e as { code?: string } | null)?.code;
  const hint: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    ENOENT: 'no such file or directory',
    ENOTDIR: 'a parent is not a directory',
    EISDIR: 'is a directory',
  };
  const reason = (code && hint[code]) ?? describeForeign(e);
  return new RekeyError('TARGET', `cannot ${op} ${what}: ${reason}${code && hint[code] ? ` (${code})` : ''}`, {
    cause: e,
    transient: code === 'EAGAIN' || code === 'EBUSY',
  });
}

/** lstat that returns undefined for a missing path. */
export async function lstatOrUndefined(p: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Resolve the path a target writes to. A symlink is refused unless allowed; when allowed,
 * the write goes to the link's final destination so the link itself survives.
 */
export async function resolveTargetPath(file: string, followSymlinks: boolean, what: string): Promise<string> {
  const st = await lstatOrUndefined(file).catch((e) => {
    throw fsError(e, what, 'inspect');
  });
  if (st?.isSymbolicLink()) {
    if (!followSymlinks) {
      throw new RekeyError('TARGET', `${what}: ${file} is a symlink; refusing to write through it (set followSymlinks: true to allow)`);
    }
    try {
      return await fsp.realpath(file);
    } catch (e) {
      throw fsError(e, what, 'resolve symlink');
    }
  }
  return file;
}

/** Read a file, or undefined if it does not exist. */
export async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(file);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * mkdir -p with a bounded walk. (Node's recursive mkdir spins forever on some paths, e.g.
 * under /proc, where the kernel answers ENOENT for a directory that can never exist.)
 */
export async function mkdirp(dir: string, mode: number): Promise<void> {
  const missing: string[] = [];
  let cur = path.resolve(dir);
  for (let depth = 0; depth < 256; depth++) {
    try {
      await fsp.mkdir(cur, { mode });
      break;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EEXIST') break;
      const parent = path.dirname(cur);
      if (code !== 'ENOENT' || parent === cur) throw e;
      missing.push(cur);
      cur = parent;
    }
  }
  for (const d of missing.reverse()) {
    await fsp.mkdir(d, { mode }).catch((e: { code?: string }) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
  const st = await fsp.stat(dir);
  if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
}

/**
 * Remove temp files of atomic writes to `file` (".<name>.rekey-<pid>-<hex>.tmp") whose writer
 * is dead: a process killed mid-write leaves one, and it may hold a token. A live writer's
 * temp file (another policy writing the same env file right now) is left alone.
 */
export async function sweepDeadTemps(file: string): Promise<number> {
  const dir = path.dirname(file);
  const re = new RegExp(`^\\.${path.basename(file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.rekey-(\\d+)-[0-9a-f]+\\.tmp$`);
  let removed = 0;
  for (const n of await fsp.readdir(dir).catch(() => [] as string[])) {
    const pid = Number(re.exec(n)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // alive
    } catch (e) {
      if ((e as { code?: string }).code !== 'ESRCH') continue;
    }
    await fsp.unlink(path.join(dir, n)).then(() => removed++, () => undefined);
  }
  return removed;
}
