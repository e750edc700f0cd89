/**
 * The one-shot CLI, in process: every bad input gives one clear line, the documented exit
 * code, and leaves every file byte-identical.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/index.js';
import type { Io } from '../../src/cli/command.js';

const FIXTURES = path.resolve('test/fixtures/bin');
const SYSTEM_PATH = '/usr/bin:/bin';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function rekey(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; stdin?: string }): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: Io = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    readStdin: async () => Buffer.from(opts.stdin ?? ''),
    env: { PATH: SYSTEM_PATH, ...opts.env },
    cwd: opts.cwd,
    isTTY: false,
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'rekey-cli-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) {
    try {
      chmodSync(path.join(d, 'ro'), 0o755);
    } catch {
      /* not every test has one */
    }
    rmSync(d, { recursive: true, force: true });
  }
});

/** Every file under dir with its bytes, for byte-exact "nothing changed" assertions. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isSymbolicLink()) out[p] = `symlink`;
      else out[p] = readFileSync(p).toString('base64');
    }
  };
  walk(dir);
  return out;
}

function writeConfig(dir: string, body: string): string {
  const file = path.join(dir, 'rekey.yaml');
  writeFileSync(file, body);
  return file;
}

const ENV_TEXT = '# app settings\nexport API_TOKEN="old-token-value-123"\r\nOTHER=1\n\nLAST=x';

function envPolicyConfig(dir: string, envPath = 'app.env', extra = ''): string {
  return writeConfig(dir, `version: 1
${extra}policies:
  - name: billing-api
    targets:
      - type: env-file
        path: ${envPath}
        key: API_TOKEN
  - name: other
    targets:
      - { type: file, path: other.token }
`);
}

function expectOneLine(r: Run, code: number, pattern: RegExp): void {
  expect(r.code).toBe(code);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
}

describe('rekey CLI', () => {
  it('rotate-now rotates one policy: env file keeps every other byte, state keeps the SHA-256', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), ENV_TEXT, { mode: 0o600 });
    envPolicyConfig(dir);
    const r = await rekey(['rotate-now', 'billing-api', '-c', './rekey.yaml'], { cwd: dir });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^rotated\s+billing-api v1 fp [0-9a-f]{8} -> env-file .*app\.env API_TOKEN\n1 rotated\n$/);
    const text = readFileSync(path.join(dir, 'app.env'), 'utf8');
    const m = /^export API_TOKEN="([A-Za-z0-9_-]{43})"\r$/m.exec(text);
    expect(m).not.toBeNull();
    expect(text).toBe(ENV_TEXT.replace('old-token-value-123', m![1]!));
    const state = JSON.parse(readFileSync(path.join(dir, '.rekey/policies/billing-api.json'), 'utf8'));
    const sha = (await rekey(['hash'], { cwd: dir, stdin: m![1]! })).stdout.trim();
    expect(state).toMatchObject({ policy: 'billing-api', version: 1, currentSha256: sha, fingerprint: sha.slice(0, 8) });
    expect(r.stdout).not.toContain(m![1]!);
    expect(existsFile(path.join(dir, 'other.token'))).toBe(false); // only the named policy
  });

  it('--all with one failing policy: the others rotate, the summary names the failure, exit 1', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), 'API_TOKEN=a\nAPI_TOKEN=b\n');
    envPolicyConfig(dir);
    const before = readFileSync(path.join(dir, 'app.env'));
    const r = await rekey(['rotate-now', '--all'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/FAILED\s+billing-api: .*API_TOKEN appears 2 times/);
    expect(r.stdout).toMatch(/rotated\s+other v1/);
    expect(r.stdout).toMatch(/1 rotated, 1 failed: billing-api\n$/);
    expect(readFileSync(path.join(dir, 'app.env')).equals(before)).toBe(true);
  });

  it('--dry-run writes nothing; --json prints a parsable document', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), ENV_TEXT);
    envPolicyConfig(dir);
    const before = snapshot(dir);
    const r = await rekey(['rotate-now', '--all', '--dry-run', '--json'], { cwd: dir });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.results.map((x: { result: string; version: number }) => [x.result, x.version])).toEqual([['planned', 1], ['planned', 1]]);
    expect(snapshot(dir)).toEqual(before);
  });

  it('an unknown policy name is a usage error (exit 2) with a hint, nothing written', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), ENV_TEXT);
    envPolicyConfig(dir);
    const before = snapshot(dir);
    const r = await rekey(['rotate-now', 'biling-api'], { cwd: dir });
    expectOneLine(r, 2, /^rekey: unknown policy "biling-api" in .*rekey\.yaml \(did you mean "billing-api"\?\)$/);
    expect(snapshot(dir)).toEqual(before);
  });

  it('an env file with a duplicate key: one line, exit 1, file byte-identical', async () => {
    const dir = tmp();
    const dup = 'API_TOKEN=a\n# c\nexport API_TOKEN=b\n';
    writeFileSync(path.join(dir, 'app.env'), dup);
    envPolicyConfig(dir);
    const r = await rekey(['rotate-now', 'billing-api'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')[0]).toMatch(/^FAILED\s+billing-api: .*API_TOKEN appears 2 times/);
    expect(readFileSync(path.join(dir, 'app.env'), 'utf8')).toBe(dup);
  });

  it('a read-only target directory: one line, exit 1, nothing lost', async () => {
    const dir = tmp();
    const ro = path.join(dir, 'ro');
    mkdirSync(ro);
    writeFileSync(path.join(ro, 'app.env'), ENV_TEXT);
    chmodSync(ro, 0o555);
    let effective = true;
    try {
      writeFileSync(path.join(ro, 'probe'), '');
      rmSync(path.join(ro, 'probe'));
      effective = false; // running as root: permissions do not stop us
    } catch {
      /* read-only as intended */
    }
    // As root, a directory on a read-only mount is the honest stand-in: /proc/self is one.
    envPolicyConfig(dir, effective ? 'ro/app.env' : '/proc/self/rekey-test.env');
    const before = snapshot(dir);
    const r = await rekey(['rotate-now', 'billing-api'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')[0]).toMatch(/^FAILED\s+billing-api: .*(permission denied|read-only|no such file|not permitted|EACCES|EROFS|ENOENT)/);
    expect(r.stdout).toContain('rolled back, the old token stays valid');
    const after = snapshot(dir);
    for (const k of Object.keys(before)) if (!k.includes('.rekey')) expect(after[k]).toBe(before[k]);
    expect(readdirSync(ro)).toEqual(['app.env']);
  });

  it('a target path that is a symlink is refused unless followSymlinks', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'real.env'), ENV_TEXT);
    symlinkSync(path.join(dir, 'real.env'), path.join(dir, 'app.env'));
    envPolicyConfig(dir);
    const r = await rekey(['rotate-now', 'billing-api'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/is a symlink; refusing to write through it \(set followSymlinks: true to allow\)/);
    expect(readFileSync(path.join(dir, 'real.env'), 'utf8')).toBe(ENV_TEXT);
  });

  it('openssl missing from PATH: exit 3, one line, nothing written', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), ENV_TEXT);
    envPolicyConfig(dir);
    const empty = path.join(dir, 'empty-bin');
    mkdirSync(empty);
    const before = snapshot(dir);
    const r = await rekey(['rotate-now', '--all'], { cwd: dir, env: { PATH: empty } });
    expectOneLine(r, 3, /^rekey: openssl not found/);
    expect(snapshot(dir)).toEqual(before);
  });

  it('openssl that prints garbage: exit 3, one line without the garbage', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), ENV_TEXT);
    envPolicyConfig(dir);
    const before = snapshot(dir);
    const r = await rekey(['rotate-now', '--all'], { cwd: dir, env: { PATH: `${FIXTURES}/garbage:${SYSTEM_PATH}` } });
    expectOneLine(r, 3, /^rekey: .*openssl/);
    expect(r.stderr + r.stdout).not.toContain('REKEY-GARBAGE-MARKER');
    expect(snapshot(dir)).toEqual(before);
  });

  it('openssl whose self-test answer is wrong: refuse to rotate, exit 3', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), ENV_TEXT);
    envPolicyConfig(dir);
    const r = await rekey(['rotate-now', '--all'], { cwd: dir, env: { PATH: `${FIXTURES}/wrong-kat:${SYSTEM_PATH}` } });
    expectOneLine(r, 3, /^rekey: .*(self-test|known-answer)/i);
    expect(readFileSync(path.join(dir, 'app.env'), 'utf8')).toBe(ENV_TEXT);
  });

  it('openssl that hangs past the timeout: exit 3, one line', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), ENV_TEXT);
    envPolicyConfig(dir, 'app.env', 'openssl: { timeoutMs: 300 }\n');
    const before = snapshot(dir);
    const r = await rekey(['rotate-now', '--all'], { cwd: dir, env: { PATH: `${FIXTURES}/hang:${SYSTEM_PATH}` } });
    expectOneLine(r, 3, /^rekey: openssl .*timed out after 300 ms/);
    expect(snapshot(dir)).toEqual(before);
  });

  it('an unwritable state directory is an environment error (exit 3)', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'app.env'), ENV_TEXT);
    envPolicyConfig(dir, 'app.env', 'state: { dir: /proc/self/rekey-state }\n');
    const r = await rekey(['rotate-now', '--all'], { cwd: dir });
    expectOneLine(r, 3, /^rekey: state directory \/proc\/self\/rekey-state is not writable \(ENOENT\); set state\.dir or REKEY_STATE_DIR/);
    expect(readFileSync(path.join(dir, 'app.env'), 'utf8')).toBe(ENV_TEXT);
  });

  it('config errors: exit 2; validate lists every problem, prints nothing when valid', async () => {
    const dir = tmp();
    envPolicyConfig(dir);
    expect(await rekey(['validate'], { cwd: dir })).toEqual({ code: 0, stdout: '', stderr: '' });
    writeConfig(dir, 'version: 1\npolicies:\n  - name: a\n    token: { bytes: 8, encodng: hex }\n    targets: []\n');
    const v = await rekey(['validate'], { cwd: dir });
    expect(v.code).toBe(2);
    expect(v.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/rekey\.yaml:4:21: policies\[0\]\.token\.bytes: token\.bytes must be at least 16/),
      expect.stringMatching(/rekey\.yaml:4:24: policies\[0\]\.token\.encodng: unknown key "encodng".*did you mean "encoding"/),
      expect.stringMatching(/rekey\.yaml:5:14: policies\[0\]\.targets: targets must list at least one target/),
    ]);
    const r = await rekey(['rotate-now', '--all'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^rekey: .*rekey\.yaml: 3 problems\n  .*4:21/);
    writeConfig(dir, 'version: 1\npolicies:\n  - name: [\n');
    expectOneLine(await rekey(['rotate-now', '--all'], { cwd: dir }), 2, /^rekey: .*rekey\.yaml:\d+:\d+: invalid YAML/);
    writeConfig(dir, '');
    expectOneLine(await rekey(['rotate-now', '--all'], { cwd: dir }), 2, /the config file is empty/);
    writeConfig(dir, '- a\n- b\n');
    expectOneLine(await rekey(['rotate-now', '--all'], { cwd: dir }), 2, /must be a mapping .* not a list/);
    writeConfig(dir, 'version: 3\npolicies: []\n');
    expectOneLine(await rekey(['rotate-now', '--all'], { cwd: dir }), 2, /version must be 1/);
  });

  it('usage errors: unknown command, unknown flag, no policy, bad --wait', async () => {
    const dir = tmp();
    envPolicyConfig(dir);
    expectOneLine(await rekey(['rotate'], { cwd: dir }), 2, /unknown command "rotate" \(did you mean "rotate-now"\?\)/);
    expectOneLine(await rekey(['rotate-now', '--al'], { cwd: dir }), 2, /rotate-now: Unknown option '--al'/);
    expectOneLine(await rekey(['rotate-now'], { cwd: dir }), 2, /name at least one policy, or pass --all/);
    expectOneLine(await rekey(['rotate-now', 'billing-api', '--wait', 'soon'], { cwd: dir }), 2, /--wait must be a duration/);
    expectOneLine(await rekey(['rotate-now', '--all'], { cwd: path.join(dir, '..'), env: {} }), 2, /no config file|cannot read config/);
  });

  it('generate prints one token of the asked shape; hash prints its SHA-256', async () => {
    const dir = tmp();
    const g = await rekey(['generate', '--bytes', '48', '--encoding', 'hex'], { cwd: dir });
    expect(g.code).toBe(0);
    expect(g.stdout).toMatch(/^[0-9a-f]{96}\n$/);
    const u = await rekey(['generate', '--bytes', '64', '--prefix', 'rk_'], { cwd: dir });
    expect(u.stdout).toMatch(/^rk_[A-Za-z0-9_-]{86}\n$/);
    expectOneLine(await rekey(['generate', '--bytes', '8'], { cwd: dir }), 2, /--bytes must be at least 16/);
    expectOneLine(await rekey(['generate', '--encoding', 'base32'], { cwd: dir }), 2, /--encoding must be one of hex, base64, base64url/);
    const h = await rekey(['hash'], { cwd: dir, stdin: 'abc\n' });
    expect(h).toEqual({ code: 0, stdout: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n', stderr: '' });
    expectOneLine(await rekey(['hash'], { cwd: dir, stdin: '' }), 2, /give the token on stdin/);
  });

  it('--help for every command and --version', async () => {
    const dir = tmp();
    const top = await rekey(['--help'], { cwd: dir });
    expect(top.code).toBe(0);
    const names = [...top.stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!);
    expect(names).toEqual(expect.arrayContaining(['rotate-now', 'validate', 'generate', 'hash', 'verify', 'retire', 'recover']));
    for (const n of names) {
      const h = await rekey([n, '--help'], { cwd: dir });
      expect(h.code, n).toBe(0);
      expect(h.stdout, n).toMatch(new RegExp(`^Usage: rekey ${n}`));
    }
    const v = await rekey(['--version'], { cwd: dir });
    expect(v.stdout).toBe(`${JSON.parse(readFileSync('package.json', 'utf8')).version}\n`);
  });
});

function existsFile(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}
