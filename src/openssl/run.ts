import { execa } from 'execa';
import { RekeyError } from '../util/errors.js';
import { redact } from '../util/secret.js';

/**
 * The one execa binding of the project. Everything that spawns a child for openssl work
 * (openssl itself, and mkfifo for the batch digest) goes through runChild() below.
 *
 * - shell: false, extendEnv: false: the child sees only the PATH we hand it.
 * - reject: false: we never let an ExecaError escape. Its message and shortMessage carry
 *   the child's stdout, which for `openssl rand` is the secret.
 * - encoding 'buffer' + stripFinalNewline false: random bytes may end in 0x0a.
 * - verbose 'none' explicitly: NODE_DEBUG=execa would otherwise turn on 'full' logging
 *   of stdout to our stderr.
 */
const spawnChild = execa({
  shell: false,
  extendEnv: false,
  reject: false,
  encoding: 'buffer',
  stripFinalNewline: false,
  verbose: 'none',
  forceKillAfterDelay: 1000,
  killSignal: 'SIGTERM',
  cleanup: true,
  windowsHide: true,
  maxBuffer: 64 * 1024 * 1024,
});

export interface ChildRun {
  /** Absolute path of the executable. */
  file: string;
  args: readonly string[];
  /** Names the child in errors, e.g. "openssl rand". Never holds data. */
  label: string;
  timeoutMs: number;
  /** PATH for the child; nothing else from our environment is passed. */
  path?: string;
  /** Data for the child's stdin (secrets go here, never in args). */
  input?: Buffer;
  /** Extra values to scrub from stderr (e.g. the input). */
  scrub?: readonly string[];
}

export interface ChildOutput {
  stdout: Buffer;
  stderr: string;
}

const MISSING_ERRNO = new Set(['ENOENT', 'EACCES', 'ENOTDIR', 'ELOOP']);
const STDERR_MAX = 200;
// Long runs of token-alphabet characters could be key material echoed back; hide them.
const LONG_RUN = /[A-Za-z0-9+/=_-]{20,}/g;

/** First line of stderr, control characters removed, secrets and long opaque runs hidden, truncated. */
export function scrubStderr(stderr: string, extra: readonly string[] = []): string {
  const first = (stderr.split(/\r?\n/).find((l) => l.trim() !== '') ?? '').trim();
  // eslint-disable-next-line no-control-regex
  let line = redact(first, extra).replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  line = line.replace(LONG_RUN, '[…]');
  if (line.length > STDERR_MAX) line = `${line.slice(0, STDERR_MAX)}…`;
  return line;
}

function toBuffer(value: unknown): Buffer {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.alloc(0);
}

/**
 * Run a child and return its stdout, or throw a RekeyError built only from the exit code,
 * the signal, the timeout flag and a scrubbed stderr. Nothing execa produced is attached.
 */
export async function runChild(run: ChildRun): Promise<ChildOutput> {
  const env: Record<string, string> = { LC_ALL: 'C' };
  if (run.path !== undefined) env.PATH = run.path;

  let result;
  try {
    result = await spawnChild(run.file, [...run.args], {
      env,
      timeout: run.timeoutMs,
      ...(run.input !== undefined ? { input: run.input } : { stdin: 'ignore' as const }),
    });
  } catch {
    // reject:false should make this unreachable (only option validation throws); stay silent.
    throw new RekeyError('OPENSSL_FAILED', `${run.label} could not be started`);
  }

  const stderr = toBuffer(result.stderr).toString('utf8');
  const scrubbed = scrubStderr(stderr, run.scrub);
  const tail = scrubbed ? `: ${scrubbed}` : '';

  if (result.timedOut) {
    throw new RekeyError('OPENSSL_TIMEOUT', `${run.label} timed out after ${run.timeoutMs} ms`);
  }
  if (result.exitCode === undefined && result.signal === undefined && result.failed) {
    // Never spawned: the errno is all we keep.
    const errno = typeof result.code === 'string' ? result.code : 'unknown error';
    if (MISSING_ERRNO.has(errno)) {
      throw new RekeyError('OPENSSL_MISSING', `${run.label}: cannot run ${run.file} (${errno}); install openssl or set openssl.path in the config`);
    }
    throw new RekeyError('OPENSSL_FAILED', `${run.label}: cannot run ${run.file} (${errno})`);
  }
  if (result.isMaxBuffer) {
    throw new RekeyError('OPENSSL_BAD_OUTPUT', `${run.label} printed far more output than expected`);
  }
  if (result.signal !== undefined) {
    throw new RekeyError('OPENSSL_FAILED', `${run.label} was killed by ${result.signal}${tail}`);
  }
  if (result.exitCode !== 0) {
    throw new RekeyError('OPENSSL_FAILED', `${run.label} failed with exit code ${String(result.exitCode)}${tail}`);
  }
  if (result.failed) {
    // Exit 0 but execa saw another problem (a stream error); keep only the errno.
    const errno = typeof result.code === 'string' ? result.code : 'an I/O error';
    throw new RekeyError('OPENSSL_FAILED', `${run.label} failed (${errno})`);
  }
  return { stdout: toBuffer(result.stdout), stderr };
}
