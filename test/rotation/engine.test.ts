/**
 * The rotation engine in-process, with the real openssl, real files, the real state store and
 * the local lock. Time is injected (`now`) for grace periods; a failing or flaky target is a
 * real env-file/file target wrapped so that one of its steps throws.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/loader.js';
import type { Config, Policy } from '../../src/config/types.js';
import type { TargetConfig } from '../../src/config/schema.js';
import { LocalLockProvider } from '../../src/coordination/local-lock.js';
import { Openssl } from '../../src/openssl/index.js';
import { Engine, type PolicyOutcome } from '../../src/rotation/engine.js';
import { StateStore } from '../../src/state/store.js';
import type { Logger, RotationContext, Snapshot, Target } from '../../src/targets/contract.js';
import { createTarget as realCreateTarget } from '../../src/targets/registry.js';
import { RekeyError } from '../../src/util/errors.js';
import { Secret } from '../../src/util/secret.js';
import { cleanupTempDirs, makeTempDir } from '../helpers/cli.js';
import {
  CAPTURE,
  VERIFY_FAIL,
  envValue,
  fileShots,
  listDir,
  policyDir,
  readAudit,
  readState,
  readText,
  sha256,
  type PolicyFiles,
  type RawPolicyObject,
} from './helpers.js';

const T0 = new Date('2030-01-01T00:00:00.000Z');
const HOUR = 3_600_000;
const PREEXISTING = 'preexisting-token-0001';
const ENV_TEXT = `# app settings\nOTHER=1\nAPI_TOKEN=${PREEXISTING}\nTAIL="quoted value"\n`;
const FAST_RETRY = { attempts: 3, baseMs: 1, maxMs: 2 };

let openssl: Openssl;
beforeAll(async () => {
  openssl = await Openssl.probe();
});
afterAll(cleanupTempDirs);

type Wrap = (t: Target, cfg: TargetConfig) => Target;

interface Fx extends PolicyFiles {
  config: Config;
  policy: Policy;
  engine: Engine;
  store: StateStore;
  log: Logger & { lines: string[] };
  clock: { now: Date };
  /** Replaced by tests to wrap the real targets. */
  wrap: Wrap;
  /** Every new token some target was asked to stage (captured by the default wrap). */
  staged: string[];
}

function captureLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (obj: Record<string, unknown>, msg: string) => lines.push(`${msg} ${JSON.stringify(obj)}`);
  return { lines, info: push, warn: push, error: push };
}

/** Records the token handed to stage, then behaves exactly like the real target. */
function spy(t: Target, staged: string[]): Target {
  return {
    ...t,
    async stage(ctx: RotationContext, snap: Snapshot) {
      if (ctx.token) staged.push(ctx.token.reveal());
      return t.stage(ctx, snap);
    },
  };
}

async function setup(opts: { policy?: RawPolicyObject; env?: NodeJS.ProcessEnv; envText?: string | null } = {}): Promise<Fx> {
  const dir = await makeTempDir('rekey-engine-');
  const files = await policyDir(dir, opts.policy ?? {});
  if (opts.envText !== null) {
    await fsp.writeFile(files.env, opts.envText ?? ENV_TEXT);
    await fsp.chmod(files.env, 0o640);
  }
  const config = await loadConfig(files.configFile, { env: {} });
  const store = new StateStore(config.stateDir);
  const log = captureLog();
  const clock = { now: T0 };
  const fx = { ...files, config, policy: config.policies[0]!, store, log, clock, staged: [] as string[] } as Fx;
  fx.wrap = (t) => spy(t, fx.staged);
  fx.engine = new Engine({
    config,
    openssl,
    store,
    locks: new LocalLockProvider(store.path('locks')),
    log,
    env: opts.env ?? { PATH: process.env.PATH },
    now: () => clock.now,
    retry: FAST_RETRY,
    createTarget: (cfg, env) => fx.wrap(realCreateTarget(cfg, env), cfg),
  });
  return fx;
}

async function rotate(fx: Fx): Promise<PolicyOutcome> {
  const [o] = await fx.engine.rotate([fx.policy]);
  return o!;
}

async function rotateOk(fx: Fx): Promise<{ outcome: PolicyOutcome; token: string }> {
  const outcome = await rotate(fx);
  expect(outcome.error).toBeUndefined();
  expect(outcome.result).toBe('rotated');
  const token = envValue((await readText(fx.env))!, 'API_TOKEN')!;
  expect(fx.staged.at(-1)).toBe(token);
  return { outcome, token };
}

const allFiles = (fx: Fx) => [fx.env, fx.token, fx.hash];
const stateFile = (fx: Fx) => join(fx.stateDir, 'policies', 'api.json');

/** Nothing left of an unfinished rotation. */
async function expectNoJournal(fx: Fx): Promise<void> {
  expect(await listDir(join(fx.stateDir, 'journal'))).toEqual([]);
  expect(await listDir(join(fx.stateDir, 'recovery'))).toEqual([]);
  expect(await listDir(join(fx.stateDir, 'locks'))).toEqual([]);
}

/** No token (new, old, or any staged) in the outcome or the log. */
function expectNoToken(fx: Fx, o: PolicyOutcome, extra: string[] = []): void {
  const text = `${JSON.stringify(o)}\n${fx.log.lines.join('\n')}`;
  for (const t of [...fx.staged, ...extra]) expect(text).not.toContain(t);
}

/** A real target whose stage writes and then fails (a disk that fills up halfway through). */
function failAfterStage(t: Target): Target {
  return {
    ...t,
    async stage(ctx: RotationContext, snap: Snapshot) {
      await t.stage(ctx, snap);
      throw new RekeyError('TARGET', `${t.description}: simulated write failure (ENOSPC); free some space`);
    },
  };
}

describe('all or nothing', () => {
  it('a third target failing on stage restores the first two (and itself) byte-identical, keeps state, drops the journal', async () => {
    const fx = await setup();
    const { token: v1 } = await rotateOk(fx);
    await fsp.chmod(fx.hash, 0o644); // a hash file may be world-readable; the rollback must keep that
    const before = await fileShots(allFiles(fx));
    const stateBefore = await readText(stateFile(fx));

    fx.wrap = (t, cfg) => (cfg.type === 'file' && cfg.content === 'sha256' ? failAfterStage(spy(t, fx.staged)) : spy(t, fx.staged));
    const o = await rotate(fx);

    expect(o.result).toBe('failed');
    expect(o.exitCode).toBe(1);
    expect(o.rolledBack).toBe(true);
    expect(o.error).toMatch(/^api: /);
    expect(o.error).toContain(`file ${fx.hash} sha256`);
    expect(o.error).toContain('simulated write failure');
    expect(o.error).toContain('rolled back');
    expect(o.error!.split('\n')).toHaveLength(1);
    expect(fx.staged).toHaveLength(6); // v1 on three targets, then the failed v2 reached all three
    expect(new Set(fx.staged.slice(3)).size).toBe(1);
    expect(await fileShots(allFiles(fx))).toEqual(before);
    expect(await readText(stateFile(fx))).toBe(stateBefore);
    await expectNoJournal(fx);
    const audit = await readAudit(fx.stateDir);
    expect(audit.at(-1)).toMatchObject({ event: 'rolled-back', policy: 'api', version: 2 });
    expect(audit.at(-1)!.reason).toContain('simulated write failure');
    expectNoToken(fx, o, [v1, PREEXISTING]);
    expect(JSON.stringify(audit)).not.toContain(fx.staged.at(-1)!);
  });

  it('a target that throws a foreign error is named in the one-line reason', async () => {
    const fx = await setup();
    await rotateOk(fx);
    const before = await fileShots(allFiles(fx));
    fx.wrap = (t, cfg) =>
      cfg.type === 'file' && cfg.content === 'token'
        ? {
            ...spy(t, fx.staged),
            async stage() {
              throw Object.assign(new Error(`EIO while writing ${fx.staged.at(-1)}`), { code: 'EIO', syscall: 'write' });
            },
          }
        : spy(t, fx.staged);
    const o = await rotate(fx);
    expect(o.result).toBe('failed');
    expect(o.error).toContain(`stage on file ${fx.token} token failed: EIO during write`);
    expect(await fileShots(allFiles(fx))).toEqual(before);
    expectNoToken(fx, o);
  });
});

describe('verify command', () => {
  it('a failing verify command leaves every target byte-identical', async () => {
    const fx = await setup();
    const { token: v1 } = await rotateOk(fx);
    fx.policy.verify = { command: [VERIFY_FAIL], env: [], timeoutMs: 30_000 };
    const before = await fileShots(allFiles(fx));
    const stateBefore = await readText(stateFile(fx));

    const o = await rotate(fx);
    expect(o.result).toBe('failed');
    expect(o.errorCode).toBe('VERIFY_FAILED');
    expect(o.exitCode).toBe(1);
    expect(o.error).toMatch(/^api: verify command /);
    expect(o.error).toContain('exited with code 1');
    expect(o.error).toContain('the API answered 401');
    expect(await fileShots(allFiles(fx))).toEqual(before);
    expect(await readText(stateFile(fx))).toBe(stateBefore);
    await expectNoJournal(fx);
    expect((await readAudit(fx.stateDir)).at(-1)).toMatchObject({ event: 'rolled-back', version: 2 });
    expectNoToken(fx, o, [v1]);
  });

  it('a passing verify command gets the new token on stdin and only the allowlisted environment', async () => {
    const dir = await makeTempDir('rekey-verify-');
    const gotStdin = join(dir, 'stdin');
    const gotEnv = join(dir, 'env.json');
    const fx = await setup({
      policy: { verify: { command: [process.execPath, CAPTURE, gotStdin, gotEnv], env: ['KEEP_ME', 'NOT_SET_ANYWHERE'] } },
      env: { PATH: process.env.PATH, HOME: '/root', KEEP_ME: 'kept', DROP_ME: 'dropped' },
    });
    const { token, outcome } = await rotateOk(fx);
    expect(outcome.version).toBe(1);
    expect(await readText(gotStdin)).toBe(token);
    expect(JSON.parse((await readText(gotEnv))!)).toEqual({ KEEP_ME: 'kept' });
    expect(sha256(token)).toBe((await readState(fx.stateDir))!.currentSha256);
  });
});

describe('hooks', () => {
  it('a failing before hook aborts with nothing touched', async () => {
    const dir = await makeTempDir('rekey-hook-');
    const fx = await setup({ policy: { hooks: { before: [{ command: [process.execPath, CAPTURE, join(dir, 'in'), join(dir, 'env'), '3'] }] } } });
    const before = await fileShots(allFiles(fx));
    const o = await rotate(fx);
    expect(o.result).toBe('failed');
    expect(o.errorCode).toBe('HOOK_FAILED');
    expect(o.exitCode).toBe(1);
    expect(o.error).toContain('api: before hook');
    expect(o.error).toContain('exited with code 3');
    expect(fx.staged).toEqual([]);
    expect(await fileShots(allFiles(fx))).toEqual(before);
    expect(await readState(fx.stateDir)).toBeUndefined();
    await expectNoJournal(fx);
  });

  it('a failing after hook is a warning: the rotation stands', async () => {
    const dir = await makeTempDir('rekey-hook-');
    const fx = await setup({ policy: { hooks: { after: [{ command: [process.execPath, CAPTURE, join(dir, 'in'), join(dir, 'env'), '4'] }] } } });
    const { outcome, token } = await rotateOk(fx);
    expect(outcome.exitCode).toBe(0);
    expect(outcome.rolledBack).toBeUndefined();
    expect(outcome.warnings.join('\n')).toMatch(/^api: after hook failed \(not rolled back\): after hook \S+: exited with code 4: hook: simulated failure$/);
    const state = (await readState(fx.stateDir))!;
    expect(state.version).toBe(1);
    expect(state.currentSha256).toBe(sha256(token));
    expect((await readText(fx.token))!).toBe(`${token}\n`);
    await expectNoJournal(fx);
    expectNoToken(fx, outcome);
  });

  it('stdin: token gives a hook the new token; without it the hook reads empty stdin', async () => {
    const dir = await makeTempDir('rekey-hook-');
    const withToken = join(dir, 'with');
    const without = join(dir, 'without');
    const after = join(dir, 'after');
    const fx = await setup({
      policy: {
        hooks: {
          before: [
            { command: [process.execPath, CAPTURE, withToken, join(dir, 'e1')], stdin: 'token' },
            { command: [process.execPath, CAPTURE, without, join(dir, 'e2')] },
          ],
          after: [{ command: [process.execPath, CAPTURE, after, join(dir, 'e3')], stdin: 'token' }],
        },
      },
    });
    const { token } = await rotateOk(fx);
    expect(await readText(withToken)).toBe(token);
    expect(await readText(without)).toBe('');
    expect(await readText(after)).toBe(token);
    expect(JSON.parse((await readText(join(dir, 'e1')))!)).toEqual({});
  });
});

describe('grace period', () => {
  it('keeps the previous hash until rotatedAt + grace; verifyToken says current, previous, then none', async () => {
    const fx = await setup();
    const { token: v1 } = await rotateOk(fx); // at T0, adopts PREEXISTING as previous
    fx.clock.now = new Date(T0.getTime() + 10 * 60_000);
    const { token: v2 } = await rotateOk(fx);
    const state = (await readState(fx.stateDir))!;
    expect(state.version).toBe(2);
    expect(state.currentSha256).toBe(sha256(v2));
    expect(state.rotatedAt).toBe(fx.clock.now.toISOString());
    expect(state.previous).toEqual({
      sha256: sha256(v1),
      fingerprint: sha256(v1).slice(0, 8),
      validUntil: new Date(fx.clock.now.getTime() + HOUR).toISOString(),
    });
    const envText = (await readText(fx.env))!;
    expect(envValue(envText, 'API_TOKEN')).toBe(v2);
    expect(envValue(envText, 'API_TOKEN_PREVIOUS')).toBe(v1);

    const check = (t: string) => fx.engine.verifyToken(fx.policy, new Secret(t));
    fx.clock.now = new Date(T0.getTime() + 30 * 60_000);
    expect(await check(v2)).toEqual({ match: 'current', version: 2 });
    expect(await check(v1)).toEqual({ match: 'previous', validUntil: state.previous!.validUntil, version: 1 });
    expect(await check(PREEXISTING)).toEqual({ match: 'none' });
    expect(await check('not-a-token-we-ever-issued')).toEqual({ match: 'none' });
    fx.clock.now = new Date(Date.parse(state.previous!.validUntil) + 1);
    expect(await check(v1)).toEqual({ match: 'none' });
    expect(await check(v2)).toEqual({ match: 'current', version: 2 });
  });

  it('retire changes nothing before expiry; after it removes the previousKey line (only) and state.previous', async () => {
    const fx = await setup();
    await rotateOk(fx);
    fx.clock.now = new Date(T0.getTime() + 10 * 60_000);
    await rotateOk(fx);
    const validUntil = Date.parse((await readState(fx.stateDir))!.previous!.validUntil);
    const before = await fileShots(allFiles(fx));
    const stateBefore = await readText(stateFile(fx));

    fx.clock.now = new Date(validUntil - 1000);
    const [early] = await fx.engine.retire([fx.policy]);
    expect(early!.result).toBe('unchanged');
    expect(await fileShots(allFiles(fx))).toEqual(before);
    expect(await readText(stateFile(fx))).toBe(stateBefore);

    fx.clock.now = new Date(validUntil + 1000);
    const envBefore = (await readText(fx.env))!;
    const [late] = await fx.engine.retire([fx.policy]);
    expect(late!.result).toBe('retired');
    expect(late!.retired).toContain('api: retired the previous token');
    const expected = envBefore.replace(/^API_TOKEN_PREVIOUS=.*\n/m, '');
    expect(expected).not.toBe(envBefore);
    expect(await readText(fx.env)).toBe(expected);
    const after = await fileShots(allFiles(fx));
    expect(after.slice(1)).toEqual(before.slice(1)); // the token and hash files are untouched
    expect(after[0]!.mode).toBe(before[0]!.mode);
    const state = (await readState(fx.stateDir))!;
    expect(state.previous).toBeNull();
    expect(state.version).toBe(2);
    expect((await readAudit(fx.stateDir)).at(-1)).toMatchObject({ event: 'retired', version: 1 });
    await expectNoJournal(fx);
  });

  it('rotate-now retires an expired previous token before rotating', async () => {
    const fx = await setup();
    await rotateOk(fx);
    fx.clock.now = new Date(T0.getTime() + 10 * 60_000);
    const { token: v2 } = await rotateOk(fx);
    fx.clock.now = new Date(T0.getTime() + 3 * HOUR);
    const { outcome, token: v3 } = await rotateOk(fx);
    expect(outcome.retired).toContain('retired the previous token');
    const events = (await readAudit(fx.stateDir)).map((a) => a.event);
    expect(events.slice(-2)).toEqual(['retired', 'rotated']);
    const state = (await readState(fx.stateDir))!;
    expect(state.version).toBe(3);
    expect(state.currentSha256).toBe(sha256(v3));
    expect(state.previous!.sha256).toBe(sha256(v2));
    const envText = (await readText(fx.env))!;
    expect(envValue(envText, 'API_TOKEN_PREVIOUS')).toBe(v2);
    expect(envText.match(/^API_TOKEN_PREVIOUS=/gm)).toHaveLength(1);
  });
});

describe('retries', () => {
  /** The env-file target, failing its first `failures` stage calls with `code`. */
  function flaky(fx: Fx, failures: number, code: 'TARGET_TRANSIENT' | 'TARGET'): { calls: number } {
    const counter = { calls: 0 };
    fx.wrap = (t, cfg) => {
      const s = spy(t, fx.staged);
      if (cfg.type !== 'env-file') return s;
      return {
        ...s,
        async stage(ctx: RotationContext, snap: Snapshot) {
          counter.calls++;
          if (counter.calls <= failures) throw new RekeyError(code, `${t.description}: connection reset (ECONNRESET); retry later`);
          return s.stage(ctx, snap);
        },
      };
    };
    return counter;
  }

  it('a transient target error is retried and the rotation succeeds', async () => {
    const fx = await setup();
    const counter = flaky(fx, 2, 'TARGET_TRANSIENT');
    const { outcome, token } = await rotateOk(fx);
    expect(counter.calls).toBe(3);
    expect(outcome.version).toBe(1);
    expect(fx.log.lines.filter((l) => l.includes('stage failed') && l.includes('retrying'))).toHaveLength(2);
    expect((await readState(fx.stateDir))!.currentSha256).toBe(sha256(token));
    await expectNoJournal(fx);
  });

  it('a non-transient error is not retried', async () => {
    const fx = await setup();
    const before = await fileShots(allFiles(fx));
    const counter = flaky(fx, 1, 'TARGET');
    const o = await rotate(fx);
    expect(counter.calls).toBe(1);
    expect(o.result).toBe('failed');
    expect(o.rolledBack).toBe(true);
    expect(fx.log.lines.some((l) => l.includes('retrying'))).toBe(false);
    expect(await fileShots(allFiles(fx))).toEqual(before);
    expect(await readState(fx.stateDir)).toBeUndefined();
  });

  it('a transient error that persists is given up after the configured attempts, then rolled back', async () => {
    const fx = await setup();
    const before = await fileShots(allFiles(fx));
    const counter = flaky(fx, 100, 'TARGET_TRANSIENT');
    const o = await rotate(fx);
    expect(counter.calls).toBe(FAST_RETRY.attempts);
    expect(o.result).toBe('failed');
    expect(o.errorCode).toBe('TARGET_TRANSIENT');
    expect(o.rolledBack).toBe(true);
    expect(await fileShots(allFiles(fx))).toEqual(before);
  });
});

describe('first rotation', () => {
  it('adopts a token already in the env file as the previous one', async () => {
    const fx = await setup();
    const { token } = await rotateOk(fx);
    const state = (await readState(fx.stateDir))!;
    expect(state.version).toBe(1);
    expect(state.previous).toEqual({
      sha256: sha256(PREEXISTING),
      fingerprint: sha256(PREEXISTING).slice(0, 8),
      validUntil: new Date(T0.getTime() + HOUR).toISOString(),
    });
    const text = (await readText(fx.env))!;
    expect(envValue(text, 'API_TOKEN')).toBe(token);
    expect(envValue(text, 'API_TOKEN_PREVIOUS')).toBe(PREEXISTING);
    // Every other byte is as it was.
    expect(text.replace(/^API_TOKEN(_PREVIOUS)?=.*\n/gm, '')).toBe(ENV_TEXT.replace(/^API_TOKEN=.*\n/m, ''));
    expect((await fx.engine.verifyToken(fx.policy, new Secret(PREEXISTING))).match).toBe('previous');
  });

  it('without a token in place there is no previous one', async () => {
    const fx = await setup({ envText: null });
    const { token } = await rotateOk(fx);
    const state = (await readState(fx.stateDir))!;
    expect(state.previous).toBeNull();
    expect(await readText(fx.env)).toBe(`API_TOKEN=${token}\n`);
    expect((await fsp.stat(fx.env)).mode & 0o777).toBe(0o600);
  });
});

describe('unfinished rotations', () => {
  it('a recovery file without a journal (a crash between the two writes of "begin") is removed', async () => {
    const fx = await setup();
    await rotateOk(fx);
    const orphan = join(fx.stateDir, 'recovery', 'api.json');
    await fsp.writeFile(orphan, JSON.stringify({ 0: { content: Buffer.from(ENV_TEXT).toString('base64') } }), { mode: 0o600 });
    const [o] = await fx.engine.recover([fx.policy]);
    expect(o!.result).toBe('unchanged');
    await expectNoJournal(fx);
  });

  it('temp files of writes killed midway are removed from the state directory (only this policy\'s)', async () => {
    const fx = await setup();
    await rotateOk(fx);
    const mine = ['journal', 'recovery', 'policies', 'attempts'].map((d) => join(fx.stateDir, d, '.api.json.rekey-0123456789ab.tmp'));
    const other = join(fx.stateDir, 'recovery', '.api2.json.rekey-0123456789ab.tmp');
    for (const f of [...mine, other]) await fsp.writeFile(f, 'old bytes', { mode: 0o600 });
    const [o] = await fx.engine.recover([fx.policy]);
    expect(o!.result).toBe('unchanged');
    for (const f of mine) expect(await readText(f)).toBeUndefined();
    expect(await readText(other)).toBe('old bytes');
  });

  it('a journal in phase "begin" is rolled back by the next rotate-now, which then rotates', async () => {
    const fx = await setup();
    const { token: v1 } = await rotateOk(fx);
    const before = await fileShots(allFiles(fx));
    expect(await fx.engine.journal.read('api')).toBeUndefined();
    // Journal left by a dead process: write it by hand from a real snapshot.
    const targets = fx.policy.targets.map((c) => realCreateTarget(c, { policy: 'api', env: {}, log: fx.log }));
    const ctx = {
      policy: 'api',
      version: 2,
      sha256: sha256('half-rotated-token-0002'),
      fingerprint: sha256('half-rotated-token-0002').slice(0, 8),
      rotatedAt: fx.clock.now,
      graceMs: HOUR,
      previousSha256: sha256(v1),
      token: new Secret('half-rotated-token-0002'),
      log: fx.log,
    };
    const snaps = await Promise.all(targets.map((t) => t.snapshot(ctx)));
    await fx.engine.journal.begin(
      {
        policy: 'api',
        version: 2,
        phase: 'begin',
        sha256: ctx.sha256,
        fingerprint: ctx.fingerprint,
        rotatedAt: ctx.rotatedAt.toISOString(),
        graceMs: HOUR,
        previousSha256: sha256(v1),
        targets: targets.map((t, i) => ({ index: i, kind: t.kind, description: t.description, meta: snaps[i]!.meta })),
        pid: 999_999,
        startedAt: fx.clock.now.toISOString(),
      },
      Object.fromEntries(snaps.map((s, i) => [i, s.secret])),
    );
    await targets[0]!.stage(ctx, snaps[0]!);
    await targets[1]!.stage(ctx, snaps[1]!);
    expect(await fileShots(allFiles(fx))).not.toEqual(before);

    fx.wrap = (t) => spy(t, fx.staged);
    const o = await rotate(fx);
    expect(o.recovered).toMatch(/^api: rolled back an unfinished rotation to v2 \(started by pid 999999/);
    expect(o.result).toBe('rotated');
    expect(o.version).toBe(2);
    const state = (await readState(fx.stateDir))!;
    expect(state.previous!.sha256).toBe(sha256(v1));
    const events = (await readAudit(fx.stateDir)).map((a) => a.event);
    expect(events.slice(-2)).toEqual(['recovered', 'rotated']);
    await expectNoJournal(fx);
  });
});
