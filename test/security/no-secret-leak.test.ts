/**
 * Non-negotiable 1, end to end: while real `rekey rotate-now` processes run, watch every
 * process's argv and environment in /proc; then search the state directory, the journal,
 * the audit log and the CLI's output. The token must appear in none of them. `generate`
 * is the one command whose job is to print a token.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = path.resolve('dist/main.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'rekey-leak-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Read argv and environ of every process we can see, as text. */
function scanProc(seen: Set<string>): void {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    for (const f of ['cmdline', 'environ']) {
      try {
        const t = readFileSync(`/proc/${pid}/${f}`, 'utf8');
        if (t) seen.add(t);
      } catch {
        /* gone already, or not ours */
      }
    }
  }
}

function walk(d: string, out: string[] = []): string[] {
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

describe('no token leaks', () => {
  it('never in argv or environment of any child, nor in state, journal, audit log or output', async () => {
    // A verify command and an exec target keep children alive long enough to be seen.
    const slow = path.join(dir, 'slow-check.sh');
    writeFileSync(slow, '#!/bin/sh\ncat >/dev/null\nsleep 0.1\nexit 0\n');
    chmodSync(slow, 0o755);
    const n = 8;
    const policies = Array.from({ length: n }, (_, i) => `  - name: p${i}
    verify: { command: ["${slow}"] }
    targets:
      - { type: env-file, path: out/p${i}.env, key: TOKEN, previousKey: TOKEN_PREVIOUS }
      - { type: file, path: out/p${i}.token }
      - { type: file, path: out/p${i}.sha256, content: sha256 }
      - { type: exec, command: ["${slow}"] }
`).join('');
    writeFileSync(path.join(dir, 'rekey.yaml'), `version: 1\nconcurrency: 4\npolicies:\n${policies}`);
    spawnSync('mkdir', ['-p', path.join(dir, 'out')]);

    const seen = new Set<string>();
    const outputs: string[] = [];
    for (let round = 0; round < 2; round++) {
      const child = spawn(process.execPath, [CLI, 'rotate-now', '--all', '-c', path.join(dir, 'rekey.yaml')], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.stderr.on('data', (d) => (text += d));
      let done = false;
      const exit = new Promise<number>((r) => child.on('exit', (code) => r(code ?? -1)));
      void exit.then(() => (done = true));
      let scans = 0;
      while (!done) {
        scanProc(seen);
        scans++;
        await new Promise((r) => setImmediate(r));
      }
      expect(await exit, text).toBe(0);
      expect(scans).toBeGreaterThan(5);
      outputs.push(text);
    }

    const tokens: string[] = [];
    for (let i = 0; i < n; i++) {
      const env = readFileSync(path.join(dir, `out/p${i}.env`), 'utf8');
      tokens.push(/^TOKEN=(.+)$/m.exec(env)![1]!, /^TOKEN_PREVIOUS=(.+)$/m.exec(env)![1]!);
      expect(readFileSync(path.join(dir, `out/p${i}.token`), 'utf8').trim()).toBe(/^TOKEN=(.+)$/m.exec(env)![1]!);
    }
    expect(new Set(tokens).size).toBe(2 * n);
    // We really did watch children: openssl and the verify/exec scripts show up in what we saw.
    const all = [...seen].join('\n');
    expect(all).toContain('openssl');
    expect(all).toContain('slow-check.sh');

    const stateFiles = walk(path.join(dir, '.rekey'));
    expect(stateFiles.some((f) => f.endsWith('audit.log'))).toBe(true);
    const stateText = stateFiles.map((f) => readFileSync(f, 'utf8')).join('\n');
    for (const t of tokens) {
      expect(all.includes(t), 'token in some process argv/environ').toBe(false);
      expect(stateText.includes(t), 'token in the state directory').toBe(false);
      for (const o of outputs) expect(o.includes(t), 'token in CLI output').toBe(false);
    }
    // The state keeps SHA-256 hashes; the audit log 8-hex fingerprints.
    const audit = readFileSync(path.join(dir, '.rekey/audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.filter((e) => e.event === 'rotated')).toHaveLength(2 * n);
    for (const e of audit) if (e.fingerprint) expect(e.fingerprint).toMatch(/^[0-9a-f]{8}$/);
  });

  it('generate prints the token: the one place a token belongs on stdout', () => {
    const r = spawnSync(process.execPath, [CLI, 'generate'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
  });
});
