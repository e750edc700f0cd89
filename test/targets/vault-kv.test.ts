import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { renderError } from '../../src/cli/render.js';
import { VaultKvTargetSchema, type VaultKvTargetConfig } from '../../src/config/schema.js';
import type { Target } from '../../src/targets/contract.js';
import { createVaultKvTarget } from '../../src/targets/vault-kv.js';
import { RekeyError } from '../../src/util/errors.js';
import { startVaultDouble, type VaultDouble, type VaultDoubleOptions } from '../doubles/vault.js';
import { captureLogger, makeContext, makeToken, runConformance, sha256 } from './conformance.js';

const SECRET_PATH = 'apps/billing';

type Settings = Partial<Omit<VaultKvTargetConfig, 'type'>>;

function build(d: VaultDouble, settings: Settings = {}, envVars: NodeJS.ProcessEnv = { VAULT_TOKEN: d.rootToken }) {
  const config = VaultKvTargetSchema.parse({ type: 'vault-kv', address: d.address, path: SECRET_PATH, ...settings });
  const log = captureLogger();
  const target = createVaultKvTarget(config, { policy: 'billing', env: envVars, log });
  return { target, log };
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

/** The error as a user would see it, checked for one line and no credential. */
function expectClean(e: RekeyError, ...secrets: string[]): void {
  expect(e.message).not.toContain('\n');
  const shown = `${renderError(e)}\n${e.message}\n${String(e.stack)}`;
  for (const s of secrets) expect(shown).not.toContain(s);
}

async function fixtureFor(opts: VaultDoubleOptions, settings: Settings, envOf: (d: VaultDouble) => NodeJS.ProcessEnv, ns?: string, prepare?: (d: VaultDouble) => void) {
  const d = await startVaultDouble(opts);
  prepare?.(d);
  const { target } = build(d, settings, envOf(d));
  const where = ns ? { namespace: ns } : {};
  return {
    target,
    holds: 'token' as const,
    async current() {
      const v = d.read(SECRET_PATH, where)?.[settings.field ?? 'token'];
      return typeof v === 'string' ? v : undefined;
    },
    async seed(token: string) {
      d.write(SECRET_PATH, { [settings.field ?? 'token']: token, username: 'billing-svc' }, where);
    },
    teardown: () => d.close(),
  };
}

runConformance({
  name: 'vault-kv (token)',
  setup: () => fixtureFor({}, {}, (d) => ({ VAULT_TOKEN: d.rootToken })),
  async broken() {
    const d = await startVaultDouble();
    d.failAll(403);
    const { target, log } = build(d);
    return { target, logs: () => log.text(), teardown: () => d.close() };
  },
});

runConformance({
  name: 'vault-kv (AppRole, namespace, cas_required)',
  async setup() {
    const fx = await fixtureFor(
      { namespaces: ['team-a'], approle: { roleId: 'role-billing', secretId: 'secret-id-0123456789', namespace: 'team-a' } },
      { namespace: 'team-a', roleId: 'role-billing', secretIdEnv: 'BILLING_SECRET_ID', field: 'api_key' },
      () => ({ BILLING_SECRET_ID: 'secret-id-0123456789' }),
      'team-a',
      (d) => d.setCasRequired(true, { namespace: 'team-a' }),
    );
    return fx;
  },
  async broken() {
    const d = await startVaultDouble({ approle: { roleId: 'r', secretId: 'right-secret-id-000' } });
    const { target, log } = build(d, { roleId: 'r', secretIdEnv: 'SID' }, { SID: 'wrong-secret-id-999' });
    return { target, logs: () => log.text(), teardown: () => d.close() };
  },
});

describe('vault-kv target', () => {
  let d: VaultDouble | undefined;
  let t: Target | undefined;
  const dirs: string[] = [];
  afterEach(async () => {
    await t?.close();
    await d?.close();
    t = undefined;
    d = undefined;
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  async function setup(opts: VaultDoubleOptions = {}, settings: Settings = {}, envVars?: (d: VaultDouble) => NodeJS.ProcessEnv) {
    d = await startVaultDouble(opts);
    const b = build(d, settings, envVars ? envVars(d) : { VAULT_TOKEN: d.rootToken });
    t = b.target;
    return { d, t: b.target, log: b.log };
  }

  it('describes itself without credentials', async () => {
    const { d } = await setup();
    const config = VaultKvTargetSchema.parse({ type: 'vault-kv', address: `http://user:pa55word@127.0.0.1:${new URL(d.address).port}/`, path: '/apps/billing/' });
    const target = createVaultKvTarget(config, { policy: 'p', env: {}, log: captureLogger() });
    expect(target.description).toBe(`vault-kv ${d.address} secret/apps/billing#token`);
    expect(target.kind).toBe('vault-kv');
    expect(target.phase).toBe('stage');
  });

  it('keeps the other fields of the secret through stage and rollback', async () => {
    const { d, t } = await setup();
    const old = makeToken();
    d.write(SECRET_PATH, { token: old, username: 'billing-svc', port: 5432, nested: { a: 1 } });
    const next = makeToken();
    const ctx = makeContext('billing', next, 2, old);
    const snap = await t.snapshot(ctx);
    expect(snap.meta).toEqual({ version: 1, existed: true });
    // Only our field goes to the recovery file.
    expect(snap.secret).toEqual({ fields: { token: old } });
    await t.stage(ctx, snap);
    expect(d.read(SECRET_PATH)).toEqual({ token: next, username: 'billing-svc', port: 5432, nested: { a: 1 } });
    await t.promote(ctx, snap);
    await t.rollback(ctx, snap);
    expect(d.read(SECRET_PATH)).toEqual({ token: old, username: 'billing-svc', port: 5432, nested: { a: 1 } });
    expect(d.versions(SECRET_PATH)!.currentVersion).toBe(3);
  });

  it('sends cas on every write, so a mount with cas_required accepts them', async () => {
    const { d, t } = await setup();
    d.setCasRequired(true);
    const old = makeToken();
    d.write(SECRET_PATH, { token: old });
    const ctx = makeContext('billing', makeToken(), 2, old);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.rollback(ctx, snap);
    expect(d.read(SECRET_PATH)).toEqual({ token: old });
    const writes = d.requests.filter((r) => r.method === 'POST' && r.path.includes('/data/'));
    expect(writes).toHaveLength(2);
    expect(writes.map((w) => (JSON.parse(w.body) as { options: { cas: number } }).options.cas)).toEqual([1, 2]);
    expect(writes.every((w) => w.status === 200)).toBe(true);
  });

  it('retries once after a CAS conflict and keeps the concurrent change', async () => {
    const { d, t } = await setup();
    const old = makeToken();
    d.write(SECRET_PATH, { token: old, other: 'v1' });
    d.injectConcurrentWrites(1, (c) => ({ ...c, other: 'changed-concurrently' }));
    const next = makeToken();
    const ctx = makeContext('billing', next, 2, old);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    expect(d.read(SECRET_PATH)).toEqual({ token: next, other: 'changed-concurrently' });
    expect(d.requests.filter((r) => r.method === 'POST').map((r) => r.status)).toEqual([400, 200]);
  });

  it('fails with TARGET_CONFLICT after two CAS conflicts and writes nothing', async () => {
    const { d, t } = await setup();
    const old = makeToken();
    d.write(SECRET_PATH, { token: old });
    d.injectConcurrentWrites(2);
    const next = makeToken();
    const ctx = makeContext('billing', next, 2, old);
    const snap = await t.snapshot(ctx);
    const e = await errorOf(t.stage(ctx, snap));
    expect(e.code).toBe('TARGET_CONFLICT');
    expect(e.message).toBe(`${t.description}: secret changed concurrently; run the rotation again`);
    expectClean(e, next, old, d.rootToken);
    expect(d.read(SECRET_PATH)?.token).toBe(old);
    expect(d.versions(SECRET_PATH)!.versions.some((v) => v.data.token === next)).toBe(false);
    // Rollback then sees nothing of ours and leaves the other writer's data alone.
    await t.rollback(ctx, snap);
    expect(d.read(SECRET_PATH)?.token).toBe(old);
  });

  it('does not write again when the current version already holds the token', async () => {
    const { d, t } = await setup();
    const old = makeToken();
    d.write(SECRET_PATH, { token: old });
    const ctx = makeContext('billing', makeToken(), 2, old);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.stage(ctx, snap);
    expect(d.versions(SECRET_PATH)!.currentVersion).toBe(2);
    expect(d.requestCount({ method: 'POST' })).toBe(1);
  });

  it('a write that landed although the answer timed out is not written twice on retry', async () => {
    const { d, t } = await setup({}, { timeoutMs: 200 });
    const old = makeToken();
    d.write(SECRET_PATH, { token: old });
    const ctx = makeContext('billing', makeToken(), 2, old);
    const snap = await t.snapshot(ctx);
    d.slow(1_000, { method: 'POST', count: 1 });
    const e = await errorOf(t.stage(ctx, snap));
    expect(e.code).toBe('TARGET_TRANSIENT');
    expect(e.transient).toBe(true);
    while (d.versions(SECRET_PATH)!.currentVersion < 2) await new Promise((r) => setTimeout(r, 25));
    await t.stage(ctx, snap);
    expect(d.versions(SECRET_PATH)!.currentVersion).toBe(2);
    expect(await t.readBack()).toBe(ctx.sha256);
  });

  it('a secret that did not exist is created with cas 0 and rolled back by deleting our version', async () => {
    const { d, t } = await setup();
    const next = makeToken();
    const ctx = makeContext('billing', next, 1);
    const snap = await t.snapshot(ctx);
    expect(snap).toEqual({ meta: { version: 0, existed: false } });
    expect(await t.readBack()).toBeUndefined();
    await t.stage(ctx, snap);
    expect(JSON.parse(d.requests.find((r) => r.method === 'POST')!.body)).toEqual({ data: { token: next }, options: { cas: 0 } });
    expect(d.read(SECRET_PATH)).toEqual({ token: next });
    await t.rollback(ctx, snap);
    await t.rollback(ctx, snap);
    expect(d.read(SECRET_PATH)).toBeUndefined();
    expect(d.versions(SECRET_PATH)!.versions[0]!.deletionTime).not.toBe('');
    // The next rotation names the deleted version in cas, as Vault requires.
    const ctx2 = makeContext('billing', makeToken(), 1);
    const snap2 = await t.snapshot(ctx2);
    expect(snap2.meta).toEqual({ version: 1, existed: false });
    await t.stage(ctx2, snap2);
    expect(d.versions(SECRET_PATH)!.currentVersion).toBe(2);
  });

  it('rollback leaves a newer write by someone else alone and warns', async () => {
    const { d, t } = await setup();
    const old = makeToken();
    d.write(SECRET_PATH, { token: old });
    const log = captureLogger();
    const next = makeToken();
    const ctx = makeContext('billing', next, 2, old, log);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    const theirs = makeToken();
    d.write(SECRET_PATH, { token: theirs });
    await t.rollback(ctx, snap);
    expect(d.read(SECRET_PATH)).toEqual({ token: theirs });
    expect(log.text()).toContain('changed by someone else');
    expect(log.text()).not.toContain(theirs);
    expect(log.text()).not.toContain(next);
  });

  it('rolls back from Vault history when the recovery file lost the old value', async () => {
    const { d, t } = await setup();
    const old = makeToken();
    d.write(SECRET_PATH, { token: old, keep: 'me' });
    const ctx = makeContext('billing', makeToken(), 2, old);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    const { token: _t, previousToken: _p, ...noToken } = ctx;
    await t.rollback(noToken, { meta: snap.meta });
    expect(d.read(SECRET_PATH)).toEqual({ token: old, keep: 'me' });
  });

  it('logs in with AppRole, sends the issued token, and logs in again when it is revoked', async () => {
    const { d, t } = await setup(
      { approle: { roleId: 'role-1', secretId: 'the-secret-id-value' } },
      { roleId: 'role-1', secretIdEnv: 'SECRET_ID' },
      () => ({ SECRET_ID: 'the-secret-id-value' }),
    );
    const old = makeToken();
    d.write(SECRET_PATH, { token: old });
    const ctx = makeContext('billing', makeToken(), 2, old);
    const snap = await t.snapshot(ctx);
    const login = d.requests[0]!;
    expect(login.method).toBe('POST');
    expect(login.path).toBe('/v1/auth/approle/login');
    expect(JSON.parse(login.body)).toEqual({ role_id: 'role-1', secret_id: 'the-secret-id-value' });
    expect(login.headers['x-vault-token']).toBeUndefined();
    const issued = d.issuedTokens();
    expect(issued).toHaveLength(1);
    expect(d.requests[1]!.headers['x-vault-token']).toBe(issued[0]);
    d.revokeToken(issued[0]!);
    await t.stage(ctx, snap);
    expect(d.issuedTokens()).toHaveLength(2);
    expect(await t.readBack()).toBe(ctx.sha256);
  });

  it('a refused AppRole login is TARGET_PERMISSION and never shows the secret_id', async () => {
    const { t } = await setup(
      { approle: { roleId: 'role-1', secretId: 'the-right-secret-id' } },
      { roleId: 'role-1', secretIdEnv: 'SECRET_ID' },
      () => ({ SECRET_ID: 'a-wrong-secret-id-1234' }),
    );
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 2)));
    expect(e.code).toBe('TARGET_PERMISSION');
    expect(e.message).toContain('AppRole login at auth/approle was refused');
    expect(e.message).toContain('SECRET_ID');
    expectClean(e, 'a-wrong-secret-id-1234', 'the-right-secret-id');
  });

  it('sends X-Vault-Namespace and keeps the data inside that namespace', async () => {
    const { d, t } = await setup({ namespaces: ['team-a', 'team-b'] }, { namespace: 'team-a' });
    const ctx = makeContext('billing', makeToken(), 1);
    await t.stage(ctx, await t.snapshot(ctx));
    expect(d.requests.length).toBeGreaterThan(0);
    expect(d.requests.every((r) => r.headers['x-vault-namespace'] === 'team-a')).toBe(true);
    expect(d.read(SECRET_PATH, { namespace: 'team-a' })?.token).toBeDefined();
    expect(d.read(SECRET_PATH)).toBeUndefined();
    expect(d.read(SECRET_PATH, { namespace: 'team-b' })).toBeUndefined();
  });

  it('reads the token from tokenFile (trimmed)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rekey-vault-'));
    dirs.push(dir);
    const file = path.join(dir, 'token');
    d = await startVaultDouble();
    await writeFile(file, `${d.rootToken}\n`, { mode: 0o600 });
    t = build(d, { tokenFile: file }, {}).target;
    const ctx = makeContext('billing', makeToken(), 1);
    await t.stage(ctx, await t.snapshot(ctx));
    expect(d.requests.every((r) => r.headers['x-vault-token'] === d!.rootToken)).toBe(true);
    const missing = build(d, { tokenFile: path.join(dir, 'nope') }, {}).target;
    const e = await errorOf(missing.readBack());
    expect(e.code).toBe('TARGET');
    expect(e.message).toContain('cannot read tokenFile');
    expect(e.message).toContain('ENOENT');
  });

  it('trusts the CA in caFile for https://, and a TLS failure is a clear non-transient error', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rekey-vault-tls-'));
    dirs.push(dir);
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    d = await startVaultDouble({ tls: { key: await readFile(key), cert: await readFile(cert) } });
    expect(d.address.startsWith('https://')).toBe(true);
    t = build(d, { caFile: cert }).target;
    const ctx = makeContext('billing', makeToken(), 1);
    await t.stage(ctx, await t.snapshot(ctx));
    expect(await t.readBack()).toBe(ctx.sha256);

    const untrusted = build(d).target;
    const e = await errorOf(untrusted.readBack());
    expect(e.code).toBe('TARGET');
    expect(e.transient).toBe(false);
    expect(e.message).toMatch(/TLS handshake failed \([A-Z_]+\); set caFile/);
    await untrusted.close();

    const noCa = build(d, { caFile: path.join(dir, 'missing.pem') }).target;
    const e2 = await errorOf(noCa.readBack());
    expect(e2.message).toContain(`cannot read caFile ${path.join(dir, 'missing.pem')} (ENOENT)`);
  });

  it('an unset token variable is a clear error that names the variable', async () => {
    const { d } = await setup();
    const { target } = build(d, { tokenEnv: 'MY_VAULT_TOKEN' }, {});
    const e = await errorOf(target.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET');
    expect(e.message).toContain('MY_VAULT_TOKEN is not set');
    expect(d.requests).toHaveLength(0);
  });

  it('403 is TARGET_PERMISSION naming the capabilities, in one line without the Vault token', async () => {
    const { d, t } = await setup();
    d.failNext(1, 403);
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET_PERMISSION');
    expect(e.transient).toBe(false);
    expect(e.message).toBe(`${t.description}: permission denied; the token needs read and create/update capabilities on secret/data/apps/billing`);
    expectClean(e, d.rootToken);
  });

  it('a read-only token fails to stage with TARGET_PERMISSION and changes nothing', async () => {
    const { d } = await setup();
    d.addToken('hvs.read-only-token-0000', [{ path: 'secret/data/apps/*', capabilities: ['read'] }]);
    const old = makeToken();
    d.write(SECRET_PATH, { token: old });
    const { target } = build(d, {}, { VAULT_TOKEN: 'hvs.read-only-token-0000' });
    t = target;
    const ctx = makeContext('billing', makeToken(), 2, old);
    const snap = await target.snapshot(ctx);
    const e = await errorOf(target.stage(ctx, snap));
    expect(e.code).toBe('TARGET_PERMISSION');
    expectClean(e, 'hvs.read-only-token-0000', ctx.token!.reveal(), old);
    expect(d.read(SECRET_PATH)).toEqual({ token: old });
  });

  it.each([
    [500, 'HTTP 500'],
    [503, 'sealed or in standby'],
    [429, 'rate limiting'],
  ])('HTTP %i is transient', async (status, text) => {
    const { d, t } = await setup();
    d.failNext(1, status);
    const e = await errorOf(t.readBack());
    expect(e.code).toBe('TARGET_TRANSIENT');
    expect(e.transient).toBe(true);
    expect(e.message).toContain(text);
    // The next call goes through.
    expect(await t.readBack()).toBeUndefined();
  });

  it('a sealed Vault is transient', async () => {
    const { d, t } = await setup();
    d.seal(true);
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET_TRANSIENT');
  });

  it('an answer slower than timeoutMs is a transient timeout', async () => {
    const { d, t } = await setup({}, { timeoutMs: 150 });
    d.slow(2_000);
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET_TRANSIENT');
    expect(e.message).toContain('no answer within 150 ms');
    expectClean(e, d.rootToken);
  });

  it('a refused connection is transient', async () => {
    const srv = http.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const config = VaultKvTargetSchema.parse({ type: 'vault-kv', address: `http://127.0.0.1:${port}`, path: SECRET_PATH });
    const target = createVaultKvTarget(config, { policy: 'p', env: { VAULT_TOKEN: 'hvs.some-token-value' }, log: captureLogger() });
    const e = await errorOf(target.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET_TRANSIENT');
    expect(e.message).toContain('connection refused');
    expectClean(e, 'hvs.some-token-value');
    await target.close();
  });

  it('a missing mount is a clear TARGET error', async () => {
    const { t } = await setup({}, { mount: 'kv-nope' });
    const e = await errorOf(t.snapshot(makeContext('billing', makeToken(), 1)));
    expect(e.code).toBe('TARGET');
    expect(e.message).toContain('no KV v2 engine at kv-nope/');
  });

  it('rejects contradictory or unsafe settings at construction', async () => {
    const { d } = await setup();
    const env = { policy: 'p', env: {}, log: captureLogger() };
    const mk = (s: Settings) => () => createVaultKvTarget(VaultKvTargetSchema.parse({ type: 'vault-kv', address: d.address, path: SECRET_PATH, ...s }), env);
    expect(mk({ tokenEnv: 'A', tokenFile: '/x' })).toThrow(/set only one of tokenEnv, tokenFile or roleId/);
    expect(mk({ roleId: 'r' })).toThrow(/roleId needs secretIdEnv/);
    expect(mk({ secretIdEnv: 'S' })).toThrow(/secretIdEnv is only used with roleId/);
    expect(mk({ path: 'apps/../../sys/seal' })).toThrow(/without empty, "\." or "\.\." parts/);
    try {
      mk({ path: 'a//b' })();
    } catch (e) {
      expect((e as RekeyError).code).toBe('CONFIG');
    }
  });

  it('readCurrentToken returns the field as a Secret', async () => {
    const { d, t } = await setup();
    const old = makeToken();
    d.write(SECRET_PATH, { token: old });
    const s = await t.readCurrentToken!();
    expect(s?.reveal()).toBe(old);
    expect(String(s)).toBe('[redacted]');
    expect(await t.readBack()).toBe(sha256(old));
  });
});
