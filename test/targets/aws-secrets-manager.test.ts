import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderError } from '../../src/cli/render.js';
import { AwsSecretsManagerTargetSchema, type AwsSecretsManagerTargetConfig } from '../../src/config/schema.js';
import { awsVersionId, createAwsSecretsManagerTarget, nextPromoteMove, nextRollbackMove } from '../../src/targets/aws-secrets-manager.js';
import type { Target } from '../../src/targets/contract.js';
import { RekeyError } from '../../src/util/errors.js';
import { startAwsSecretsManagerDouble, type AwsSecretsManagerDouble } from '../doubles/aws-secrets-manager.js';
import { captureLogger, makeContext, makeToken, runConformance, sha256 } from './conformance.js';

// The SDK's default credential chain reads these; nothing else on this machine may be picked up.
const KEY_ID = 'AKIAREKEYTEST0000001';
const SECRET_KEY = 'rekeyTestSecretAccessKey/0123456789abcdefgh';
const REGION = 'eu-west-1';
const ENV_VARS = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION', 'AWS_PROFILE', 'AWS_EC2_METADATA_DISABLED', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_CONFIG_FILE'];
const saved: Record<string, string | undefined> = {};
beforeAll(() => {
  for (const k of ENV_VARS) saved[k] = process.env[k];
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
  process.env.AWS_ACCESS_KEY_ID = KEY_ID;
  process.env.AWS_SECRET_ACCESS_KEY = SECRET_KEY;
  process.env.AWS_REGION = REGION;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(tmpdir(), 'rekey-no-such-aws-credentials');
  process.env.AWS_CONFIG_FILE = path.join(tmpdir(), 'rekey-no-such-aws-config');
});
afterAll(() => {
  for (const k of ENV_VARS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

const NAME = 'prod/billing/api';
type Settings = Partial<Omit<AwsSecretsManagerTargetConfig, 'type'>>;

const startDouble = () => startAwsSecretsManagerDouble({ region: REGION, accessKeyId: KEY_ID, secretAccessKey: SECRET_KEY });

function build(d: AwsSecretsManagerDouble, settings: Settings = {}) {
  const config = AwsSecretsManagerTargetSchema.parse({ type: 'aws-secrets-manager', secretId: NAME, region: REGION, endpoint: d.endpoint, ...settings });
  const log = captureLogger();
  return { target: createAwsSecretsManagerTarget(config, { policy: 'billing', env: process.env, log }), log };
}

async function errorOf(p: Promise<unknown>): Promise<RekeyError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RekeyError);
    return e as RekeyError;
  }
  throw new Error('expected the call to fail');
}

function expectClean(e: RekeyError, ...secrets: string[]): void {
  expect(e.message).not.toContain('\n');
  const shown = `${renderError(e)}\n${e.message}\n${String(e.stack)}`;
  for (const s of [SECRET_KEY, ...secrets]) expect(shown).not.toContain(s);
}

function jsonField(s: string | undefined, key: string): string | undefined {
  if (s === undefined) return undefined;
  const v = (JSON.parse(s) as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : undefined;
}

runConformance({
  name: 'aws-secrets-manager (string)',
  async setup() {
    const d = await startDouble();
    d.createSecret(NAME);
    return {
      target: build(d).target,
      holds: 'token',
      current: async () => d.currentValue(NAME),
      seed: async (token) => void d.putValue(NAME, token),
      teardown: () => d.close(),
    };
  },
  async broken() {
    const d = await startDouble();
    d.createSecret(NAME, 'x');
    d.failAll('AccessDenied');
    const { target, log } = build(d);
    return { target, logs: () => log.text(), teardown: () => d.close() };
  },
});

runConformance({
  name: 'aws-secrets-manager (jsonKey)',
  async setup() {
    const d = await startDouble();
    d.createSecret(NAME);
    return {
      target: build(d, { jsonKey: 'apiKey' }).target,
      holds: 'token',
      current: async () => jsonField(d.currentValue(NAME), 'apiKey'),
      seed: async (token) => void d.putValue(NAME, JSON.stringify({ username: 'billing', apiKey: token, port: 443 })),
      teardown: () => d.close(),
    };
  },
  async broken() {
    const d = await startDouble();
    d.createSecret(NAME, '{}');
    d.failAll('InternalServiceError');
    const { target, log } = build(d, { jsonKey: 'apiKey' });
    return { target, logs: () => log.text(), teardown: () => d.close() };
  },
});

describe('aws-secrets-manager target', () => {
  let d: AwsSecretsManagerDouble | undefined;
  let t: Target | undefined;
  afterEach(async () => {
    await t?.close();
    await d?.close();
    t = undefined;
    d = undefined;
  });

  async function setup(settings: Settings = {}) {
    d = await startDouble();
    const b = build(d, settings);
    t = b.target;
    return { d, t: b.target, log: b.log };
  }

  it('describes itself with the secret, the key and the region', async () => {
    const { t } = await setup({ jsonKey: 'apiKey' });
    expect(t.description).toBe(`aws-secrets-manager ${NAME}#apiKey (${REGION})`);
    expect(t.kind).toBe('aws-secrets-manager');
  });

  it('moves the labels as AWS rotation does: stage, promote, rollback', async () => {
    const { d, t } = await setup();
    d.createSecret(NAME);
    const v0 = d.putValue(NAME, makeToken());
    const old = makeToken();
    const v1 = d.putValue(NAME, old);
    expect(d.stages(NAME)).toEqual({ [v0]: ['AWSPREVIOUS'], [v1]: ['AWSCURRENT'] });

    const next = makeToken();
    const ctx = makeContext('billing', next, 2, old);
    const ours = awsVersionId('billing', 2, ctx.sha256);
    const snap = await t.snapshot(ctx);
    expect(snap).toEqual({ meta: { versionId: ours, currentVersionId: v1, previousVersionId: v0 } });

    await t.stage(ctx, snap);
    expect(d.stages(NAME)).toEqual({ [v0]: ['AWSPREVIOUS'], [v1]: ['AWSCURRENT'], [ours]: ['AWSPENDING'] });
    expect(d.currentValue(NAME)).toBe(old);

    await t.promote(ctx, snap);
    expect(d.stages(NAME)).toEqual({ [v0]: [], [v1]: ['AWSPREVIOUS'], [ours]: ['AWSCURRENT'] });
    expect(d.currentValue(NAME)).toBe(next);
    const update = d.requests.find((r) => r.operation === 'UpdateSecretVersionStage')!;
    expect(update.body).toEqual({ SecretId: NAME, VersionStage: 'AWSCURRENT', MoveToVersionId: ours, RemoveFromVersionId: v1 });

    await t.rollback(ctx, snap);
    expect(d.stages(NAME)).toEqual({ [v0]: ['AWSPREVIOUS'], [v1]: ['AWSCURRENT'], [ours]: [] });
    expect(d.currentValue(NAME)).toBe(old);
    const before = d.requestCount();
    await t.rollback(ctx, snap);
    expect(d.requests.slice(before).map((r) => r.operation)).toEqual(['DescribeSecret']);
  });

  it('rollback after stage gives AWSPENDING back to the version that had it', async () => {
    const { d, t } = await setup();
    d.createSecret(NAME, makeToken());
    const otherPending = d.putValue(NAME, makeToken(), ['AWSPENDING']);
    const ctx = makeContext('billing', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    expect(snap.meta.pendingVersionId).toBe(otherPending);
    await t.stage(ctx, snap);
    const ours = snap.meta.versionId as string;
    expect(d.stages(NAME)[ours]).toEqual(['AWSPENDING']);
    expect(d.stages(NAME)[otherPending]).toEqual([]);
    await t.rollback(ctx, snap);
    expect(d.stages(NAME)[ours]).toEqual([]);
    expect(d.stages(NAME)[otherPending]).toEqual(['AWSPENDING']);
  });

  it('uses a deterministic UUID-shaped ClientRequestToken, so a retried stage is idempotent', async () => {
    const { d, t } = await setup();
    d.createSecret(NAME, makeToken());
    const ctx = makeContext('billing', makeToken(), 7);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.stage(ctx, snap);
    const puts = d.requests.filter((r) => r.operation === 'PutSecretValue');
    expect(puts).toHaveLength(1);
    const token = puts[0]!.body.ClientRequestToken as string;
    expect(token).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(token).toBe(awsVersionId('billing', 7, ctx.sha256));
    expect(puts[0]!.body.VersionStages).toEqual(['AWSPENDING']);
    expect(Object.keys(d.stages(NAME))).toHaveLength(2);
    // Another token for the same version, or the same token for another version, gets another id.
    expect(awsVersionId('billing', 7, sha256('other'))).not.toBe(token);
    expect(awsVersionId('billing', 8, ctx.sha256)).not.toBe(token);
  });

  it('a PutSecretValue that landed although the answer timed out is not duplicated on retry', async () => {
    const { d, t } = await setup({ timeoutMs: 200 });
    d.createSecret(NAME, makeToken());
    const ctx = makeContext('billing', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    d.slow(1_000, { operation: 'PutSecretValue', count: 1 });
    const e = await errorOf(t.stage(ctx, snap));
    expect(e.code).toBe('TARGET_TRANSIENT');
    const ours = snap.meta.versionId as string;
    while (!d.stages(NAME)[ours]) await new Promise((r) => setTimeout(r, 25));
    await t.stage(ctx, snap);
    expect(Object.keys(d.stages(NAME))).toHaveLength(2);
    expect(d.stages(NAME)[ours]).toEqual(['AWSPENDING']);
  });

  it('staging the same version again after a rollback relabels it (AWS ignores the repeated put)', async () => {
    const { d, t } = await setup();
    d.createSecret(NAME, makeToken());
    const ctx = makeContext('billing', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.rollback(ctx, snap);
    const ours = snap.meta.versionId as string;
    expect(d.stages(NAME)[ours]).toEqual([]);
    await t.stage(ctx, await t.snapshot(ctx));
    expect(d.stages(NAME)[ours]).toEqual(['AWSPENDING']);
    await t.promote(ctx, snap);
    expect(d.currentValue(NAME)).toBe(ctx.token!.reveal());
  });

  it('jsonKey merges the token and keeps every other key', async () => {
    const { d, t } = await setup({ jsonKey: 'apiKey' });
    d.createSecret(NAME, JSON.stringify({ username: 'svc', apiKey: 'old-value-000000', port: 5432, tls: { on: true } }));
    const next = makeToken();
    const ctx = makeContext('billing', next, 2);
    const snap = await t.snapshot(ctx);
    expect(snap.secret).toBeUndefined();
    await t.stage(ctx, snap);
    await t.promote(ctx, snap);
    expect(JSON.parse(d.currentValue(NAME)!)).toEqual({ username: 'svc', apiKey: next, port: 5432, tls: { on: true } });
    expect(await t.readBack()).toBe(sha256(next));
    expect((await t.readCurrentToken!())?.reveal()).toBe(next);
  });

  it('jsonKey on a value that is not a JSON object fails in snapshot, before anything changes', async () => {
    const { d, t } = await setup({ jsonKey: 'apiKey' });
    d.createSecret(NAME, 'plain-string-value');
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 2)));
    expect(e.code).toBe('TARGET');
    expect(e.message).toContain('not a JSON object');
    expectClean(e, 'plain-string-value');
    expect(await t.readBack()).toBeUndefined();
  });

  it('AccessDenied is TARGET_PERMISSION naming the missing action', async () => {
    const { d, t } = await setup();
    d.createSecret(NAME, makeToken());
    const ctx = makeContext('billing', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    d.deny(['PutSecretValue']);
    const e = await errorOf(t.stage(ctx, snap));
    expect(e.code).toBe('TARGET_PERMISSION');
    expect(e.message).toContain(`the credentials need secretsmanager:PutSecretValue on ${NAME}`);
    expect(e.message).not.toContain('arn:aws:iam'); // our own words, not the service's
    expectClean(e, ctx.token!.reveal(), KEY_ID);
    d.deny(['UpdateSecretVersionStage']);
    await t.stage(ctx, snap);
    const p = await errorOf(t.promote(ctx, snap));
    expect(p.code).toBe('TARGET_PERMISSION');
    expect(p.message).toContain('secretsmanager:UpdateSecretVersionStage');
  });

  it('a secret that does not exist is a clear error', async () => {
    const { t } = await setup();
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET');
    expect(e.message).toBe(`${t.description}: secret ${NAME} not found in ${REGION}; create it first (rekey does not create secrets) or fix secretId/region`);
    expect(await t.readBack()).toBeUndefined();
  });

  it('a secret without an AWSCURRENT value is refused in snapshot', async () => {
    const { d, t } = await setup();
    d.createSecret(NAME);
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET');
    expect(e.message).toContain('has no AWSCURRENT version; put an initial value first');
  });

  it('promote refuses when AWSCURRENT moved since the snapshot', async () => {
    const { d, t } = await setup();
    d.createSecret(NAME, makeToken());
    const ctx = makeContext('billing', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    const theirs = makeToken();
    d.putValue(NAME, theirs);
    const e = await errorOf(t.promote(ctx, snap));
    expect(e.code).toBe('TARGET_CONFLICT');
    expect(d.currentValue(NAME)).toBe(theirs);
    await t.rollback(ctx, snap);
    expect(d.currentValue(NAME)).toBe(theirs);
    expect(d.stages(NAME)[snap.meta.versionId as string]).toEqual([]);
  });

  it.each([
    ['Throttling', 'throttled'],
    ['InternalServiceError', 'InternalServiceError'],
    ['ServiceUnavailable', 'ServiceUnavailable'],
  ] as const)('%s is transient', async (kind, text) => {
    const { d, t } = await setup();
    d.createSecret(NAME, makeToken());
    d.failNext(1, kind);
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET_TRANSIENT');
    expect(e.transient).toBe(true);
    expect(e.message).toContain(text);
    await t.snapshot(makeContext('billing', makeToken(), 1));
  });

  it('an answer slower than timeoutMs is a transient timeout', async () => {
    const { d, t } = await setup({ timeoutMs: 150 });
    d.createSecret(NAME, makeToken());
    d.slow(2_000);
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET_TRANSIENT');
    expect(e.message).toContain('within 150 ms');
  });

  it('a refused connection is transient', async () => {
    const srv = http.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const config = AwsSecretsManagerTargetSchema.parse({ type: 'aws-secrets-manager', secretId: NAME, region: REGION, endpoint: `http://127.0.0.1:${port}` });
    const target = createAwsSecretsManagerTarget(config, { policy: 'p', env: process.env, log: captureLogger() });
    const e = await errorOf(target.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET_TRANSIENT');
    expectClean(e);
    await target.close();
  });

  it('wrong credentials are TARGET_PERMISSION and never shown', async () => {
    const { d } = await setup();
    d.createSecret(NAME, makeToken());
    process.env.AWS_SECRET_ACCESS_KEY = 'wrongSecretAccessKey/00000000000000000000';
    try {
      const { target } = build(d);
      const e = await errorOf(target.snapshot(makeContext('billing', makeToken(), 1)));
      expect(e.code).toBe('TARGET_PERMISSION');
      expect(e.message).toContain('AWS rejected the credentials (InvalidSignatureException)');
      expectClean(e, 'wrongSecretAccessKey/00000000000000000000');
      await target.close();
    } finally {
      process.env.AWS_SECRET_ACCESS_KEY = SECRET_KEY;
    }
  });

  it('promote and rollback work from the journal alone after a crash', async () => {
    const { d } = await setup();
    d.createSecret(NAME);
    const old = makeToken();
    const v1 = d.putValue(NAME, old);
    const next = makeToken();
    const ctx = makeContext('billing', next, 2, old);
    const first = build(d).target;
    const snap = JSON.parse(JSON.stringify(await first.snapshot(ctx)));
    await first.stage(ctx, snap);
    await first.close();
    const { token: _t, previousToken: _p, ...fromJournal } = ctx;
    const second = build(d).target;
    await second.promote(fromJournal, snap);
    expect(d.currentValue(NAME)).toBe(next);
    await second.rollback(fromJournal, snap);
    expect(d.currentValue(NAME)).toBe(old);
    expect(d.stages(NAME)[v1]).toEqual(['AWSCURRENT']);
    await second.close();
  });

  it('label planning is pure and follows the snapshot', () => {
    const ours = 'o'.repeat(36);
    const cur = 'c'.repeat(36);
    const prev = 'p'.repeat(36);
    const meta = { currentVersionId: cur, previousVersionId: prev };
    expect(nextPromoteMove({ [cur]: ['AWSCURRENT'], [ours]: ['AWSPENDING'] }, ours, meta)).toEqual({ label: 'AWSCURRENT', moveTo: ours, removeFrom: cur });
    expect(nextPromoteMove({ [cur]: ['AWSPREVIOUS'], [ours]: ['AWSCURRENT', 'AWSPENDING'] }, ours, meta)).toEqual({ label: 'AWSPENDING', removeFrom: ours });
    expect(nextPromoteMove({ [cur]: ['AWSPREVIOUS'], [ours]: ['AWSCURRENT'] }, ours, meta)).toBeUndefined();
    expect(nextPromoteMove({ [cur]: ['AWSCURRENT'] }, ours, meta)).toBe('missing');
    expect(nextPromoteMove({ [prev]: ['AWSCURRENT'], [ours]: ['AWSPENDING'] }, ours, meta)).toBe('conflict');
    expect(nextRollbackMove({ [cur]: ['AWSPREVIOUS'], [ours]: ['AWSCURRENT'] }, ours, meta)).toEqual({ label: 'AWSCURRENT', moveTo: cur, removeFrom: ours });
    // The old AWSPREVIOUS holder is unlabelled now (DescribeSecret omits it) but gets its label back.
    expect(nextRollbackMove({ [cur]: ['AWSCURRENT'], [ours]: ['AWSPREVIOUS'] }, ours, meta)).toEqual({ label: 'AWSPREVIOUS', moveTo: prev, removeFrom: ours });
    expect(nextRollbackMove({ [cur]: ['AWSCURRENT'], [ours]: ['AWSPREVIOUS'] }, ours, { currentVersionId: cur })).toEqual({ label: 'AWSPREVIOUS', removeFrom: ours });
    expect(nextRollbackMove({ [cur]: ['AWSCURRENT'], [ours]: ['AWSPENDING'] }, ours, meta)).toEqual({ label: 'AWSPENDING', removeFrom: ours });
    expect(nextRollbackMove({ [cur]: ['AWSCURRENT'] }, ours, meta)).toBeUndefined();
    expect(() => nextRollbackMove({ [ours]: ['AWSCURRENT'] }, ours, {})).toThrow();
  });
});
