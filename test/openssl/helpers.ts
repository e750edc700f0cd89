import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { ErrorCode } from '../../src/util/errors.js';
import { RekeyError } from '../../src/util/errors.js';

export const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/bin');
export const REAL_OPENSSL = '/usr/bin/openssl';
export const SYSTEM_PATH = '/usr/bin:/bin';
export const KAT_ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
export const GARBAGE_MARKER = 'REKEY-GARBAGE-MARKER-5f1c';
export const FAIL_STDOUT_MARKER = 'REKEY-FAIL-STDOUT-9a2e';

export type StandIn = 'garbage' | 'hang' | 'wrong-kat' | 'fail' | 'short-rand' | 'newline-rand';

/** A PATH with the stand-in's directory first, so it is found as `openssl`. */
export function standInEnv(name: StandIn): NodeJS.ProcessEnv {
  return { PATH: `${join(FIXTURES, name)}:${SYSTEM_PATH}` };
}

export async function makeTempDir(prefix = 'rekey-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * A temp dir with an `openssl` wrapper that runs the real openssl (so probe() passes) until
 * breakIt() is called; from then on it records its pid and execs the stand-in.
 */
export async function switchable(name: StandIn): Promise<{
  dir: string;
  env: NodeJS.ProcessEnv;
  breakIt: () => Promise<void>;
  lastPid: () => Promise<number>;
  cleanup: () => Promise<void>;
}> {
  const dir = await makeTempDir('rekey-switch-');
  const script = [
    '#!/bin/sh',
    'here=${0%/*}',
    'if [ -e "$here/broken" ]; then',
    '  echo $$ > "$here/pid"',
    `  exec '${join(FIXTURES, name, 'openssl')}' "$@"`,
    'fi',
    `exec '${REAL_OPENSSL}' "$@"`,
    '',
  ].join('\n');
  const file = join(dir, 'openssl');
  await writeFile(file, script);
  await chmod(file, 0o755);
  return {
    dir,
    env: { PATH: `${dir}:${SYSTEM_PATH}` },
    breakIt: () => writeFile(join(dir, 'broken'), ''),
    lastPid: async () => Number((await readFile(join(dir, 'pid'), 'utf8')).trim()),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * Await a promise that must reject with a RekeyError of `code`, exit code 3 (unless given),
 * a one-line message without any of `forbidden`, and no foreign error attached as cause.
 */
export async function expectRekeyError(
  promise: Promise<unknown>,
  code: ErrorCode,
  forbidden: readonly string[] = [],
  exitCode = 3,
): Promise<RekeyError> {
  let caught: unknown;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a rejection').toBeInstanceOf(RekeyError);
  const err = caught as RekeyError;
  expect(err.code).toBe(code);
  expect(err.exitCode).toBe(exitCode);
  expect(err.message.length).toBeGreaterThan(0);
  expect(err.message).not.toMatch(/[\r\n]/);
  expect(err.cause).toBeUndefined();
  for (const f of forbidden) {
    expect(err.message).not.toContain(f);
    expect(JSON.stringify(err.details)).not.toContain(f);
  }
  return err;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
