/**
 * End to end: the real built CLI (`node dist/main.js daemon`) as a child process, with a policy
 * that rotates every 2 s into an env file. About 10 s of real time: /metrics is scraped, a broken
 * config is sent with SIGHUP (the daemon keeps going), then a fixed one, then SIGTERM.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanupTempDirs, makeTempDir, runRekey, startRekey, type Started } from '../helpers/cli.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function config(extra = ''): string {
  return `version: 1
state:
  dir: ./state
policies:
  - name: e2e
    every: 2s
    grace: 1s
    targets:
      - type: env-file
        path: ./app.env
        key: API_TOKEN
        previousKey: API_TOKEN_PREVIOUS
${extra}`;
}

const SECOND_POLICY = `  - name: e2e-added
    every: 1h
    targets:
      - type: env-file
        path: ./added.env
        key: ADDED_TOKEN
`;

interface LogRecord {
  level: string;
  msg: string;
  time: string;
  [k: string]: unknown;
}

/** Follows the daemon's JSON log lines as they arrive. */
function follow(d: Started) {
  const records: LogRecord[] = [];
  let buf = '';
  d.child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        records.push(JSON.parse(line) as LogRecord);
      } catch {
        records.push({ level: 'unparsed', msg: line, time: '' });
      }
    }
  });
  return records;
}

async function until<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, what: string, limitMs = 15_000): Promise<T> {
  // A safety net against hangs, not a timing assertion.
  const end = Date.now() + limitMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await sleep(25);
  }
}

afterEach(cleanupTempDirs);

describe('rekey daemon (end to end)', () => {
  it('rotates on schedule, serves metrics, survives a broken reload, applies a fixed one, and exits 0 on SIGTERM without logging a token', async () => {
    const dir = await makeTempDir('rekey-e2e-');
    const cfg = join(dir, 'rekey.yaml');
    await writeFile(cfg, config());
    const d = startRekey(['daemon', '-c', cfg, '--listen', '127.0.0.1:0', '--log-format', 'json', '--shutdown-timeout', '10s'], { cwd: dir, timeoutMs: 60_000 });
    const logs = follow(d);
    try {
      // Every value API_TOKEN takes, seen by polling the file (50 ms << the 2 s interval, so none is missed).
      const seen: { token: string; at: number }[] = [];
      const allTokens = new Set<string>();
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const text = await readFile(join(dir, 'app.env'), 'utf8').catch(() => '');
          for (const m of text.matchAll(/^(?:API_TOKEN|API_TOKEN_PREVIOUS)=(.+)$/gm)) allTokens.add(m[1]!);
          const cur = /^API_TOKEN=(.+)$/m.exec(text)?.[1];
          if (cur && seen.at(-1)?.token !== cur) seen.push({ token: cur, at: Date.now() });
          await sleep(50);
        }
      })();

      const listening = await until(() => logs.find((r) => typeof r.listen === 'string'), 'the listener log line');
      const base = `http://${listening.listen as string}`;
      expect(listening.listen).toMatch(/^127\.0\.0\.1:\d+$/);
      await until(() => seen.length >= 2, 'two rotations');
      const started = seen[0]!.at;

      // /metrics and /healthz on the address we gave.
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/rekey_rotations_total\{policy="e2e",result="success"\} [1-9]/);
      for (const name of ['rekey_rotation_duration_seconds_count', 'rekey_last_success_timestamp_seconds{policy="e2e"}', 'rekey_next_rotation_timestamp_seconds{policy="e2e"}', 'rekey_token_age_seconds{policy="e2e"}', 'rekey_policy_stale{policy="e2e"} 0']) {
        expect(metrics).toContain(name);
      }
      expect((await fetch(`${base}/healthz`)).status).toBe(200);

      // A broken config: every problem is logged, the daemon keeps rotating with the old one.
      await writeFile(cfg, config().replace('every: 2s', 'every: soon').replace('key: API_TOKEN\n', 'kee: API_TOKEN\n'));
      d.child.kill('SIGHUP');
      const failed = await until(() => logs.find((r) => r.msg.startsWith('config reload failed')), 'the failed reload');
      expect(failed.level).toBe('error');
      const problemLines = logs.filter((r) => r.level === 'error' && typeof r.line === 'number').map((r) => r.msg);
      expect(problemLines.some((m) => m.includes('every must be a duration'))).toBe(true);
      expect(problemLines.some((m) => m.includes('unknown key "kee"'))).toBe(true);
      const before = seen.length;
      await until(() => seen.length > before, 'a rotation after the broken reload');

      // A fixed config with one more policy: applied; the new policy gets its first rotation.
      await writeFile(cfg, config(SECOND_POLICY));
      d.child.kill('SIGHUP');
      const reloaded = await until(() => logs.find((r) => r.msg.startsWith('config reloaded')), 'the good reload');
      expect(reloaded.added).toEqual(['e2e-added']);
      await until(() => logs.find((r) => r.policy === 'e2e-added' && r.msg.includes('rotated to v1')), 'the added policy to rotate');

      // Run to about 10 s, then SIGTERM.
      await sleep(Math.max(0, started + 10_000 - Date.now()));
      const stopAt = Date.now();
      d.child.kill('SIGTERM');
      const result = await d.done;
      polling = false;
      await poller;
      expect(result.code).toBe(0);
      expect(result.signal).toBeNull();

      const finalText = await readFile(join(dir, 'app.env'), 'utf8');
      const finalToken = /^API_TOKEN=(.+)$/m.exec(finalText)![1]!;
      if (seen.at(-1)?.token !== finalToken) seen.push({ token: finalToken, at: stopAt });
      for (const m of finalText.matchAll(/^(?:API_TOKEN|API_TOKEN_PREVIOUS)=(.+)$/gm)) allTokens.add(m[1]!);
      allTokens.add((await readFile(join(dir, 'added.env'), 'utf8')).match(/^ADDED_TOKEN=(.+)$/m)![1]!);

      // The env file changed exactly once per committed version ...
      const state = JSON.parse(await readFile(join(dir, 'state/policies/e2e.json'), 'utf8')) as { version: number };
      const audit = (await readFile(join(dir, 'state/audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { policy: string; event: string; version?: number });
      const rotatedEvents = audit.filter((e) => e.policy === 'e2e' && e.event === 'rotated');
      expect(rotatedEvents.map((e) => e.version)).toEqual(Array.from({ length: state.version }, (_, i) => i + 1));
      expect(seen.map((s) => s.token)).toHaveLength(state.version);
      expect(new Set(seen.map((s) => s.token)).size).toBe(state.version);
      // ... and about once per 2 s. Tolerance +-1: each interval is 2 s plus the rotation itself
      // and timer latency (a few ms, adding up over five cycles), and SIGTERM may land just
      // before or just after a due time.
      const expected = Math.floor((stopAt - started) / 2_000) + 1;
      expect(state.version).toBeGreaterThanOrEqual(expected - 1);
      expect(state.version).toBeLessThanOrEqual(expected + 1);
      expect(audit.some((e) => e.policy === 'e2e' && e.event === 'retired')).toBe(true);

      // Rotation events carry policy, version and fingerprint; no token anywhere in the output.
      const rotatedLogs = logs.filter((r) => r.policy === 'e2e' && r.msg.includes('rotated to v'));
      expect(rotatedLogs).toHaveLength(state.version);
      for (const r of rotatedLogs) expect(r).toMatchObject({ policy: 'e2e', version: expect.any(Number), fingerprint: expect.stringMatching(/^[0-9a-f]{8}$/) });
      expect(allTokens.size).toBeGreaterThanOrEqual(state.version);
      const output = result.stdout + result.stderr;
      for (const t of allTokens) expect(output.includes(t), 'a token appeared in the daemon output').toBe(false);
      expect(logs.at(-1)?.msg).toBe('rekey daemon stopped');
      expect(logs.some((r) => r.level === 'unparsed')).toBe(false);
    } finally {
      if (d.child.exitCode === null) d.child.kill('SIGKILL');
      await d.done.catch(() => undefined);
    }
  }, 60_000);

  it('a second daemon on the same state directory exits 3; bad flags exit 2', async () => {
    const dir = await makeTempDir('rekey-e2e-');
    const cfg = join(dir, 'rekey.yaml');
    await writeFile(cfg, config().replace('every: 2s', 'every: 1h'));
    const first = startRekey(['daemon', '-c', cfg, '--log-format', 'json'], { cwd: dir });
    const logs = follow(first);
    try {
      await until(() => logs.find((r) => r.msg.startsWith('rekey daemon started')), 'the first daemon');
      const second = await runRekey(['daemon', '-c', cfg], { cwd: dir });
      expect(second.code).toBe(3);
      expect(second.stderr).toMatch(new RegExp(`^rekey: another rekey daemon \\(pid ${first.pid}, since [^)]+\\) is already running on state directory ${join(dir, 'state')}; stop it first`));
      expect(second.stderr.trim().split('\n')).toHaveLength(1);
    } finally {
      first.child.kill('SIGTERM');
      expect((await first.done).code).toBe(0);
    }
    for (const [flags, message] of [
      [['--listen', '9464'], '--listen "9464" is not HOST:PORT'],
      [['--listen', '127.0.0.1:99999'], 'port outside 0-65535'],
      [['--shutdown-timeout', 'forever'], '--shutdown-timeout must be a duration'],
      [['--log-format', 'xml'], '--log-format must be json or pretty'],
    ] as const) {
      const r = await runRekey(['daemon', '-c', cfg, ...flags], { cwd: dir });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
    }
    const loud = await runRekey(['daemon', '-c', cfg], { cwd: dir, env: { REKEY_LOG_LEVEL: 'loud' } });
    expect(loud.code).toBe(2);
    expect(loud.stderr).toContain('REKEY_LOG_LEVEL must be one of');
  }, 60_000);
});
