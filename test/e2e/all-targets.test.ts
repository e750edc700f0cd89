/**
 * One policy with every kind of target at once (env-file, exec, vault-kv, postgres, redis,
 * aws-secrets-manager, webhook), through the real CLI code: a rotation lands everywhere;
 * then a failure in the last storage target rolls every other target back to its previous
 * value, and the webhook (which runs only after commit) is not called.
 */
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/index.js';
import { initDb } from '../../src/targets/postgres-sql.js';
import { startAwsSecretsManagerDouble, type AwsSecretsManagerDouble } from '../doubles/aws-secrets-manager.js';
import { startVaultDouble, type VaultDouble } from '../doubles/vault.js';
import { pgUrl, redisUrl, requireService } from '../helpers/services.js';

const pgUp = await requireService('postgres');
const redisUp = await requireService('redis');
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const WRITE_TOKEN = path.resolve('test/fixtures/exec/write-token');

describe.skipIf(!pgUp || !redisUp)('a policy with every kind of target', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rekey-all-'));
  const schema = `rekey_all_${process.pid}_${Date.now()}`;
  const redisKey = `rekey-test:all:${process.pid}:${Date.now()}`;
  let vault: VaultDouble;
  let aws: AwsSecretsManagerDouble;
  let hookServer: http.Server;
  const hooks: Array<{ body: string; signature: string | undefined }> = [];
  let hookStatus = 204;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    vault = await startVaultDouble();
    vault.write('billing/api', { token: 'placeholder', owner: 'billing-team' });
    aws = await startAwsSecretsManagerDouble();
    aws.createSecret('billing-api-token', 'placeholder-value');
    await initDb(pgUrl(), { schema, table: 'tokens' });
    hookServer = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        hooks.push({ body, signature: req.headers['x-rekey-signature'] as string | undefined });
        res.writeHead(hookStatus).end();
      });
    });
    await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
    const port = (hookServer.address() as { port: number }).port;
    writeFileSync(path.join(dir, 'app.env'), '# billing\nBILLING_TOKEN=placeholder\nOTHER=1\n', { mode: 0o600 });
    writeFileSync(path.join(dir, 'rekey.yaml'), `version: 1
policies:
  - name: billing-api
    grace: 1h
    targets:
      - { type: env-file, path: app.env, key: BILLING_TOKEN, previousKey: BILLING_TOKEN_PREVIOUS }
      - type: exec
        command: ["${WRITE_TOKEN}", "${dir}/pushed.token"]
        rollbackCommand: ["${WRITE_TOKEN}", "${dir}/pushed.token"]
      - { type: vault-kv, address: "\${VAULT_ADDR}", mount: secret, path: billing/api, field: token, tokenEnv: VAULT_TOKEN }
      - { type: postgres, url: "\${DATABASE_URL}", schema: ${schema}, table: tokens }
      - { type: redis, url: "\${REDIS_URL}", key: "${redisKey}" }
      - { type: aws-secrets-manager, secretId: billing-api-token, region: ${aws.region}, endpoint: "\${AWS_ENDPOINT}" }
      - { type: webhook, url: "http://127.0.0.1:${port}/rotated", secretEnv: HOOK_SECRET, retries: 0 }
`);
    env = {
      PATH: process.env.PATH,
      VAULT_ADDR: vault.address,
      VAULT_TOKEN: vault.rootToken,
      DATABASE_URL: pgUrl(),
      REDIS_URL: redisUrl(),
      AWS_ENDPOINT: aws.endpoint,
      AWS_ACCESS_KEY_ID: aws.accessKeyId,
      AWS_SECRET_ACCESS_KEY: aws.secretAccessKey,
      AWS_REGION: aws.region,
      HOOK_SECRET: 'webhook-hmac-key-for-tests',
    };
    // The AWS SDK's default credential chain reads the process environment itself.
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: aws.accessKeyId, AWS_SECRET_ACCESS_KEY: aws.secretAccessKey, AWS_REGION: aws.region });
  });

  afterAll(async () => {
    await vault?.close();
    await aws?.close();
    await new Promise((r) => hookServer?.close(r));
    const c = new pg.Client({ connectionString: pgUrl() });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await c.end();
    const r = new Redis(redisUrl());
    await r.del(redisKey, `${redisKey}:previous`, `${redisKey}:pending`);
    r.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  async function rekey(args: string[]) {
    let stdout = '';
    let stderr = '';
    const code = await runCli(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), readStdin: async () => Buffer.alloc(0), env, cwd: dir, isTTY: false });
    return { code, stdout, stderr };
  }

  /** What every target holds now, read directly from each store (not through rekey). */
  async function everywhere() {
    const envText = readFileSync(path.join(dir, 'app.env'), 'utf8');
    const c = new pg.Client({ connectionString: pgUrl() });
    await c.connect();
    const rows = await c.query(`SELECT sha256, status FROM "${schema}".tokens WHERE name='billing-api' ORDER BY status`);
    await c.end();
    const r = new Redis(redisUrl());
    const redisCurrent = await r.get(redisKey);
    r.disconnect();
    return {
      env: /^BILLING_TOKEN=(.*)$/m.exec(envText)?.[1],
      envText,
      exec: readFileSync(path.join(dir, 'pushed.token'), 'utf8'),
      vault: vault.read('billing/api'),
      pgCurrent: rows.rows.find((x) => x.status === 'current')?.sha256,
      pgRows: rows.rows,
      redis: redisCurrent,
      aws: aws.currentValue('billing-api-token'),
      awsStages: aws.stages('billing-api-token'),
    };
  }

  let v2: Awaited<ReturnType<typeof everywhere>>;

  it('rotates into all of them, and they agree on one token', async () => {
    const first = await rekey(['rotate-now', 'billing-api']);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    const second = await rekey(['rotate-now', 'billing-api']);
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect(second.stdout).toMatch(/rotated\s+billing-api v2/);
    v2 = await everywhere();
    const token = v2.env!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(v2.exec).toBe(token);
    expect(v2.vault).toEqual({ token, owner: 'billing-team' });
    expect(v2.pgCurrent).toBe(sha(token));
    expect(v2.redis).toBe(sha(token));
    expect(v2.aws).toBe(token);
    const state = JSON.parse(readFileSync(path.join(dir, '.rekey/policies/billing-api.json'), 'utf8'));
    expect(state).toMatchObject({ version: 2, currentSha256: sha(token) });
    // The webhook got {policy, version, fingerprint, rotatedAt}, signed, and no token.
    const last = hooks.at(-1)!;
    expect(JSON.parse(last.body)).toMatchObject({ policy: 'billing-api', version: 2, fingerprint: sha(token).slice(0, 8) });
    expect(last.body).not.toContain(token);
    expect(last.signature).toBe(`sha256=${createHmac('sha256', env.HOOK_SECRET!).update(last.body).digest('hex')}`);
    expect(second.stdout + second.stderr).not.toContain(token);
  });

  it('a failure in the last storage target rolls back every other target; the webhook is not called', async () => {
    const hooksBefore = hooks.length;
    aws.deny(['PutSecretValue']);
    try {
      const r = await rekey(['rotate-now', 'billing-api']);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/FAILED\s+billing-api: .*aws-secrets-manager.*PutSecretValue.*rolled back, the old token stays valid/);
      expect(r.stdout + r.stderr).not.toContain(v2.env!);
    } finally {
      aws.deny([]);
    }
    const now = await everywhere();
    expect(now.envText).toBe(v2.envText);
    expect(now.exec).toBe(v2.exec);
    expect(now.vault).toEqual(v2.vault);
    expect(now.pgRows).toEqual(v2.pgRows);
    expect(now.redis).toBe(v2.redis);
    expect(now.aws).toBe(v2.aws);
    expect(now.awsStages).toEqual(v2.awsStages);
    expect(hooks.length).toBe(hooksBefore);
    const state = JSON.parse(readFileSync(path.join(dir, '.rekey/policies/billing-api.json'), 'utf8'));
    expect(state.version).toBe(2);
    const audit = readFileSync(path.join(dir, '.rekey/audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.at(-1)).toMatchObject({ policy: 'billing-api', event: 'rolled-back', version: 3 });
  });

  it('a failing webhook runs after commit: reported and counted, not rolled back', async () => {
    hookStatus = 503;
    try {
      const r = await rekey(['rotate-now', 'billing-api', '--json']);
      expect(r.code).toBe(0);
      const [res] = JSON.parse(r.stdout).results;
      expect(res).toMatchObject({ result: 'rotated', version: 3, postCommitFailures: { notify: 1, afterHooks: 0 } });
      expect(res.warnings.join('\n')).toMatch(/notify webhook http:\/\/127\.0\.0\.1:\d+\/rotated failed \(not rolled back\)/);
    } finally {
      hookStatus = 204;
    }
    const now = await everywhere();
    expect(now.aws).toBe(now.env);
    expect(now.pgCurrent).toBe(sha(now.env!));
  });
});
