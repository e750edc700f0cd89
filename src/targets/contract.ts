/**
 * The contract every target kind implements. The engine drives it:
 *   snapshot -> stage -> (verify) -> promote -> [state committed] -> notify   |   rollback on any failure
 * and later retire. Every method may be called again after a crash (from the journal), so each
 * must be idempotent for the same version. A target never imports the engine or another target.
 */
import type { TargetConfig, TargetType } from '../config/schema.js';
import type { Secret } from '../util/secret.js';

export interface Logger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

/** Everything a target may know about the rotation in progress. */
export interface RotationContext {
  policy: string;
  /** The version being written (state.version + 1). */
  version: number;
  /** SHA-256 hex of the new token. */
  sha256: string;
  /** First 8 hex of sha256: safe to log. */
  fingerprint: string;
  rotatedAt: Date;
  /** How long the previous token stays valid after promote. */
  graceMs: number;
  /** SHA-256 of the token being replaced (from state), when there is one. */
  previousSha256?: string;
  /**
   * The new token. Present during a live rotation; ABSENT when a later process finishes or
   * undoes a rotation from the journal, so promote/rollback must work without it.
   */
  token?: Secret;
  /** The token being replaced, when some target could read it back and its hash matched state. */
  previousToken?: Secret;
  log: Logger;
}

/** What a target remembers before it changes anything, so that it can undo the change. */
export interface Snapshot {
  /** Non-secret facts (versions, ids, whether a file existed). Written to the journal. */
  meta: Record<string, unknown>;
  /** Values that may hold an old token (old file bytes). Kept only in the 0600 recovery file. */
  secret?: Record<string, unknown>;
}

export interface RetireContext {
  policy: string;
  now: Date;
  /** Hash of the previous token whose grace ended, when state knows it. */
  previousSha256?: string;
  log: Logger;
}

export interface Target {
  readonly kind: TargetType;
  /** One line for humans and for state: no credentials, no token. e.g. "env-file /srv/app/.env API_TOKEN". */
  readonly description: string;
  /**
   * 'stage': takes part in the all-or-nothing protocol.
   * 'notify': runs after the rotation is committed (webhook); a failure is reported, never rolled back.
   */
  readonly phase: 'stage' | 'notify';
  /** Read what is there now, before any change. */
  snapshot(ctx: RotationContext): Promise<Snapshot>;
  /** Write the new token (or its hash) as pending, or live where the target has no versions. ctx.token is set. */
  stage(ctx: RotationContext, snap: Snapshot): Promise<void>;
  /** Make the staged value current; the replaced one becomes previous until rotatedAt + graceMs. */
  promote(ctx: RotationContext, snap: Snapshot): Promise<void>;
  /** Put back what the snapshot recorded. Safe when stage never ran, ran partly, or promote already ran. */
  rollback(ctx: RotationContext, snap: Snapshot): Promise<void>;
  /** Remove the previous token once its grace has ended. Idempotent. */
  retire(ctx: RetireContext): Promise<void>;
  /** SHA-256 of the value the target holds as current, or undefined when it cannot be read back. */
  readBack(): Promise<string | undefined>;
  /** The plaintext current token, for targets that store it (env-file, file with content token, vault, aws). */
  readCurrentToken?(): Promise<Secret | undefined>;
  /** Deliver a notification (notify-phase targets only). */
  notify?(ctx: RotationContext): Promise<void>;
  /** Release connections. */
  close(): Promise<void>;
}

/** What a target factory gets besides its own settings. */
export interface TargetEnv {
  policy: string;
  /** The process environment, for allowlists and credentials named by *Env settings. */
  env: NodeJS.ProcessEnv;
  log: Logger;
  /**
   * Lock a file against other rekey processes on this host for a read-modify-write (two
   * policies that share an env file, rotated by the daemon and by rotate-now at once).
   * Returns the release function. Absent in unit tests of a target alone.
   */
  lockFile?: (realPath: string) => Promise<() => Promise<void>>;
}

export type TargetFactory<C extends TargetConfig = TargetConfig> = (config: C, env: TargetEnv) => Target;
