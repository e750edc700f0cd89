/** `rekey status`: the table and the documented --json report, with and without a running daemon. */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Io } from '../../src/cli/command.js';
import { runCli } from '../../src/cli/index.js';
import { buildStatus, renderStatus, type PolicyData, type StatusReport } from '../../src/cli/status.js';
import { loadConfig } from '../../src/config/loader.js';
import { LocalLockProvider } from '../../src/coordination/local-lock.js';
import { jitterOffsetMs } from '../../src/rotation/plan.js';
import { StateStore, type PolicyState } from '../../src/state/store.js';
import { cleanupTempDirs, makeTempDir } from '../helpers/cli.js';

const D = 86_400_000;

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
  - name: billing
    every: 30d
    jitter: 10m
    targets: [{ type: file, path: ./billing.tok }]
  - name: nightly
    schedule: "30 2 * * *"
    timezone: Europe/Berlin
    grace: 2d
    targets: [{ type: file, path: ./nightly.tok }]
  - name: legacy
    every: 7d
    maxAge: 45d
    targets: [{ type: file, path: ./legacy.tok }]
  - name: fresh
    every: 1d
    targets: [{ type: file, path: ./fresh.tok }]
  - name: by-hand
    maxAge: 90d
    targets: [{ type: file, path: ./by-hand.tok }]
`;

function st(policy: string, version: number, rotatedAt: string, previousUntil?: string): PolicyState {
  return {
    policy,
    version,
    rotatedAt,
    currentSha256: 'c'.repeat(64),
    fingerprint: `${policy.slice(0, 4).padEnd(4, 'x')}0000`.slice(0, 8),
    previous: previousUntil ? { sha256: 'b'.repeat(64), fingerprint: 'bbbbbbbb', validUntil: previousUntil } : null,
    targets: [],
  };
}

afterEach(cleanupTempDirs);

describe('rekey status', () => {
  const now = new Date('2025-03-10T12:00:00.000Z');

  async function fixture() {
    const dir = await makeTempDir('rekey-status-');
    await writeFile(join(dir, 'rekey.yaml'), CONFIG);
    const config = await loadConfig(join(dir, 'rekey.yaml'), { env: {} });
    const data = new Map<string, PolicyData>([
      ['billing', { state: st('billing', 3, '2025-03-01T00:00:00.000Z'), attempt: { policy: 'billing', at: '2025-03-01T00:00:00.010Z', result: 'success', version: 3, consecutiveFailures: 0 } }],
      ['nightly', { state: st('nightly', 12, '2025-03-10T01:30:00.000Z', '2025-03-12T01:30:00.000Z'), attempt: { policy: 'nightly', at: '2025-03-10T01:30:00.010Z', result: 'success', consecutiveFailures: 0 } }],
      ['legacy', { state: st('legacy', 1, '2025-01-01T00:00:00.000Z'), attempt: { policy: 'legacy', at: '2025-03-10T11:00:00.000Z', result: 'failure', error: 'legacy: verify command /bin/false exited 1; rolled back, the old token stays valid', consecutiveFailures: 3 } }],
      ['fresh', {}],
      ['by-hand', { state: st('by-hand', 2, '2025-02-01T00:00:00.000Z') }],
    ]);
    return { dir, config, data };
  }

  it('builds the documented JSON report', async () => {
    const { config, data } = await fixture();
    const r: StatusReport = buildStatus(config, data, now, { running: true, pid: 4242, host: 'ops-1', since: '2025-03-09T00:00:00.000Z' });
    expect(r.schemaVersion).toBe(1);
    expect(r.generatedAt).toBe('2025-03-10T12:00:00.000Z');
    expect(r.daemon).toEqual({ running: true, pid: 4242, host: 'ops-1', since: '2025-03-09T00:00:00.000Z' });
    expect(r.policies.map((p) => p.name)).toEqual(['billing', 'nightly', 'legacy', 'fresh', 'by-hand']);
    const billing = r.policies[0]!;
    const off = jitterOffsetMs({ name: 'billing', jitterMs: 600_000 });
    expect(billing).toEqual({
      name: 'billing',
      schedule: { kind: 'every', cron: null, timezone: null, everySeconds: 2_592_000, jitterSeconds: 600 },
      version: 3,
      fingerprint: 'bill0000',
      rotatedAt: '2025-03-01T00:00:00.000Z',
      ageSeconds: 9.5 * 86_400,
      lastAttempt: { result: 'success', at: '2025-03-01T00:00:00.010Z', consecutiveFailures: 0, error: null },
      nextRotation: new Date(Date.parse('2025-03-31T00:00:00.000Z') + off).toISOString(),
      nextRotationInSeconds: Math.round((Date.parse('2025-03-31T00:00:00.000Z') + off - now.getTime()) / 1000),
      due: false,
      graceUntil: null,
      maxAgeSeconds: null,
      stale: false,
      error: null,
    });
    expect(r.policies[1]).toMatchObject({ schedule: { kind: 'schedule', cron: '30 2 * * *', timezone: 'Europe/Berlin', everySeconds: null }, nextRotation: '2025-03-11T01:30:00.000Z', graceUntil: '2025-03-12T01:30:00.000Z', due: false });
    expect(r.policies[2]).toMatchObject({ stale: true, due: true, maxAgeSeconds: 45 * 86_400, lastAttempt: { result: 'failure', consecutiveFailures: 3 }, nextRotation: '2025-01-08T00:00:00.000Z' });
    expect(r.policies[3]).toMatchObject({ version: null, rotatedAt: null, ageSeconds: null, lastAttempt: null, due: true, nextRotation: now.toISOString(), stale: false });
    expect(r.policies[4]).toMatchObject({ schedule: { kind: 'manual' }, nextRotation: null, nextRotationInSeconds: null, due: false, stale: false });
  });

  it('renders one row per policy with absolute and relative next times', async () => {
    const { config, data } = await fixture();
    const text = renderStatus(buildStatus(config, data, now, { running: false }), now);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^POLICY\s+VERSION\s+AGE\s+LAST RESULT\s+NEXT ROTATION\s+GRACE UNTIL\s+STALE$/);
    const row = (name: string) => lines.find((l) => l.startsWith(`${name} `))!;
    expect(row('billing')).toMatch(/^billing\s+v3\s+9d 12h\s+ok 9d 11h ago\s+2025-03-31T00:\d\d:\d\dZ \(in 20d 12h\)\s+-\s+-$/);
    expect(row('nightly')).toMatch(/^nightly\s+v12\s+10h 30m\s+ok 10h 29m ago\s+2025-03-11T01:30:00Z \(in 13h 30m\)\s+2025-03-12T01:30:00Z\s+-$/);
    expect(row('legacy')).toMatch(/^legacy\s+v1\s+68d 12h\s+FAILED x3 1h ago\s+overdue since 2025-01-08T00:00:00Z \(61d 12h ago\)\s+-\s+YES \(maxAge 45d\)$/);
    expect(row('fresh')).toMatch(/^fresh\s+-\s+-\s+never\s+now \(first rotation\)\s+-\s+-$/);
    expect(row('by-hand')).toMatch(/^by-hand\s+v2\s+37d 12h\s+ok 37d 12h ago\s+manual\s+-\s+no$/);
    expect(text).toContain('legacy: last error: legacy: verify command /bin/false exited 1; rolled back, the old token stays valid');
    expect(text.trimEnd().split('\n').at(-1)).toMatch(/^daemon: not running on .*state$/);
  });

  it('works from the command line with and without a daemon, and prints --json', async () => {
    const dir = await makeTempDir('rekey-status-');
    await writeFile(join(dir, 'rekey.yaml'), CONFIG);
    // No state directory at all yet: still works.
    const empty = await rekey(['status', '-c', 'rekey.yaml'], dir);
    expect(empty.code).toBe(0);
    expect(empty.stderr).toBe('');
    expect(empty.stdout).toContain('never');
    expect(empty.stdout).toContain('daemon: not running');

    const store = new StateStore(join(dir, 'state'));
    await store.init();
    const rotatedAt = new Date(Date.now() - 2 * D).toISOString();
    await store.write(st('billing', 5, rotatedAt));
    await store.recordAttempt('billing', 'success', new Date(rotatedAt), { version: 5 });
    const lock = await new LocalLockProvider(store.path('locks')).acquire('.daemon', { purpose: 'daemon' });
    try {
      const r = await rekey(['status', '-c', 'rekey.yaml', '--json'], dir);
      expect(r.code).toBe(0);
      const report = JSON.parse(r.stdout) as StatusReport;
      expect(report.schemaVersion).toBe(1);
      expect(report.daemon).toMatchObject({ running: true, pid: process.pid });
      expect(report.stateDir).toBe(join(dir, 'state'));
      const billing = report.policies.find((p) => p.name === 'billing')!;
      expect(billing).toMatchObject({ version: 5, rotatedAt, due: false, lastAttempt: { result: 'success' } });
      expect(billing.ageSeconds).toBeGreaterThanOrEqual(2 * 86_400);
      expect(Object.keys(billing).sort()).toEqual(['ageSeconds', 'due', 'error', 'fingerprint', 'graceUntil', 'lastAttempt', 'maxAgeSeconds', 'name', 'nextRotation', 'nextRotationInSeconds', 'rotatedAt', 'schedule', 'stale', 'version']);
      const text = await rekey(['status', '-c', 'rekey.yaml'], dir);
      expect(text.stdout).toContain(`daemon: running (pid ${process.pid}`);
    } finally {
      await lock.release();
    }
  });

  it('a corrupt state file is reported on its row, not as a crash', async () => {
    const dir = await makeTempDir('rekey-status-');
    await writeFile(join(dir, 'rekey.yaml'), CONFIG);
    const store = new StateStore(join(dir, 'state'));
    await store.init();
    await writeFile(store.path('policies', 'billing.json'), '{not json');
    const r = await rekey(['status', '-c', 'rekey.yaml', '--json'], dir);
    expect(r.code).toBe(0);
    const billing = (JSON.parse(r.stdout) as StatusReport).policies[0]!;
    expect(billing.error).toContain('corrupt');
  });

  it('a config error is exit 2 with one line', async () => {
    const dir = await makeTempDir('rekey-status-');
    await writeFile(join(dir, 'rekey.yaml'), 'version: 2\npolicies: []\n');
    const r = await rekey(['status', '-c', 'rekey.yaml'], dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^rekey: .*version must be 1\n$/);
  });
});
