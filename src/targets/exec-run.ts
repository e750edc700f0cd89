/**
 * The one place that runs user-configured programs: the exec target's command and
 * rollbackCommand, and the rotation engine's verify command and before/after hooks.
 *
 * - No shell; argv is passed as is. A bare program name is looked up on the PARENT's PATH
 *   here, before spawning, because the child gets no PATH unless `env` allowlists it.
 * - extendEnv: false: the child sees only the allowlisted variables that are set. A variable
 *   whose value holds a secret being handed over is refused: the token never rides in env.
 * - The secret goes to stdin (`input`), never argv or env.
 * - The child runs in its own process group, and a timeout kills the whole group (SIGTERM,
 *   then SIGKILL): a shell script's hung grandchild would otherwise hold our pipes open.
 * - reject: false: an ExecaError never escapes. Its message carries the child's stdout.
 *   Errors are built from the exit code, the signal and a scrubbed first line of stderr.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { execa } from 'execa';
import { RekeyError } from '../util/errors.js';
import { redact, Secret } from '../util/secret.js';

export type RunCommandCode = 'TARGET' | 'HOOK_FAILED' | 'VERIFY_FAILED';

export interface RunCommandOptions {
  /** Program and arguments, straight from the config. */
  argv: readonly string[];
  /** Written to the child's stdin; stdin is closed (ignored) when absent. */
  stdin?: Secret | string;
  /** Names of variables copied from `env` to the child (only those that are set). */
  envAllowlist: readonly string[];
  /** The parent's environment: the source of allowlisted values and of PATH for the lookup. */
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** Values hidden in stderr/stdout and errors: the token, the previous token, their sha256 hex. */
  scrub: readonly string[];
  /** Names the command in errors, e.g. the target's description or "verify command". */
  what: string;
  /** Code of the thrown RekeyError; a timeout of a TARGET command becomes TARGET_TRANSIENT. Default TARGET. */
  code?: RunCommandCode;
}

export interface RunCommandResult {
  /** Scrubbed and capped; safe to log. */
  stderr: string;
  /** Scrubbed and capped. */
  stdout: string;
}

const KILL_AFTER_MS = 2_000;
const MAX_BUFFER = 1024 * 1024;
const LINE_MAX = 200;
const TEXT_MAX = 4_096;
/** A run of token-alphabet characters sharing this many characters with a secret is hidden whole. */
const FRAGMENT = 16;
const RUN = /[A-Za-z0-9+/=_.-]{16,}/g;
const REDACTED = '[redacted]';

const spawnChild = execa({
  shell: false,
  extendEnv: false,
  reject: false,
  encoding: 'utf8',
  stripFinalNewline: true,
  // NODE_DEBUG=execa would otherwise print the child's output.
  verbose: 'none',
  maxBuffer: MAX_BUFFER,
  windowsHide: true,
  // Own process group, so that a timeout can kill grandchildren too (see killGroup).
  detached: true,
});

// Process groups still running; killed if rekey exits first (detached children outlive us otherwise).
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is gone already.
  }
}

function trackGroup(pid: number): void {
  liveGroups.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const g of liveGroups) killGroup(g, 'SIGKILL');
    });
  }
}

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Hide every secret, and every run of token characters that shares FRAGMENT characters with one. */
function hideSecrets(text: string, secrets: readonly string[]): string {
  const out = redact(text, secrets);
  const long = secrets.filter((s) => s.length >= FRAGMENT);
  if (long.length === 0) return out;
  return out.replace(RUN, (run) => {
    for (let i = 0; i + FRAGMENT <= run.length; i++) {
      const window = run.slice(i, i + FRAGMENT);
      if (long.some((s) => s.includes(window))) return REDACTED;
    }
    return run;
  });
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
// eslint-disable-next-line no-control-regex
const CONTROL_BUT_NEWLINE_TAB = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

function cap(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** First non-empty line, secrets hidden, control characters removed, at most LINE_MAX characters. */
function firstLine(text: string, secrets: readonly string[]): string {
  const line = (text.split(/\r?\n/).find((l) => l.trim() !== '') ?? '').trim();
  return cap(hideSecrets(line, secrets).replace(CONTROL, ' '), LINE_MAX);
}

function scrubText(text: string, secrets: readonly string[]): string {
  return cap(hideSecrets(text, secrets).replace(CONTROL_BUT_NEWLINE_TAB, ' '), TEXT_MAX);
}

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * argv[0] as an absolute path: as given when absolute, against the working directory when it
 * holds a slash, else the first executable match on the parent's PATH (empty and relative
 * PATH entries are skipped, so ./ is never searched).
 */
export async function resolveProgram(program: string, pathVar: string | undefined): Promise<string | undefined> {
  if (isAbsolute(program)) return program;
  if (program.includes('/')) return resolve(program);
  for (const dir of (pathVar ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue;
    const candidate = join(dir, program);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Run a configured program with the secret on stdin. Resolves with the scrubbed output when it
 * exits 0; otherwise throws a one-line RekeyError that names `what` and holds no secret.
 */
export async function runCommand(opts: RunCommandOptions): Promise<RunCommandResult> {
  const code = opts.code ?? 'TARGET';
  const input = opts.stdin instanceof Secret ? opts.stdin.reveal() : opts.stdin;
  const secrets = [...opts.scrub, ...(input !== undefined && input !== '' ? [input, sha256(input)] : [])]
    .filter((s) => s.length > 0);
  const fail = (message: string, transient = false): RekeyError =>
    new RekeyError(transient && code === 'TARGET' ? 'TARGET_TRANSIENT' : code, hideSecrets(message, secrets).replace(CONTROL, ' '), { transient });

  const program = opts.argv[0];
  if (program === undefined) throw fail(`${opts.what}: command is empty; give a program and its arguments`);
  const file = await resolveProgram(program, opts.env.PATH);
  if (file === undefined) {
    throw fail(`${opts.what}: not found: ${program} (searched PATH); use an absolute path`);
  }

  const env: Record<string, string> = {};
  for (const name of opts.envAllowlist) {
    const value = opts.env[name];
    if (value === undefined) continue;
    if (secrets.some((s) => s.length >= 8 && value.includes(s))) {
      throw fail(`${opts.what}: environment variable ${name} holds a token being rotated; remove it from env (the token is given on stdin)`);
    }
    env[name] = value;
  }

  const subprocess = spawnChild(file, opts.argv.slice(1), {
    env,
    ...(input !== undefined ? { input } : { stdin: 'ignore' as const }),
  });
  const pid = subprocess.pid;
  let timedOut = false;
  let killTimer: NodeJS.Timeout | undefined;
  const termTimer =
    pid === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          killGroup(pid, 'SIGTERM');
          killTimer = setTimeout(() => killGroup(pid, 'SIGKILL'), KILL_AFTER_MS);
        }, opts.timeoutMs);
  if (pid !== undefined) trackGroup(pid);

  let result;
  try {
    result = await subprocess;
  } catch {
    // reject:false makes this unreachable short of an option error; say nothing execa said.
    throw fail(`${opts.what}: could not be started`);
  } finally {
    clearTimeout(termTimer);
    clearTimeout(killTimer);
    if (pid !== undefined) {
      // Stragglers of a timed-out run that ignored SIGTERM: no reason to wait for them.
      if (timedOut) killGroup(pid, 'SIGKILL');
      liveGroups.delete(pid);
    }
  }

  const stderr = typeof result.stderr === 'string' ? result.stderr : '';
  const stdout = typeof result.stdout === 'string' ? result.stdout : '';
  const line = firstLine(stderr, secrets);
  const tail = line === '' ? '' : `: ${line}`;

  if (timedOut) {
    throw fail(`${opts.what}: timed out after ${opts.timeoutMs} ms; raise timeoutMs if it needs longer`, true);
  }
  if (result.exitCode === undefined && result.signal === undefined && result.failed) {
    // Never started: keep only the errno.
    const errno = typeof result.code === 'string' ? result.code : 'unknown error';
    if (errno === 'ENOENT') throw fail(`${opts.what}: not found: ${file}`);
    if (errno === 'EACCES') throw fail(`${opts.what}: cannot run ${file} (EACCES); make it executable`);
    throw fail(`${opts.what}: cannot run ${file} (${errno})`);
  }
  if (result.isMaxBuffer) {
    throw fail(`${opts.what}: printed more than ${MAX_BUFFER} bytes of output; make it quieter`);
  }
  if (result.signal !== undefined) {
    throw fail(`${opts.what}: killed by ${result.signal}${tail}`);
  }
  if (result.exitCode !== 0) {
    throw fail(`${opts.what}: exited with code ${String(result.exitCode)}${tail}`);
  }
  if (result.failed) {
    // Exit 0, but a stream failed; keep only the errno.
    const errno = typeof result.code === 'string' ? result.code : 'an I/O error';
    throw fail(`${opts.what}: failed (${errno})`);
  }
  return { stderr: scrubText(stderr, secrets), stdout: scrubText(stdout, secrets) };
}
