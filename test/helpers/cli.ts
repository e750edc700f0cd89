/**
 * Run the BUILT CLI (dist/main.js) as a real process, and make temp dirs that are cleaned up.
 *
 *   const r = await runRekey(['rotate-now', 'api', '-c', cfg], { cwd: dir });
 *   expect(r.code).toBe(0);
 *
 * The child gets a small environment (PATH, HOME, LANG) plus `env`; nothing else leaks in from
 * the test process (no REKEY_* variables by accident). `npm test` builds first (pretest); a
 * missing dist/main.js is reported with what to run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, copyFile, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(ROOT, 'dist', 'main.js');

export interface RunOptions {
  /** The CLI entry to run; default dist/main.js (see snapshotCli). */
  cli?: string;
  cwd?: string;
  /** Added to the base environment (PATH, HOME, LANG). A value of undefined removes a name. */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, then stdin is closed. Without it stdin is closed at once. */
  input?: string | Buffer;
  /** Safety net only (kills the child with SIGKILL); not an assertion. Default 60 s. */
  timeoutMs?: number;
}

export interface RunResult {
  /** Exit code, or null when a signal ended the process. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  pid: number;
}

export interface Started {
  child: ChildProcess;
  pid: number;
  /** Settles when the process has exited and its output is complete. */
  done: Promise<RunResult>;
}

/** The environment every child starts from. */
export function baseEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? tmpdir(),
    LANG: 'C.UTF-8',
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (npm test does it for you)`);
}

/** Start `node dist/main.js ...args`; use this when the test must signal the process itself. */
export function startRekey(args: string[], opts: RunOptions = {}): Started {
  if (!opts.cli) assertBuilt();
  const child = spawn(process.execPath, [opts.cli ?? CLI, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: baseEnv(opts.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  child.stdin!.on('error', () => undefined); // EPIPE when the child dies before reading
  child.stdin!.end(opts.input ?? '');
  const safety = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const done = new Promise<RunResult>((res, rej) => {
    child.once('error', (e) => {
      clearTimeout(safety);
      rej(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(safety);
      res({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), pid: child.pid ?? -1 });
    });
  });
  return { child, pid: child.pid ?? -1, done };
}

/** Run `node dist/main.js ...args` to the end. */
export function runRekey(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return startRekey(args, opts).done;
}

const made = new Set<string>();

/**
 * A private copy of the build (dist/, package.json, a link to node_modules), for tests that
 * run the CLI for minutes: another `npm run build` in this tree mid-run then cannot hand a
 * child a half-written module. Returns the copy's main.js; removed by cleanupTempDirs().
 */
export async function snapshotCli(): Promise<string> {
  assertBuilt();
  const dir = await makeTempDir('rekey-cli-');
  await cp(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
  await copyFile(join(ROOT, 'package.json'), join(dir, 'package.json'));
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return join(dir, 'dist', 'main.js');
}

/** A fresh directory under the OS temp dir; removed by cleanupTempDirs() (call it in afterAll/afterEach). */
export async function makeTempDir(prefix = 'rekey-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.add(dir);
  return dir;
}

export async function cleanupTempDirs(): Promise<void> {
  const dirs = [...made];
  made.clear();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
}

/** Run fn with a temp dir that is removed afterwards, whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>, prefix?: string): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix ?? 'rekey-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
