import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileTargetSchema } from '../../src/config/schema.js';
import type { Target } from '../../src/targets/contract.js';
import { createFileTarget } from '../../src/targets/file.js';
import { RekeyError } from '../../src/util/errors.js';
import { captureLogger, makeContext, makeToken, runConformance, sha256 } from './conformance.js';

const dirs: string[] = [];
const undo: Array<() => void> = [];

function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'rekey-file-'));
  dirs.push(d);
  return d;
}

afterEach(() => {
  for (const u of undo.splice(0)) u();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fileTarget(settings: { path: string; content?: 'token' | 'sha256'; followSymlinks?: boolean }): Target {
  return createFileTarget(FileTargetSchema.parse({ type: 'file', ...settings }), { policy: 'test', env: {}, log: captureLogger() });
}

async function rotate(t: Target, token: string) {
  const ctx = makeContext('test', token, 2);
  const snap = await t.snapshot(ctx);
  await t.stage(ctx, snap);
  await t.promote(ctx, snap);
  return { ctx, snap };
}

async function failure(p: Promise<unknown>): Promise<RekeyError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RekeyError);
    expect((e as Error).message).not.toContain('\n');
    return e as RekeyError;
  }
  throw new Error('expected a failure');
}

const tempFiles = (dir: string) => readdirSync(dir).filter((n) => n.includes('.rekey-'));

/** See env-file.test.ts: chmod 0555 for a normal user, chattr +i for root (root ignores mode bits). */
function makeUnwritable(dir: string): boolean {
  const refuses = () => {
    try {
      writeFileSync(path.join(dir, '.probe'), '');
      rmSync(path.join(dir, '.probe'));
      return false;
    } catch {
      return true;
    }
  };
  chmodSync(dir, 0o555);
  if (refuses()) {
    undo.push(() => chmodSync(dir, 0o755));
    return true;
  }
  chmodSync(dir, 0o755);
  try {
    execFileSync('chattr', ['+i', dir], { stdio: 'ignore' });
  } catch {
    return false;
  }
  undo.push(() => execFileSync('chattr', ['-i', dir], { stdio: 'ignore' }));
  return refuses();
}

describe('file target', () => {
  it('describes itself without secrets', () => {
    expect(fileTarget({ path: '/run/app/token' }).description).toBe('file /run/app/token token');
    expect(fileTarget({ path: '/run/app/token.sha256', content: 'sha256' }).description).toBe('file /run/app/token.sha256 sha256');
  });

  it('content token: writes the token and one newline; readBack strips it', async () => {
    const file = path.join(tempDir(), 'token');
    const t = fileTarget({ path: file });
    const token = makeToken();
    await rotate(t, token);
    expect(readFileSync(file, 'utf8')).toBe(`${token}\n`);
    expect(await t.readBack()).toBe(sha256(token));
    expect((await t.readCurrentToken!())?.reveal()).toBe(token);
    writeFileSync(file, token); // written by hand without a newline
    expect(await t.readBack()).toBe(sha256(token));
  });

  it('content sha256: writes the hex digest and one newline; readBack returns it; no readCurrentToken', async () => {
    const file = path.join(tempDir(), 'token.sha256');
    const t = fileTarget({ path: file, content: 'sha256' });
    const token = makeToken();
    const { ctx } = await rotate(t, token);
    expect(readFileSync(file, 'utf8')).toBe(`${sha256(token)}\n`);
    expect(await t.readBack()).toBe(ctx.sha256);
    expect(t.readCurrentToken).toBeUndefined();
    writeFileSync(file, 'not a hash\n');
    expect(await t.readBack()).toBeUndefined();
  });

  it('content sha256 can be staged from the journal without the token', async () => {
    const file = path.join(tempDir(), 'h');
    const t = fileTarget({ path: file, content: 'sha256' });
    const { token: _t, ...ctx } = makeContext('test', makeToken(), 2);
    await t.stage(ctx, await t.snapshot(ctx));
    expect(readFileSync(file, 'utf8')).toBe(`${ctx.sha256}\n`);
  });

  it('readBack is undefined for a missing or empty file', async () => {
    const file = path.join(tempDir(), 'token');
    const t = fileTarget({ path: file });
    expect(await t.readBack()).toBeUndefined();
    writeFileSync(file, '\n');
    expect(await t.readBack()).toBeUndefined();
  });

  for (const mask of [0, 0o022]) {
    it(`a new file is 0600 under umask ${mask.toString(8).padStart(3, '0')}`, async () => {
      const file = path.join(tempDir(), 'token');
      const saved = process.umask(mask);
      try {
        await rotate(fileTarget({ path: file }), makeToken());
      } finally {
        process.umask(saved);
      }
      expect(statSync(file).mode & 0o777).toBe(0o600);
    });
  }

  it('an existing 0644 file becomes 0600 (it holds a secret); rollback restores bytes and 0644', async () => {
    const file = path.join(tempDir(), 'token');
    writeFileSync(file, 'old\n');
    chmodSync(file, 0o644);
    const t = fileTarget({ path: file });
    const { ctx, snap } = await rotate(t, makeToken());
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await t.rollback(ctx, snap);
    expect(readFileSync(file, 'utf8')).toBe('old\n');
    expect(statSync(file).mode & 0o777).toBe(0o644);
  });

  it('keeps the owner of an existing file (root only)', async (tc) => {
    if (process.getuid?.() !== 0) tc.skip();
    const file = path.join(tempDir(), 'token');
    writeFileSync(file, 'old\n');
    chownSync(file, 4321, 4322);
    await rotate(fileTarget({ path: file }), makeToken());
    expect([statSync(file).uid, statSync(file).gid]).toEqual([4321, 4322]);
  });

  it('rollback of a file that did not exist removes it', async () => {
    const dir = tempDir();
    const t = fileTarget({ path: path.join(dir, 'token') });
    const { ctx, snap } = await rotate(t, makeToken());
    await t.rollback(ctx, snap);
    await t.rollback(ctx, snap);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('the snapshot meta holds no token', async () => {
    const file = path.join(tempDir(), 'token');
    const old = makeToken();
    writeFileSync(file, `${old}\n`);
    chmodSync(file, 0o640);
    const snap = await fileTarget({ path: file }).snapshot(makeContext('test', makeToken(), 2, old));
    expect(snap.meta).toMatchObject({ existed: true, mode: 0o640, realPath: file });
    expect(JSON.stringify(snap.meta)).not.toContain(old);
  });

  it('a symlink is refused by default; with followSymlinks the link survives', async () => {
    const dir = tempDir();
    const real = path.join(dir, 'real');
    const link = path.join(dir, 'link');
    writeFileSync(real, 'old\n');
    symlinkSync(real, link);
    const err = await failure(fileTarget({ path: link }).snapshot(makeContext('test', makeToken(), 2)));
    expect(err.message).toContain('is a symlink');
    expect(readFileSync(real, 'utf8')).toBe('old\n');

    const t = fileTarget({ path: link, followSymlinks: true });
    const token = makeToken();
    const { ctx, snap } = await rotate(t, token);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, 'utf8')).toBe(`${token}\n`);
    await t.rollback(ctx, snap);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, 'utf8')).toBe('old\n');
  });

  it('a directory that refuses writes: one line, file unchanged, no temp file', async (tc) => {
    const dir = tempDir();
    const file = path.join(dir, 'token');
    writeFileSync(file, 'old\n');
    const t = fileTarget({ path: file });
    const token = makeToken();
    const ctx = makeContext('test', token, 2);
    const snap = await t.snapshot(ctx);
    if (!makeUnwritable(dir)) tc.skip();
    const err = await failure(t.stage(ctx, snap));
    expect(err.code).toBe('TARGET_PERMISSION');
    expect(err.message).toContain(t.description);
    expect(err.message).not.toContain(token);
    expect(readFileSync(file, 'utf8')).toBe('old\n');
    expect(tempFiles(dir)).toEqual([]);
  });

  it('a missing parent directory: ENOENT, nothing created', async () => {
    const dir = tempDir();
    const t = fileTarget({ path: path.join(dir, 'nope', 'token') });
    const ctx = makeContext('test', makeToken(), 2);
    const err = await failure(t.stage(ctx, await t.snapshot(ctx)));
    expect(err.message).toContain('(ENOENT)');
    expect(readdirSync(dir)).toEqual([]);
  });
});

function conformanceFixture(content: 'token' | 'sha256') {
  return async () => {
    const dir = tempDir();
    const file = path.join(dir, 'secret');
    return {
      target: fileTarget({ path: file, content }),
      holds: content,
      async seed(token: string) {
        writeFileSync(file, `${content === 'token' ? token : sha256(token)}\n`, { mode: 0o600 });
      },
      async current() {
        try {
          const v = readFileSync(file, 'utf8').replace(/\n$/, '');
          return v === '' ? undefined : v;
        } catch {
          return undefined;
        }
      },
      async teardown() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

function brokenFixture(content: 'token' | 'sha256') {
  return async () => {
    // The parent of the path is a regular file: everything fails with ENOTDIR, for root too.
    const dir = tempDir();
    writeFileSync(path.join(dir, 'not-a-dir'), 'x');
    return {
      target: fileTarget({ path: path.join(dir, 'not-a-dir', 'secret'), content }),
      async teardown() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

runConformance({ name: 'file (token)', setup: conformanceFixture('token'), broken: brokenFixture('token') });
runConformance({ name: 'file (sha256)', setup: conformanceFixture('sha256'), broken: brokenFixture('sha256') });
