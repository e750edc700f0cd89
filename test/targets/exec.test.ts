import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecTargetSchema } from '../../src/config/schema.js';
import type { ExecTargetConfig } from '../../src/config/schema.js';
import { createExecTarget } from '../../src/targets/exec.js';
import { RekeyError } from '../../src/util/errors.js';
import { captureLogger, makeContext, makeToken, runConformance } from './conformance.js';

const FIX = resolve(import.meta.dirname, '../fixtures/exec');
const fixture = (name: string) => join(FIX, name);

function config(raw: Record<string, unknown>): ExecTargetConfig {
  return ExecTargetSchema.parse({ type: 'exec', ...raw });
}

const targetEnv = (log = captureLogger()) => ({ policy: 'conf', env: { PATH: process.env.PATH }, log });

async function readOrUndefined(file: string): Promise<string | undefined> {
  try {
    const text = await readFile(file, 'utf8');
    return text === '' ? undefined : text;
  } catch {
    return undefined;
  }
}

runConformance({
  name: 'exec',
  skip: ['readBack'],
  async setup() {
    const dir = await mkdtemp(join(tmpdir(), 'rekey-exec-'));
    const file = join(dir, 'token');
    const target = createExecTarget(config({
      command: [fixture('write-token'), file],
      rollbackCommand: [fixture('write-token'), file],
    }), targetEnv());
    return {
      target,
      holds: 'token',
      current: () => readOrUndefined(file),
      seed: (token) => writeFile(file, token, { mode: 0o600 }),
      teardown: () => rm(dir, { recursive: true, force: true }),
    };
  },
  async broken() {
    const log = captureLogger();
    const target = createExecTarget(config({
      command: [fixture('echo-stdin'), '1'],
      rollbackCommand: [fixture('echo-stdin'), '1'],
    }), targetEnv(log));
    return { target, logs: () => log.text(), teardown: async () => undefined };
  },
});

describe('exec target', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rekey-exec-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('describes itself by program name only', () => {
    expect(createExecTarget(config({ command: ['/usr/local/bin/kubectl', 'apply', '-f', '-'] }), targetEnv()).description).toBe('exec kubectl …');
    expect(createExecTarget(config({ command: ['/opt/push-token'] }), targetEnv()).description).toBe('exec push-token');
  });

  it('stage hands the token over stdin, with only the allowlisted environment', async () => {
    const env = { PATH: process.env.PATH, KUBECONFIG: '/etc/kube/config', AWS_SECRET_ACCESS_KEY: 'do-not-pass-me' };
    const target = createExecTarget(config({ command: [fixture('capture'), dir], env: ['KUBECONFIG'] }), { policy: 'p', env, log: captureLogger() });
    const token = makeToken();
    const ctx = makeContext('p', token, 2);
    const snap = await target.snapshot(ctx);
    await target.stage(ctx, snap);
    expect(await readFile(join(dir, 'stdin'), 'utf8')).toBe(token);
    expect(await readFile(join(dir, 'cmdline'), 'utf8')).not.toContain(token);
    expect((await readFile(join(dir, 'environ'), 'utf8')).split('\0').filter(Boolean)).toEqual(['KUBECONFIG=/etc/kube/config']);
  });

  it('rollback after a crash gets the previous token from the snapshot (JSON round trip)', async () => {
    const file = join(dir, 'token');
    const target = createExecTarget(config({ command: [fixture('write-token'), file], rollbackCommand: [fixture('write-token'), file] }), targetEnv());
    const old = makeToken();
    const next = makeToken();
    await writeFile(file, old);
    const ctx = makeContext('p', next, 2, old);
    const snap = await target.snapshot(ctx);
    expect(JSON.stringify(snap.meta)).not.toContain(old);
    const journal = JSON.parse(JSON.stringify(snap));
    await target.stage(ctx, journal);
    expect(await readFile(file, 'utf8')).toBe(next);
    // A later process: no token, no previousToken in ctx.
    const { token: _t, previousToken: _p, ...later } = ctx;
    await target.rollback(later, journal);
    expect(await readFile(file, 'utf8')).toBe(old);
  });

  it('rollback refuses to guess when the recovery file lost the previous token', async () => {
    const target = createExecTarget(config({ command: ['/bin/true'], rollbackCommand: ['/bin/true'] }), targetEnv());
    const ctx = makeContext('p', makeToken(), 2, makeToken());
    const snap = await target.snapshot(ctx);
    const { token: _t, previousToken: _p, ...later } = ctx;
    const err = await target.rollback(later, { meta: snap.meta }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RekeyError);
    expect((err as RekeyError).code).toBe('RECOVERY');
  });

  it('without rollbackCommand, rollback only warns', async () => {
    const log = captureLogger();
    const target = createExecTarget(config({ command: ['/bin/true'] }), targetEnv(log));
    const ctx = makeContext('p', makeToken(), 2, makeToken(), log);
    await target.rollback(ctx, await target.snapshot(ctx));
    expect(log.text()).toContain('no rollbackCommand');
  });

  it('on a first rotation (no previous token) rollbackCommand is skipped with a warning', async () => {
    const log = captureLogger();
    const marker = join(dir, 'ran');
    const target = createExecTarget(config({ command: ['/bin/true'], rollbackCommand: [fixture('write-token'), marker] }), targetEnv(log));
    const ctx = makeContext('p', makeToken(), 1, undefined, log);
    const snap = JSON.parse(JSON.stringify(await target.snapshot(ctx)));
    await target.rollback(ctx, snap);
    expect(log.text()).toContain('rollbackCommand skipped');
    expect(await readOrUndefined(marker)).toBeUndefined();
  });

  it('logs what the command wrote to stderr, scrubbed', async () => {
    const log = captureLogger();
    const target = createExecTarget(config({ command: [fixture('echo-stdin'), '0'] }), targetEnv(log));
    const token = makeToken();
    const previous = makeToken();
    const ctx = makeContext('p', token, 2, previous, log);
    await target.stage(ctx, await target.snapshot(ctx));
    expect(log.text()).toContain('error: the server rejected [redacted]');
    expect(log.text()).not.toContain(token);
  });

  it('a failing command gives one line that names the target and hides the token', async () => {
    const target = createExecTarget(config({ command: [fixture('echo-stdin'), '4'] }), targetEnv());
    const token = makeToken();
    const ctx = makeContext('p', token, 2);
    const err = await target.stage(ctx, await target.snapshot(ctx)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RekeyError);
    expect((err as RekeyError).message).toBe('exec echo-stdin …: exited with code 4: error: the server rejected [redacted]');
  });

  it('a hung command is a transient failure', async () => {
    const target = createExecTarget(config({ command: [fixture('hang'), dir], timeoutMs: 200 }), targetEnv());
    const ctx = makeContext('p', makeToken(), 2);
    const err = await target.stage(ctx, await target.snapshot(ctx)).catch((e: unknown) => e);
    expect((err as RekeyError).code).toBe('TARGET_TRANSIENT');
    expect((err as RekeyError).transient).toBe(true);
  });

  it('rollbackCommand failures name the rollback command and hide the previous token', async () => {
    const target = createExecTarget(config({ command: ['/bin/true'], rollbackCommand: [fixture('echo-stdin'), '5'] }), targetEnv());
    const previous = makeToken();
    const ctx = makeContext('p', makeToken(), 2, previous);
    const err = await target.rollback(ctx, await target.snapshot(ctx)).catch((e: unknown) => e);
    expect((err as RekeyError).message).toBe('exec true (rollbackCommand): exited with code 5: error: the server rejected [redacted]');
  });
});
