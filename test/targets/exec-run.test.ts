import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { renderError } from '../../src/cli/render.js';
import { resolveProgram, runCommand } from '../../src/targets/exec-run.js';
import type { RunCommandOptions } from '../../src/targets/exec-run.js';
import { RekeyError } from '../../src/util/errors.js';
import { Secret } from '../../src/util/secret.js';
import { makeToken, sha256 } from './conformance.js';

const FIX = resolve(import.meta.dirname, '../fixtures/exec');
const fixture = (name: string) => join(FIX, name);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rekey-exec-run-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function opts(over: Partial<RunCommandOptions>): RunCommandOptions {
  return { argv: ['/bin/true'], envAllowlist: [], env: {}, timeoutMs: 10_000, scrub: [], what: 'test command', ...over };
}

async function failure(p: Promise<unknown>): Promise<RekeyError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RekeyError);
    return e as RekeyError;
  }
  throw new Error('expected a failure');
}

/** No 16-character piece of the secret in the text (the runner hides fragments, too). */
function expectNoFragment(text: string, secret: string): void {
  for (let i = 0; i + 16 <= secret.length; i++) expect(text).not.toContain(secret.slice(i, i + 16));
}

const nul = (text: string) => text.split('\0').filter((s) => s !== '');

describe('runCommand', () => {
  it('hands the token over stdin only: not in the child argv, not in its environment', async () => {
    const token = makeToken();
    const env = { PATH: process.env.PATH, HOME: '/root', REKEY_TEST_VISIBLE: 'yes', REKEY_TEST_HIDDEN: 'no' };
    await runCommand(opts({
      argv: [fixture('capture'), dir],
      stdin: new Secret(token),
      env,
      envAllowlist: ['REKEY_TEST_VISIBLE', 'REKEY_TEST_UNSET'],
    }));
    expect(await readFile(join(dir, 'stdin'), 'utf8')).toBe(token);
    const cmdline = await readFile(join(dir, 'cmdline'), 'utf8');
    const environ = await readFile(join(dir, 'environ'), 'utf8');
    expect(cmdline).not.toContain(token);
    expect(nul(cmdline)).toEqual(['/bin/sh', fixture('capture'), dir]);
    expect(environ).not.toContain(token);
    // Only the allowlisted variable that is set: no PATH, no HOME, nothing else.
    expect(nul(environ)).toEqual(['REKEY_TEST_VISIBLE=yes']);
  });

  it('passes PATH only when it is allowlisted', async () => {
    await runCommand(opts({ argv: [fixture('capture'), dir], env: { PATH: '/usr/bin:/bin' }, envAllowlist: ['PATH'] }));
    expect(nul(await readFile(join(dir, 'environ'), 'utf8'))).toEqual(['PATH=/usr/bin:/bin']);
    expect(await readFile(join(dir, 'stdin'), 'utf8')).toBe(''); // no stdin given: closed
  });

  it('refuses to pass an allowlisted variable that holds the token', async () => {
    const token = makeToken();
    const err = await failure(runCommand(opts({
      argv: [fixture('capture'), dir],
      stdin: token,
      env: { LEAKY: `Bearer ${token}` },
      envAllowlist: ['LEAKY'],
    })));
    expect(err.message).toContain('LEAKY');
    expect(err.message).not.toContain(token);
  });

  it('looks a bare program name up on the parent PATH, and reports one that is missing', async () => {
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'rekey-test-prog'), '#!/bin/sh\nexit 0\n');
    await chmod(join(bin, 'rekey-test-prog'), 0o755);
    expect(await resolveProgram('rekey-test-prog', `relative:${bin}`)).toBe(join(bin, 'rekey-test-prog'));
    await runCommand(opts({ argv: ['rekey-test-prog'], env: { PATH: bin } }));

    const err = await failure(runCommand(opts({ argv: ['rekey-no-such-program'], env: { PATH: bin } })));
    expect(err.code).toBe('TARGET');
    expect(err.message).toBe('test command: not found: rekey-no-such-program (searched PATH); use an absolute path');

    const abs = await failure(runCommand(opts({ argv: [join(dir, 'missing')] })));
    expect(abs.message).toBe(`test command: not found: ${join(dir, 'missing')}`);
  });

  it('a file that is not executable gets its own message', async () => {
    await writeFile(join(dir, 'plain'), '#!/bin/sh\n');
    const err = await failure(runCommand(opts({ argv: [join(dir, 'plain')] })));
    expect(err.message).toContain('(EACCES); make it executable');
  });

  it('a non-zero exit gives one line with the exit code and the first stderr line, token redacted', async () => {
    const token = makeToken();
    const previous = makeToken();
    const err = await failure(runCommand(opts({
      argv: [fixture('echo-stdin'), '3'],
      stdin: new Secret(token),
      scrub: [previous, sha256(previous)],
    })));
    expect(err.code).toBe('TARGET');
    expect(err.transient).toBe(false);
    expect(err.message).toBe('test command: exited with code 3: error: the server rejected [redacted]');
    const shown = `${err.message}\n${renderError(err)}\n${String(err.stack)}\n${JSON.stringify(err)}`;
    expect(shown).not.toContain(token);
    expect(shown).not.toContain('stdout:'); // stdout never reaches an error
  });

  it('hides pieces of the token when the child prints it folded over several lines', async () => {
    const token = makeToken();
    const err = await failure(runCommand(opts({ argv: [fixture('echo-stdin'), '1', 'fold'], stdin: token })));
    expect(err.message).toContain('exited with code 1: [redacted]');
    expectNoFragment(err.message, token);
  });

  it('returns stderr and stdout scrubbed on success', async () => {
    const token = makeToken();
    const previous = makeToken();
    const out = await runCommand(opts({ argv: [fixture('echo-stdin'), '0'], stdin: token, scrub: [previous] }));
    expect(out.stderr).toBe('error: the server rejected [redacted]\nsecond line');
    expect(out.stdout).toBe('stdout: [redacted]');
    const folded = await runCommand(opts({ argv: [fixture('echo-stdin'), '0', 'fold'], stdin: token }));
    expectNoFragment(folded.stderr, token);
  });

  it('scrubs the previous token and hashes passed in scrub', async () => {
    const previous = makeToken();
    const err = await failure(runCommand(opts({
      argv: [fixture('echo-stdin'), '2'],
      stdin: `${previous} ${sha256(previous)}`,
      scrub: [previous, sha256(previous)],
    })));
    expect(err.message).not.toContain(previous);
    expect(err.message).not.toContain(sha256(previous));
  });

  it('a timeout is transient and kills the whole process group, grandchildren too', async () => {
    const err = await failure(runCommand(opts({ argv: [fixture('hang'), dir], timeoutMs: 300 })));
    expect(err.code).toBe('TARGET_TRANSIENT');
    expect(err.transient).toBe(true);
    expect(err.message).toBe('test command: timed out after 300 ms; raise timeoutMs if it needs longer');
    const pid = Number((await readFile(join(dir, 'pid'), 'utf8')).trim());
    expect(pid).toBeGreaterThan(0);
    // The grandchild is gone: no such process, or a zombie waiting for its reaper.
    const alive = async () => {
      try {
        return !/^State:\s+Z/m.test(await readFile(`/proc/${pid}/status`, 'utf8'));
      } catch {
        return false;
      }
    };
    let stillAlive = await alive();
    for (let i = 0; i < 100 && stillAlive; i++) {
      await new Promise((r) => setTimeout(r, 20));
      stillAlive = await alive();
    }
    expect(stillAlive).toBe(false);
  });

  it('uses the code it is given: VERIFY_FAILED / HOOK_FAILED, transient on timeout', async () => {
    const v = await failure(runCommand(opts({ argv: ['/bin/false'], code: 'VERIFY_FAILED', what: 'verify command' })));
    expect(v.code).toBe('VERIFY_FAILED');
    expect(v.message).toBe('verify command: exited with code 1');
    const h = await failure(runCommand(opts({ argv: [fixture('hang'), dir], code: 'HOOK_FAILED', timeoutMs: 200 })));
    expect(h.code).toBe('HOOK_FAILED');
    expect(h.transient).toBe(true);
  });

  it('a child that does not read its stdin is fine', async () => {
    await runCommand(opts({ argv: ['/bin/true'], stdin: 'x'.repeat(200_000) }));
  });

  it('reports a signal', async () => {
    const err = await failure(runCommand(opts({ argv: ['/bin/sh', '-c', 'kill -9 $$'] })));
    expect(err.message).toBe('test command: killed by SIGKILL');
  });
});
