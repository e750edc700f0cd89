/**
 * redis target: keeps the SHA-256 of the token (never the token) where an application checks it.
 *
 * Plain layout (default)          Hash layout (hash: true), one key with fields
 *   <key>           current        current               current hash
 *   <key>:previous  previous, PX   previous              previous hash
 *                   = what is left previous_valid_until  epoch ms; no TTL on fields, retire removes it
 *                   of the grace   pending               staged hash
 *   <key>:pending   staged hash
 *
 * Every change runs as one Lua script, so it is atomic, and works from ctx.sha256 and the
 * snapshot meta alone (crash recovery from the journal). The plain layout's three keys must live
 * in one slot, so Redis Cluster is not supported (use a standalone server or a primary/replica).
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import { redact, registerSecret } from '../util/secret.js';
import type { RetireContext, RotationContext, Snapshot, Target, TargetEnv } from './contract.js';
import { registerUrlPassword } from '../util/url.js';

const HEX64 = /^[0-9a-f]{64}$/;

// KEYS: current, previous, pending
const PLAIN = {
  snapshot: `return { redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2]), redis.call('GET', KEYS[3]) }`,
  // ARGV: sha. Returns the replaced stale pending hash, '' when none, or 0 when sha is already current.
  stage: `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return 0 end
local old = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], ARGV[1])
if old and old ~= ARGV[1] then return old end
return ''`,
  // ARGV: sha, ms left of the grace. 0 = already current, 1 = promoted, -1 = nothing staged.
  promote: `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
  return 0
end
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
local px = tonumber(ARGV[2])
if cur and px > 0 then redis.call('SET', KEYS[2], cur, 'PX', px) else redis.call('DEL', KEYS[2]) end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
return 1`,
  // ARGV: sha, snapshot known ('1'|'0'), old current ('' none), old previous ('' none),
  //       ms left of the old previous (-1 = it had no TTL, 0 = expired meanwhile).
  rollback: `
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
if redis.call('GET', KEYS[1]) ~= ARGV[1] or ARGV[3] == ARGV[1] then return 0 end
if ARGV[2] ~= '1' then return -1 end
if ARGV[3] ~= '' then redis.call('SET', KEYS[1], ARGV[3]) else redis.call('DEL', KEYS[1]) end
local px = tonumber(ARGV[5])
if ARGV[4] ~= '' and px == -1 then redis.call('SET', KEYS[2], ARGV[4])
elseif ARGV[4] ~= '' and px > 0 then redis.call('SET', KEYS[2], ARGV[4], 'PX', px)
else redis.call('DEL', KEYS[2]) end
return 1`,
  // ARGV: ctx.now (epoch ms), our clock now (epoch ms). Deletes previous once its TTL ends by ctx.now.
  retire: `
local ttl = redis.call('PTTL', KEYS[2])
if ttl == -2 then return 0 end
if ttl >= 0 and tonumber(ARGV[2]) + ttl > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2])
return 1`,
};

// KEYS: the hash
const HASH = {
  snapshot: `return redis.call('HMGET', KEYS[1], 'current', 'previous', 'previous_valid_until', 'pending')`,
  stage: `
local cur = redis.call('HGET', KEYS[1], 'current')
if cur == ARGV[1] then return 0 end
local old = redis.call('HGET', KEYS[1], 'pending')
redis.call('HSET', KEYS[1], 'pending', ARGV[1])
if old and old ~= ARGV[1] then return old end
return ''`,
  // ARGV: sha, previous_valid_until (epoch ms)
  promote: `
local cur = redis.call('HGET', KEYS[1], 'current')
if cur == ARGV[1] then
  if redis.call('HGET', KEYS[1], 'pending') == ARGV[1] then redis.call('HDEL', KEYS[1], 'pending') end
  return 0
end
if redis.call('HGET', KEYS[1], 'pending') ~= ARGV[1] then return -1 end
redis.call('HDEL', KEYS[1], 'previous', 'previous_valid_until')
if cur then redis.call('HSET', KEYS[1], 'previous', cur, 'previous_valid_until', ARGV[2]) end
redis.call('HSET', KEYS[1], 'current', ARGV[1])
redis.call('HDEL', KEYS[1], 'pending')
return 1`,
  // ARGV: sha, known, old current, old previous, old previous_valid_until ('' none)
  rollback: `
if redis.call('HGET', KEYS[1], 'pending') == ARGV[1] then redis.call('HDEL', KEYS[1], 'pending') end
if redis.call('HGET', KEYS[1], 'current') ~= ARGV[1] or ARGV[3] == ARGV[1] then return 0 end
if ARGV[2] ~= '1' then return -1 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'current', ARGV[3]) else redis.call('HDEL', KEYS[1], 'current') end
redis.call('HDEL', KEYS[1], 'previous', 'previous_valid_until')
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'previous', ARGV[4])
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'previous_valid_until', ARGV[5]) end
end
return 1`,
  // ARGV: ctx.now (epoch ms)
  retire: `
local prev = redis.call('HGET', KEYS[1], 'previous')
local vu = redis.call('HGET', KEYS[1], 'previous_valid_until')
if not prev and not vu then return 0 end
if vu and tonumber(vu) and tonumber(vu) > tonumber(ARGV[1]) then return 0 end
redis.call('HDEL', KEYS[1], 'previous', 'previous_valid_until')
return 1`,
};

/** What snapshot() records: hashes and times only, safe for the journal. */
interface RedisMeta {
  current: string | null;
  previous: string | null;
  /** Epoch ms when the previous hash stops being valid; null = no expiry (or no previous). */
  previousValidUntil: number | null;
}

interface ParsedRedisUrl {
  where: string;
  user: string;
}

function parseRedisUrl(url: string, what: string): ParsedRedisUrl {
  const rawPassword = registerUrlPassword(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RekeyError('CONFIG', `${what}: url is not a valid redis:// URL; percent-encode special characters in the password`);
  }
  let password = u.password;
  try {
    password = decodeURIComponent(u.password);
  } catch {
    /* keep it encoded */
  }
  if (password) registerSecret(password);
  const scrub = [rawPassword, password, u.password].filter((s) => s.length > 0);
  const db = u.pathname.replace(/^\//, '');
  const where = `${u.hostname || '127.0.0.1'}:${u.port || '6379'}${db && db !== '0' ? `/${db}` : ''}`;
  let user = u.username;
  try {
    user = decodeURIComponent(user);
  } catch {
    /* keep it encoded */
  }
  return { where: redact(where, scrub), user: redact(user || 'default', scrub) };
}

const CONNECT_ERRNO = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH',
  'EPIPE', 'ECONNABORTED', 'EADDRNOTAVAIL', 'ENOENT', 'EHOSTDOWN', 'ENETDOWN',
]);

export function createRedisTarget(config: RedisTargetConfig, env: TargetEnv): Target {
  const key = config.key;
  const keys = config.hash ? [key] : [key, `${key}:previous`, `${key}:pending`];
  const scripts = config.hash ? HASH : PLAIN;
  const parsed = parseRedisUrl(config.url, `redis target of policy ${env.policy}`);
  const description = `redis ${parsed.where} ${key}`;
  const needs = config.hash
    ? `+eval +hget +hmget +hset +hdel ~${key}`
    : `+eval +get +set +del +pttl ~${key} ~${key}:previous ~${key}:pending`;

  let client: Redis | undefined;
  // ioredis reports the real cause (ECONNREFUSED, WRONGPASS) as an 'error' event and then
  // rejects the command with "Connection is closed."; keep the event to explain the rejection.
  let lastEvent: unknown;
  const options: RedisOptions = {
    lazyConnect: true,
    connectTimeout: config.timeoutMs,
    commandTimeout: config.timeoutMs,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null, // a down Redis fails fast; the engine retries transient errors
    reconnectOnError: () => false,
    enableReadyCheck: false, // INFO needs a permission the target otherwise does not
    autoResubscribe: false,
    showFriendlyErrorStack: false,
  };

  const getClient = (): Redis => {
    if (!client) {
      client = new Redis(config.url, options);
      client.on('error', (e: unknown) => {
        lastEvent = e;
      });
    }
    return client;
  };

  function fail(e: unknown, op: string): RekeyError {
    if (e instanceof RekeyError) return e;
    let err = e as { code?: unknown; name?: unknown; message?: unknown } | null;
    let message = typeof err?.message === 'string' ? err.message : '';
    if ((message === 'Connection is closed.' || err?.name === 'MaxRetriesPerRequestError') && lastEvent) {
      err = lastEvent as typeof err;
      message = typeof err?.message === 'string' ? err.message : '';
    }
    const code = typeof err?.code === 'string' ? err.code : undefined;
    const d = description;
    if (code && CONNECT_ERRNO.has(code)) {
      return new RekeyError('TARGET_TRANSIENT', `${d}: cannot connect (${code}); check that Redis is running and the url's host and port`);
    }
    if (code && /CERT|TLS|SSL/.test(code)) {
      return new RekeyError('TARGET', `${d}: TLS setup failed (${code}); check the server certificate and the rediss:// url`);
    }
    if (message === 'Connection is closed.' || err?.name === 'MaxRetriesPerRequestError') {
      return new RekeyError('TARGET_TRANSIENT', `${d}: connection closed during ${op}; it will be retried`);
    }
    if (message === 'Command timed out') {
      return new RekeyError('TARGET_TRANSIENT', `${d}: ${op} timed out; check that Redis is reachable, or raise timeoutMs`);
    }
    // Redis replies start with an upper-case error class; the rest may echo data, so only the class is used.
    if (/\bWRONGPASS\b/.test(message)) {
      return new RekeyError('TARGET_PERMISSION', `${d}: authentication failed for user ${parsed.user}; check the user name and password in url`);
    }
    if (/\bNOAUTH\b/.test(message)) {
      return new RekeyError('TARGET_PERMISSION', `${d}: the server requires a password; put it in url (redis://user:password@host:port)`);
    }
    if (/\bNOPERM\b/.test(message) || message.includes("can't run this command")) {
      const cmd = /no permissions to run the '([a-z_|-]+)' command/i.exec(message)?.[1];
      const what = cmd
        ? `may not run ${cmd.toUpperCase()}`
        : /access one of the keys/.test(message)
          ? `may not access key ${key}`
          : message.includes("can't run this command") ? 'may not run a command the rotation script uses' : 'lacks a permission';
      return new RekeyError('TARGET_PERMISSION', `${d}: user ${parsed.user} ${what}; grant the ACL ${needs}`);
    }
    if (/\bWRONGTYPE\b/.test(message)) {
      return new RekeyError('TARGET', `${d}: ${key} holds another kind of value; ${config.hash ? 'it must be a hash (or set hash: false)' : 'it must be a string (or set hash: true)'}, or choose another key`);
    }
    if (/\bREADONLY\b/.test(message)) {
      return new RekeyError('TARGET_TRANSIENT', `${d}: the server is a read-only replica; point url at the primary`);
    }
    if (/\b(MOVED|ASK|CROSSSLOT|CLUSTERDOWN)\b/.test(message)) {
      return new RekeyError('TARGET', `${d}: Redis Cluster is not supported; point url at a standalone server or primary`);
    }
    const cls = /^([A-Z]{3,})\b/.exec(message)?.[1];
    if (cls && ['LOADING', 'BUSY', 'MASTERDOWN', 'TRYAGAIN'].includes(cls)) {
      return new RekeyError('TARGET_TRANSIENT', `${d}: the server is busy (${cls}) during ${op}; it will be retried`);
    }
    if (cls === 'OOM') {
      return new RekeyError('TARGET', `${d}: the server is out of memory (maxmemory) during ${op}`);
    }
    return new RekeyError('TARGET', `${d}: ${op} failed (${cls ?? code ?? (typeof err?.name === 'string' ? err.name : 'unknown error')})`);
  }

  async function run<T>(op: string, fn: (r: Redis) => Promise<T>): Promise<T> {
    const r = getClient();
    try {
      if (r.status === 'wait' || r.status === 'end' || r.status === 'close') {
        lastEvent = undefined;
        await r.connect();
      }
      return await fn(r);
    } catch (e) {
      throw fail(e, op);
    }
  }

  const evalScript = (op: string, script: string, args: Array<string | number>) =>
    run(op, (r) => r.eval(script, keys.length, ...keys, ...args.map(String)));

  const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

  function readMeta(snap: Snapshot): RedisMeta & { known: boolean } {
    const m = (snap?.meta ?? {}) as Record<string, unknown>;
    const known = 'current' in m;
    const current = str(m.current);
    const previous = str(m.previous);
    for (const h of [current, previous]) {
      if (h !== null && !HEX64.test(h)) throw new RekeyError('RECOVERY', `${description}: the snapshot is damaged (a hash is not a SHA-256)`);
    }
    const vu = typeof m.previousValidUntil === 'number' && Number.isFinite(m.previousValidUntil) ? m.previousValidUntil : null;
    return { known, current, previous, previousValidUntil: vu };
  }

  const checkHash = (ctx: RotationContext, op: string) => {
    if (!HEX64.test(ctx.sha256)) throw new RekeyError('INTERNAL', `${description}: ${op} got a malformed sha256`);
  };

  const target: Target = {
    kind: 'redis',
    description,
    phase: 'stage',

    async snapshot(): Promise<Snapshot> {
      const now = Date.now();
      const reply = (await evalScript('snapshot', scripts.snapshot, [])) as unknown[];
      let meta: RedisMeta;
      if (config.hash) {
        const [current, previous, vu] = reply;
        const n = Number(vu);
        meta = { current: str(current), previous: str(previous), previousValidUntil: str(vu) !== null && Number.isFinite(n) ? n : null };
      } else {
        const [current, previous, pttl] = reply;
        const ttl = Number(pttl);
        meta = { current: str(current), previous: str(previous), previousValidUntil: str(previous) !== null && ttl >= 0 ? now + ttl : null };
      }
      return { meta: { ...meta } };
    },

    async stage(ctx: RotationContext): Promise<void> {
      checkHash(ctx, 'stage');
      const out = await evalScript('stage', scripts.stage, [ctx.sha256]);
      if (typeof out === 'string' && out !== '') {
        ctx.log.warn({ target: description, stale: out.slice(0, 8) }, 'replaced a pending hash left by an earlier attempt');
      }
    },

    async promote(ctx: RotationContext): Promise<void> {
      checkHash(ctx, 'promote');
      const validUntil = new Date(ctx.rotatedAt).getTime() + ctx.graceMs;
      const arg = config.hash ? validUntil : Math.max(0, validUntil - Date.now());
      const out = await evalScript('promote', scripts.promote, [ctx.sha256, arg]);
      if (out === -1) {
        throw new RekeyError('TARGET_CONFLICT', `${description}: nothing staged for hash ${ctx.fingerprint} (removed or replaced by someone else?); run the rotation again`);
      }
    },

    async rollback(ctx: RotationContext, snap: Snapshot): Promise<void> {
      checkHash(ctx, 'rollback');
      const m = readMeta(snap);
      let prevArg: string;
      if (config.hash) {
        prevArg = m.previousValidUntil === null ? '' : String(m.previousValidUntil);
      } else if (m.previous === null) {
        prevArg = '0';
      } else if (m.previousValidUntil === null) {
        prevArg = '-1';
      } else {
        prevArg = String(Math.max(0, m.previousValidUntil - Date.now()));
      }
      const out = await evalScript('rollback', scripts.rollback, [ctx.sha256, m.known ? '1' : '0', m.current ?? '', m.previous ?? '', prevArg]);
      if (out === -1) {
        throw new RekeyError('RECOVERY', `${description}: promote already ran but the snapshot does not say what was current before; restore ${key} by hand`);
      }
    },

    async retire(ctx: RetireContext): Promise<void> {
      const now = new Date(ctx.now).getTime();
      const args = config.hash ? [now] : [now, Date.now()];
      const out = await evalScript('retire', scripts.retire, args);
      if (out === 1) ctx.log.info({ target: description }, 'retired previous token hash');
    },

    async readBack(): Promise<string | undefined> {
      const v = await run('read back', (r) => (config.hash ? r.hget(key, 'current') : r.get(key)));
      return v ?? undefined;
    },

    async close(): Promise<void> {
      const r = client;
      client = undefined;
      if (!r) return;
      if (r.status === 'ready') {
        await r.quit().catch(() => r.disconnect());
      } else {
        r.disconnect();
      }
    },
  };
  return target;
}
