/**
 * vault-kv: writes the token into one field of a HashiCorp Vault KV v2 secret.
 * Vault keeps versions, so the write is live at once ("stage" = read, merge, write with cas) and
 * promote has nothing left to do. Rollback writes the old value of the field back with cas, but
 * only while our write is still the current one: a newer write by someone else is never clobbered.
 * Plain HTTP API (no SDK): see reference/secret-stores.md for the facts this relies on.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { VaultKvTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import { Secret, registerSecret } from '../util/secret.js';
import type { RotationContext, Snapshot, Target, TargetEnv } from './contract.js';
import { HttpFailure, createHttpClient, parseJson, type HttpClient, type HttpResponse } from './http.js';

type Fields = Record<string, unknown>;

/** What GET /v1/<mount>/data/<path> said: the latest live version, or none (version = what cas must name). */
type ReadResult = { found: true; version: number; fields: Fields } | { found: false; version: number };

type Auth =
  | { kind: 'env'; name: string }
  | { kind: 'file'; file: string }
  | { kind: 'approle'; roleId: string; secretIdEnv: string; mount: string };

const CAS_MISMATCH = 'check-and-set parameter did not match';
const CAS_REQUIRED = 'check-and-set parameter required';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The address as shown and used: scheme, host, optional path prefix; never userinfo, query or fragment. */
function cleanAddress(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new RekeyError('CONFIG', 'vault-kv: address must be a URL such as https://vault.example:8200');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new RekeyError('CONFIG', `vault-kv ${u.protocol}//${u.host}: address must start with https:// or http://`);
  }
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

/** "a/b/c" -> checked segments; "." / ".." / empty segments would let a path escape to another API. */
function segments(raw: string, what: string, where: string): string[] {
  const parts = raw.replace(/^\/+|\/+$/g, '').split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new RekeyError('CONFIG', `${where}: ${what} "${raw}" must be slash-separated names without empty, "." or ".." parts`);
  }
  return parts;
}

const encodePath = (parts: string[]) => parts.map(encodeURIComponent).join('/');

export function createVaultKvTarget(config: VaultKvTargetConfig, env: TargetEnv): Target {
  const address = cleanAddress(config.address);
  const field = config.field;
  const shownMount = config.mount.replace(/^\/+|\/+$/g, '');
  const shownPath = config.path.replace(/^\/+|\/+$/g, '');
  const description = `vault-kv ${address} ${shownMount}/${shownPath}#${field}`;
  const mountParts = segments(config.mount, 'mount', description);
  const pathParts = segments(config.path, 'path', description);
  const approleMountParts = segments(config.approleMount, 'approleMount', description);
  const timeoutMs = config.timeoutMs;
  const capPath = `${shownMount}/data/${shownPath}`;

  const auth = authFrom(config, description);
  const host = new URL(address).hostname;
  if (address.startsWith('http://') && !['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) {
    env.log.warn({ target: description }, `${description}: address is plain http://, so the Vault token and the new token cross the network unencrypted; use https://`);
  }

  const url = (kind: 'data' | 'delete', version?: number) =>
    new URL(`${address}/v1/${encodePath(mountParts)}/${kind}/${encodePath(pathParts)}${version ? `?version=${version}` : ''}`);

  let client: HttpClient | undefined;
  let approleToken: { token: string; expiresAt: number } | undefined;
  /** The version our stage wrote (for the log; rollback finds ours by hash, so a crash loses nothing). */
  let writtenVersion: number | undefined;

  const fail = (code: 'TARGET' | 'TARGET_PERMISSION' | 'TARGET_TRANSIENT' | 'TARGET_CONFLICT', text: string) =>
    new RekeyError(code, `${description}: ${text}`);

  async function getClient(): Promise<HttpClient> {
    if (client) return client;
    let ca: Buffer | undefined;
    if (config.caFile) {
      try {
        ca = await fsp.readFile(config.caFile);
      } catch (e) {
        throw fileError(e, `caFile ${config.caFile}`);
      }
    }
    client = createHttpClient({ timeoutMs, ...(ca ? { ca } : {}) });
    return client;
  }

  function fileError(e: unknown, what: string): RekeyError {
    const code = (e as { code?: unknown } | null)?.code;
    if (code === 'EACCES' || code === 'EPERM') return fail('TARGET_PERMISSION', `cannot read ${what} (${code}); rekey needs read permission on it`);
    return fail('TARGET', `cannot read ${what} (${typeof code === 'string' ? code : 'error'}); check the path`);
  }

  async function transport(method: 'GET' | 'POST' | 'DELETE', target: URL, body: unknown, token?: string): Promise<HttpResponse> {
    const c = await getClient();
    // X-Vault-Request: Vault Agent / Proxy listeners may require it (require_request_header).
    const headers: Record<string, string> = { 'X-Vault-Request': 'true' };
    if (token !== undefined) headers['X-Vault-Token'] = token;
    if (config.namespace) headers['X-Vault-Namespace'] = config.namespace;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    try {
      return await c.request({ method, url: target, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    } catch (e) {
      const f = e instanceof HttpFailure ? e : new HttpFailure('network');
      const hint = f.kind === 'tls'
        ? "set caFile to the CA that signed Vault's certificate, or fix the address"
        : f.kind === 'dns' && !f.transient
          ? 'check address'
          : `check that Vault is reachable at ${address}`;
      throw fail(f.transient ? 'TARGET_TRANSIENT' : 'TARGET', `${f.describe(timeoutMs)}; ${hint}`);
    }
  }

  async function login(): Promise<string> {
    if (auth.kind !== 'approle') throw new Error('unreachable');
    const secretId = env.env[auth.secretIdEnv]?.trim();
    if (!secretId) throw fail('TARGET', `the environment variable ${auth.secretIdEnv} (AppRole secret_id) is not set; export it`);
    registerSecret(secretId);
    const res = await transport('POST', new URL(`${address}/v1/auth/${encodePath(approleMountParts)}/login`), { role_id: auth.roleId, secret_id: secretId });
    if (res.status === 400 || res.status === 401 || res.status === 403) {
      throw fail('TARGET_PERMISSION', `AppRole login at auth/${auth.mount} was refused; check roleId and the secret_id in ${auth.secretIdEnv}`);
    }
    if (res.status !== 200) throw statusError(res, 'login');
    const a = (parseJson(res.body) as { auth?: { client_token?: unknown; lease_duration?: unknown } } | undefined)?.auth;
    if (!a || typeof a.client_token !== 'string' || a.client_token === '') {
      throw fail('TARGET', `AppRole login at auth/${auth.mount} returned no client token; check approleMount`);
    }
    registerSecret(a.client_token);
    const lease = typeof a.lease_duration === 'number' && a.lease_duration > 0 ? a.lease_duration * 1000 : Infinity;
    // Log in again a little before the lease ends rather than fail in the middle of a rotation.
    approleToken = { token: a.client_token, expiresAt: Date.now() + lease * 0.9 };
    return a.client_token;
  }

  /** The Vault token, and whether it came from a cache that may have gone stale. */
  async function getToken(): Promise<{ token: string; cached: boolean }> {
    switch (auth.kind) {
      case 'env': {
        const v = env.env[auth.name]?.trim();
        if (!v) throw fail('TARGET', `the environment variable ${auth.name} is not set; export a Vault token in it (or set tokenFile or roleId)`);
        registerSecret(v);
        return { token: v, cached: false };
      }
      case 'file': {
        // Read each time: Vault Agent rewrites its sink file when it renews the token.
        let v: string;
        try {
          v = (await fsp.readFile(auth.file, 'utf8')).trim();
        } catch (e) {
          throw fileError(e, `tokenFile ${auth.file}`);
        }
        if (!v) throw fail('TARGET', `tokenFile ${auth.file} is empty; write a Vault token into it`);
        registerSecret(v);
        return { token: v, cached: false };
      }
      case 'approle':
        if (approleToken && approleToken.expiresAt > Date.now()) return { token: approleToken.token, cached: true };
        return { token: await login(), cached: false };
    }
  }

  async function send(method: 'GET' | 'POST' | 'DELETE', target: URL, body?: unknown): Promise<HttpResponse> {
    const t = await getToken();
    const res = await transport(method, target, body, t.token);
    if (res.status === 403 && t.cached) {
      // An AppRole token may have been revoked or may have expired early: log in once more.
      approleToken = undefined;
      return transport(method, target, body, (await getToken()).token);
    }
    return res;
  }

  function errorsOf(res: HttpResponse): string[] {
    const e = (parseJson(res.body) as { errors?: unknown } | undefined)?.errors;
    return Array.isArray(e) ? e.filter((x): x is string => typeof x === 'string') : [];
  }

  function statusError(res: HttpResponse, op: 'read' | 'write' | 'delete' | 'login'): RekeyError {
    const s = res.status;
    if (s === 401 || s === 403) {
      if (op === 'delete') {
        return fail('TARGET_PERMISSION', `permission denied; the token needs the update capability on ${shownMount}/delete/${shownPath} to roll back a secret that did not exist before`);
      }
      return fail('TARGET_PERMISSION', `permission denied; the token needs read and create/update capabilities on ${capPath}`);
    }
    if (s === 429) return fail('TARGET_TRANSIENT', 'Vault is rate limiting requests (HTTP 429); retry later');
    if (s === 503) return fail('TARGET_TRANSIENT', 'Vault is sealed or in standby (HTTP 503); unseal it or point address at the active node');
    if (s >= 500 || s === 412) return fail('TARGET_TRANSIENT', `Vault answered HTTP ${s} to the ${op}; retry later`);
    if (s === 404) return fail('TARGET', `Vault has no KV v2 engine at ${shownMount}/ (HTTP 404); check mount${config.namespace ? ' and namespace' : ''}`);
    if (s >= 300 && s < 400) return fail('TARGET', `Vault redirected the request (HTTP ${s}); set address to the active node or the load balancer`);
    if (s === 400 && errorsOf(res).some((e) => e.includes(CAS_REQUIRED))) {
      return fail('TARGET', 'Vault requires check-and-set on this secret and refused the write; check the mount configuration');
    }
    return fail('TARGET', `Vault refused the ${op} (HTTP ${s}); check mount, path and the token's policy`);
  }

  const notKv2 = () => fail('TARGET', `the answer has no KV v2 version metadata; is ${shownMount}/ a KV version 2 mount?`);

  async function read(version?: number): Promise<ReadResult> {
    const res = await send('GET', url('data', version));
    if (res.status === 200) {
      const d = (parseJson(res.body) as { data?: { data?: unknown; metadata?: { version?: unknown } } } | undefined)?.data;
      const v = d?.metadata?.version;
      if (typeof v !== 'number' || !isObject(d?.data)) throw notKv2();
      return { found: true, version: v, fields: d.data };
    }
    if (res.status === 404) {
      const b = parseJson(res.body) as { errors?: unknown; data?: { metadata?: { version?: unknown } } } | undefined;
      // The latest version is deleted or destroyed: no data, but cas must still name that version.
      const v = b?.data?.metadata?.version;
      if (typeof v === 'number') return { found: false, version: v };
      if (Array.isArray(b?.errors) && b.errors.length > 0) throw statusError(res, 'read'); // "no handler for route": no such mount
      return { found: false, version: 0 };
    }
    throw statusError(res, 'read');
  }

  async function write(fields: Fields, cas: number): Promise<{ ok: true; version: number } | { ok: false }> {
    const res = await send('POST', url('data'), { data: fields, options: { cas } });
    if (res.status === 200) {
      const v = (parseJson(res.body) as { data?: { version?: unknown } } | undefined)?.data?.version;
      if (typeof v !== 'number') throw notKv2();
      return { ok: true, version: v };
    }
    if (res.status === 400 && errorsOf(res).some((e) => e.includes(CAS_MISMATCH))) return { ok: false };
    throw statusError(res, 'write');
  }

  async function deleteVersion(version: number): Promise<void> {
    const res = await send('POST', url('delete'), { versions: [version] });
    if (res.status !== 204 && res.status !== 200) throw statusError(res, 'delete');
  }

  const ours = (cur: ReadResult, ctx: RotationContext): boolean =>
    cur.found && typeof cur.fields[field] === 'string' && sha256(cur.fields[field] as string) === ctx.sha256;

  /** The field's value before our write: from the recovery file, else from Vault's own history. */
  async function previousField(snap: Snapshot, version: number): Promise<{ present: boolean; value: unknown }> {
    const f = snap.secret?.fields;
    if (isObject(f)) return { present: Object.hasOwn(f, field), value: f[field] };
    const r = version > 0 ? await read(version) : undefined;
    if (!r?.found) throw fail('TARGET', `cannot roll back: version ${version} is no longer in Vault and the recovery file lacks the old value; restore ${field} by hand`);
    return { present: Object.hasOwn(r.fields, field), value: r.fields[field] };
  }

  function snapMeta(snap: Snapshot): { version?: number; existed?: boolean } {
    const m = snap.meta;
    return {
      ...(typeof m.version === 'number' ? { version: m.version } : {}),
      ...(typeof m.existed === 'boolean' ? { existed: m.existed } : {}),
    };
  }

  /** Not ours any more: is it simply as it was (stage never ran, or rollback already done)? */
  async function asBefore(cur: ReadResult, snap: Snapshot): Promise<boolean> {
    const m = snapMeta(snap);
    if (!cur.found) return m.existed !== true;
    if (m.version !== undefined && cur.version === m.version) return true;
    if (m.existed === false) return false;
    try {
      const old = await previousField(snap, m.version ?? 0);
      const now = { present: Object.hasOwn(cur.fields, field), value: cur.fields[field] };
      return old.present === now.present && JSON.stringify(old.value) === JSON.stringify(now.value);
    } catch {
      return false;
    }
  }

  return {
    kind: 'vault-kv',
    description,
    phase: 'stage',

    async snapshot(): Promise<Snapshot> {
      const cur = await read();
      const meta = { version: cur.version, existed: cur.found };
      if (!cur.found) return { meta };
      // Only our field goes to the recovery file: the other fields may be other people's secrets.
      return { meta, secret: { fields: Object.hasOwn(cur.fields, field) ? { [field]: cur.fields[field] } : {} } };
    },

    async stage(ctx: RotationContext): Promise<void> {
      const token = ctx.token;
      if (!token) throw fail('TARGET', 'stage needs the new token, which this process does not have; run the rotation again');
      for (let attempt = 0; attempt < 2; attempt++) {
        const cur = await read();
        if (ours(cur, ctx)) {
          writtenVersion = cur.version;
          return;
        }
        const fields: Fields = cur.found ? { ...cur.fields, [field]: token.reveal() } : { [field]: token.reveal() };
        const w = await write(fields, cur.version);
        if (w.ok) {
          writtenVersion = w.version;
          ctx.log.info({ target: description, policy: ctx.policy, vaultVersion: w.version, fingerprint: ctx.fingerprint }, `${description}: wrote version ${w.version}`);
          return;
        }
      }
      throw fail('TARGET_CONFLICT', 'secret changed concurrently; run the rotation again');
    },

    async promote(): Promise<void> {
      // Already live since stage: Vault has no pending state for KV v2.
    },

    async rollback(ctx: RotationContext, snap: Snapshot): Promise<void> {
      const m = snapMeta(snap);
      for (let attempt = 0; attempt < 2; attempt++) {
        const cur = await read();
        if (!cur.found || !ours(cur, ctx)) {
          if (!(await asBefore(cur, snap))) {
            ctx.log.warn({ target: description, policy: ctx.policy, vaultVersion: cur.version, fingerprint: ctx.fingerprint },
              `${description}: the secret was changed by someone else after the snapshot; rollback left it as it is`);
          }
          return;
        }
        if (m.existed === false) {
          // Nothing was there: soft-delete exactly our version, so readers get 404 again as before.
          await deleteVersion(cur.version);
          ctx.log.info({ target: description, policy: ctx.policy, vaultVersion: cur.version }, `${description}: rolled back by deleting version ${cur.version}`);
          return;
        }
        if (m.existed !== true || m.version === undefined) {
          throw fail('TARGET', `cannot roll back: the snapshot does not say what was there before; restore ${field} by hand`);
        }
        const old = await previousField(snap, m.version);
        const next: Fields = { ...cur.fields };
        if (old.present) next[field] = old.value;
        else delete next[field];
        const w = await write(next, cur.version);
        if (w.ok) {
          ctx.log.info({ target: description, policy: ctx.policy, vaultVersion: w.version, replaced: writtenVersion ?? cur.version },
            `${description}: rolled back; version ${w.version} holds the previous value`);
          return;
        }
      }
      throw fail('TARGET_CONFLICT', `secret changed concurrently during rollback; check ${field} by hand`);
    },

    async retire(): Promise<void> {
      // Nothing to remove: the previous token lives only in Vault's version history (max_versions).
    },

    async readBack(): Promise<string | undefined> {
      const cur = await read();
      const v = cur.found ? cur.fields[field] : undefined;
      return typeof v === 'string' ? sha256(v) : undefined;
    },

    async readCurrentToken(): Promise<Secret | undefined> {
      const cur = await read();
      const v = cur.found ? cur.fields[field] : undefined;
      return typeof v === 'string' ? new Secret(v) : undefined;
    },

    async close(): Promise<void> {
      client?.close();
      client = undefined;
    },
  };
}

function authFrom(config: VaultKvTargetConfig, where: string): Auth {
  const set = [config.tokenEnv && 'tokenEnv', config.tokenFile && 'tokenFile', config.roleId && 'roleId'].filter(Boolean);
  if (set.length > 1) throw new RekeyError('CONFIG', `${where}: set only one of tokenEnv, tokenFile or roleId (got ${set.join(', ')})`);
  if (config.secretIdEnv && !config.roleId) throw new RekeyError('CONFIG', `${where}: secretIdEnv is only used with roleId; add roleId or remove secretIdEnv`);
  if (config.roleId) {
    if (!config.secretIdEnv) throw new RekeyError('CONFIG', `${where}: roleId needs secretIdEnv, the environment variable that holds the AppRole secret_id`);
    return { kind: 'approle', roleId: config.roleId, secretIdEnv: config.secretIdEnv, mount: config.approleMount.replace(/^\/+|\/+$/g, '') };
  }
  if (config.tokenFile) return { kind: 'file', file: config.tokenFile };
  return { kind: 'env', name: config.tokenEnv ?? 'VAULT_TOKEN' };
}
