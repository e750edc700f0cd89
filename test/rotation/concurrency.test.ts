/**
 * Ten `rekey rotate-now` processes on one policy at once. Without --wait the losers exit 1 at
 * once naming the lock holder's pid, and the version goes up by exactly the number of winners;
 * with --wait all ten rotate one after the other, and no update is lost.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, makeTempDir, runRekey as runBuilt, snapshotCli, startRekey as startBuilt, type RunOptions, type RunResult } from '../helpers/cli.js';
import { envValue, listDir, policyDir, readAudit, readState, readText, sha256, type PolicyFiles } from './helpers.js';

afterAll(cleanupTempDirs);

// A private copy of the build: a rebuild elsewhere in the tree mid-run cannot break a child.
let cli: string;
beforeAll(async () => {
  cli = await snapshotCli();
});
const runRekey = (args: string[], opts: RunOptions = {}) => runBuilt(args, { cli, ...opts });
const startRekey = (args: string[], opts: RunOptions = {}) => startBuilt(args, { cli, ...opts });

const N = 10;

async function prepared(): Promise<PolicyFiles> {
  const p = await policyDir(await makeTempDir('rekey-concurrency-'));
  const r = await runRekey(['rotate-now', 'api', '-c', p.configFile], { cwd: p.dir });
  expect(r.code, r.stderr).toBe(0);
  return p;
}

/** Start all N before awaiting any, so that they overlap. */
async function rotateMany(p: PolicyFiles, extra: string[]): Promise<Array<RunResult & { pid: number }>> {
  const runs = Array.from({ length: N }, () => startRekey(['rotate-now', 'api', '-c', p.configFile, ...extra], { cwd: p.dir }));
  return Promise.all(runs.map(async (r) => ({ ...(await r.done), pid: r.pid })));
}

async function expectConsistent(p: PolicyFiles, version: number): Promise<void> {
  const state = (await readState(p.stateDir))!;
  expect(state.version).toBe(version);
  const token = envValue((await readText(p.env))!, 'API_TOKEN')!;
  expect(sha256(token)).toBe(state.currentSha256);
  expect(await readText(p.token)).toBe(`${token}\n`);
  expect(await readText(p.hash)).toBe(`${state.currentSha256}\n`);
  for (const sub of ['journal', 'recovery', 'locks']) expect(await listDir(join(p.stateDir, sub))).toEqual([]);
}

describe('concurrent rotate-now on one policy', () => {
  it('without --wait: the version goes up by exactly the number of runs that exit 0; the others name the holder', async () => {
    const p = await prepared();
    const v0 = (await readState(p.stateDir))!.version;
    const results = await rotateMany(p, []);
    const pids = new Set(results.map((r) => r.pid));
    const won = results.filter((r) => r.code === 0);
    const lost = results.filter((r) => r.code !== 0);
    expect(won.length).toBeGreaterThanOrEqual(1);
    for (const r of lost) {
      expect(r.code, r.stdout + r.stderr).toBe(1);
      const m = /policy api is being rotated by pid (\d+); pass --wait <duration> to wait for it/.exec(r.stdout + r.stderr);
      expect(m, r.stdout + r.stderr).not.toBeNull();
      const holder = Number(m![1]);
      expect(pids.has(holder)).toBe(true);
      expect(holder).not.toBe(r.pid);
    }
    await expectConsistent(p, v0 + won.length);
    const rotated = (await readAudit(p.stateDir)).filter((a) => a.event === 'rotated').map((a) => a.version);
    expect(rotated).toEqual(Array.from({ length: v0 + won.length }, (_, i) => i + 1));
    console.log(`rekey concurrency: ${N} processes without --wait: ${won.length} rotated, ${lost.length} refused (locked)`);
  });

  it('with --wait 30s: all ten rotate, one after the other, and the version goes up by ten', async () => {
    const p = await prepared();
    const v0 = (await readState(p.stateDir))!.version;
    const results = await rotateMany(p, ['--wait', '30s']);
    for (const r of results) expect(r.code, r.stdout + r.stderr).toBe(0);
    await expectConsistent(p, v0 + N);
    const rotated = (await readAudit(p.stateDir)).filter((a) => a.event === 'rotated');
    expect(rotated.map((a) => a.version)).toEqual(Array.from({ length: v0 + N }, (_, i) => i + 1));
    // Each run rotated once: ten different pids wrote the ten new versions.
    expect(new Set(rotated.slice(-N).map((a) => a.pid)).size).toBe(N);
  });
});
