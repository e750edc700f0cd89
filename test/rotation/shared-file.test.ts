/**
 * Two policies that share one env file, rotated at the same time by two processes (think: the
 * daemon rotates one while an SRE runs rotate-now on the other). Each read-modify-write of the
 * file is locked across processes, so neither loses the other's line: at the end every key in
 * the file holds the token whose hash the state has.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertBuilt, cleanupTempDirs, makeTempDir, runRekey } from '../helpers/cli.js';

afterAll(cleanupTempDirs);
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('two processes, two policies, one env file', () => {
  it('no lost update after many concurrent rotations', async () => {
    assertBuilt();
    const dir = await makeTempDir('rekey-shared-');
    const n = 20; // policies per process; every one is a key of the same file
    const names = (g: string) => Array.from({ length: n }, (_, i) => `${g}${i}`);
    const all = [...names('a'), ...names('b')];
    await fsp.writeFile(join(dir, 'app.env'), `# shared\n${all.map((p) => `${p.toUpperCase()}_TOKEN=initial`).join('\n')}\nKEEP=1\n`, { mode: 0o600 });
    await fsp.writeFile(
      join(dir, 'rekey.yaml'),
      `version: 1\nconcurrency: 4\npolicies:\n${all.map((p) => `  - name: ${p}\n    targets: [{ type: env-file, path: app.env, key: ${p.toUpperCase()}_TOKEN }]\n`).join('')}`,
    );
    const rounds = 3;
    for (let round = 0; round < rounds; round++) {
      // Two processes at once, each rotating its own 20 policies: 40 read-modify-writes of one file.
      const [ra, rb] = await Promise.all([runRekey(['rotate-now', ...names('a'), '--wait', '30s'], { cwd: dir }), runRekey(['rotate-now', ...names('b'), '--wait', '30s'], { cwd: dir })]);
      expect(ra.code, ra.stdout + ra.stderr).toBe(0);
      expect(rb.code, rb.stdout + rb.stderr).toBe(0);
    }
    const text = await fsp.readFile(join(dir, 'app.env'), 'utf8');
    const lost: string[] = [];
    for (const p of all) {
      const state = JSON.parse(await fsp.readFile(join(dir, '.rekey', 'policies', `${p}.json`), 'utf8'));
      expect(state.version).toBe(rounds);
      const value = new RegExp(`^${p.toUpperCase()}_TOKEN=(.+)$`, 'm').exec(text)?.[1];
      if (!value || sha(value) !== state.currentSha256) lost.push(p);
    }
    expect(lost, 'keys whose value in the file is not the token in state (a lost update)').toEqual([]);
    expect(text.startsWith('# shared\n')).toBe(true);
    expect(text.endsWith('\nKEEP=1\n')).toBe(true);
    expect(await fsp.readdir(join(dir, '.rekey', 'locks'))).toEqual([]);
  });
});
