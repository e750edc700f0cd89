/** The AWS double must reject what Secrets Manager rejects; otherwise the target's tests prove nothing. */
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startAwsSecretsManagerDouble, type AwsSecretsManagerDouble } from './aws-secrets-manager.js';

const NAME = 'app/token';

describe('aws secrets manager double', () => {
  let d: AwsSecretsManagerDouble | undefined;
  const clients: SecretsManagerClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await d?.close();
    d = undefined;
  });

  async function start() {
    d = await startAwsSecretsManagerDouble();
    return d;
  }

  function sdk(over: { secretAccessKey?: string; accessKeyId?: string; region?: string } = {}) {
    const c = new SecretsManagerClient({
      region: over.region ?? d!.region,
      endpoint: d!.endpoint,
      maxAttempts: 1,
      credentials: { accessKeyId: over.accessKeyId ?? d!.accessKeyId, secretAccessKey: over.secretAccessKey ?? d!.secretAccessKey },
    });
    clients.push(c);
    return c;
  }

  /** The error name (the __type) a call fails with. */
  async function failure(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (e) {
      return (e as Error).name;
    }
    throw new Error('expected the call to fail');
  }

  async function raw(headers: Record<string, string>, body = '{}') {
    const res = await fetch(d!.endpoint, { method: 'POST', headers, body });
    return { status: res.status, body: (await res.json()) as { __type: string; message: string } };
  }

  it('speaks JSON 1.1 with the AWS SDK (signed requests round-trip)', async () => {
    await start();
    const c = sdk();
    const created = await c.send(new CreateSecretCommand({ Name: NAME, SecretString: 'v1' }));
    expect(created.ARN).toMatch(/^arn:aws:secretsmanager:eu-west-1:\d{12}:secret:app\/token-[0-9a-f]{6}$/);
    const got = await c.send(new GetSecretValueCommand({ SecretId: created.ARN! }));
    expect(got).toMatchObject({ Name: NAME, SecretString: 'v1', VersionStages: ['AWSCURRENT'], VersionId: created.VersionId });
    expect(got.CreatedDate).toBeInstanceOf(Date);
    expect(await failure(c.send(new CreateSecretCommand({ Name: NAME, SecretString: 'again' })))).toBe('ResourceExistsException');
  });

  it('rejects a request without SigV4, with a bad signature, wrong scope or unknown key', async () => {
    await start();
    d!.createSecret(NAME, 'v1');
    const base = { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'secretsmanager.GetSecretValue' };
    const body = JSON.stringify({ SecretId: NAME });
    const missing = await raw(base, body);
    expect(missing.status).toBe(400);
    expect(missing.body.__type).toBe('MissingAuthenticationTokenException');
    expect((await raw({ ...base, Authorization: 'Bearer abc' }, body)).body.__type).toBe('IncompleteSignatureException');
    const forged = `AWS4-HMAC-SHA256 Credential=${d!.accessKeyId}/20240101/eu-west-1/secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`;
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const bad = await raw({ ...base, Authorization: forged.replace('20240101', stamp.slice(0, 8)), 'X-Amz-Date': stamp }, body);
    expect(bad.body.__type).toBe('InvalidSignatureException');
    expect(await failure(sdk({ secretAccessKey: 'wrong-secret-key' }).send(new GetSecretValueCommand({ SecretId: NAME })))).toBe('InvalidSignatureException');
    expect(await failure(sdk({ region: 'us-east-1' }).send(new GetSecretValueCommand({ SecretId: NAME })))).toBe('InvalidSignatureException');
    expect(await failure(sdk({ accessKeyId: 'AKIAUNKNOWN000000000' }).send(new GetSecretValueCommand({ SecretId: NAME })))).toBe('UnrecognizedClientException');
    expect(d!.requests.every((r) => r.status === 400)).toBe(true);
  });

  it('rejects the wrong content type, path, method or operation', async () => {
    await start();
    const ok = { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'secretsmanager.DescribeSecret' };
    expect((await raw({ ...ok, 'Content-Type': 'application/json' })).body.__type).toBe('UnknownOperationException');
    expect((await raw({ ...ok, 'X-Amz-Target': 'secretsmanager.DeleteEverything' })).body.__type).toBe('UnknownOperationException');
    expect((await raw({ ...ok, 'X-Amz-Target': 'kms.DescribeSecret' })).body.__type).toBe('UnknownOperationException');
    const get = await fetch(d!.endpoint, { headers: ok });
    expect(get.status).toBe(404);
  });

  it('ClientRequestToken is the VersionId and an idempotency key', async () => {
    await start();
    d!.createSecret(NAME, 'v1');
    const c = sdk();
    const token = randomUUID();
    const a = await c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'v2', ClientRequestToken: token, VersionStages: ['AWSPENDING'] }));
    expect(a.VersionId).toBe(token);
    expect(a.VersionStages).toEqual(['AWSPENDING']);
    const again = await c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'v2', ClientRequestToken: token, VersionStages: ['AWSPENDING'] }));
    expect(again.VersionId).toBe(token);
    expect(Object.keys(d!.stages(NAME))).toHaveLength(2);
    expect(await failure(c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'other', ClientRequestToken: token })))).toBe('ResourceExistsException');
    expect(await failure(c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'x', ClientRequestToken: 'too-short' })))).toBe('ValidationException');
    expect(await failure(c.send(new PutSecretValueCommand({ SecretId: NAME })))).toBe('InvalidRequestException');
    expect(await failure(c.send(new PutSecretValueCommand({ SecretId: 'missing', SecretString: 'x' })))).toBe('ResourceNotFoundException');
  });

  it('a repeated put of an unlabelled version is ignored: its labels stay off', async () => {
    await start();
    d!.createSecret(NAME, 'v1');
    const c = sdk();
    const token = randomUUID();
    await c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'v2', ClientRequestToken: token, VersionStages: ['AWSPENDING'] }));
    await c.send(new UpdateSecretVersionStageCommand({ SecretId: NAME, VersionStage: 'AWSPENDING', RemoveFromVersionId: token }));
    const again = await c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'v2', ClientRequestToken: token, VersionStages: ['AWSPENDING'] }));
    expect(again.VersionStages ?? []).toEqual([]);
    expect(d!.stages(NAME)[token]).toEqual([]);
  });

  it('PutSecretValue moves labels: AWSCURRENT by default (AWSPREVIOUS follows), AWSPENDING when asked', async () => {
    await start();
    const { versionId: v1 } = d!.createSecret(NAME, 'v1');
    const c = sdk();
    const p1 = await c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'p1', VersionStages: ['AWSPENDING'] }));
    const p2 = await c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'p2', VersionStages: ['AWSPENDING'] }));
    expect(d!.stages(NAME)).toEqual({ [v1!]: ['AWSCURRENT'], [p1.VersionId!]: [], [p2.VersionId!]: ['AWSPENDING'] });
    const v2 = await c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'v2' }));
    expect(d!.stages(NAME)).toEqual({ [v1!]: ['AWSPREVIOUS'], [p1.VersionId!]: [], [p2.VersionId!]: ['AWSPENDING'], [v2.VersionId!]: ['AWSCURRENT'] });
    // DescribeSecret lists only versions that carry a label.
    const desc = await c.send(new DescribeSecretCommand({ SecretId: NAME }));
    expect(desc.VersionIdsToStages).toEqual({ [v1!]: ['AWSPREVIOUS'], [p2.VersionId!]: ['AWSPENDING'], [v2.VersionId!]: ['AWSCURRENT'] });
  });

  it('UpdateSecretVersionStage follows AWS: RemoveFromVersionId must name the holder, AWSCURRENT cannot be removed', async () => {
    await start();
    const { versionId: v1 } = d!.createSecret(NAME, 'v1');
    const v2 = d!.putValue(NAME, 'v2', ['AWSPENDING']);
    const c = sdk();
    const move = (o: { label: string; to?: string; from?: string }) =>
      c.send(new UpdateSecretVersionStageCommand({ SecretId: NAME, VersionStage: o.label, ...(o.to ? { MoveToVersionId: o.to } : {}), ...(o.from ? { RemoveFromVersionId: o.from } : {}) }));
    expect(await failure(move({ label: 'AWSCURRENT', to: v2 }))).toBe('InvalidParameterException');
    expect(await failure(move({ label: 'AWSCURRENT', to: v2, from: v2 }))).toBe('InvalidParameterException');
    expect(await failure(move({ label: 'AWSCURRENT', from: v1 }))).toBe('InvalidParameterException');
    expect(await failure(move({ label: 'AWSPENDING', from: v1 }))).toBe('InvalidParameterException');
    expect(await failure(move({ label: 'AWSCURRENT', to: randomUUID(), from: v1 }))).toBe('ResourceNotFoundException');
    expect(await failure(move({ label: 'AWSPENDING', to: v1 }))).toBe('InvalidParameterException'); // AWSPENDING sits on v2
    expect(await failure(move({ label: 'AWSPENDING' }))).toBe('InvalidParameterException');
    expect(d!.stages(NAME)).toEqual({ [v1!]: ['AWSCURRENT'], [v2]: ['AWSPENDING'] });

    await move({ label: 'AWSCURRENT', to: v2, from: v1 });
    expect(d!.stages(NAME)).toEqual({ [v1!]: ['AWSPREVIOUS'], [v2]: ['AWSCURRENT', 'AWSPENDING'] });
    await move({ label: 'AWSPENDING', from: v2 });
    expect(d!.stages(NAME)).toEqual({ [v1!]: ['AWSPREVIOUS'], [v2]: ['AWSCURRENT'] });
    await move({ label: 'AWSCURRENT', to: v1, from: v2 });
    expect(d!.stages(NAME)).toEqual({ [v1!]: ['AWSCURRENT'], [v2]: ['AWSPREVIOUS'] });
    await move({ label: 'AWSCURRENT', to: v1 }); // already there: nothing to do
    expect(d!.stages(NAME)).toEqual({ [v1!]: ['AWSCURRENT'], [v2]: ['AWSPREVIOUS'] });
  });

  it('GetSecretValue: AWSCURRENT by default, a stage or a VersionId, and both must agree', async () => {
    await start();
    const { versionId: v1 } = d!.createSecret(NAME, 'v1');
    const v2 = d!.putValue(NAME, 'v2', ['AWSPENDING']);
    const c = sdk();
    expect((await c.send(new GetSecretValueCommand({ SecretId: NAME }))).SecretString).toBe('v1');
    expect((await c.send(new GetSecretValueCommand({ SecretId: NAME, VersionStage: 'AWSPENDING' }))).SecretString).toBe('v2');
    expect((await c.send(new GetSecretValueCommand({ SecretId: NAME, VersionId: v2 }))).SecretString).toBe('v2');
    expect(await failure(c.send(new GetSecretValueCommand({ SecretId: NAME, VersionId: v1!, VersionStage: 'AWSPENDING' })))).toBe('ResourceNotFoundException');
    expect(await failure(c.send(new GetSecretValueCommand({ SecretId: NAME, VersionStage: 'AWSPREVIOUS' })))).toBe('ResourceNotFoundException');
    expect(await failure(c.send(new GetSecretValueCommand({ SecretId: 'nope' })))).toBe('ResourceNotFoundException');
    d!.createSecret('empty');
    expect(await failure(c.send(new GetSecretValueCommand({ SecretId: 'empty' })))).toBe('ResourceNotFoundException');
    expect((await c.send(new DescribeSecretCommand({ SecretId: 'empty' }))).VersionIdsToStages).toBeUndefined();
  });

  it('knobs: injected failures, denied actions and request counts', async () => {
    await start();
    d!.createSecret(NAME, 'v1');
    const c = sdk();
    d!.failNext(1, 'Throttling');
    expect(await failure(c.send(new DescribeSecretCommand({ SecretId: NAME })))).toBe('ThrottlingException');
    d!.failNext(1, 'InternalServiceError', 'GetSecretValue');
    await c.send(new DescribeSecretCommand({ SecretId: NAME }));
    expect(await failure(c.send(new GetSecretValueCommand({ SecretId: NAME })))).toBe('InternalServiceError');
    expect(d!.requests.at(-1)!.status).toBe(500);
    d!.deny(['PutSecretValue']);
    expect(await failure(c.send(new PutSecretValueCommand({ SecretId: NAME, SecretString: 'x' })))).toBe('AccessDeniedException');
    d!.deny([]);
    d!.failAll('ServiceUnavailable');
    expect(await failure(c.send(new DescribeSecretCommand({ SecretId: NAME })))).toBe('ServiceUnavailable');
    d!.failAll(undefined);
    expect(d!.currentValue(NAME)).toBe('v1');
    expect(d!.requestCount('DescribeSecret')).toBe(3);
    expect(d!.requestCount()).toBe(5);
  });
});
