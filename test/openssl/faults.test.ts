import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Openssl } from '../../src/openssl/index.js';
import { Secret } from '../../src/util/secret.js';
import {
  expectRekeyError,
  FAIL_STDOUT_MARKER,
  FIXTURES,
  GARBAGE_MARKER,
  isAlive,
  makeTempDir,
  standInEnv,
  switchable,
} from './helpers.js';

// Fault paths through stand-in executables (test/fixtures/bin/*), never module mocks.

let base: string;
let tmp: string;
let oldTmpdir: string | undefined;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  base = await makeTempDir('rekey-faults-');
  tmp = join(base, 'tmp');
  await mkdir(tmp);
  oldTmpdir = process.env.TMPDIR;
  process.env.TMPDIR = tmp; // so we can check that every fifo dir is removed, even on failure
});

afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
  expect(await readdir(tmp)).toEqual([]);
});

afterAll(async () => {
  if (oldTmpdir === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = oldTmpdir;
  await rm(base, { recursive: true, force: true });
});

/** Probe the real openssl through a wrapper, then switch the wrapper to the stand-in. */
async function brokenAfterProbe(name: Parameters<typeof switchable>[0], timeoutMs?: number) {
  const sw = await switchable(name);
  cleanups.push(sw.cleanup);
  const ossl = await Openssl.probe({ env: sw.env, ...(timeoutMs ? { timeoutMs } : {}) });
  expect(ossl.info.binary).toBe(join(sw.dir, 'openssl'));
  await sw.breakIt();
  return { ossl, sw };
}

const tokens = (n: number): Secret[] =>
  Array.from({ length: n }, (_, i) => new Secret(`rk_fault_token_${i}_abcdefghijklmnopqrstuvwxyz0123456789`));

describe('missing openssl', () => {
  it('an empty PATH gives OPENSSL_MISSING', async () => {
    const empty = await makeTempDir('rekey-empty-');
    cleanups.push(() => rm(empty, { recursive: true, force: true }));
    const err = await expectRekeyError(Openssl.probe({ env: { PATH: empty } }), 'OPENSSL_MISSING');
    expect(err.message).toBe('openssl not found on PATH; install it or set openssl.path in the config');
  });

  it('a non-executable openssl on PATH is skipped', async () => {
    const dir = await makeTempDir('rekey-noexec-');
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'openssl'), '#!/bin/sh\nexit 0\n', { mode: 0o644 });
    await expectRekeyError(Openssl.probe({ env: { PATH: dir } }), 'OPENSSL_MISSING');
  });
});

describe('garbage stand-in', () => {
  it('probe fails with OPENSSL_BAD_OUTPUT and does not show the output', async () => {
    const err = await expectRekeyError(Openssl.probe({ env: standInEnv('garbage') }), 'OPENSSL_BAD_OUTPUT', [GARBAGE_MARKER]);
    expect(err.message).toMatch(/^openssl version printed unexpected output/);
  });

  it('probe through openssl.path fails the same way', async () => {
    await expectRekeyError(Openssl.probe({ path: join(FIXTURES, 'garbage', 'openssl') }), 'OPENSSL_BAD_OUTPUT', [GARBAGE_MARKER]);
  });

  it('rand, generate, sha256 and sha256Batch give OPENSSL_BAD_OUTPUT without the marker', async () => {
    const { ossl } = await brokenAfterProbe('garbage');
    const rand = await expectRekeyError(ossl.randomBytes(32), 'OPENSSL_BAD_OUTPUT', [GARBAGE_MARKER]);
    expect(rand.message).toMatch(/^openssl rand printed \d+ bytes instead of 32$/);
    await expectRekeyError(ossl.generate({ bytes: 32, encoding: 'base64url' }), 'OPENSSL_BAD_OUTPUT', [GARBAGE_MARKER]);
    await expectRekeyError(ossl.generateBatch([{ bytes: 16, encoding: 'hex' }, { bytes: 48, encoding: 'base64' }]), 'OPENSSL_BAD_OUTPUT', [GARBAGE_MARKER]);

    const t = tokens(5);
    const one = await expectRekeyError(ossl.sha256(t[0]!), 'OPENSSL_BAD_OUTPUT', [GARBAGE_MARKER, t[0]!.reveal()]);
    expect(one.message).toBe('openssl dgst printed unexpected output (expected 1 line of 64 hex digits)');
    // The stand-in never opens the fifos: the batch must still settle and clean up.
    const batch = await expectRekeyError(ossl.sha256Batch(t), 'OPENSSL_BAD_OUTPUT', [GARBAGE_MARKER, ...t.map((x) => x.reveal())]);
    expect(batch.message).toBe('openssl dgst printed unexpected output (expected 5 lines of 64 hex digits)');
  });
});

describe('fail stand-in', () => {
  it('probe fails with OPENSSL_FAILED, exit code and first stderr line only', async () => {
    const err = await expectRekeyError(Openssl.probe({ env: standInEnv('fail') }), 'OPENSSL_FAILED', [FAIL_STDOUT_MARKER, 'second stderr line']);
    expect(err.message).toBe('openssl version failed with exit code 1: stand-in openssl: simulated failure');
  });

  it('rand, sha256 and sha256Batch give OPENSSL_FAILED; a token echoed on stderr is scrubbed', async () => {
    const { ossl } = await brokenAfterProbe('fail');
    const rand = await expectRekeyError(ossl.randomBytes(32), 'OPENSSL_FAILED', [FAIL_STDOUT_MARKER, 'second stderr line']);
    expect(rand.message).toBe('openssl rand failed with exit code 1: stand-in openssl: simulated failure');

    const t = tokens(6);
    const one = await expectRekeyError(ossl.sha256(t[0]!), 'OPENSSL_FAILED', [FAIL_STDOUT_MARKER, 'second stderr line', t[0]!.reveal(), 'abcdefghijklmnopqrstuvwxyz']);
    expect(one.message).toMatch(/^openssl dgst failed with exit code 1: stand-in openssl: simulated failure while hashing /);

    // A plain string (not registered as a Secret) is scrubbed too.
    const plain = 'plain-string-token-Zq9xVv0LmN3kP7sR2tU5';
    await expectRekeyError(ossl.sha256(plain), 'OPENSSL_FAILED', [plain]);

    await expectRekeyError(ossl.sha256Batch(t), 'OPENSSL_FAILED', [FAIL_STDOUT_MARKER, ...t.map((x) => x.reveal())]);
  });
});

describe('hang stand-in', () => {
  it('probe times out on the self-test with OPENSSL_TIMEOUT', async () => {
    const err = await expectRekeyError(Openssl.probe({ env: standInEnv('hang'), timeoutMs: 300 }), 'OPENSSL_TIMEOUT');
    expect(err.message).toBe('openssl dgst timed out after 300 ms');
  }, 10_000);

  it('rand times out and the child is killed', async () => {
    const { ossl, sw } = await brokenAfterProbe('hang', 300);
    const err = await expectRekeyError(ossl.randomBytes(32), 'OPENSSL_TIMEOUT');
    expect(err.message).toBe('openssl rand timed out after 300 ms');
    expect(isAlive(await sw.lastPid())).toBe(false);
  }, 10_000);

  it('sha256 and sha256Batch time out, the child is killed and the fifo dir removed', async () => {
    const { ossl, sw } = await brokenAfterProbe('hang', 300);
    await expectRekeyError(ossl.sha256(tokens(1)[0]!), 'OPENSSL_TIMEOUT');
    expect(isAlive(await sw.lastPid())).toBe(false);

    const t = tokens(8);
    const err = await expectRekeyError(ossl.sha256Batch(t), 'OPENSSL_TIMEOUT', t.map((x) => x.reveal()));
    expect(err.message).toBe('openssl dgst timed out after 300 ms');
    expect(isAlive(await sw.lastPid())).toBe(false);
    // afterEach checks that TMPDIR is empty again.
  }, 10_000);
});

describe('wrong-kat stand-in', () => {
  it('probe fails its self-test with OPENSSL_SELFTEST', async () => {
    const err = await expectRekeyError(Openssl.probe({ env: standInEnv('wrong-kat') }), 'OPENSSL_SELFTEST');
    expect(err.message).toContain('self-test');
  });

  it('sha256 and sha256Batch catch the wrong digest by cross-checking with node crypto', async () => {
    const { ossl } = await brokenAfterProbe('wrong-kat');
    const t = tokens(7);
    const one = await expectRekeyError(ossl.sha256(t[0]!), 'OPENSSL_BAD_OUTPUT', [t[0]!.reveal()]);
    expect(one.message).toBe('openssl dgst returned a wrong digest');
    const batch = await expectRekeyError(ossl.sha256Batch(t), 'OPENSSL_BAD_OUTPUT', t.map((x) => x.reveal()));
    expect(batch.message).toBe('openssl dgst returned a wrong digest');
  });
});

describe('short-rand stand-in', () => {
  it('probe passes, rand with too few bytes gives OPENSSL_BAD_OUTPUT', async () => {
    const ossl = await Openssl.probe({ env: standInEnv('short-rand') });
    expect(ossl.info.binary).toBe(join(FIXTURES, 'short-rand', 'openssl'));
    const err = await expectRekeyError(ossl.randomBytes(32), 'OPENSSL_BAD_OUTPUT');
    expect(err.message).toBe('openssl rand printed 31 bytes instead of 32');
    await expectRekeyError(ossl.generate({ bytes: 16, encoding: 'hex' }), 'OPENSSL_BAD_OUTPUT');
    await expectRekeyError(ossl.generateBatch([{ bytes: 16, encoding: 'hex' }, { bytes: 32, encoding: 'base64url' }]), 'OPENSSL_BAD_OUTPUT');
    // dgst still goes to the real openssl.
    expect(await ossl.sha256('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('newline-rand stand-in', () => {
  it('keeps a final newline byte of the random output', async () => {
    const ossl = await Openssl.probe({ env: standInEnv('newline-rand') });
    const b = await ossl.randomBytes(16);
    expect(b.length).toBe(16);
    expect(b[15]).toBe(0x0a);
    expect(b.subarray(0, 15).toString()).toBe('x'.repeat(15));
  });
});
