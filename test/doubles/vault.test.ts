/** The Vault double must reject what Vault rejects; otherwise the target's tests prove nothing. */
import { afterEach, describe, expect, it } from 'vitest';
import { startVaultDouble, type VaultDouble, type VaultDoubleOptions } from './vault.js';

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

describe('vault double', () => {
  let d: VaultDouble | undefined;
  afterEach(async () => {
    await d?.close();
    d = undefined;
  });

  async function start(opts: VaultDoubleOptions = {}) {
    d = await startVaultDouble(opts);
    return d;
  }

  async function call(method: string, path: string, opts: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    const token = opts.token === undefined ? d!.rootToken : opts.token;
    if (token !== null) headers['X-Vault-Token'] = token;
    const res = await fetch(`${d!.address}${path}`, {
      method,
      headers,
      ...(opts.body !== undefined ? { body: typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  it('refuses a request without a token, or with an unknown one, with 403 permission denied', async () => {
    await start();
    expect(await call('GET', '/v1/secret/data/a', { token: null })).toEqual({ status: 403, body: { errors: ['permission denied'] } });
    expect(await call('GET', '/v1/secret/data/a', { token: 'hvs.not-a-token' })).toEqual({ status: 403, body: { errors: ['permission denied'] } });
  });

  it('answers 404 {"errors": []} for a path with no secret, and names the route for an unknown mount', async () => {
    await start();
    expect(await call('GET', '/v1/secret/data/nothing/here')).toEqual({ status: 404, body: { errors: [] } });
    const r = await call('GET', '/v1/nope/data/x');
    expect(r.status).toBe(404);
    expect(r.body.errors[0]).toContain('no handler for route');
  });

  it('reads and writes in the KV v2 shapes, and a write replaces every field', async () => {
    await start();
    const w = await call('POST', '/v1/secret/data/app', { body: { data: { a: '1', b: '2' } } });
    expect(w.status).toBe(200);
    expect(w.body.data).toMatchObject({ version: 1, deletion_time: '', destroyed: false, custom_metadata: null });
    expect(typeof w.body.data.created_time).toBe('string');
    await call('PUT', '/v1/secret/data/app', { body: { data: { a: 'x' } } });
    const r = await call('GET', '/v1/secret/data/app');
    expect(r.status).toBe(200);
    expect(r.body.data.data).toEqual({ a: 'x' });
    expect(r.body.data.metadata).toMatchObject({ version: 2, deletion_time: '', destroyed: false });
    expect((await call('GET', '/v1/secret/data/app?version=1')).body.data.data).toEqual({ a: '1', b: '2' });
  });

  it('enforces check-and-set: cas must equal the current version, 0 means "must not exist"', async () => {
    await start();
    const mismatch = { status: 400, body: { errors: ['check-and-set parameter did not match the current version'] } };
    expect((await call('POST', '/v1/secret/data/app', { body: { data: { a: 1 }, options: { cas: 0 } } })).status).toBe(200);
    expect(await call('POST', '/v1/secret/data/app', { body: { data: { a: 2 }, options: { cas: 0 } } })).toEqual(mismatch);
    expect(await call('POST', '/v1/secret/data/app', { body: { data: { a: 2 }, options: { cas: 2 } } })).toEqual(mismatch);
    expect(await call('POST', '/v1/secret/data/new', { body: { data: { a: 2 }, options: { cas: 1 } } })).toEqual(mismatch);
    expect((await call('POST', '/v1/secret/data/app', { body: { data: { a: 2 }, options: { cas: 1 } } })).status).toBe(200);
    expect(d!.read('app')).toEqual({ a: 2 });
    expect((await call('POST', '/v1/secret/data/app', { body: { data: {}, options: { cas: 'x' } } })).status).toBe(400);
  });

  it('refuses a write without cas when the mount or the key has cas_required', async () => {
    await start();
    const required = { status: 400, body: { errors: ['check-and-set parameter required for this call'] } };
    d!.setCasRequired(true);
    expect(await call('POST', '/v1/secret/data/app', { body: { data: { a: 1 } } })).toEqual(required);
    expect(d!.read('app')).toBeUndefined();
    expect((await call('POST', '/v1/secret/data/app', { body: { data: { a: 1 }, options: { cas: 0 } } })).status).toBe(200);
    d!.setCasRequired(false);
    expect((await call('POST', '/v1/secret/metadata/app', { body: { cas_required: true } })).status).toBe(204);
    expect(await call('POST', '/v1/secret/data/app', { body: { data: { a: 2 } } })).toEqual(required);
    expect((await call('POST', '/v1/secret/data/other', { body: { data: { a: 2 } } })).status).toBe(200);
    expect((await call('GET', '/v1/secret/metadata/app')).body.data).toMatchObject({ cas_required: true, current_version: 1 });
  });

  it('refuses a write without data and a body that is not JSON', async () => {
    await start();
    expect(await call('POST', '/v1/secret/data/app', { body: { options: { cas: 0 } } })).toEqual({ status: 400, body: { errors: ['no data provided'] } });
    expect((await call('POST', '/v1/secret/data/app', { body: '{not json' })).status).toBe(400);
    expect((await call('POST', '/v1/secret/data/app', { body: { data: ['a'] } })).status).toBe(400);
  });

  it('PATCH needs application/merge-patch+json and an existing secret, and merges', async () => {
    await start();
    expect((await call('PATCH', '/v1/secret/data/app', { body: { data: { a: 1 } }, headers: { 'Content-Type': 'application/merge-patch+json' } })).status).toBe(404);
    d!.write('app', { a: 1, b: 2 });
    expect((await call('PATCH', '/v1/secret/data/app', { body: { data: { a: 9 } }, headers: { 'Content-Type': 'application/json' } })).status).toBe(415);
    expect((await call('PATCH', '/v1/secret/data/app', { body: { data: { a: 9, b: null } }, headers: { 'Content-Type': 'application/merge-patch+json' } })).status).toBe(200);
    expect(d!.read('app')).toEqual({ a: 9 });
  });

  it('a deleted latest version reads as 404 with its metadata, and cas must still name it', async () => {
    await start();
    d!.write('app', { a: 1 });
    d!.write('app', { a: 2 });
    expect((await call('POST', '/v1/secret/delete/app', { body: {} })).body).toEqual({ errors: ['no version number provided'] });
    expect((await call('POST', '/v1/secret/delete/app', { body: { versions: [2] } })).status).toBe(204);
    const r = await call('GET', '/v1/secret/data/app');
    expect(r.status).toBe(404);
    expect(r.body.data.data).toBeNull();
    expect(r.body.data.metadata.version).toBe(2);
    expect(r.body.data.metadata.deletion_time).not.toBe('');
    expect((await call('POST', '/v1/secret/data/app', { body: { data: { a: 3 }, options: { cas: 0 } } })).status).toBe(400);
    expect((await call('POST', '/v1/secret/data/app', { body: { data: { a: 3 }, options: { cas: 2 } } })).status).toBe(200);
    expect((await call('DELETE', '/v1/secret/data/app')).status).toBe(204);
    expect(d!.read('app')).toBeUndefined();
  });

  it('keeps max_versions versions (default 10)', async () => {
    await start();
    for (let i = 1; i <= 12; i++) d!.write('app', { i });
    expect(d!.versions('app')).toMatchObject({ currentVersion: 12, oldestVersion: 3 });
    d!.setMaxVersions(2);
    d!.write('app', { i: 13 });
    const meta = (await call('GET', '/v1/secret/metadata/app')).body.data;
    expect(meta).toMatchObject({ current_version: 13, oldest_version: 12 });
    expect(Object.keys(meta.versions)).toEqual(['12', '13']);
    expect((await call('GET', '/v1/secret/data/app?version=3')).status).toBe(404);
  });

  it('stores mount config and key metadata settings, and validates them', async () => {
    await start();
    expect((await call('POST', '/v1/secret/config', { body: { max_versions: 5, cas_required: true, delete_version_after: '768h' } })).status).toBe(204);
    expect((await call('GET', '/v1/secret/config')).body.data).toEqual({ max_versions: 5, cas_required: true, delete_version_after: '768h' });
    expect((await call('POST', '/v1/secret/metadata/app', { body: { max_versions: -1 } })).status).toBe(400);
    expect((await call('POST', '/v1/secret/metadata/app', { body: { delete_version_after: 'soon' } })).status).toBe(400);
    expect((await call('GET', '/v1/secret/metadata/missing')).status).toBe(404);
  });

  it('applies ACL capabilities: create for a new key, update for an existing one', async () => {
    await start();
    d!.addToken('hvs.reader', [{ path: 'secret/data/app', capabilities: ['read'] }]);
    d!.addToken('hvs.creator', [{ path: 'secret/data/*', capabilities: ['create', 'read'] }]);
    d!.write('app', { a: 1 });
    expect((await call('GET', '/v1/secret/data/app', { token: 'hvs.reader' })).status).toBe(200);
    expect((await call('POST', '/v1/secret/data/app', { token: 'hvs.reader', body: { data: { a: 2 } } })).status).toBe(403);
    expect((await call('GET', '/v1/secret/data/other', { token: 'hvs.reader' })).status).toBe(403);
    expect((await call('POST', '/v1/secret/data/fresh', { token: 'hvs.creator', body: { data: { a: 2 } } })).status).toBe(200);
    expect((await call('POST', '/v1/secret/data/fresh', { token: 'hvs.creator', body: { data: { a: 3 } } })).status).toBe(403);
    expect(d!.read('app')).toEqual({ a: 1 });
  });

  it('keeps namespaces apart and refuses an unknown namespace', async () => {
    await start({ namespaces: ['team-a'] });
    await call('POST', '/v1/secret/data/app', { body: { data: { ns: 'a' } }, headers: { 'X-Vault-Namespace': 'team-a' } });
    expect((await call('GET', '/v1/secret/data/app')).status).toBe(404);
    expect((await call('GET', '/v1/secret/data/app', { headers: { 'X-Vault-Namespace': 'team-a/' } })).body.data.data).toEqual({ ns: 'a' });
    expect((await call('GET', '/v1/secret/data/app', { headers: { 'X-Vault-Namespace': 'team-z' } })).status).toBe(403);
  });

  it('AppRole login: needs role_id and the right secret_id, and issues a working token', async () => {
    await start({ approle: { roleId: 'r1', secretId: 's1' } });
    expect(await call('POST', '/v1/auth/approle/login', { token: null, body: { secret_id: 's1' } })).toEqual({ status: 400, body: { errors: ['missing role_id'] } });
    expect(await call('POST', '/v1/auth/approle/login', { token: null, body: { role_id: 'r1', secret_id: 'bad' } })).toEqual({ status: 400, body: { errors: ['invalid role or secret ID'] } });
    const ok = await call('POST', '/v1/auth/approle/login', { token: null, body: { role_id: 'r1', secret_id: 's1' } });
    expect(ok.status).toBe(200);
    expect(ok.body.auth.lease_duration).toBeGreaterThan(0);
    const token = ok.body.auth.client_token as string;
    expect((await call('GET', '/v1/secret/data/app', { token })).status).toBe(404);
    d!.revokeToken(token);
    expect((await call('GET', '/v1/secret/data/app', { token })).status).toBe(403);
    expect((await call('POST', '/v1/auth/nope/login', { token: null, body: { role_id: 'r1', secret_id: 's1' } })).status).toBe(403);
  });

  it('knobs: failNext, failAll, seal, concurrent writers, request counts', async () => {
    await start();
    d!.failNext(2, 503);
    expect(await call('GET', '/v1/secret/data/a')).toEqual({ status: 503, body: { errors: ['Vault is sealed'] } });
    expect((await call('GET', '/v1/secret/data/a')).status).toBe(503);
    expect((await call('GET', '/v1/secret/data/a')).status).toBe(404);
    d!.failNext(1, 429, { method: 'POST' });
    expect((await call('GET', '/v1/secret/data/a')).status).toBe(404);
    expect((await call('POST', '/v1/secret/data/a', { body: { data: {} } })).status).toBe(429);
    d!.failAll(500);
    expect((await call('GET', '/v1/secret/data/a')).status).toBe(500);
    d!.failAll(undefined);
    d!.seal(true);
    expect((await call('GET', '/v1/secret/data/a')).status).toBe(503);
    d!.seal(false);
    d!.write('a', { v: 1 });
    d!.injectConcurrentWrites(1);
    expect((await call('POST', '/v1/secret/data/a', { body: { data: { v: 2 }, options: { cas: 1 } } })).status).toBe(400);
    expect(d!.versions('a')!.currentVersion).toBe(2);
    expect(d!.requestCount()).toBe(d!.requests.length);
    expect(d!.requestCount({ method: 'POST' })).toBe(2);
  });
});
