/**
 * `rekey verify`, `rekey retire` and `rekey recover` as real processes, on real files.
 * (Grace expiry in-process, with an injected clock, is in engine.test.ts; here a 1 s grace
 * really runs out.)
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, makeTempDir, runRekey } from '../helpers/cli.js';
import { envValue, listDir, policyDir, readState, readText, type PolicyFiles } from './helpers.js';

afterAll(cleanupTempDirs);

async function rotate(p: PolicyFiles): Promise<string> {
  const r = await runRekey(['rotate-now', 'api', '-c', p.configFile], { cwd: p.dir });
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return envValue((await readText(p.env))!, 'API_TOKEN')!;
}

const verify = (p: PolicyFiles, token: string, extra: string[] = []) => runRekey(['verify', 'api', '-c', p.configFile, ...extra], { cwd: p.dir, input: `${token}\n` });

describe('rekey verify / retire / recover', () => {
  it('verify: current (exit 0), previous within grace (exit 0, with its expiry), anything else (exit 1)', async () => {
    const p = await policyDir(await makeTempDir('rekey-cmd-'));
    const v1 = await rotate(p);
    const v2 = await rotate(p);
    const validUntil = (await readState(p.stateDir))!.previous!.validUntil;

    const cur = await verify(p, v2);
    expect([cur.code, cur.stdout]).toEqual([0, 'current\n']);
    const prev = await verify(p, v1);
    expect([prev.code, prev.stdout]).toEqual([0, `previous (valid until ${validUntil})\n`]);
    const other = await verify(p, 'some-token-nobody-issued');
    expect([other.code, other.stdout]).toEqual([1, 'no match\n']);
    const json = await verify(p, v1, ['--json']);
    expect(JSON.parse(json.stdout)).toEqual({ policy: 'api', match: 'previous', validUntil });
    for (const r of [cur, prev, other, json]) {
      expect(r.stdout + r.stderr).not.toContain(v1);
      expect(r.stdout + r.stderr).not.toContain(v2);
    }
  });

  it('retire, once the grace has ended, removes the previousKey line and the previous hash (before: engine.test.ts)', async () => {
    const p = await policyDir(await makeTempDir('rekey-cmd-'), { grace: '1s' });
    const v1 = await rotate(p);
    await rotate(p);
    await new Promise((r) => setTimeout(r, 1_200)); // let the 1 s grace end
    const before = (await readText(p.env))!;
    const late = await runRekey(['retire', '--all', '-c', p.configFile], { cwd: p.dir });
    expect(late.code, late.stdout + late.stderr).toBe(0);
    expect(late.stdout).toMatch(/^(retired\s+api|1 retired)/m);
    expect(await readText(p.env)).toBe(before.replace(/^API_TOKEN_PREVIOUS=.*\n/m, ''));
    expect((await readState(p.stateDir))!.previous).toBeNull();
    const prev = await verify(p, v1);
    expect([prev.code, prev.stdout]).toEqual([1, 'no match\n']);
  });

  it('recover with nothing to do changes nothing and exits 0', async () => {
    const p = await policyDir(await makeTempDir('rekey-cmd-'));
    await rotate(p);
    const before = await readText(p.env);
    const r = await runRekey(['recover', '-c', p.configFile], { cwd: p.dir });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('0 recovered, 1 unchanged');
    // Targets are described as the targets describe themselves (as in rotate-now's output and state).
    expect(r.stdout).toContain(`unchanged api -> env-file ${p.env} API_TOKEN, file ${p.token} token, file ${p.hash} sha256`);
    expect(await readText(p.env)).toBe(before);
    expect(await listDir(join(p.stateDir, 'journal'))).toEqual([]);
  });
});
