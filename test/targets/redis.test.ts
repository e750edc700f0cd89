import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderError } from '../../src/cli/render.js';
import { RedisTargetSchema } from '../../src/config/schema.js';
import type { Target } from '../../src/targets/contract.js';
import { createRedisTarget } from '../../src/targets/redis.js';
import { RekeyError } from '../../src/util/errors.js';
import { redisUrl, requireService } from '../helpers/services.js';
import { captureLogger, makeContext, makeToken, runConformance, sha256 } from './conformance.js';

const redisUp = await requireService('redis');
const HOUR = 3_600_000;

describe.skipIf(!redisUp)('redis target', () => {
  let admin: Redis;
  const prefixes: string[] = [];
  const created: Target[] = [];

  beforeAll(async () => {
    admin = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
    await admin.connect();
  });

  const cleanup = async () => {
    for (const t of created.splice(0)) await t.close().catch(() => undefined);
    for (const p of prefixes.splice(0)) {
      const keys = await admin.keys(`${p}*`);
      if (keys.length > 0) await admin.del(...keys);
    }
  };
  afterEach(cleanup);
  afterAll(async () => {
    await cleanup();
    await admin?.quit();
  });

  /** A fresh key under a random prefix that afterEach deletes. */
  function freshKey(): string {
    const p = `rekey-test:${randomBytes(6).toString('hex')}`;
    prefixes.push(p);
    return `${p}:token`;
  }

  function makeTarget(settings: Record<string, unknown>, log = captureLogger()): Target {
    const config = RedisTargetSchema.parse({ type: 'redis', url: redisUrl(), ...settings });
    const t = createRedisTarget(config, { policy: 'conf', env: process.env, log });
    created.push(t);
    return t;
  }

  for (const hash of [false, true]) {
    describe(hash ? 'hash layout' : 'plain layout', () => {
      runConformance({
        name: hash ? 'redis (hash)' : 'redis',
        setup: async () => {
          const key = freshKey();
          const config = RedisTargetSchema.parse({ type: 'redis', url: redisUrl(), key, hash });
          return {
            target: createRedisTarget(config, { policy: 'conf', env: process.env, log: captureLogger() }),
            holds: 'sha256',
            current: async () => (await (hash ? admin.hget(key, 'current') : admin.get(key))) ?? undefined,
            seed: async (token) => {
              if (hash) await admin.hset(key, 'current', sha256(token));
              else await admin.set(key, sha256(token));
            },
            teardown: async () => {
              await admin.del(key, `${key}:previous`, `${key}:pending`);
            },
          };
        },
        broken: async () => {
          const log = captureLogger();
          const config = RedisTargetSchema.parse({ type: 'redis', url: 'redis://u:s3cretPW@127.0.0.1:1', key: 'k', hash, timeoutMs: 1000 });
          return { target: createRedisTarget(config, { policy: 'conf', env: process.env, log }), logs: () => log.text(), teardown: async () => undefined };
        },
      });
    });
  }

  it('description is "redis host:port key" without the password', () => {
    const t = createRedisTarget(RedisTargetSchema.parse({ type: 'redis', url: 'rediss://app:s3cretPW@cache.example:6380', key: 'api:token' }),
      { policy: 'p', env: {}, log: captureLogger() });
    expect(t.description).toBe('redis cache.example:6380 api:token');
    const db = createRedisTarget(RedisTargetSchema.parse({ type: 'redis', url: 'redis://127.0.0.1:6379/3', key: 'k' }), { policy: 'p', env: {}, log: captureLogger() });
    expect(db.description).toBe('redis 127.0.0.1:6379/3 k');
  });

  it('plain layout: stage writes <key>:pending only; promote moves current to <key>:previous with TTL = grace', async () => {
    const key = freshKey();
    const t = makeTarget({ key });
    const t1 = makeToken();
    await admin.set(key, sha256(t1));
    const t2 = makeToken();
    const ctx = makeContext('conf', t2, 2, t1);
    const snap = await t.snapshot(ctx);
    expect(snap.meta).toEqual({ current: sha256(t1), previous: null, previousValidUntil: null });
    await t.stage(ctx, snap);
    expect(await admin.get(key)).toBe(sha256(t1));
    expect(await admin.get(`${key}:pending`)).toBe(sha256(t2));
    await t.promote(ctx, snap);
    expect(await admin.get(key)).toBe(sha256(t2));
    expect(await admin.get(`${key}:previous`)).toBe(sha256(t1));
    expect(await admin.exists(`${key}:pending`)).toBe(0);
    const pttl = await admin.pttl(`${key}:previous`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(ctx.graceMs);
    expect(await admin.pttl(key)).toBe(-1); // the current key never expires
  });

  it('plain layout: a rotation whose grace already ended leaves no previous key', async () => {
    const key = freshKey();
    const t = makeTarget({ key });
    const t1 = makeToken();
    await admin.set(key, sha256(t1));
    const ctx = { ...makeContext('conf', makeToken(), 2, t1), rotatedAt: new Date(Date.now() - 2 * HOUR), graceMs: HOUR };
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.promote(ctx, snap);
    expect(await admin.get(key)).toBe(ctx.sha256);
    expect(await admin.exists(`${key}:previous`)).toBe(0);
  });

  it('plain layout: rollback after promote restores current and the older previous with its remaining TTL', async () => {
    const key = freshKey();
    const t = makeTarget({ key });
    const [t0, t1] = [makeToken(), makeToken()];
    await admin.set(key, sha256(t1));
    await admin.set(`${key}:previous`, sha256(t0), 'PX', 30 * 60_000);
    const ctx = makeContext('conf', makeToken(), 3, t1);
    const snap = JSON.parse(JSON.stringify(await t.snapshot(ctx)));
    await t.stage(ctx, snap);
    await t.promote(ctx, snap);
    expect(await admin.get(`${key}:previous`)).toBe(sha256(t1));
    const { token: _t, previousToken: _p, ...journalCtx } = ctx;
    await t.rollback(journalCtx, snap);
    await t.rollback(journalCtx, snap);
    expect(await admin.get(key)).toBe(sha256(t1));
    expect(await admin.get(`${key}:previous`)).toBe(sha256(t0));
    const pttl = await admin.pttl(`${key}:previous`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(30 * 60_000);
    expect(await admin.exists(`${key}:pending`)).toBe(0);
  });

  it('plain layout: retire deletes <key>:previous only once its TTL has run out by ctx.now', async () => {
    const key = freshKey();
    const t = makeTarget({ key });
    await admin.set(key, sha256(makeToken()));
    await admin.set(`${key}:previous`, sha256(makeToken()), 'PX', HOUR);
    await t.retire({ policy: 'conf', now: new Date(), log: captureLogger() });
    expect(await admin.exists(`${key}:previous`)).toBe(1);
    await t.retire({ policy: 'conf', now: new Date(Date.now() + 2 * HOUR), log: captureLogger() });
    expect(await admin.exists(`${key}:previous`)).toBe(0);
    expect(await admin.exists(key)).toBe(1);
    // A previous key without a TTL (set by hand) never expires by itself: retire removes it.
    await admin.set(`${key}:previous`, sha256(makeToken()));
    await t.retire({ policy: 'conf', now: new Date(), log: captureLogger() });
    expect(await admin.exists(`${key}:previous`)).toBe(0);
  });

  it('hash layout: fields current / previous / previous_valid_until / pending, and retire by time', async () => {
    const key = freshKey();
    const t = makeTarget({ key, hash: true });
    const t1 = makeToken();
    await admin.hset(key, 'current', sha256(t1));
    const t2 = makeToken();
    const ctx = makeContext('conf', t2, 2, t1);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    expect(await admin.hgetall(key)).toEqual({ current: sha256(t1), pending: sha256(t2) });
    await t.promote(ctx, snap);
    const validUntil = ctx.rotatedAt.getTime() + ctx.graceMs;
    expect(await admin.hgetall(key)).toEqual({ current: sha256(t2), previous: sha256(t1), previous_valid_until: String(validUntil) });
    expect(await admin.pttl(key)).toBe(-1);
    expect(await t.readBack()).toBe(sha256(t2));
    await t.retire({ policy: 'conf', now: new Date(validUntil - 1), log: captureLogger() });
    expect(await admin.hget(key, 'previous')).toBe(sha256(t1));
    await t.retire({ policy: 'conf', now: new Date(validUntil), log: captureLogger() });
    expect(await admin.hgetall(key)).toEqual({ current: sha256(t2) });
  });

  it('hash layout: rollback after promote restores previous and its valid-until', async () => {
    const key = freshKey();
    const t = makeTarget({ key, hash: true });
    const [t0, t1] = [makeToken(), makeToken()];
    const before = { current: sha256(t1), previous: sha256(t0), previous_valid_until: String(Date.now() + HOUR) };
    await admin.hset(key, before);
    const ctx = makeContext('conf', makeToken(), 3, t1);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.promote(ctx, snap);
    await t.rollback(ctx, snap);
    expect(await admin.hgetall(key)).toEqual(before);
  });

  it('stage replaces a stale pending hash and logs only its fingerprint', async () => {
    const key = freshKey();
    const log = captureLogger();
    const t = makeTarget({ key }, log);
    const stale = makeToken();
    await admin.set(`${key}:pending`, sha256(stale));
    const next = makeToken();
    const ctx = makeContext('conf', next, 2, undefined, log);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    expect(await admin.get(`${key}:pending`)).toBe(sha256(next));
    expect(log.text()).toContain(sha256(stale).slice(0, 8));
    expect(log.text()).not.toContain(sha256(stale));
  });

  it('promote without a staged hash is a conflict and changes nothing', async () => {
    const key = freshKey();
    const t = makeTarget({ key });
    await admin.set(key, 'a'.repeat(64));
    const ctx = makeContext('conf', makeToken(), 2);
    const err = (await t.promote(ctx, await t.snapshot(ctx)).catch((e: unknown) => e)) as RekeyError;
    expect(err.code).toBe('TARGET_CONFLICT');
    expect(await admin.get(key)).toBe('a'.repeat(64));
  });

  it('a key of the wrong kind is a clear TARGET error', async () => {
    const key = freshKey();
    await admin.hset(key, 'current', 'x');
    const t = makeTarget({ key });
    const err = (await t.snapshot(makeContext('conf', makeToken(), 1)).catch((e: unknown) => e)) as RekeyError;
    expect(err.code).toBe('TARGET');
    expect(err.message).toBe(`redis 127.0.0.1:6379 ${key}: ${key} holds another kind of value; it must be a string (or set hash: true), or choose another key`);
  });

  it('connection refused is a transient one-line error without the password', async () => {
    const config = RedisTargetSchema.parse({ type: 'redis', url: 'redis://u:s3cretPW@127.0.0.1:1', key: 'api', timeoutMs: 1000 });
    const t = createRedisTarget(config, { policy: 'p', env: process.env, log: captureLogger() });
    created.push(t);
    for (let i = 0; i < 2; i++) {
      const err = await t.readBack().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RekeyError);
      const e = err as RekeyError;
      expect(e.code).toBe('TARGET_TRANSIENT');
      expect(e.transient).toBe(true);
      expect(e.message).toMatch(/^redis 127\.0\.0\.1:1 api: cannot connect \(ECONNREFUSED\)/);
      expect(e.message).not.toContain('\n');
      for (const shown of [e.message, renderError(e), String(e.stack), JSON.stringify(e)]) expect(shown).not.toContain('s3cretPW');
    }
  });

  it('an ACL user without permissions gets TARGET_PERMISSION naming the command and the ACL to grant', async () => {
    const user = `rekey_noperm_${randomBytes(4).toString('hex')}`;
    await admin.call('ACL', 'SETUSER', user, 'on', '>s3cretPW', '-@all');
    try {
      const key = freshKey();
      const t = makeTarget({ url: `redis://${user}:s3cretPW@127.0.0.1:6379`, key });
      const ctx = makeContext('conf', makeToken(), 2, makeToken());
      const err = (await t.snapshot(ctx).catch((e: unknown) => e)) as RekeyError;
      expect(err).toBeInstanceOf(RekeyError);
      expect(err.code).toBe('TARGET_PERMISSION');
      expect(err.message).toBe(`redis 127.0.0.1:6379 ${key}: user ${user} may not run EVAL; grant the ACL +eval +get +set +del +pttl ~${key} ~${key}:previous ~${key}:pending`);
      // +eval alone: the commands inside the script are refused.
      await admin.call('ACL', 'SETUSER', user, '+eval', `~${key}*`);
      const err2 = (await t.stage(ctx, { meta: {} }).catch((e: unknown) => e)) as RekeyError;
      expect(err2.code).toBe('TARGET_PERMISSION');
      expect(err2.message).toContain('may not run a command the rotation script uses; grant the ACL');
      expect(renderError(err2)).not.toContain('s3cretPW');
      // The documented ACL is enough for a whole rotation.
      await admin.call('ACL', 'SETUSER', user, 'reset', 'on', '>s3cretPW', '+eval', '+get', '+set', '+del', '+pttl', `~${key}`, `~${key}:previous`, `~${key}:pending`);
      await t.close();
      await admin.set(key, sha256('old-token-value'));
      const snap = await t.snapshot(ctx);
      await t.stage(ctx, snap);
      await t.promote(ctx, snap);
      await t.retire({ policy: 'conf', now: new Date(Date.now() + 2 * HOUR), log: captureLogger() });
      expect(await t.readBack()).toBe(ctx.sha256);
    } finally {
      await admin.call('ACL', 'DELUSER', user);
    }
  });

  it('a wrong password is TARGET_PERMISSION without the password', async () => {
    const user = `rekey_noperm_${randomBytes(4).toString('hex')}`;
    await admin.call('ACL', 'SETUSER', user, 'on', '>right-password', '+@all', '~*');
    try {
      const t = makeTarget({ url: `redis://${user}:wrongPW12345@127.0.0.1:6379`, key: freshKey() });
      const err = (await t.readBack().catch((e: unknown) => e)) as RekeyError;
      expect(err).toBeInstanceOf(RekeyError);
      expect(err.code).toBe('TARGET_PERMISSION');
      expect(err.message).toContain(`authentication failed for user ${user}; check the user name and password in url`);
      expect(`${err.message}${renderError(err)}${String(err.stack)}`).not.toContain('wrongPW12345');
    } finally {
      await admin.call('ACL', 'DELUSER', user);
    }
  });
});
