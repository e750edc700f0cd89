/**
 * The daemon lifecycle in-process, with the real engine, real openssl and file targets in temp
 * dirs: catch-up, one daemon per state dir, SIGHUP reloads (valid and invalid), graceful
 * shutdown with a rotation in flight, and the /metrics and /healthz endpoints.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/loader.js';
import { formatProblem } from '../../src/config/types.js';
import { Openssl } from '../../src/openssl/index.js';
import { DaemonRuntime, type DaemonOptions } from '../../src/scheduler/daemon.js';
import { StateStore } from '../../src/state/store.js';
import { RekeyError } from '../../src/util/errors.js';
import { ROOT, cleanupTempDirs, makeTempDir, runRekey } from '../helpers/cli.js';
import { memoryLogger } from './helpers.js';

const SLOW_VERIFY = join(ROOT, 'test/fixtures/daemon/slow-verify');

interface PolicySpec {
  name: string;
  every?: string;
  schedule?: string;
  verify?: string[];
  grace?: string;
}

function yaml(policies: PolicySpec[]): string {
  const lines = ['version: 1', 'state:', '  dir: ./state', 'policies:'];
  for (const p of policies) {
    lines.push(`  - name: ${p.name}`);
    if (p.every) lines.push(`    every: ${p.every}`);
    if (p.schedule) lines.push(`    schedule: "${p.schedule}"`);
    if (p.grace) lines.push(`    grace: ${p.grace}`);
    if (p.verify) lines.push(`    verify:`, `      command: ${JSON.stringify(p.verify)}`);
    lines.push('    targets:', '      - type: file', `        path: ./${p.name}.tok`);
  }
  return `${lines.join('\n')}\n`;
}

const runtimes: DaemonRuntime[] = [];

async function daemon(dir: string, over: Partial<DaemonOptions> = {}) {
  const log = memoryLogger();
  const rt = new DaemonRuntime({ configFile: join(dir, 'rekey.yaml'), env: process.env, log, cron: null, ...over });
  runtimes.push(rt);
  return { rt, log };
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  // A safety net, not a timing assertion: the test timeout would catch a hang anyway.
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up waiting for ${what}`);
}

afterEach(async () => {
  for (const rt of runtimes.splice(0)) {
    await rt.shutdown('test cleanup').catch(() => undefined);
    await rt.scheduler?.idle();
  }
  await cleanupTempDirs();
});

describe('daemon lifecycle', () => {
  it('catches up at start, keeps a second daemon off the state directory, and leaves no token in logs', async () => {
    const dir = await makeTempDir('rekey-daemon-');
    await writeFile(join(dir, 'rekey.yaml'), yaml([{ name: 'a', every: '1h' }, { name: 'b', every: '1h' }]));
    const { rt, log } = await daemon(dir);
    await rt.start();
    await rt.scheduler!.idle();
    const store = new StateStore(join(dir, 'state'));
    expect((await store.read('a'))?.version).toBe(1);
    expect((await store.read('b'))?.version).toBe(1);
    const token = (await readFile(join(dir, 'a.tok'), 'utf8')).trim();
    expect(token.length).toBeGreaterThan(20);
    expect(log.text()).not.toContain(token);
    expect(log.lines.find((l) => l.msg.includes('rotated to v1') && l.obj.policy === 'a')?.obj).toMatchObject({ policy: 'a', version: 1 });

    const second = await daemon(dir);
    const err = await second.rt.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RekeyError);
    expect((err as RekeyError).code).toBe('DAEMON_RUNNING');
    expect((err as RekeyError).exitCode).toBe(3);
    expect((err as RekeyError).message).toContain(`pid ${process.pid}`);
    expect((err as RekeyError).message).toContain(resolve(dir, 'state'));

    await expect(rt.shutdown('SIGTERM received')).resolves.toEqual({ drained: true, inFlight: [] });
    // Once the first is gone, a new daemon starts, and rotates nothing that is not due.
    const third = await daemon(dir);
    await third.rt.start();
    await third.rt.scheduler!.idle();
    expect((await store.read('a'))?.version).toBe(1);
    await third.rt.shutdown();
  });

  it('finishes or undoes a rotation a crashed process left behind before it schedules anything', async () => {
    const dir = await makeTempDir('rekey-daemon-');
    await writeFile(join(dir, 'rekey.yaml'), yaml([{ name: 'a', every: '1h' }, { name: 'b', every: '1h' }]));
    expect((await runRekey(['rotate-now', '--all', '-c', 'rekey.yaml'], { cwd: dir })).code).toBe(0);
    const before = await readFile(join(dir, 'a.tok'), 'utf8');
    const crashed = await runRekey(['rotate-now', 'a', '-c', 'rekey.yaml'], { cwd: dir, env: { REKEY_TEST_KILL_AT: 'after-stage', REKEY_TEST_KILL_CONFIRM: 'yes-kill-this-process' } });
    expect(crashed.signal).toBe('SIGKILL');
    expect(existsSync(join(dir, 'state/journal/a.json'))).toBe(true);
    expect(await readFile(join(dir, 'a.tok'), 'utf8')).not.toBe(before); // staged, never committed

    const { rt, log } = await daemon(dir);
    await rt.start();
    await rt.scheduler!.idle();
    expect(existsSync(join(dir, 'state/journal/a.json'))).toBe(false);
    expect(await readFile(join(dir, 'a.tok'), 'utf8')).toBe(before);
    expect((await new StateStore(join(dir, 'state')).read('a'))?.version).toBe(1);
    expect(log.lines.some((l) => l.level === 'warn' && l.msg === 'recovered 1 unfinished rotation(s) left by a previous process')).toBe(true);
  });

  it('SIGHUP with a broken config logs every problem and keeps running the old one; a fixed config is applied', async () => {
    const dir = await makeTempDir('rekey-daemon-');
    const file = join(dir, 'rekey.yaml');
    await writeFile(file, yaml([{ name: 'a', every: '1h' }, { name: 'b', every: '1h' }]));
    const { rt, log } = await daemon(dir);
    await rt.start();
    await rt.scheduler!.idle();

    const broken = yaml([{ name: 'a', every: 'banana' }, { name: 'b', every: '1h' }]).replace('    targets:\n      - type: file\n        path: ./b.tok', '    tagets:\n      - type: file\n        path: ./b.tok');
    await writeFile(file, broken);
    const problems = parseConfigText(broken, file).problems;
    expect(problems.length).toBeGreaterThanOrEqual(2);
    await expect(rt.reload()).resolves.toBe(false);
    const errors = log.lines.filter((l) => l.level === 'error').map((l) => l.msg);
    for (const p of problems) expect(errors).toContain(formatProblem(p));
    expect(errors.some((m) => m.includes('keeping the running config'))).toBe(true);
    expect(rt.scheduler!.policies().map((p) => p.name)).toEqual(['a', 'b']);
    expect(rt.scheduler!.isRunning).toBe(true);
    const metrics = await rt.metrics!.render();
    expect(metrics.body).toContain('rekey_config_reloads_total{result="failure"} 1');

    await writeFile(file, yaml([{ name: 'a', every: '2h' }, { name: 'c', every: '1h' }]));
    await expect(rt.reload()).resolves.toBe(true);
    await rt.scheduler!.idle();
    expect(rt.scheduler!.policies().map((p) => p.name)).toEqual(['a', 'c']);
    expect(rt.scheduler!.policies()[0]!.everyMs).toBe(7_200_000);
    const reloaded = log.lines.find((l) => l.msg.startsWith('config reloaded'));
    expect(reloaded?.obj).toMatchObject({ added: ['c'], removed: ['b'], changed: ['a'] });
    const store = new StateStore(join(dir, 'state'));
    expect((await store.read('c'))?.version).toBe(1); // a new policy starts with a first rotation
    expect((await store.read('a'))?.version).toBe(1); // rescheduled, not due
    expect((await rt.metrics!.render()).body).toContain('rekey_config_reloads_total{result="success"} 1');
  });

  it('SIGTERM lets a rotation in flight finish, then stops', async () => {
    const dir = await makeTempDir('rekey-daemon-');
    const marker = join(dir, 'verify-started');
    await writeFile(join(dir, 'rekey.yaml'), yaml([{ name: 'slow', every: '1h', verify: [SLOW_VERIFY, marker, '1'] }]));
    const { rt, log } = await daemon(dir, { shutdownTimeoutMs: 30_000 });
    await rt.start();
    await waitFor(() => existsSync(marker), 'the verify command to start');
    expect(rt.scheduler!.snapshot()[0]!.running).toBe(true);
    const result = await rt.shutdown('SIGTERM received');
    expect(result).toEqual({ drained: true, inFlight: [] });
    expect((await new StateStore(join(dir, 'state')).read('slow'))?.version).toBe(1);
    expect(log.lines.some((l) => l.msg.includes('waiting up to 30s for 1 rotation(s) in flight'))).toBe(true);
    expect(log.lines.at(-1)?.msg).toBe('rekey daemon stopped');
    expect(rt.health.status()).toMatchObject({ ok: false, scheduler: 'stopped' });
  });

  it('gives up waiting after --shutdown-timeout and says which rotations were still in flight', async () => {
    const dir = await makeTempDir('rekey-daemon-');
    const marker = join(dir, 'verify-started');
    await writeFile(join(dir, 'rekey.yaml'), yaml([{ name: 'slow', every: '1h', verify: [SLOW_VERIFY, marker, '2'] }]));
    const { rt, log } = await daemon(dir, { shutdownTimeoutMs: 100 });
    await rt.start();
    await waitFor(() => existsSync(marker), 'the verify command to start');
    await expect(rt.shutdown('SIGTERM received')).resolves.toEqual({ drained: false, inFlight: ['slow'] });
    expect(log.lines.some((l) => l.level === 'warn' && l.msg.includes('still in flight (slow)'))).toBe(true);
    await rt.scheduler!.idle(); // let the engine finish before the temp dir goes
  });
});

describe('metrics and health endpoints', () => {
  it('serves /metrics and /healthz on the address it was given, 404 elsewhere; health follows the openssl probe', async () => {
    const dir = await makeTempDir('rekey-daemon-');
    await writeFile(join(dir, 'rekey.yaml'), yaml([{ name: 'a', every: '1h' }, { name: 'cron', schedule: '0 3 * * *' }]));
    let broken = false;
    const { rt } = await daemon(dir, {
      listen: { host: '127.0.0.1', port: 0 },
      probeIntervalMs: 50,
      probe: async () => {
        if (broken) throw new RekeyError('OPENSSL_MISSING', 'openssl not found on PATH; install it or set openssl.path in the config');
        return Openssl.probe();
      },
    });
    await rt.start();
    await rt.scheduler!.idle();
    const base = `http://127.0.0.1:${rt.address!.port}`;

    const m = await fetch(`${base}/metrics`);
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toContain('text/plain');
    const body = await m.text();
    for (const name of ['rekey_rotations_total', 'rekey_rotation_duration_seconds', 'rekey_last_success_timestamp_seconds', 'rekey_next_rotation_timestamp_seconds', 'rekey_token_age_seconds', 'rekey_policy_stale']) {
      expect(body).toContain(`# TYPE ${name} `);
    }
    expect(body).toContain('rekey_rotations_total{policy="a",result="success"} 1');
    expect(body).toContain('rekey_rotations_total{policy="cron",result="success"} 1');
    expect(body).toContain('rekey_rotation_duration_seconds_count 2');
    expect(body).toMatch(/rekey_last_success_timestamp_seconds\{policy="a"\} \d{10}/);
    expect(body).toMatch(/rekey_next_rotation_timestamp_seconds\{policy="a"\} \d{10}/);
    expect(body).toMatch(/rekey_token_age_seconds\{policy="a"\} [\d.]+/);
    expect(body).toContain('rekey_policy_stale{policy="a"} 0');
    const token = (await readFile(join(dir, 'a.tok'), 'utf8')).trim();
    expect(body).not.toContain(token);

    const h = await fetch(`${base}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ ok: true, scheduler: 'running', openssl: 'ok' });
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(404);

    broken = true; // openssl disappears: the next periodic probe fails
    await waitFor(async () => (await fetch(`${base}/healthz`)).status === 503, '/healthz to turn 503 after a failed probe');
    const bad = await (await fetch(`${base}/healthz`)).json();
    expect(bad).toMatchObject({ ok: false, scheduler: 'running', openssl: 'failed' });
    expect((bad as { opensslError: string }).opensslError).toContain('openssl not found');
    expect(await (await fetch(`${base}/metrics`)).text()).toContain('rekey_openssl_up 0');

    await rt.shutdown();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});
