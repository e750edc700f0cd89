import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { renderError } from '../../src/cli/render.js';
import { EnvFileTargetSchema } from '../../src/config/schema.js';
import type { Target } from '../../src/targets/contract.js';
import { createEnvFileTarget } from '../../src/targets/env-file.js';
import { explainFsError, withFileMutex } from '../../src/targets/file-mutex.js';
import { RekeyError } from '../../src/util/errors.js';
import { captureLogger, makeContext, makeToken, runConformance, sha256 } from './conformance.js';

const dirs: string[] = [];
const undo: Array<() => void> = [];

function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'rekey-env-file-'));
  dirs.push(d);
  return d;
}

afterEach(() => {
  for (const u of undo.splice(0)) u();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function envTarget(settings: { path: string; key?: string; previousKey?: string; followSymlinks?: boolean }): Target {
  const config = EnvFileTargetSchema.parse({ type: 'env-file', key: 'API_TOKEN', ...settings });
  return createEnvFileTarget(config, { policy: 'test', env: {}, log: captureLogger() });
}

async function rotate(t: Target, token: string, previous?: string) {
  const ctx = makeContext('test', token, 2, previous);
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

/**
 * Make a directory that refuses new files, for this user. chmod 0555 is enough for a normal user,
 * but root ignores permission bits, so as root we set the immutable attribute (chattr +i), which
 * stops root too. Returns undefined when neither works here (then the test is skipped).
 */
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

const isRoot = process.getuid?.() === 0;

describe('env-file target: preserving the file', () => {
  it('changes only the value: comments, blanks, order, export, quotes, whitespace, inline comments stay', async () => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    const before = [
      '# Settings for the billing app',
      '',
      'export DB_HOST=db.internal',
      "DB_USER='billing'",
      'API_TOKEN = "tok_old"   # rotated by rekey',
      '',
      '  LOG_LEVEL=info # keep',
      'EMPTY=',
      '',
    ].join('\n');
    writeFileSync(file, before);
    const token = makeToken();
    await rotate(envTarget({ path: file }), token);
    expect(readFileSync(file, 'utf8')).toBe(before.replace('"tok_old"', `"${token}"`));
  });

  it('keeps CRLF and a missing final newline, byte for byte', async () => {
    const dir = tempDir();
    const a = path.join(dir, 'a.env');
    const b = path.join(dir, 'b.env');
    writeFileSync(a, 'A=1\r\nAPI_TOKEN=old # c\r\nB=2\r\n');
    writeFileSync(b, 'A=1\r\nB=2');
    const token = makeToken();
    await rotate(envTarget({ path: a }), token);
    await rotate(envTarget({ path: b }), token);
    expect(readFileSync(a, 'utf8')).toBe(`A=1\r\nAPI_TOKEN=${token} # c\r\nB=2\r\n`);
    expect(readFileSync(b, 'utf8')).toBe(`A=1\r\nB=2\r\nAPI_TOKEN=${token}`);
  });

  it('keeps bytes that are not UTF-8', async () => {
    const file = path.join(tempDir(), '.env');
    const before = Buffer.concat([Buffer.from('# caf'), Buffer.from([0xe9, 0xff, 0x00]), Buffer.from('\nAPI_TOKEN=old\n')]);
    writeFileSync(file, before);
    const token = makeToken();
    await rotate(envTarget({ path: file }), token);
    const expected = Buffer.concat([Buffer.from('# caf'), Buffer.from([0xe9, 0xff, 0x00]), Buffer.from(`\nAPI_TOKEN=${token}\n`)]);
    expect(readFileSync(file).equals(expected)).toBe(true);
  });

  it('a retried stage writes the same bytes', async () => {
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, 'A=1\nAPI_TOKEN=old\n');
    const t = envTarget({ path: file, previousKey: 'API_TOKEN_PREVIOUS' });
    const ctx = makeContext('test', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    const once = readFileSync(file);
    await t.stage(ctx, snap);
    expect(readFileSync(file).equals(once)).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(`A=1\nAPI_TOKEN=${ctx.token!.reveal()}\nAPI_TOKEN_PREVIOUS=old\n`);
  });
});

describe('env-file target: previousKey', () => {
  it('stage copies the old value to previousKey; retire removes it and nothing else', async () => {
    const file = path.join(tempDir(), '.env');
    const old = makeToken();
    writeFileSync(file, `# c\nAPI_TOKEN=${old}\nexport API_TOKEN_PREVIOUS='stale' # x\nB=2\n`);
    const t = envTarget({ path: file, previousKey: 'API_TOKEN_PREVIOUS' });
    const next = makeToken();
    await rotate(t, next, old);
    expect(readFileSync(file, 'utf8')).toBe(`# c\nAPI_TOKEN=${next}\nexport API_TOKEN_PREVIOUS='${old}' # x\nB=2\n`);
    const log = captureLogger();
    await t.retire({ policy: 'test', now: new Date(), previousSha256: sha256(old), log });
    expect(readFileSync(file, 'utf8')).toBe(`# c\nAPI_TOKEN=${next}\nB=2\n`);
    await t.retire({ policy: 'test', now: new Date(), previousSha256: sha256(old), log });
    expect(readFileSync(file, 'utf8')).toBe(`# c\nAPI_TOKEN=${next}\nB=2\n`);
    expect(log.text()).not.toContain(old);
    expect(log.text()).not.toContain(next);
  });

  it('without an old KEY there is no previous token: a stale previousKey line goes, and rollback puts it back where it was', async () => {
    const file = path.join(tempDir(), '.env');
    const before = 'API_TOKEN_PREVIOUS=stale\nA=1\n';
    writeFileSync(file, before);
    const t = envTarget({ path: file, previousKey: 'API_TOKEN_PREVIOUS' });
    const token = makeToken();
    const { ctx, snap } = await rotate(t, token);
    expect(readFileSync(file, 'utf8')).toBe(`A=1\nAPI_TOKEN=${token}\n`);
    await t.rollback(ctx, snap);
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('retire leaves a previous token whose hash is not the one whose grace ended', async () => {
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, 'API_TOKEN=new\nAPI_TOKEN_PREVIOUS=newer_previous\n');
    const t = envTarget({ path: file, previousKey: 'API_TOKEN_PREVIOUS' });
    await t.retire({ policy: 'test', now: new Date(), previousSha256: sha256('some_older_token'), log: captureLogger() });
    expect(readFileSync(file, 'utf8')).toBe('API_TOKEN=new\nAPI_TOKEN_PREVIOUS=newer_previous\n');
  });

  it('retire without previousKey, or on a missing file, is a no-op', async () => {
    const file = path.join(tempDir(), '.env');
    await envTarget({ path: file, previousKey: 'P' }).retire({ policy: 'test', now: new Date(), log: captureLogger() });
    writeFileSync(file, 'API_TOKEN=x\nP=y\n');
    await envTarget({ path: file }).retire({ policy: 'test', now: new Date(), log: captureLogger() });
    expect(readFileSync(file, 'utf8')).toBe('API_TOKEN=x\nP=y\n');
  });

  it('refuses previousKey equal to key', () => {
    expect(() => envTarget({ path: '/tmp/x.env', previousKey: 'API_TOKEN' })).toThrow(RekeyError);
  });

  it('refuses (before writing) an old value that cannot be copied into previousKey as is', async () => {
    const file = path.join(tempDir(), '.env');
    const before = 'API_TOKEN="hand made $secret"\n';
    writeFileSync(file, before);
    const t = envTarget({ path: file, previousKey: 'API_TOKEN_PREVIOUS' });
    const err = await failure(t.snapshot(makeContext('test', makeToken(), 2)));
    expect(err.message).toContain('cannot be copied into API_TOKEN_PREVIOUS');
    expect(err.message).not.toContain('hand made');
    expect(readFileSync(file, 'utf8')).toBe(before);
  });
});

describe('env-file target: duplicates', () => {
  it('a key that appears twice is an error before anything is written', async () => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    const before = '# c\nA=1\nAPI_TOKEN=tok_first_value\n\n# later\n\nexport API_TOKEN=tok_second_value\n';
    writeFileSync(file, before);
    const t = envTarget({ path: file });
    const err = await failure(t.snapshot(makeContext('test', makeToken(), 2)));
    expect(err.code).toBe('TARGET');
    expect(err.message).toContain(`API_TOKEN appears 2 times in ${file} (lines 3 and 7); fix the file by hand, rekey will not guess which one is live`);
    expect(err.message).toContain(t.description);
    expect(err.message).not.toContain('tok_first_value');
    expect(err.message).not.toContain('tok_second_value');
    expect(readFileSync(file, 'utf8')).toBe(before);
    expect(tempFiles(dir)).toEqual([]);
  });

  it('a duplicated previousKey is an error too', async () => {
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, 'API_TOKEN=x\nPREV=a\nPREV=b\n');
    const err = await failure(envTarget({ path: file, previousKey: 'PREV' }).snapshot(makeContext('test', makeToken(), 2)));
    expect(err.message).toContain('PREV appears 2 times');
  });

  it('a duplicate that appears between snapshot and stage stops the stage, file unchanged', async () => {
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, 'API_TOKEN=x\n');
    const t = envTarget({ path: file });
    const ctx = makeContext('test', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    writeFileSync(file, 'API_TOKEN=x\nAPI_TOKEN=y\n');
    await failure(t.stage(ctx, snap));
    expect(readFileSync(file, 'utf8')).toBe('API_TOKEN=x\nAPI_TOKEN=y\n');
    await failure(t.readBack());
  });
});

describe('env-file target: modes, owners, symlinks', () => {
  for (const mask of [0, 0o022]) {
    it(`a new file is 0600 under umask ${mask.toString(8).padStart(3, '0')}`, async () => {
      const file = path.join(tempDir(), '.env');
      const saved = process.umask(mask);
      try {
        const token = makeToken();
        await rotate(envTarget({ path: file }), token);
        expect(statSync(file).mode & 0o777).toBe(0o600);
        expect(readFileSync(file, 'utf8')).toBe(`API_TOKEN=${token}\n`);
      } finally {
        process.umask(saved);
      }
    });
  }

  it('an existing file keeps its mode (0640), also after rollback', async () => {
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, 'API_TOKEN=old\n');
    chmodSync(file, 0o640);
    const t = envTarget({ path: file });
    const { ctx, snap } = await rotate(t, makeToken());
    expect(statSync(file).mode & 0o777).toBe(0o640);
    await t.rollback(ctx, snap);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(readFileSync(file, 'utf8')).toBe('API_TOKEN=old\n');
  });

  it('a world-readable env file is kept as it is, with a warning that holds no token', async () => {
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, 'API_TOKEN=old\n');
    chmodSync(file, 0o644);
    const log = captureLogger();
    const token = makeToken();
    const t = envTarget({ path: file });
    const ctx = makeContext('test', token, 2, undefined, log);
    await t.stage(ctx, await t.snapshot(ctx));
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(log.text()).toContain('world-readable');
    expect(log.text()).not.toContain(token);
  });

  it('an existing file keeps its owner and group (root only: only root can give files away)', async (tc) => {
    if (!isRoot) tc.skip();
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, 'API_TOKEN=old\n');
    chownSync(file, 4321, 4322);
    const t = envTarget({ path: file });
    const { ctx, snap } = await rotate(t, makeToken());
    expect([statSync(file).uid, statSync(file).gid]).toEqual([4321, 4322]);
    await t.rollback(ctx, snap);
    expect([statSync(file).uid, statSync(file).gid]).toEqual([4321, 4322]);
  });

  it('a symlink is refused by default: nothing is written through it', async () => {
    const dir = tempDir();
    const real = path.join(dir, 'real.env');
    const link = path.join(dir, 'link.env');
    writeFileSync(real, 'API_TOKEN=old\n');
    symlinkSync(real, link);
    const err = await failure(envTarget({ path: link }).snapshot(makeContext('test', makeToken(), 2)));
    expect(err.message).toContain('is a symlink');
    expect(err.message).toContain('followSymlinks');
    expect(readFileSync(real, 'utf8')).toBe('API_TOKEN=old\n');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
  });

  it('with followSymlinks it writes to the destination and the link survives', async () => {
    const dir = tempDir();
    const real = path.join(dir, 'real.env');
    const link = path.join(dir, 'link.env');
    writeFileSync(real, 'A=1\nAPI_TOKEN=old\n');
    symlinkSync(real, link);
    const t = envTarget({ path: link, followSymlinks: true });
    const token = makeToken();
    const { ctx, snap } = await rotate(t, token);
    expect(snap.meta.realPath).toBe(real);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, 'utf8')).toBe(`A=1\nAPI_TOKEN=${token}\n`);
    expect(await t.readBack()).toBe(sha256(token));
    await t.rollback(ctx, snap);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, 'utf8')).toBe('A=1\nAPI_TOKEN=old\n');
  });

  it('a path that became a symlink after the snapshot is refused at stage', async () => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    const other = path.join(dir, 'other.env');
    writeFileSync(file, 'API_TOKEN=old\n');
    writeFileSync(other, 'API_TOKEN=other\n');
    const t = envTarget({ path: file });
    const ctx = makeContext('test', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    rmSync(file);
    symlinkSync(other, file);
    await failure(t.stage(ctx, snap));
    expect(readFileSync(other, 'utf8')).toBe('API_TOKEN=other\n');
  });

  it('a directory at the path is refused', async () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, '.env'));
    const err = await failure(envTarget({ path: path.join(dir, '.env') }).snapshot(makeContext('test', makeToken(), 2)));
    expect(err.message).toContain('not a regular file');
  });
});

describe('env-file target: failures leave the file as it was', () => {
  it('a directory that refuses writes: one line naming the file and errno, bytes unchanged, no temp file', async (tc) => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    const before = '# c\nAPI_TOKEN=old\n';
    writeFileSync(file, before);
    chmodSync(file, 0o640);
    const t = envTarget({ path: file });
    const token = makeToken();
    const ctx = makeContext('test', token, 2);
    const snap = await t.snapshot(ctx);
    if (!makeUnwritable(dir)) tc.skip(); // neither chmod nor chattr +i can stop this user here
    const err = await failure(t.stage(ctx, snap));
    expect(err.code).toBe('TARGET_PERMISSION');
    expect(err.message).toContain(t.description);
    expect(err.message).toMatch(/\((EACCES|EPERM)\)/);
    expect(err.message).toContain(`write access to the directory ${dir}`);
    expect(renderError(err)).not.toContain(token);
    expect(String(err.stack)).not.toContain(token);
    expect(readFileSync(file, 'utf8')).toBe(before);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(tempFiles(dir)).toEqual([]);
  });

  it('a missing parent directory: ENOENT, and nothing is created', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'missing', '.env');
    const t = envTarget({ path: file });
    const ctx = makeContext('test', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    expect(snap.meta.existed).toBe(false);
    const err = await failure(t.stage(ctx, snap));
    expect(err.message).toContain('(ENOENT)');
    expect(err.message).toContain(`create the directory ${path.join(dir, 'missing')} first`);
    expect(readdirSync(dir)).toEqual([]);
    await t.rollback(ctx, snap); // nothing to undo
  });

  it('a parent that is a regular file: ENOTDIR, also for root', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'blocker'), 'x');
    const err = await failure(envTarget({ path: path.join(dir, 'blocker', '.env') }).snapshot(makeContext('test', makeToken(), 2)));
    expect(err.message).toContain('(ENOTDIR)');
    expect(readFileSync(path.join(dir, 'blocker'), 'utf8')).toBe('x');
  });

  it('errno explanations: ENOSPC, EROFS, EDQUOT say what to do in one line', () => {
    for (const code of ['ENOSPC', 'EROFS', 'EDQUOT', 'EACCES', 'ENOENT']) {
      const e = Object.assign(new Error(`${code}: something, open '/srv/app/.env'`), { code, syscall: 'open' });
      const err = explainFsError(e, 'env-file /srv/app/.env API_TOKEN', 'write', '/srv/app/.env');
      expect(err).toBeInstanceOf(RekeyError);
      expect(err.message).toContain(`(${code})`);
      expect(err.message).toContain('env-file /srv/app/.env API_TOKEN');
      expect(err.message).toContain('; ');
      expect(err.message).not.toContain('\n');
    }
    expect(explainFsError(Object.assign(new Error('x'), { code: 'EACCES' }), 'w', 'write', '/a/b').code).toBe('TARGET_PERMISSION');
    expect(explainFsError(Object.assign(new Error('x'), { code: 'EAGAIN' }), 'w', 'write', '/a/b').transient).toBe(true);
  });

  it('rollback into a directory that refuses writes fails cleanly and leaves no temp file', async (tc) => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    writeFileSync(file, 'API_TOKEN=old\n');
    const t = envTarget({ path: file });
    const token = makeToken();
    const { ctx, snap } = await rotate(t, token);
    if (!makeUnwritable(dir)) tc.skip();
    const err = await failure(t.rollback(ctx, snap));
    expect(err.message).not.toContain(token);
    expect(readFileSync(file, 'utf8')).toBe(`API_TOKEN=${token}\n`);
    expect(tempFiles(dir)).toEqual([]);
  });
});

describe('env-file target: snapshot, rollback, read-back', () => {
  it('the snapshot meta holds no token; the old bytes are only in snapshot.secret', async () => {
    const file = path.join(tempDir(), '.env');
    const old = makeToken();
    writeFileSync(file, `API_TOKEN=${old}\n`);
    chmodSync(file, 0o640);
    const snap = await envTarget({ path: file }).snapshot(makeContext('test', makeToken(), 2, old));
    expect(snap.meta).toMatchObject({ existed: true, mode: 0o640, realPath: file });
    expect(JSON.stringify(snap.meta)).not.toContain(old);
    expect(Buffer.from((snap.secret as { content: string }).content, 'base64').toString()).toBe(`API_TOKEN=${old}\n`);
  });

  it('rollback of a file that did not exist removes it; with no stage it does nothing', async () => {
    const dir = tempDir();
    const file = path.join(dir, '.env');
    const t = envTarget({ path: file });
    const { ctx, snap } = await rotate(t, makeToken());
    expect(readdirSync(dir)).toEqual(['.env']);
    await t.rollback(ctx, snap);
    await t.rollback(ctx, snap);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('rollback in a later process, from the journal alone, restores the exact bytes', async () => {
    const file = path.join(tempDir(), '.env');
    const before = 'A=1\r\nAPI_TOKEN="old" # c\r\nB=2';
    writeFileSync(file, before);
    const ctx = makeContext('test', makeToken(), 2);
    const journal = JSON.stringify(await envTarget({ path: file }).snapshot(ctx));
    await envTarget({ path: file }).stage(ctx, JSON.parse(journal));
    const { token: _t, previousToken: _p, ...recovered } = ctx;
    await envTarget({ path: file }).promote(recovered, JSON.parse(journal));
    await envTarget({ path: file }).rollback(recovered, JSON.parse(journal));
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('an incomplete snapshot is refused with one line', async () => {
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, 'API_TOKEN=x\n');
    const t = envTarget({ path: file });
    const err = await failure(t.rollback(makeContext('test', makeToken(), 2), { meta: {}, secret: {} }));
    expect(err.message).toContain('snapshot');
    expect(readFileSync(file, 'utf8')).toBe('API_TOKEN=x\n');
  });

  it('readBack and readCurrentToken read the current value; undefined when absent or empty', async () => {
    const file = path.join(tempDir(), '.env');
    const t = envTarget({ path: file });
    expect(await t.readBack()).toBeUndefined();
    writeFileSync(file, 'A=1\n');
    expect(await t.readBack()).toBeUndefined();
    writeFileSync(file, 'API_TOKEN=\n');
    expect(await t.readBack()).toBeUndefined();
    const token = makeToken();
    writeFileSync(file, `export API_TOKEN="${token}" # c\n`);
    expect(await t.readBack()).toBe(sha256(token));
    const s = await t.readCurrentToken!();
    expect(s?.reveal()).toBe(token);
    expect(String(s)).toBe('[redacted]');
  });
});

describe('env-file target: one file shared by parallel policies', () => {
  it('withFileMutex runs one holder at a time per key, in arrival order', async () => {
    let inside = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        withFileMutex('/some/file', async () => {
          inside++;
          most = Math.max(most, inside);
          await new Promise((r) => setImmediate(r));
          order.push(i);
          inside--;
        }),
      ),
    );
    expect(most).toBe(1);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    // A failing holder releases the lock.
    await expect(withFileMutex('/some/file', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await withFileMutex('/some/file', async () => 42)).toBe(42);
  });

  it('20 parallel stages to 20 keys of one file all end up in the file; rolling one back keeps the others', async () => {
    const file = path.join(tempDir(), '.env');
    writeFileSync(file, '# shared\nA=1\n');
    const keys = Array.from({ length: 20 }, (_, i) => `TOKEN_${i}`);
    const runs = await Promise.all(
      keys.map(async (key) => {
        const t = envTarget({ path: file, key });
        const ctx = makeContext(`p-${key}`, makeToken(), 2);
        const snap = await t.snapshot(ctx);
        await t.stage(ctx, snap);
        return { key, t, ctx, snap };
      }),
    );
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith('# shared\nA=1\n')).toBe(true);
    for (const r of runs) {
      expect(text).toContain(`\n${r.key}=${r.ctx.token!.reveal()}\n`);
      expect(await r.t.readBack()).toBe(r.ctx.sha256);
    }
    const victim = runs[7]!;
    await victim.t.rollback(victim.ctx, victim.snap);
    const after = readFileSync(file, 'utf8');
    expect(after).not.toContain(`${victim.key}=`);
    for (const r of runs) if (r !== victim) expect(after).toContain(`\n${r.key}=${r.ctx.token!.reveal()}\n`);
    // Roll the rest back: the file is as it began.
    for (const r of runs) await r.t.rollback(r.ctx, r.snap);
    expect(readFileSync(file, 'utf8')).toBe('# shared\nA=1\n');
  });

  it('a file created by one policy keeps lines another policy added when the first rolls back', async () => {
    const file = path.join(tempDir(), '.env');
    const a = envTarget({ path: file, key: 'A_TOKEN' });
    const b = envTarget({ path: file, key: 'B_TOKEN' });
    const ca = makeContext('a', makeToken(), 2);
    const cb = makeContext('b', makeToken(), 2);
    const sa = await a.snapshot(ca);
    const sb = await b.snapshot(cb);
    await a.stage(ca, sa);
    await b.stage(cb, sb);
    await a.rollback(ca, sa);
    expect(readFileSync(file, 'utf8')).toBe(`B_TOKEN=${cb.token!.reveal()}\n`);
    await b.rollback(cb, sb);
    expect(readdirSync(path.dirname(file))).toEqual([]);
  });
});

// --- the shared conformance suite -------------------------------------------------------------

function conformanceFixture(previousKey?: string) {
  return async () => {
    const dir = tempDir();
    const file = path.join(dir, 'app.env');
    const target = envTarget({ path: file, ...(previousKey ? { previousKey } : {}) });
    return {
      target,
      holds: 'token' as const,
      async seed(token: string) {
        writeFileSync(file, `# managed by rekey tests\nexport OTHER=1\nAPI_TOKEN=${token}\n`, { mode: 0o600 });
      },
      // Read the file independently of env-text.ts.
      async current() {
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch {
          return undefined;
        }
        const m = /^(?:export\s+)?API_TOKEN=(.*)$/m.exec(text);
        return m && m[1] !== '' ? m[1] : undefined;
      },
      async teardown() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

function brokenFixture(previousKey?: string) {
  return async () => {
    // The parent of the path is a regular file: every lstat, read and write fails with ENOTDIR,
    // for root too.
    const dir = tempDir();
    writeFileSync(path.join(dir, 'not-a-dir'), 'x');
    const target = envTarget({ path: path.join(dir, 'not-a-dir', 'app.env'), ...(previousKey ? { previousKey } : {}) });
    return {
      target,
      async teardown() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
}

runConformance({ name: 'env-file', setup: conformanceFixture(), broken: brokenFixture() });
runConformance({ name: 'env-file with previousKey', setup: conformanceFixture('API_TOKEN_PREVIOUS'), broken: brokenFixture('API_TOKEN_PREVIOUS') });
