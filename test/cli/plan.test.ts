/** `rekey plan`: every expected rotation in the next N days, in time order; text and --json. */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Io } from '../../src/cli/command.js';
import { runCli } from '../../src/cli/index.js';
import { buildPlan, renderPlan, type PlanReport } from '../../src/cli/plan.js';
import { loadConfig } from '../../src/config/loader.js';
import { StateStore } from '../../src/state/store.js';
import { cleanupTempDirs, makeTempDir } from '../helpers/cli.js';

async function rekey(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: Io = {
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
    readStdin: async () => Buffer.alloc(0),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    cwd,
    isTTY: false,
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

const CONFIG = `version: 1
state:
  dir: ./state
policies:
  - name: daily
    schedule: "0 6 * * *"
    timezone: America/New_York
    targets: [{ type: file, path: ./daily.tok }]
  - name: every-36h
    every: 36h
    targets: [{ type: file, path: ./e.tok }]
  - name: brand-new
    every: 30d
    targets: [{ type: file, path: ./n.tok }]
  - name: by-hand
    targets: [{ type: file, path: ./m.tok }]
`;

afterEach(cleanupTempDirs);

async function configIn(dir: string) {
  await writeFile(join(dir, 'rekey.yaml'), CONFIG);
  return loadConfig(join(dir, 'rekey.yaml'), { env: {} });
}

describe('rekey plan', () => {
  const now = new Date('2025-03-01T12:00:00.000Z');

  it('lists cron ticks and every intervals in time order, with first and overdue rotations at "now"', async () => {
    const config = await configIn(await makeTempDir('rekey-plan-'));
    const states = new Map([
      ['daily', { rotatedAt: '2025-03-01T11:00:00.000Z' }],
      ['every-36h', { rotatedAt: '2025-02-27T00:00:00.000Z' }], // due 2025-02-28T12:00Z: overdue
    ]);
    const r: PlanReport = buildPlan(config, states, now, 3);
    expect(r).toMatchObject({ schemaVersion: 1, from: '2025-03-01T12:00:00.000Z', until: '2025-03-04T12:00:00.000Z', days: 3, manual: ['by-hand'], truncated: [], errors: [] });
    expect(r.rotations.map((x) => `${x.at} ${x.policy} ${x.kind} ${x.reason}`)).toEqual([
      '2025-03-01T12:00:00.000Z brand-new every first',
      '2025-03-01T12:00:00.000Z every-36h every overdue',
      '2025-03-02T11:00:00.000Z daily schedule scheduled', // 06:00 EST
      '2025-03-03T00:00:00.000Z every-36h every scheduled',
      '2025-03-03T11:00:00.000Z daily schedule scheduled',
      '2025-03-04T11:00:00.000Z daily schedule scheduled',
      '2025-03-04T12:00:00.000Z every-36h every scheduled', // the window includes its end
    ]);
    const text = renderPlan(r, config, now);
    expect(text.split('\n')).toEqual([
      'Rotations expected in the next 3 days (2025-03-01T12:00:00Z to 2025-03-04T12:00:00Z):',
      '2025-03-01T12:00:00Z  now        brand-new  first rotation (never rotated)',
      '2025-03-01T12:00:00Z  now        every-36h  overdue: every 36h',
      '2025-03-02T11:00:00Z  in 23h     daily      schedule "0 6 * * *" America/New_York',
      '2025-03-03T00:00:00Z  in 1d 12h  every-36h  every 36h',
      '2025-03-03T11:00:00Z  in 1d 23h  daily      schedule "0 6 * * *" America/New_York',
      '2025-03-04T11:00:00Z  in 2d 23h  daily      schedule "0 6 * * *" America/New_York',
      '2025-03-04T12:00:00Z  in 3d      every-36h  every 36h',
      '7 rotations',
      'manual only (rotate-now): by-hand',
      '',
    ]);
  });

  it('crosses a DST change at the wall-clock time', async () => {
    const config = await configIn(await makeTempDir('rekey-plan-'));
    const r = buildPlan(config, new Map([['daily', { rotatedAt: '2025-03-08T11:00:00.000Z' }], ['every-36h', { rotatedAt: '2025-03-08T11:00:00.000Z' }], ['brand-new', { rotatedAt: '2025-03-08T11:00:00.000Z' }]]), new Date('2025-03-08T12:00:00.000Z'), 2);
    // New York springs forward on 2025-03-09: 06:00 EST is 11:00Z, 06:00 EDT is 10:00Z.
    expect(r.rotations.filter((x) => x.policy === 'daily').map((x) => x.at)).toEqual(['2025-03-09T10:00:00.000Z', '2025-03-10T10:00:00.000Z']);
  });

  it('works from the command line, with --days and --json; bad --days is exit 2', async () => {
    const dir = await makeTempDir('rekey-plan-');
    await configIn(dir);
    const store = new StateStore(join(dir, 'state'));
    await store.init();
    await store.write({ policy: 'every-36h', version: 2, rotatedAt: new Date().toISOString(), currentSha256: 'a'.repeat(64), fingerprint: 'aaaaaaaa', previous: null, targets: [] });
    const json = await rekey(['plan', '-c', 'rekey.yaml', '--days', '2', '--json'], dir);
    expect(json.code).toBe(0);
    const r = JSON.parse(json.stdout) as PlanReport;
    expect(Object.keys(r).sort()).toEqual(['days', 'errors', 'from', 'generatedAt', 'manual', 'rotations', 'schemaVersion', 'truncated', 'until']);
    expect(r.days).toBe(2);
    const sorted = [...r.rotations].sort((a, b) => a.at.localeCompare(b.at));
    expect(r.rotations).toEqual(sorted);
    expect(r.rotations.filter((x) => x.policy === 'every-36h')).toHaveLength(1);
    expect(r.rotations.filter((x) => x.policy === 'daily').length).toBeGreaterThanOrEqual(2);
    expect(Object.keys(r.rotations[0]!).sort()).toEqual(['at', 'kind', 'policy', 'reason']);

    const text = await rekey(['plan', '-c', 'rekey.yaml'], dir);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^Rotations expected in the next 7 days/);

    for (const bad of ['0', 'abc', '1.5', '9999', '-1']) {
      const r2 = await rekey(['plan', '-c', 'rekey.yaml', `--days=${bad}`], dir);
      expect(r2.code).toBe(2);
      expect(r2.stderr).toContain('--days must be a whole number');
    }
  });

  it('says so when nothing is expected', async () => {
    const dir = await makeTempDir('rekey-plan-');
    await writeFile(join(dir, 'rekey.yaml'), 'version: 1\npolicies:\n  - name: m\n    targets: [{ type: file, path: ./m.tok }]\n');
    const r = await rekey(['plan', '-c', 'rekey.yaml', '--days', '1'], dir);
    expect(r.stdout).toMatch(/^No rotations expected in the next 1 day \(.*\)\.\nmanual only \(rotate-now\): m\n$/);
  });
});
