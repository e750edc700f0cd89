import { spawnSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fsyncDir, mkdirp, sweepDeadTemps, writeFileAtomic } from '../../src/util/fs-atomic.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'rekey-fsatomic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fs-atomic', () => {
  it('writes atomically with the exact mode whatever the umask, and leaves no temp file', async () => {
    const old = process.umask(0o077);
    try {
      await writeFileAtomic(path.join(dir, 'a'), 'x', { mode: 0o640 });
    } finally {
      process.umask(old);
    }
    expect(statSync(path.join(dir, 'a')).mode & 0o777).toBe(0o640);
    await writeFileAtomic(path.join(dir, 'a'), 'y', { mode: 0o600, durable: false });
    expect(readFileSync(path.join(dir, 'a'), 'utf8')).toBe('y');
    expect(readdirSync(dir).filter((n) => n.includes('.rekey-'))).toEqual([]);
  });

  it('a failed write leaves the old file and no temp file', async () => {
    const file = path.join(dir, 'nodir', 'b');
    await expect(writeFileAtomic(file, 'x', { mode: 0o600, what: 'test file' })).rejects.toThrow(/cannot write test file: no such file or directory \(ENOENT\)/);
  });

  it('coalesces concurrent directory syncs and every caller resolves', async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => writeFileAtomic(path.join(dir, `c${i}`), String(i), { mode: 0o600 })));
    await Promise.all([fsyncDir(dir), fsyncDir(dir), fsyncDir(dir)]);
    expect(readFileSync(path.join(dir, 'c49'), 'utf8')).toBe('49');
  });

  it('mkdirp creates nested directories and fails (does not spin) where none can exist', async () => {
    await mkdirp(path.join(dir, 'x', 'y', 'z'), 0o700);
    expect(statSync(path.join(dir, 'x', 'y', 'z')).isDirectory()).toBe(true);
    await expect(mkdirp('/proc/self/rekey-cannot-exist/sub', 0o700)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('sweepDeadTemps removes temp files of dead writers only', async () => {
    const file = path.join(dir, 'app.env');
    writeFileSync(file, 'A=1\n');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout);
    const live = spawn('sleep', ['5']);
    try {
      writeFileSync(path.join(dir, `.app.env.rekey-${deadPid}-0123456789ab.tmp`), 'token');
      writeFileSync(path.join(dir, `.app.env.rekey-${live.pid}-0123456789ab.tmp`), 'token');
      writeFileSync(path.join(dir, `.other.env.rekey-${deadPid}-0123456789ab.tmp`), 'token');
      expect(await sweepDeadTemps(file)).toBe(1);
      const left = readdirSync(dir).filter((n) => n.includes('.rekey-')).sort();
      expect(left).toEqual([`.app.env.rekey-${live.pid}-0123456789ab.tmp`, `.other.env.rekey-${deadPid}-0123456789ab.tmp`].sort());
    } finally {
      live.kill();
    }
  });
});
