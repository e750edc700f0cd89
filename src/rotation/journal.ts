/**
 * The write-ahead record of one rotation. It is written (and fsynced) before any target is
 * touched and holds what a later process needs to finish or undo the rotation: the targets,
 * their snapshots' non-secret facts, the new token's hash. Never a plaintext token. Old file
 * bytes (which hold the old token) go to a separate 0600 recovery file, removed at the end.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { StateStore } from '../state/store.js';
import { RekeyError } from '../util/errors.js';
import { readIfExists, writeFileAtomic } from '../util/fs-atomic.js';
import { faultPoint } from './fault.js';

/** begin: targets may be staged, undo them. promoting: every target staged and verified, finish it. done: targets final, state not yet written. */
export type JournalPhase = 'begin' | 'promoting' | 'done';

export interface JournalTarget {
  index: number;
  kind: string;
  description: string;
  meta: Record<string, unknown>;
}

export interface JournalRecord {
  policy: string;
  version: number;
  phase: JournalPhase;
  sha256: string;
  fingerprint: string;
  rotatedAt: string;
  graceMs: number;
  previousSha256?: string;
  targets: JournalTarget[];
  pid: number;
  startedAt: string;
}

export type RecoverySecrets = Record<number, Record<string, unknown> | undefined>;

export class Journal {
  constructor(private readonly store: StateStore) {}

  #file(policy: string): string {
    return this.store.path('journal', `${policy}.json`);
  }

  #recoveryFile(policy: string): string {
    return this.store.path('recovery', `${policy}.json`);
  }

  async read(policy: string): Promise<JournalRecord | undefined> {
    const buf = await readIfExists(this.#file(policy)).catch(() => {
      throw new RekeyError('STATE_UNWRITABLE', `cannot read the journal of ${policy} in ${this.store.dir}`);
    });
    if (!buf) return undefined;
    try {
      return JSON.parse(buf.toString('utf8')) as JournalRecord;
    } catch {
      throw new RekeyError('RECOVERY', `the journal of ${policy} (${this.#file(policy)}) is corrupt; inspect the targets by hand, then remove it`);
    }
  }

  async readRecovery(policy: string): Promise<RecoverySecrets> {
    const buf = await readIfExists(this.#recoveryFile(policy)).catch(() => undefined);
    if (!buf) return {};
    try {
      return JSON.parse(buf.toString('utf8')) as RecoverySecrets;
    } catch {
      return {};
    }
  }

  /** Recovery secrets first, then the journal: a journal never points at a missing recovery file. */
  async begin(rec: JournalRecord, secrets: RecoverySecrets): Promise<void> {
    if (Object.values(secrets).some((s) => s !== undefined)) {
      await writeFileAtomic(this.#recoveryFile(rec.policy), JSON.stringify(secrets), { mode: 0o600, what: `recovery file of ${rec.policy}` });
    }
    await this.write(rec);
  }

  async write(rec: JournalRecord): Promise<void> {
    await writeFileAtomic(this.#file(rec.policy), `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600, what: `journal of ${rec.policy}` });
  }

  async setPhase(rec: JournalRecord, phase: JournalPhase): Promise<JournalRecord> {
    const next = { ...rec, phase };
    await this.write(next);
    return next;
  }

  /**
   * The rotation is over (committed or rolled back): drop the journal, then the recovery file.
   * In this order a crash in between leaves a harmless orphan recovery file (removed by the next
   * command, see dropOrphanRecovery), never a journal whose old bytes are gone.
   */
  async finish(policy: string): Promise<void> {
    await fsp.unlink(this.#file(policy)).catch((e: { code?: string }) => {
      if (e.code !== 'ENOENT') throw new RekeyError('STATE_UNWRITABLE', `cannot remove the journal of ${policy} (${e.code ?? 'error'})`);
    });
    faultPoint('in-finish', policy);
    await fsp.unlink(this.#recoveryFile(policy)).catch(() => undefined);
  }

  /** No journal: a recovery file (old bytes, maybe an old token) is left over from a crash; remove it. */
  async dropOrphanRecovery(policy: string): Promise<void> {
    await fsp.unlink(this.#recoveryFile(policy)).catch(() => undefined);
  }

  /**
   * Temp files of atomic writes (".<policy>.json.rekey-<hex>.tmp") that a process killed
   * mid-write left in the state directory; one in recovery/ holds old bytes, i.e. an old token.
   * Call it only while holding the policy's lock: then nobody is writing them.
   */
  async sweepTemp(policies: readonly string[]): Promise<void> {
    if (policies.length === 0) return;
    const locked = new Set(policies);
    const pattern = /^\.(.+)\.json\.rekey-(?:\d+-)?[0-9a-f]+\.tmp$/;
    // One listing per directory for the whole batch (not one per policy: that is quadratic).
    for (const kind of ['journal', 'recovery', 'policies', 'attempts'] as const) {
      const dir = this.store.path(kind);
      const names = await fsp.readdir(dir).catch(() => [] as string[]);
      for (const n of names) {
        const m = pattern.exec(n);
        if (m && locked.has(m[1]!)) await fsp.unlink(path.join(dir, n)).catch(() => undefined);
      }
    }
  }

  async list(): Promise<string[]> {
    const names = await fsp.readdir(this.store.path('journal')).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
  }
}
