/**
 * A full disk, for real: a 64 KiB tmpfs filled to the last block. The target's write fails
 * with ENOSPC, the user sees one line, and the env file is byte-identical (no temp file left).
 * Needs root to mount; skipped elsewhere unless CI is set (then it must run).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/index.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'rekey-full-'));
const mnt = path.join(root, 'disk');
mkdirSync(mnt);
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs', mnt], { stdio: 'ignore' });
  mounted = true;
} catch {
  if (process.env.CI) throw new Error('cannot mount a tmpfs for the disk-full test (CI needs root)');
}

afterAll(() => {
  if (mounted) execFileSync('umount', [mnt]);
  rmSync(root, { recursive: true, force: true });
});

/** Fill the file system: write until ENOSPC. */
function fill(dir: string): void {
  const block = Buffer.alloc(1024, 0x61);
  for (let i = 0; ; i++) {
    try {
      writeFileSync(path.join(dir, `fill-${i}`), block);
    } catch {
      return;
    }
  }
}

async function rekey(args: string[], cwd: string) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), readStdin: async () => Buffer.alloc(0), env: { PATH: process.env.PATH }, cwd, isTTY: false });
  return { code, stdout, stderr };
}

describe.skipIf(!mounted)('a full disk', () => {
  it('a target on a full file system: one line naming ENOSPC, exit 1, the file byte-identical', async () => {
    const env = '# app\nAPI_TOKEN=old-token-value-123\nOTHER=1\n';
    writeFileSync(path.join(mnt, 'app.env'), env, { mode: 0o600 });
    fill(mnt);
    const conf = path.join(root, 'conf');
    mkdirSync(conf);
    writeFileSync(path.join(conf, 'rekey.yaml'), `version: 1\npolicies:\n  - name: api\n    targets:\n      - { type: env-file, path: ${mnt}/app.env, key: API_TOKEN }\n`);
    const r = await rekey(['rotate-now', 'api'], conf);
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')[0]).toMatch(/^FAILED\s+api: .*no space left on device \(ENOSPC\).*rolled back, the old token stays valid$/);
    expect(r.stderr).toBe('');
    expect(readFileSync(path.join(mnt, 'app.env'), 'utf8')).toBe(env);
    expect(readdirSync(mnt).filter((n) => n.includes('.rekey-'))).toEqual([]);
    const state = path.join(conf, '.rekey', 'policies', 'api.json');
    expect(() => readFileSync(state)).toThrow(); // the state was not written
  });

  it('the state directory on a full file system: one line, nothing written to the target', async () => {
    const conf = path.join(root, 'conf2');
    mkdirSync(conf);
    writeFileSync(path.join(conf, 'app.env'), 'API_TOKEN=old\n', { mode: 0o600 });
    writeFileSync(path.join(conf, 'rekey.yaml'), `version: 1\nstate: { dir: ${mnt}/state }\npolicies:\n  - name: api\n    targets:\n      - { type: env-file, path: app.env, key: API_TOKEN }\n`);
    const r = await rekey(['rotate-now', 'api'], conf);
    expect(r.code).toBe(3);
    expect(`${r.stdout}${r.stderr}`).toMatch(/no space left on device|not writable \(ENOSPC\)/);
    expect(readFileSync(path.join(conf, 'app.env'), 'utf8')).toBe('API_TOKEN=old\n');
  });
});
