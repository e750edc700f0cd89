/** Every failure rekey reports is a RekeyError: a code, one line that says what to do, and an exit code. */
export type ErrorCode =
  | 'USAGE'
  | 'CONFIG'
  | 'UNKNOWN_POLICY'
  | 'OPENSSL_MISSING'
  | 'OPENSSL_FAILED'
  | 'OPENSSL_TIMEOUT'
  | 'OPENSSL_BAD_OUTPUT'
  | 'OPENSSL_SELFTEST'
  | 'STATE_UNWRITABLE'
  | 'TARGET'
  | 'TARGET_PERMISSION'
  | 'TARGET_TRANSIENT'
  | 'TARGET_CONFLICT'
  | 'VERIFY_FAILED'
  | 'HOOK_FAILED'
  | 'LOCKED'
  | 'RECOVERY'
  | 'ROTATION_FAILED'
  | 'DAEMON_RUNNING'
  | 'INTERNAL';

/** 0 ok, 1 the work failed, 2 usage or config, 3 environment. */
export type ExitCode = 0 | 1 | 2 | 3;

const DEFAULT_EXIT: Record<ErrorCode, ExitCode> = {
  USAGE: 2,
  CONFIG: 2,
  UNKNOWN_POLICY: 2,
  OPENSSL_MISSING: 3,
  OPENSSL_FAILED: 3,
  OPENSSL_TIMEOUT: 3,
  OPENSSL_BAD_OUTPUT: 3,
  OPENSSL_SELFTEST: 3,
  STATE_UNWRITABLE: 3,
  TARGET: 1,
  TARGET_PERMISSION: 1,
  TARGET_TRANSIENT: 1,
  TARGET_CONFLICT: 1,
  VERIFY_FAILED: 1,
  HOOK_FAILED: 1,
  LOCKED: 1,
  RECOVERY: 1,
  ROTATION_FAILED: 1,
  DAEMON_RUNNING: 3,
  INTERNAL: 1,
};

export interface RekeyErrorOptions {
  exitCode?: ExitCode;
  cause?: unknown;
  /** Transient errors (timeouts, ECONNRESET, EAGAIN, 5xx) may be retried. */
  transient?: boolean;
  /** Extra lines (e.g. every validation problem) shown under the message. */
  details?: string[];
}

export class RekeyError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;
  readonly transient: boolean;
  readonly details: string[];

  constructor(code: ErrorCode, message: string, opts: RekeyErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RekeyError';
    this.code = code;
    this.exitCode = opts.exitCode ?? DEFAULT_EXIT[code];
    this.transient = opts.transient ?? code === 'TARGET_TRANSIENT';
    this.details = opts.details ?? [];
  }
}

export function isRekeyError(e: unknown): e is RekeyError {
  return e instanceof RekeyError;
}

const TRANSIENT_ERRNO = new Set(['ECONNRESET', 'EAGAIN', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED', 'EAI_AGAIN', 'EBUSY']);

/** Whether an error from a target is worth retrying (a timeout, ECONNRESET, EAGAIN, ...). */
export function isTransient(e: unknown): boolean {
  if (e instanceof RekeyError) return e.transient;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && TRANSIENT_ERRNO.has(code);
}

/**
 * A short, safe description of a foreign error (an errno, a class name).
 * Never returns the foreign message: it may hold a child's stdout or a credential.
 */
export function describeForeign(e: unknown): string {
  if (e instanceof RekeyError) return e.message;
  const err = e as { code?: unknown; syscall?: unknown; name?: unknown } | null;
  const parts: string[] = [];
  if (err && typeof err.code === 'string') parts.push(err.code);
  if (err && typeof err.syscall === 'string') parts.push(`during ${err.syscall}`);
  if (parts.length === 0 && err && typeof err.name === 'string') parts.push(err.name);
  return parts.join(' ') || 'unknown error';
}
