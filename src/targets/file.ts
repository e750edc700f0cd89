/**
 * file target: writes the raw token, or its SHA-256 hex, to a file of its own, atomically and
 * mode 0600. The content is the value followed by one "\n" (what `echo`, `cat` and most config
 * loaders expect; readers that do not trim should strip one trailing newline, as readBack does).
 * See docs/targets/file.md.
 */
import { createHash } from 'node:crypto';
import type { FileTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import { sweepDeadTemps } from '../util/fs-atomic.js';
import { Secret } from '../util/secret.js';
import type { RetireContext, RotationContext, Snapshot, Target, TargetEnv } from './contract.js';
import {
  ownerOf,
  parseFileSnapshot,
  readCurrent,
  removeFile,
  resolveWritePath,
  showPath,
  takeFileSnapshot,
  withSnapshotFile,
  writeFileKeepingOwner,
  type ParsedFileSnapshot,
} from './file-mutex.js';

const SECRET_MODE = 0o600;

/** The file's value: its bytes without one trailing "\n" (or "\r\n"); undefined when empty. */
function valueOf(bytes: Buffer): Buffer | undefined {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) {
    end--;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
  }
  return end === 0 ? undefined : bytes.subarray(0, end);
}

export function createFileTarget(config: FileTargetConfig, env: TargetEnv): Target {
  const file = config.path;
  const content = config.content;
  const description = `file ${showPath(file)} ${content}`;

  const where = { file, followSymlinks: config.followSymlinks, description, lockFile: env.lockFile };
  const lockAndResolve = <T>(snap: ParsedFileSnapshot, fn: (real: string) => Promise<T>): Promise<T> => withSnapshotFile(where, snap, fn);

  const currentValue = async (): Promise<Buffer | undefined> => {
    const real = await resolveWritePath(file, config.followSymlinks, description);
    const cur = await readCurrent(real, description);
    return cur ? valueOf(cur.bytes) : undefined;
  };

  const target: Target = {
    kind: 'file',
    description,
    phase: 'stage',

    async snapshot(_ctx: RotationContext): Promise<Snapshot> {
      return (await takeFileSnapshot(file, config.followSymlinks, description)).snap;
    },

    async stage(ctx: RotationContext, snapshot: Snapshot): Promise<void> {
      const snap = parseFileSnapshot(snapshot, description);
      let value: string;
      if (content === 'sha256') {
        value = ctx.sha256;
      } else {
        if (!ctx.token) {
          throw new RekeyError('INTERNAL', `${description}: stage needs the new token, which only a live rotation has; run the rotation again`);
        }
        value = ctx.token.reveal();
      }
      const next = Buffer.from(`${value}\n`, 'utf8');
      await lockAndResolve(snap, async (real) => {
        const cur = await readCurrent(real, description);
        if (cur && cur.mode === SECRET_MODE && cur.bytes.equals(next)) return; // a retry: already written
        // Always 0600, also over a file that had another mode: it holds a secret.
        await writeFileKeepingOwner(real, next, { mode: SECRET_MODE, owner: ownerOf(cur, snap), what: description });
      });
    },

    async promote(_ctx: RotationContext, _snapshot: Snapshot): Promise<void> {
      // Nothing to do: stage already made the value live (a file has no versions).
    },

    async rollback(_ctx: RotationContext, snapshot: Snapshot): Promise<void> {
      const snap = parseFileSnapshot(snapshot, description);
      await lockAndResolve(snap, async (real) => {
        // A write killed mid-way (the reason we may be rolling back) leaves a temp file that
        // may hold a token; remove those whose writer is dead.
        await sweepDeadTemps(real);
        const cur = await readCurrent(real, description);
        if (!snap.old) {
          if (cur) await removeFile(real, description);
          return;
        }
        const mode = snap.meta.mode ?? SECRET_MODE;
        if (cur && cur.mode === mode && cur.bytes.equals(snap.old)) return; // nothing staged, or already undone
        const owner = snap.meta.uid !== null && snap.meta.gid !== null ? { uid: snap.meta.uid, gid: snap.meta.gid } : ownerOf(cur, snap);
        await writeFileKeepingOwner(real, snap.old, { mode, owner, what: description });
      });
    },

    async retire(_ctx: RetireContext): Promise<void> {
      // Nothing to do: the file holds only the current value.
    },

    async readBack(): Promise<string | undefined> {
      const v = await currentValue();
      if (!v) return undefined;
      if (content === 'token') return createHash('sha256').update(v).digest('hex');
      const stored = v.toString('latin1').trim().toLowerCase();
      return /^[0-9a-f]{64}$/.test(stored) ? stored : undefined;
    },

    async close(): Promise<void> {},
  };

  if (content === 'token') {
    target.readCurrentToken = async (): Promise<Secret | undefined> => {
      const v = await currentValue();
      return v ? new Secret(v.toString('utf8')) : undefined;
    };
  }
  return target;
}
