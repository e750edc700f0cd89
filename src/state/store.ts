/**
 * Local state (the embedded default): one JSON document per policy with hashes only, the last
 * attempt per policy, and an append-only audit log. Never a plaintext token.
 */
import { constants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { RekeyError } from '../util/errors.js';
import { fsError, mkdirp, readIfExists, writeFileAtomic } from '../util/fs-atomic.js';

export interface PreviousToken {
  sha256: string;
  fingerprint: string;
  /** ISO time when the grace period ends. */
  validUntil: string;
}

export interface PolicyState {
  policy: string;
  version: number;
  /** ISO time of the last successful rotation. */
  rotatedAt: string;
  currentSha256: string;
  fingerprint: string;
  previous: PreviousToken | null;
  /** Target descriptions, as of the last rotation (no credentials). */
  targets: string[];
}

export interface AttemptRecord {
  policy: string;
  at: string;
  result: 'success' | 'failure';
  version?: number;
  error?: string;
  consecutiveFailures: number;
}

export type AuditEvent = {
  at: string;
  policy: string;
  event: 'rotated' | 'rolled-back' | 'failed' | 'recovered' | 'retired' | 'lock-takeover';
  version?: number;
  fingerprint?: string;
  previousFingerprint?: string;
  targets?: string[];
  reason?: string;
  error?: string;
  pid: number;
};

export const STATE_LAYOUT = {
  policies: 'policies',
  attempts: 'attempts',
  journal: 'journal',
  recovery: 'recovery',
  locks: 'locks',
  audit: 'audit.log',
} as const;

export class StateStore {
  readonly dir: string;
  #ready: Promise<void> | undefined;
  #audit: Promise<fsp.FileHandle> | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  path(kind: keyof typeof STATE_LAYOUT, name?: string): string {
    const base = path.join(this.dir, STATE_LAYOUT[kind]);
    return name === undefined ? base : path.join(base, name);
  }

  /** Create the directory tree (0700) once, and prove it is writable; exit 3 otherwise. */
  init(): Promise<void> {
    this.#ready ??= (async () => {
      try {
        await mkdirp(this.dir, 0o700);
        for (const sub of ['policies', 'attempts', 'journal', 'recovery', 'locks'] as const) {
          await mkdirp(this.path(sub), 0o700);
        }
        await fsp.access(this.dir, constants.W_OK);
        const probe = path.join(this.dir, `.probe-${process.pid}`);
        await fsp.writeFile(probe, '');
        await fsp.unlink(probe);
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'error';
        throw new RekeyError('STATE_UNWRITABLE', `state directory ${this.dir} is not writable (${code}); set state.dir or REKEY_STATE_DIR to a writable directory`);
      }
    })();
    return this.#ready;
  }

  async read(policy: string): Promise<PolicyState | undefined> {
    return this.#readJson<PolicyState>(this.path('policies', `${policy}.json`));
  }

  async write(state: PolicyState): Promise<void> {
    await writeFileAtomic(this.path('policies', `${state.policy}.json`), `${JSON.stringify(state, null, 2)}\n`, {
      mode: 0o600,
      what: `state of ${state.policy}`,
    }).catch((e) => {
      throw stateError(e, this.dir);
    });
  }

  async readAttempt(policy: string): Promise<AttemptRecord | undefined> {
    return this.#readJson<AttemptRecord>(this.path('attempts', `${policy}.json`));
  }

  /**
   * Failures are recorded apart from the state, so a failed rotation leaves the state untouched.
   * A success needs no record of its own (the state has its time), so it only clears the last
   * failure: no file is created per successful rotation.
   */
  async recordAttempt(policy: string, result: 'success' | 'failure', at: Date, extra: { version?: number; error?: string } = {}): Promise<AttemptRecord> {
    const file = this.path('attempts', `${policy}.json`);
    if (result === 'success') {
      await fsp.unlink(file).catch((e: { code?: string }) => {
        if (e.code !== 'ENOENT') throw stateError(e, this.dir);
      });
      return { policy, at: at.toISOString(), result, ...(extra.version !== undefined ? { version: extra.version } : {}), consecutiveFailures: 0 };
    }
    const prev = await this.readAttempt(policy).catch(() => undefined);
    const rec: AttemptRecord = {
      policy,
      at: at.toISOString(),
      result,
      ...(extra.version !== undefined ? { version: extra.version } : {}),
      ...(extra.error !== undefined ? { error: extra.error } : {}),
      consecutiveFailures: (prev?.consecutiveFailures ?? 0) + 1,
    };
    // Not fsynced: losing the last failure in a power cut only loses a status line.
    await writeFileAtomic(file, `${JSON.stringify(rec)}\n`, { mode: 0o600, what: `attempt record of ${policy}`, durable: false }).catch((e) => {
      throw stateError(e, this.dir);
    });
    return rec;
  }

  /** Append one event (one line) to the audit log; O_APPEND keeps concurrent writers' lines whole. */
  async audit(event: Omit<AuditEvent, 'pid'>): Promise<void> {
    const line = `${JSON.stringify({ ...event, pid: process.pid })}\n`;
    try {
      // One O_APPEND handle per batch: each line is a single write(2), so lines from
      // concurrent processes never interleave, and a batch costs one open instead of one each.
      this.#audit ??= fsp.open(this.path('audit'), 'a', 0o600);
      await (await this.#audit).write(line);
    } catch (e) {
      this.#audit = undefined;
      throw stateError(e, this.dir);
    }
  }

  /** Close the audit log handle (end of a batch), so a log rotated in between is reopened. */
  async closeAudit(): Promise<void> {
    const h = this.#audit;
    this.#audit = undefined;
    await (await h?.catch(() => undefined))?.close().catch(() => undefined);
  }

  /**
   * Is there an audit line with these fields among the last `tailBytes` of the log? Used when a
   * commit is repeated after a crash, to not log a rotation twice.
   */
  async hasAudit(match: Pick<AuditEvent, 'policy' | 'event' | 'version' | 'fingerprint'>, tailBytes = 256 * 1024): Promise<boolean> {
    let h: fsp.FileHandle | undefined;
    try {
      h = await fsp.open(this.path('audit'), 'r');
      const { size } = await h.stat();
      const start = Math.max(0, size - tailBytes);
      const buf = Buffer.alloc(size - start);
      await h.read(buf, 0, buf.length, start);
      return buf
        .toString('utf8')
        .split('\n')
        .some((line) => {
          try {
            const e = JSON.parse(line) as Partial<AuditEvent>;
            return e.policy === match.policy && e.event === match.event && e.version === match.version && e.fingerprint === match.fingerprint;
          } catch {
            return false; // the first line of the tail is usually cut
          }
        });
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return false;
      throw stateError(e, this.dir);
    } finally {
      await h?.close();
    }
  }

  async #readJson<T>(file: string): Promise<T | undefined> {
    let buf: Buffer | undefined;
    try {
      buf = await readIfExists(file);
    } catch (e) {
      throw stateError(e, this.dir);
    }
    if (!buf) return undefined;
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch {
      throw new RekeyError('STATE_UNWRITABLE', `state file ${file} is corrupt (not JSON); restore it from backup or remove it to start over`);
    }
  }
}

function stateError(e: unknown, dir: string): RekeyError {
  if (e instanceof RekeyError && e.code === 'STATE_UNWRITABLE') return e;
  const inner = fsError(e, `state in ${dir}`, 'write');
  return new RekeyError('STATE_UNWRITABLE', inner.message, { cause: e });
}
