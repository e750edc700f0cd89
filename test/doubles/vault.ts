/**
 * A strict local stand-in for HashiCorp Vault's KV v2 engine and AppRole login, following
 * /work/shared/reference/secret-stores.md. A request the real service rejects is rejected here
 * too (missing token, ACL, cas, cas_required, unknown mounts, bad JSON). Knobs let tests inject
 * failures (403/429/500/503), slowness, concurrent writers, sealing, and inspect what is stored.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export type Capability = 'create' | 'read' | 'update' | 'patch' | 'delete' | 'list' | 'deny';
/** One policy rule: `path` is exact, or a prefix when it ends with "*" (as Vault's glob). */
export interface AclRule {
  path: string;
  capabilities: Capability[];
}

export interface VaultDoubleOptions {
  /** The root token (all capabilities). Default: random "hvs.root-...". */
  rootToken?: string;
  /** KV v2 mounts of every namespace. Default ["secret"]. */
  mounts?: string[];
  /** Enterprise namespaces besides the root one (""); each has the same mounts, with separate data. */
  namespaces?: string[];
  approle?: {
    mount?: string;
    roleId: string;
    secretId: string;
    /** Namespace the auth mount lives in (default root). */
    namespace?: string;
    /** Rules for the tokens it issues (default: everything). */
    policies?: AclRule[];
    ttlSeconds?: number;
  };
  /** Serve https:// with this key and certificate (PEM) instead of http://. */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

export interface StoredVersion {
  version: number;
  data: Record<string, unknown>;
  createdTime: string;
  deletionTime: string;
  destroyed: boolean;
}

interface KeyState {
  versions: Map<number, StoredVersion>;
  currentVersion: number;
  oldestVersion: number;
  casRequired: boolean;
  maxVersions: number;
  deleteVersionAfter: string;
  createdTime: string;
  updatedTime: string;
}

interface MountConfig {
  casRequired: boolean;
  maxVersions: number;
  deleteVersionAfter: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  status: number;
}

interface TokenInfo {
  rules: AclRule[] | 'root';
  expiresAt: number;
}

type Scope = { namespace?: string; mount?: string };

export interface VaultDouble {
  address: string;
  rootToken: string;
  /** Every request, in order, with the status it got. */
  readonly requests: RecordedRequest[];
  requestCount(filter?: { method?: string; pathIncludes?: string }): number;
  /** The next n requests (that match) fail with this status and Vault's body for it. */
  failNext(n: number, status: number, filter?: { method?: string }): void;
  /** Every request fails with this status until cleared (undefined). */
  failAll(status: number | undefined): void;
  /** Answer the next `count` (default all) matching requests only after ms; the request is still processed. */
  slow(ms: number, opts?: { count?: number; method?: string }): void;
  seal(sealed: boolean): void;
  /** Before each of the next n writes (POST/PUT/PATCH data), someone else writes a new version first. */
  injectConcurrentWrites(n: number, change?: (current: Record<string, unknown>) => Record<string, unknown>): void;
  setCasRequired(on: boolean, where?: Scope & { path?: string }): void;
  setMaxVersions(n: number, where?: Scope & { path?: string }): void;
  addToken(token: string, rules: AclRule[] | 'root', ttlSeconds?: number): void;
  revokeToken(token: string): void;
  /** Tokens issued by AppRole login so far. */
  issuedTokens(): string[];
  /** Seed or overwrite a secret directly (no HTTP, no cas). Returns the new version. */
  write(path: string, data: Record<string, unknown>, where?: Scope): number;
  /** The latest live data of a secret, or undefined (none, deleted or destroyed). */
  read(path: string, where?: Scope): Record<string, unknown> | undefined;
  /** All stored versions of a secret, oldest first, and its current version. */
  versions(path: string, where?: Scope): { currentVersion: number; oldestVersion: number; versions: StoredVersion[] } | undefined;
  close(): Promise<void>;
}

const now = () => new Date().toISOString();
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

const STATUS_BODY: Record<number, string[]> = {
  400: ['invalid request'],
  403: ['permission denied'],
  404: [],
  429: ['request path "secret/data": rate limit quota exceeded'],
  500: ['internal error'],
  502: ['bad gateway'],
  503: ['Vault is sealed'],
};

class HttpError {
  constructor(readonly status: number, readonly errors: string[], readonly extra: Record<string, unknown> = {}) {}
}

export async function startVaultDouble(opts: VaultDoubleOptions = {}): Promise<VaultDouble> {
  const rootToken = opts.rootToken ?? `hvs.root-${randomBytes(12).toString('hex')}`;
  const mounts = (opts.mounts ?? ['secret']).map((m) => m.replace(/^\/+|\/+$/g, ''));
  const namespaces = new Set(['', ...(opts.namespaces ?? []).map((n) => n.replace(/^\/+|\/+$/g, ''))]);
  const approle = opts.approle ? { mount: 'approle', namespace: '', ...opts.approle } : undefined;

  const tokens = new Map<string, TokenInfo>([[rootToken, { rules: 'root', expiresAt: Infinity }]]);
  const issued: string[] = [];
  const keys = new Map<string, KeyState>();
  const mountConfigs = new Map<string, MountConfig>();
  for (const ns of namespaces) for (const m of mounts) mountConfigs.set(`${ns}\0${m}`, { casRequired: false, maxVersions: 0, deleteVersionAfter: '0s' });

  const requests: RecordedRequest[] = [];
  const failures: Array<{ remaining: number; status: number; method?: string }> = [];
  let failAllStatus: number | undefined;
  let slowness: { ms: number; remaining: number; method?: string } | undefined;
  let sealed = false;
  let concurrent: { remaining: number; change: (c: Record<string, unknown>) => Record<string, unknown> } | undefined;
  const timers = new Set<NodeJS.Timeout>();

  const keyId = (ns: string, mount: string, path: string) => `${ns}\0${mount}\0${path}`;
  const scope = (where?: Scope) => ({ ns: where?.namespace ?? '', mount: where?.mount ?? mounts[0]! });

  function effectiveMax(k: KeyState, mc: MountConfig): number {
    const n = k.maxVersions || mc.maxVersions;
    return n > 0 ? n : 10;
  }

  /** Store a new version (after all checks). */
  function putVersion(ns: string, mount: string, path: string, data: Record<string, unknown>): StoredVersion {
    const id = keyId(ns, mount, path);
    let k = keys.get(id);
    const t = now();
    if (!k) {
      k = { versions: new Map(), currentVersion: 0, oldestVersion: 0, casRequired: false, maxVersions: 0, deleteVersionAfter: '0s', createdTime: t, updatedTime: t };
      keys.set(id, k);
    }
    const v: StoredVersion = { version: k.currentVersion + 1, data: clone(data), createdTime: t, deletionTime: '', destroyed: false };
    k.versions.set(v.version, v);
    k.currentVersion = v.version;
    k.updatedTime = t;
    if (k.oldestVersion === 0) k.oldestVersion = v.version;
    const max = effectiveMax(k, mountConfigs.get(`${ns}\0${mount}`)!);
    for (const n of [...k.versions.keys()].sort((a, b) => a - b)) {
      if (k.versions.size <= max) break;
      k.versions.delete(n);
    }
    k.oldestVersion = Math.min(...k.versions.keys());
    return v;
  }

  const live = (v: StoredVersion | undefined) => v !== undefined && v.deletionTime === '' && !v.destroyed;

  const versionMeta = (v: StoredVersion) => ({
    created_time: v.createdTime,
    custom_metadata: null,
    deletion_time: v.deletionTime,
    destroyed: v.destroyed,
    version: v.version,
  });

  function allowed(token: TokenInfo, path: string, cap: Capability): boolean {
    if (token.rules === 'root') return true;
    const caps = new Set<Capability>();
    for (const r of token.rules) {
      const match = r.path.endsWith('*') ? path.startsWith(r.path.slice(0, -1)) : path === r.path;
      if (match) r.capabilities.forEach((c) => caps.add(c));
    }
    return !caps.has('deny') && caps.has(cap);
  }

  /** cas_required / max_versions / delete_version_after of a mount's config or a key's metadata. */
  function settings(b: Record<string, unknown>, into: { casRequired: boolean; maxVersions: number; deleteVersionAfter: string }): void {
    if (b.cas_required !== undefined) {
      if (typeof b.cas_required !== 'boolean') throw new HttpError(400, ['error converting input for field "cas_required"']);
      into.casRequired = b.cas_required;
    }
    if (b.max_versions !== undefined) {
      if (typeof b.max_versions !== 'number' || !Number.isInteger(b.max_versions) || b.max_versions < 0) throw new HttpError(400, ['error converting input for field "max_versions"']);
      into.maxVersions = b.max_versions;
    }
    if (b.delete_version_after !== undefined) {
      // Stored and reported; the double does not expire versions by time.
      if (typeof b.delete_version_after !== 'string' || !/^(\d+[smh])+$/.test(b.delete_version_after)) throw new HttpError(400, ['error converting input for field "delete_version_after"']);
      into.deleteVersionAfter = b.delete_version_after;
    }
  }

  function parseBody(text: string): Record<string, unknown> {
    if (text.trim() === '') return {};
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new HttpError(400, ['failed to parse JSON input: invalid character']);
    }
    if (!isObject(v)) throw new HttpError(400, ['failed to parse JSON input: expected an object']);
    return v;
  }

  /** options.cas: absent, or a whole number >= 0. */
  function casOf(body: Record<string, unknown>): number | undefined {
    if (body.options === undefined || body.options === null) return undefined;
    if (!isObject(body.options)) throw new HttpError(400, ['error converting input for field "options"']);
    const cas = body.options.cas;
    if (cas === undefined) return undefined;
    if (typeof cas !== 'number' || !Number.isInteger(cas) || cas < 0) throw new HttpError(400, ['error converting input for field "cas"']);
    return cas;
  }

  function checkCas(k: KeyState | undefined, mc: MountConfig, cas: number | undefined): void {
    if (cas === undefined) {
      if (mc.casRequired || k?.casRequired) throw new HttpError(400, ['check-and-set parameter required for this call']);
      return;
    }
    const current = k?.currentVersion ?? 0;
    if (cas !== current) throw new HttpError(400, ['check-and-set parameter did not match the current version']);
  }

  function concurrentWrite(ns: string, mount: string, path: string): void {
    if (!concurrent || concurrent.remaining <= 0) return;
    concurrent.remaining--;
    const k = keys.get(keyId(ns, mount, path));
    const cur = k && live(k.versions.get(k.currentVersion)) ? k.versions.get(k.currentVersion)!.data : {};
    putVersion(ns, mount, path, concurrent.change(clone(cur)));
  }

  function handle(method: string, urlPath: string, query: URLSearchParams, headers: http.IncomingHttpHeaders, raw: string): { status: number; body?: unknown } {
    if (sealed) throw new HttpError(503, ['Vault is sealed']);
    if (!urlPath.startsWith('/v1/')) throw new HttpError(404, []);
    const nsHeader = typeof headers['x-vault-namespace'] === 'string' ? headers['x-vault-namespace'].replace(/^\/+|\/+$/g, '') : '';
    const rest = decodeURIComponent(urlPath.slice(4)).replace(/\/+$/, '');
    if (!namespaces.has(nsHeader)) throw new HttpError(403, ['permission denied']); // a token cannot see a namespace that isn't there

    // AppRole login: the only unauthenticated route.
    if (approle && rest === `auth/${approle.mount}/login`) {
      if (method !== 'POST' && method !== 'PUT') throw new HttpError(405, ['unsupported operation']);
      if (nsHeader !== approle.namespace) throw new HttpError(400, ['invalid role or secret ID']);
      const b = parseBody(raw);
      if (typeof b.role_id !== 'string' || b.role_id === '') throw new HttpError(400, ['missing role_id']);
      if (b.role_id !== approle.roleId || b.secret_id !== approle.secretId) throw new HttpError(400, ['invalid role or secret ID']);
      const token = `hvs.approle-${randomBytes(16).toString('hex')}`;
      const ttl = approle.ttlSeconds ?? 3600;
      tokens.set(token, { rules: approle.policies ?? 'root', expiresAt: Date.now() + ttl * 1000 });
      issued.push(token);
      return {
        status: 200,
        body: {
          request_id: randomBytes(8).toString('hex'),
          lease_id: '',
          renewable: false,
          lease_duration: 0,
          data: null,
          auth: { client_token: token, accessor: randomBytes(8).toString('hex'), policies: ['default'], token_policies: ['default'], lease_duration: ttl, renewable: true, entity_id: '', token_type: 'service', orphan: true },
        },
      };
    }

    const tokenHeader = headers['x-vault-token'];
    const token = typeof tokenHeader === 'string' ? tokens.get(tokenHeader) : undefined;
    if (!token || token.expiresAt <= Date.now()) throw new HttpError(403, ['permission denied']);

    const mount = mounts.filter((m) => rest === m || rest.startsWith(`${m}/`)).sort((a, b) => b.length - a.length)[0];
    const need = (cap: Capability) => {
      if (!allowed(token, rest, cap)) throw new HttpError(403, ['permission denied']);
    };
    if (!mount) {
      need('read');
      throw new HttpError(404, [`no handler for route "${rest}". route entry not found.`]);
    }
    const mc = mountConfigs.get(`${nsHeader}\0${mount}`)!;
    const sub = rest.slice(mount.length + 1);

    if (sub === 'config') {
      if (method === 'GET') {
        need('read');
        return { status: 200, body: { data: { cas_required: mc.casRequired, delete_version_after: mc.deleteVersionAfter, max_versions: mc.maxVersions } } };
      }
      if (method === 'POST' || method === 'PUT') {
        need('update');
        const b = parseBody(raw);
        settings(b, mc);
        return { status: 204 };
      }
      throw new HttpError(405, ['unsupported operation']);
    }

    const m = /^(data|delete|metadata)\/(.+)$/.exec(sub);
    if (!m) throw new HttpError(404, [`no handler for route "${rest}". route entry not found.`]);
    const kind = m[1]!;
    const path = m[2]!;
    const id = keyId(nsHeader, mount, path);
    const k = keys.get(id);

    if (kind === 'data') {
      if (method === 'GET') {
        need('read');
        const qv = query.get('version');
        const want = qv === null || qv === '0' ? k?.currentVersion : Number(qv);
        if (qv !== null && (!Number.isInteger(want) || (want as number) < 0)) throw new HttpError(400, ['error converting input for field "version"']);
        const v = k && want !== undefined ? k.versions.get(want) : undefined;
        if (!v) throw new HttpError(404, []);
        if (!live(v)) return { status: 404, body: { data: { data: null, metadata: versionMeta(v) } } };
        return { status: 200, body: { request_id: randomBytes(8).toString('hex'), data: { data: clone(v.data), metadata: versionMeta(v) } } };
      }
      if (method === 'POST' || method === 'PUT') {
        need(k ? 'update' : 'create');
        const b = parseBody(raw);
        if (b.data === undefined || b.data === null) throw new HttpError(400, ['no data provided']);
        if (!isObject(b.data)) throw new HttpError(400, ['error converting input for field "data"']);
        const cas = casOf(b);
        concurrentWrite(nsHeader, mount, path);
        checkCas(keys.get(id), mc, cas);
        const v = putVersion(nsHeader, mount, path, b.data);
        return { status: 200, body: { request_id: randomBytes(8).toString('hex'), data: versionMeta(v) } };
      }
      if (method === 'PATCH') {
        need('patch');
        const ct = String(headers['content-type'] ?? '').split(';')[0]!.trim();
        if (ct !== 'application/merge-patch+json') throw new HttpError(415, ['PATCH requires Content-Type of application/merge-patch+json']);
        const b = parseBody(raw);
        if (!isObject(b.data)) throw new HttpError(400, ['no data provided']);
        const cas = casOf(b);
        concurrentWrite(nsHeader, mount, path);
        const cur = keys.get(id);
        const latest = cur?.versions.get(cur.currentVersion);
        if (!cur || !live(latest)) throw new HttpError(404, []);
        checkCas(cur, mc, cas);
        const merged: Record<string, unknown> = clone(latest!.data);
        for (const [f, val] of Object.entries(b.data)) {
          if (val === null) delete merged[f];
          else merged[f] = val;
        }
        const v = putVersion(nsHeader, mount, path, merged);
        return { status: 200, body: { data: versionMeta(v) } };
      }
      if (method === 'DELETE') {
        need('delete');
        const latest = k?.versions.get(k.currentVersion);
        if (latest && live(latest)) latest.deletionTime = now();
        return { status: 204 };
      }
      throw new HttpError(405, ['unsupported operation']);
    }

    if (kind === 'delete') {
      if (method !== 'POST' && method !== 'PUT') throw new HttpError(405, ['unsupported operation']);
      need('update');
      const b = parseBody(raw);
      const versions = b.versions;
      if (!Array.isArray(versions) || versions.length === 0) throw new HttpError(400, ['no version number provided']);
      if (!versions.every((n) => Number.isInteger(n) && (n as number) > 0)) throw new HttpError(400, ['error converting input for field "versions"']);
      for (const n of versions as number[]) {
        const v = k?.versions.get(n);
        if (v && live(v)) v.deletionTime = now();
      }
      return { status: 204 };
    }

    // metadata
    if (method === 'GET') {
      need('read');
      if (!k) throw new HttpError(404, []);
      const versions: Record<string, unknown> = {};
      for (const v of k.versions.values()) versions[String(v.version)] = { created_time: v.createdTime, deletion_time: v.deletionTime, destroyed: v.destroyed };
      return {
        status: 200,
        body: {
          data: {
            cas_required: k.casRequired,
            created_time: k.createdTime,
            current_version: k.currentVersion,
            custom_metadata: null,
            delete_version_after: k.deleteVersionAfter,
            max_versions: k.maxVersions,
            oldest_version: k.oldestVersion,
            updated_time: k.updatedTime,
            versions,
          },
        },
      };
    }
    if (method === 'POST' || method === 'PUT') {
      need(k ? 'update' : 'create');
      const b = parseBody(raw);
      let st = k;
      if (!st) {
        const t = now();
        st = { versions: new Map(), currentVersion: 0, oldestVersion: 0, casRequired: false, maxVersions: 0, deleteVersionAfter: '0s', createdTime: t, updatedTime: t };
        keys.set(id, st);
      }
      settings(b, st);
      return { status: 204 };
    }
    if (method === 'DELETE') {
      need('delete');
      keys.delete(id);
      return { status: 204 };
    }
    throw new HttpError(405, ['unsupported operation']);
  }

  function takeFailure(method: string): number | undefined {
    if (failAllStatus !== undefined) return failAllStatus;
    const f = failures.find((x) => x.remaining > 0 && (!x.method || x.method === method));
    if (!f) return undefined;
    f.remaining--;
    return f.status;
  }

  function delayFor(method: string): number {
    if (!slowness || slowness.remaining <= 0 || (slowness.method && slowness.method !== method)) return 0;
    slowness.remaining--;
    return slowness.ms;
  }

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const method = req.method ?? 'GET';
      const u = new URL(req.url ?? '/', 'http://vault.local');
      const rec: RecordedRequest = { method, path: `${u.pathname}${u.search}`, headers: req.headers, body: raw, status: 0 };
      requests.push(rec);
      const respond = () => {
        let status: number;
        let body: unknown;
        const injected = takeFailure(method);
        if (injected !== undefined) {
          status = injected;
          body = { errors: STATUS_BODY[injected] ?? ['error'] };
        } else {
          try {
            const r = handle(method, u.pathname, u.searchParams, req.headers, raw);
            status = r.status;
            body = r.body;
          } catch (e) {
            if (!(e instanceof HttpError)) throw e;
            status = e.status;
            body = { errors: e.errors, ...e.extra };
          }
        }
        rec.status = status;
        if (res.destroyed) return; // the client gave up (timeout); the work above still happened
        if (status === 204 || body === undefined) {
          res.writeHead(status).end();
        } else {
          const text = JSON.stringify(body);
          res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
        }
      };
      const ms = delayFor(method);
      if (ms > 0) {
        const t = setTimeout(() => {
          timers.delete(t);
          respond();
        }, ms);
        timers.add(t);
      } else {
        respond();
      }
    });
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onRequest) : http.createServer(onRequest);

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const find = (path: string, where?: Scope) => {
    const s = scope(where);
    return keys.get(keyId(s.ns, s.mount, path.replace(/^\/+|\/+$/g, '')));
  };

  return {
    address: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    rootToken,
    requests,
    requestCount(filter) {
      return requests.filter((r) => (!filter?.method || r.method === filter.method) && (!filter?.pathIncludes || r.path.includes(filter.pathIncludes))).length;
    },
    failNext(n, status, filter) {
      failures.push({ remaining: n, status, ...(filter?.method ? { method: filter.method } : {}) });
    },
    failAll(status) {
      failAllStatus = status;
    },
    slow(ms, o) {
      slowness = { ms, remaining: o?.count ?? Infinity, ...(o?.method ? { method: o.method } : {}) };
    },
    seal(on) {
      sealed = on;
    },
    injectConcurrentWrites(n, change) {
      concurrent = { remaining: n, change: change ?? ((c) => ({ ...c, concurrent: randomBytes(4).toString('hex') })) };
    },
    setCasRequired(on, where) {
      const s = scope(where);
      if (where?.path) {
        const id = keyId(s.ns, s.mount, where.path);
        const t = now();
        const k = keys.get(id) ?? { versions: new Map(), currentVersion: 0, oldestVersion: 0, casRequired: false, maxVersions: 0, deleteVersionAfter: '0s', createdTime: t, updatedTime: t };
        k.casRequired = on;
        keys.set(id, k);
      } else {
        mountConfigs.get(`${s.ns}\0${s.mount}`)!.casRequired = on;
      }
    },
    setMaxVersions(n, where) {
      const s = scope(where);
      if (where?.path) {
        const k = keys.get(keyId(s.ns, s.mount, where.path));
        if (k) k.maxVersions = n;
      } else {
        mountConfigs.get(`${s.ns}\0${s.mount}`)!.maxVersions = n;
      }
    },
    addToken(token, rules, ttlSeconds) {
      tokens.set(token, { rules, expiresAt: ttlSeconds === undefined ? Infinity : Date.now() + ttlSeconds * 1000 });
    },
    revokeToken(token) {
      tokens.delete(token);
    },
    issuedTokens() {
      return [...issued];
    },
    write(path, data, where) {
      const s = scope(where);
      return putVersion(s.ns, s.mount, path.replace(/^\/+|\/+$/g, ''), data).version;
    },
    read(path, where) {
      const k = find(path, where);
      const v = k?.versions.get(k.currentVersion);
      return v && live(v) ? clone(v.data) : undefined;
    },
    versions(path, where) {
      const k = find(path, where);
      if (!k) return undefined;
      return {
        currentVersion: k.currentVersion,
        oldestVersion: k.oldestVersion,
        versions: [...k.versions.values()].sort((a, b) => a.version - b.version).map((v) => clone(v)),
      };
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
