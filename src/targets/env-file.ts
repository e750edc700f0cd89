/**
 * env-file target: sets KEY=<token> in an env file and leaves every other byte as it was.
 * The file has no versions, so the snapshot keeps the old bytes (in the 0600 recovery file only)
 * and rollback puts them back. See docs/targets/env-file.md.
 */
import { createHash } from 'node:crypto';
import type { EnvFileTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import { sweepDeadTemps } from '../util/fs-atomic.js';
import { Secret } from '../util/secret.js';
import type { RetireContext, RotationContext, Snapshot, Target, TargetEnv } from './contract.js';
import {
  EnvTextError,
  findDuplicateKeys,
  findKeyLines,
  getEnvLine,
  getEnvValue,
  listLines,
  removeEnvKey,
  removeEnvKeys,
  replaceEnvLine,
  setEnvValue,
} from './env-text.js';
import {
  mutexKey,
  ownerOf,
  parseFileSnapshot,
  readCurrent,
  removeFile,
  resolveWritePath,
  showPath,
  takeFileSnapshot,
  withFileMutex,
  withSnapshotFile,
  writeFileKeepingOwner,
  type ParsedFileSnapshot,
} from './file-mutex.js';

// latin1 maps each byte to one char and back, so bytes that are not UTF-8 survive untouched.
const decode = (b: Buffer): string => b.toString('latin1');
const encode = (s: string): Buffer => Buffer.from(s, 'latin1');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export function createEnvFileTarget(config: EnvFileTargetConfig, env: TargetEnv): Target {
  const file = config.path;
  const key = config.key;
  const previousKey = config.previousKey;
  const description = `env-file ${showPath(file)} ${key}`;
  if (previousKey === key) {
    throw new RekeyError('CONFIG', `${description}: previousKey must differ from key (both are ${key})`);
  }
  const keys = previousKey ? [key, previousKey] : [key];

  /** Turn an editor refusal into one line that names the target and says what to do. */
  const textError = (e: unknown, where: string): unknown => {
    if (!(e instanceof EnvTextError)) return e;
    const advice: Record<EnvTextError['problem'], string> = {
      'bad-key': 'fix key/previousKey in the policy',
      'bad-value':
        e.key === previousKey
          ? `the current ${key} cannot be copied into ${previousKey} as is; replace it by hand or drop previousKey`
          : 'use token.encoding hex, base64 or base64url and a prefix of letters, digits, "_", "." and "-"',
      duplicate: 'fix the file by hand, rekey will not guess which one is live',
      multiline: 'put the value on one line by hand',
      unterminated: 'close the quote by hand',
    };
    return new RekeyError('TARGET', `${description}: ${e.message} in ${showPath(where)}; ${advice[e.problem]}`);
  };

  const refuseDuplicates = (text: string, where: string, which: readonly string[] = keys): void => {
    for (const k of findDuplicateKeys(text, [...which])) {
      const lines = findKeyLines(text, k);
      throw new RekeyError(
        'TARGET',
        `${description}: ${k} appears ${lines.length} times in ${showPath(where)} (lines ${listLines(lines)}); fix the file by hand, rekey will not guess which one is live`,
      );
    }
  };

  /**
   * The file's text with the new token. Starts from the file as it is NOW (so parallel policies
   * sharing the file keep each other's keys) and changes only KEY and previousKey; the previous
   * value comes from the SNAPSHOT, so a retried stage gives the same bytes.
   */
  const staged = (base: string, old: string | undefined, token: string, where: string): string => {
    refuseDuplicates(base, where);
    try {
      let t = setEnvValue(base, key, token);
      if (previousKey) {
        const prev = old === undefined ? undefined : getEnvValue(old, key);
        // No old KEY means no previous token: a stale previousKey line would be a lie.
        t = prev ? setEnvValue(t, previousKey, prev) : removeEnvKey(t, previousKey);
      }
      return t;
    } catch (e) {
      throw textError(e, where);
    }
  };

  const requireToken = (ctx: RotationContext): string => {
    if (!ctx.token) {
      throw new RekeyError('INTERNAL', `${description}: stage needs the new token, which only a live rotation has; run the rotation again`);
    }
    return ctx.token.reveal();
  };

  const currentValue = async (): Promise<Buffer | undefined> => {
    const real = await resolveWritePath(file, config.followSymlinks, description);
    const cur = await readCurrent(real, description);
    if (!cur) return undefined;
    const text = decode(cur.bytes);
    refuseDuplicates(text, real, [key]);
    const v = getEnvValue(text, key);
    return v ? encode(v) : undefined;
  };

  const where = { file, followSymlinks: config.followSymlinks, description, lockFile: env.lockFile };
  const lockAndResolve = <T>(snap: ParsedFileSnapshot, fn: (real: string) => Promise<T>): Promise<T> => withSnapshotFile(where, snap, fn);

  return {
    kind: 'env-file',
    description,
    phase: 'stage',

    async snapshot(_ctx: RotationContext): Promise<Snapshot> {
      const { snap, parsed } = await takeFileSnapshot(file, config.followSymlinks, description);
      if (parsed.old) {
        // Fail here, before anything is written, on anything stage would refuse.
        const old = decode(parsed.old);
        staged(old, old, 'rekey-dry-run', parsed.meta.realPath);
      }
      return snap;
    },

    async stage(ctx: RotationContext, snapshot: Snapshot): Promise<void> {
      const snap = parseFileSnapshot(snapshot, description);
      const token = requireToken(ctx);
      await lockAndResolve(snap, async (real) => {
        const cur = await readCurrent(real, description);
        if (!cur && snap.meta.existed) {
          throw new RekeyError('TARGET_CONFLICT', `${description}: ${showPath(real)} was removed after the rotation began; check the file and run the rotation again`);
        }
        const base = cur ? decode(cur.bytes) : '';
        const next = encode(staged(base, snap.old && decode(snap.old), token, real));
        if (cur && next.equals(cur.bytes)) return; // a retry: already written
        if (cur && cur.mode & 0o004) {
          ctx.log.warn({ target: description, mode: cur.mode.toString(8) }, `${description}: the file is world-readable (mode ${cur.mode.toString(8)}); consider chmod 0600 or 0640`);
        }
        // An existing file keeps its mode and owner; a new one is 0600 whatever the umask.
        await writeFileKeepingOwner(real, next, {
          mode: cur?.mode ?? snap.meta.mode ?? 0o600,
          owner: ownerOf(cur, snap),
          what: description,
        });
      });
    },

    async promote(_ctx: RotationContext, _snapshot: Snapshot): Promise<void> {
      // Nothing to do: stage already made the token live (an env file has no versions).
    },

    async rollback(ctx: RotationContext, snapshot: Snapshot): Promise<void> {
      const snap = parseFileSnapshot(snapshot, description);
      await lockAndResolve(snap, async (real) => {
        // A write killed mid-way (the reason we may be rolling back) leaves a temp file that
        // may hold a token; remove those whose writer is dead.
        await sweepDeadTemps(real);
        const cur = await readCurrent(real, description);
        const old = snap.old && decode(snap.old);
        if (old === undefined) {
          // The file did not exist: take our keys out; remove the file if nothing else is left.
          if (!cur) return;
          const text = decode(cur.bytes);
          const rest = removeEnvKeys(text, keys);
          if (rest === '') return removeFile(real, description);
          if (rest === text) return; // never staged: someone else created it meanwhile
          ctx.log.warn({ target: description }, 'file gained other lines during the rotation; removing only our keys');
          return writeFileKeepingOwner(real, encode(rest), { mode: cur.mode, owner: ownerOf(cur, snap), what: description });
        }
        const mode = snap.meta.mode ?? 0o600;
        const owner = snap.meta.uid !== null && snap.meta.gid !== null ? { uid: snap.meta.uid, gid: snap.meta.gid } : ownerOf(cur, snap);
        if (cur && cur.bytes.equals(snap.old!)) return; // never staged, or already rolled back
        const text = cur ? decode(cur.bytes) : undefined;
        if (text === undefined || removeEnvKeys(text, keys) === removeEnvKeys(old, keys)) {
          // Nobody else changed the file: put the old bytes back exactly.
          return writeFileKeepingOwner(real, snap.old!, { mode, owner, what: description });
        }
        // Other lines changed meanwhile (another policy sharing the file, or a person): undo only
        // our two lines, restoring them exactly as they were written.
        ctx.log.warn({ target: description }, 'file changed elsewhere during the rotation; restoring only our keys');
        let t = text;
        try {
          refuseDuplicates(t, real);
          for (const k of keys) {
            const line = getEnvLine(old, k);
            t = line === undefined ? removeEnvKey(t, k) : replaceEnvLine(t, k, line);
          }
        } catch (e) {
          throw textError(e, real);
        }
        return writeFileKeepingOwner(real, encode(t), { mode, owner, what: description });
      });
    },

    async retire(ctx: RetireContext): Promise<void> {
      if (!previousKey) return;
      const real = await resolveWritePath(file, config.followSymlinks, description);
      await withFileMutex(await mutexKey(real), async () => {
        const cur = await readCurrent(real, description);
        if (!cur) return;
        const text = decode(cur.bytes);
        refuseDuplicates(text, real, [previousKey]);
        const prev = getEnvValue(text, previousKey);
        if (prev === undefined) return;
        if (ctx.previousSha256 && prev !== '' && sha256(encode(prev)) !== ctx.previousSha256) {
          // A newer rotation put another previous token there; its grace has not ended.
          ctx.log.info({ target: description }, `${previousKey} holds a newer previous token; leaving it`);
          return;
        }
        await writeFileKeepingOwner(real, encode(removeEnvKey(text, previousKey)), {
          mode: cur.mode,
          owner: { uid: cur.uid, gid: cur.gid },
          what: description,
        });
        ctx.log.info({ target: description }, `removed ${previousKey}: grace ended`);
      }, env.lockFile);
    },

    async readBack(): Promise<string | undefined> {
      const v = await currentValue();
      return v ? sha256(v) : undefined;
    },

    async readCurrentToken(): Promise<Secret | undefined> {
      const v = await currentValue();
      return v ? new Secret(v.toString('utf8')) : undefined;
    },

    async close(): Promise<void> {},
  };
}
