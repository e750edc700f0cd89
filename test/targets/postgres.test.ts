import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderError } from '../../src/cli/render.js';
import { PostgresTargetSchema } from '../../src/config/schema.js';
import type { Target } from '../../src/targets/contract.js';
import { createPostgresTarget } from '../../src/targets/postgres.js';
import { initDb, pgError, postgresDdl, validationQuery } from '../../src/targets/postgres-sql.js';
import { RekeyError } from '../../src/util/errors.js';
import { pgUrl, requireService } from '../helpers/services.js';
import { captureLogger, makeContext, makeToken, runConformance, sha256 } from './conformance.js';

const pgUp = await requireService('postgres');
const SCHEMA = `rekey_test_${randomBytes(4).toString('hex')}`;
const TABLE = `"${SCHEMA}"."rekey_tokens"`;

interface DbRow {
  sha256: string;
  status: string;
  valid_until: Date | null;
  rotated_at: Date;
}

describe.skipIf(!pgUp)('postgres target', () => {
  let admin: pg.Client;
  const created: Target[] = [];

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: pgUrl() });
    await admin.connect();
    const res = await initDb(pgUrl(), { schema: SCHEMA });
    expect(res).toEqual({ table: `${SCHEMA}.rekey_tokens`, created: true });
  });

  afterAll(async () => {
    for (const t of created) await t.close().catch(() => undefined);
    await admin?.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
    await admin?.end();
  });

  const uniqueName = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

  function makeTarget(settings: Record<string, unknown> = {}, log = captureLogger()): Target {
    const config = PostgresTargetSchema.parse({ type: 'postgres', url: pgUrl(), schema: SCHEMA, ...settings });
    const t = createPostgresTarget(config, { policy: 'conf', env: process.env, log });
    created.push(t);
    return t;
  }

  async function rows(name: string): Promise<DbRow[]> {
    const res = await admin.query<DbRow>(
      `SELECT sha256, status, valid_until, rotated_at FROM ${TABLE} WHERE name = $1 ORDER BY status, sha256`, [name]);
    return res.rows;
  }

  async function seedCurrent(name: string, token: string, rotatedAt = new Date(Date.now() - 86_400_000)): Promise<void> {
    await admin.query(`DELETE FROM ${TABLE} WHERE name = $1`, [name]);
    await admin.query(`INSERT INTO ${TABLE} (name, sha256, status, rotated_at) VALUES ($1, $2, 'current', $3)`, [name, sha256(token), rotatedAt]);
  }

  async function appAccepts(name: string, token: string): Promise<boolean> {
    const res = await admin.query(validationQuery({ schema: SCHEMA }), [name, sha256(token)]);
    return (res.rowCount ?? 0) > 0;
  }

  describe('conformance', () => {
    runConformance({
      name: 'postgres',
      setup: async () => {
        const name = uniqueName('conf');
        const target = makeTarget({ name });
        return {
          target,
          holds: 'sha256',
          current: async () => {
            const res = await admin.query<{ sha256: string }>(`SELECT sha256 FROM ${TABLE} WHERE name = $1 AND status = 'current'`, [name]);
            return res.rows[0]?.sha256;
          },
          seed: (token) => seedCurrent(name, token),
          teardown: async () => {
            await admin.query(`DELETE FROM ${TABLE} WHERE name = $1`, [name]);
          },
        };
      },
      broken: async () => {
        const log = captureLogger();
        const config = PostgresTargetSchema.parse({ type: 'postgres', url: 'postgres://u:s3cretPW@127.0.0.1:1/test', timeoutMs: 2000 });
        return { target: createPostgresTarget(config, { policy: 'conf', env: process.env, log }), logs: () => log.text(), teardown: async () => undefined };
      },
    });
  });

  it('description names host, database, table and name, never the password', () => {
    const config = PostgresTargetSchema.parse({ type: 'postgres', url: 'postgres://u:s3cretPW@db.example:6543/app', schema: 'auth', name: 'api' });
    const t = createPostgresTarget(config, { policy: 'p', env: {}, log: captureLogger() });
    expect(t.description).toBe('postgres db.example:6543/app auth.rekey_tokens name=api');
    const dflt = createPostgresTarget(PostgresTargetSchema.parse({ type: 'postgres', url: 'postgresql://db/app' }), { policy: 'billing', env: {}, log: captureLogger() });
    expect(dflt.description).toBe('postgres db:5432/app rekey_tokens name=billing');
  });

  it('promote is one transaction: afterwards exactly one current and one previous valid until rotatedAt + grace', async () => {
    const name = uniqueName('atomic');
    const t = makeTarget({ name });
    const t1 = makeToken();
    await seedCurrent(name, t1);
    const t2 = makeToken();
    const ctx = { ...makeContext('conf', t2, 2, t1), rotatedAt: new Date('2030-01-02T03:04:05.678Z'), graceMs: 90 * 60_000 };
    const snap = await t.snapshot(ctx);
    expect(snap.meta).toMatchObject({ current: sha256(t1), previous: null });
    await t.stage(ctx, snap);
    expect((await rows(name)).map((r) => [r.status, r.sha256])).toEqual([
      ['current', sha256(t1)],
      ['pending', sha256(t2)],
    ]);
    await t.promote(ctx, snap);
    const after = await rows(name);
    expect(after).toHaveLength(2);
    const cur = after.filter((r) => r.status === 'current');
    const prev = after.filter((r) => r.status === 'previous');
    expect(cur).toHaveLength(1);
    expect(prev).toHaveLength(1);
    expect(cur[0]).toMatchObject({ sha256: sha256(t2), valid_until: null });
    expect(cur[0]!.rotated_at.toISOString()).toBe('2030-01-02T03:04:05.678Z');
    expect(prev[0]!.sha256).toBe(sha256(t1));
    expect(prev[0]!.valid_until!.toISOString()).toBe(new Date(ctx.rotatedAt.getTime() + ctx.graceMs).toISOString());
    // A retried promote changes nothing.
    await t.promote(ctx, snap);
    expect(await rows(name)).toEqual(after);
  });

  it('a promote that fails part-way leaves the table exactly as it was', async () => {
    const name = uniqueName('boom');
    await admin.query(`CREATE FUNCTION "${SCHEMA}".boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$`);
    await admin.query(`CREATE TRIGGER boom BEFORE UPDATE ON ${TABLE} FOR EACH ROW WHEN (NEW.status = 'current' AND NEW.name LIKE 'boom-%') EXECUTE FUNCTION "${SCHEMA}".boom()`);
    try {
      const t = makeTarget({ name });
      const t0 = makeToken();
      const t1 = makeToken();
      await seedCurrent(name, t1);
      await admin.query(`INSERT INTO ${TABLE} (name, sha256, status, valid_until) VALUES ($1, $2, 'previous', now() + interval '1 hour')`, [name, sha256(t0)]);
      const ctx = makeContext('conf', makeToken(), 2, t1);
      const snap = await t.snapshot(ctx);
      await t.stage(ctx, snap);
      const before = await rows(name);
      const err = await t.promote(ctx, snap).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RekeyError);
      expect((err as RekeyError).code).toBe('TARGET');
      expect((err as RekeyError).message).not.toContain('injected');
      expect(await rows(name)).toEqual(before);
    } finally {
      await admin.query(`DROP TRIGGER boom ON ${TABLE}`);
      await admin.query(`DROP FUNCTION "${SCHEMA}".boom()`);
    }
  });

  it('promote without a staged row is a conflict and changes nothing', async () => {
    const name = uniqueName('nostage');
    const t = makeTarget({ name });
    const t1 = makeToken();
    await seedCurrent(name, t1);
    const ctx = makeContext('conf', makeToken(), 2, t1);
    const snap = await t.snapshot(ctx);
    const before = await rows(name);
    const err = await t.promote(ctx, snap).catch((e: unknown) => e);
    expect((err as RekeyError).code).toBe('TARGET_CONFLICT');
    expect(await rows(name)).toEqual(before);
  });

  it('stage replaces a stale pending row from a crashed attempt, and a re-stage does nothing', async () => {
    const name = uniqueName('stale');
    const log = captureLogger();
    const t = makeTarget({ name }, log);
    const t1 = makeToken();
    await seedCurrent(name, t1);
    const stale = makeToken();
    await admin.query(`INSERT INTO ${TABLE} (name, sha256, status) VALUES ($1, $2, 'pending')`, [name, sha256(stale)]);
    const next = makeToken();
    const ctx = makeContext('conf', next, 3, t1, log);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.stage(ctx, snap);
    expect((await rows(name)).map((r) => [r.status, r.sha256])).toEqual([
      ['current', sha256(t1)],
      ['pending', sha256(next)],
    ]);
    expect(log.text()).toContain(sha256(stale).slice(0, 8));
    expect(log.text()).not.toContain(next);
  });

  it('rollback after promote restores current and the older previous with its own valid_until', async () => {
    const name = uniqueName('undo');
    const t = makeTarget({ name });
    const t0 = makeToken();
    const t1 = makeToken();
    await seedCurrent(name, t1);
    await admin.query(`INSERT INTO ${TABLE} (name, sha256, status, valid_until, rotated_at) VALUES ($1, $2, 'previous', now() + interval '30 minutes', now() - interval '2 days')`, [name, sha256(t0)]);
    const before = await rows(name);
    const ctx = makeContext('conf', makeToken(), 3, t1);
    const snap = JSON.parse(JSON.stringify(await t.snapshot(ctx)));
    await t.stage(ctx, snap);
    await t.promote(ctx, snap);
    expect((await rows(name)).map((r) => [r.status, r.sha256])).toEqual([
      ['current', ctx.sha256],
      ['previous', sha256(t1)],
    ]);
    const { token: _t, previousToken: _p, ...journalCtx } = ctx;
    await t.rollback(journalCtx, snap);
    expect(await rows(name)).toEqual(before);
    await t.rollback(journalCtx, snap);
    expect(await rows(name)).toEqual(before);
  });

  it('rollback after promote with a snapshot that lacks the old state refuses instead of guessing', async () => {
    const name = uniqueName('nosnap');
    const t = makeTarget({ name });
    const t1 = makeToken();
    await seedCurrent(name, t1);
    const ctx = makeContext('conf', makeToken(), 2, t1);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.promote(ctx, snap);
    const err = await t.rollback(ctx, { meta: {} }).catch((e: unknown) => e);
    expect((err as RekeyError).code).toBe('RECOVERY');
    expect((await rows(name)).find((r) => r.status === 'current')?.sha256).toBe(ctx.sha256);
  });

  it('retire removes only expired previous rows of its own name', async () => {
    const name = uniqueName('retire');
    const other = uniqueName('other');
    const t = makeTarget({ name });
    const now = new Date();
    const [cur, old, fresh, otherOld] = [makeToken(), makeToken(), makeToken(), makeToken()];
    await seedCurrent(name, cur);
    await admin.query(`INSERT INTO ${TABLE} (name, sha256, status, valid_until) VALUES ($1, $2, 'previous', $3), ($1, $4, 'previous', $5), ($6, $7, 'previous', $3)`, [
      name, sha256(old), new Date(now.getTime() - 60_000), sha256(fresh), new Date(now.getTime() + 60_000), other, sha256(otherOld),
    ]);
    await t.retire({ policy: 'conf', now, log: captureLogger() });
    expect((await rows(name)).map((r) => [r.status, r.sha256])).toEqual([
      ['current', sha256(cur)],
      ['previous', sha256(fresh)],
    ]);
    expect(await rows(other)).toHaveLength(1);
    await t.retire({ policy: 'conf', now: new Date(now.getTime() + 60_000), log: captureLogger() });
    expect((await rows(name)).map((r) => r.status)).toEqual(['current']);
    await admin.query(`DELETE FROM ${TABLE} WHERE name = $1`, [other]);
  });

  it('the documented validation query accepts current and previous-within-grace, nothing else', async () => {
    const name = uniqueName('app');
    const t = makeTarget({ name });
    const t1 = makeToken();
    await seedCurrent(name, t1);
    const t2 = makeToken();
    const c2 = makeContext('conf', t2, 2, t1);
    const s2 = await t.snapshot(c2);
    await t.stage(c2, s2);
    expect(await appAccepts(name, t2)).toBe(false); // pending is not valid yet
    expect(await appAccepts(name, t1)).toBe(true);
    await t.promote(c2, s2);
    expect(await appAccepts(name, t2)).toBe(true);
    expect(await appAccepts(name, t1)).toBe(true); // previous, within grace
    expect(await appAccepts(name, makeToken())).toBe(false);
    expect(await appAccepts(uniqueName('x'), t2)).toBe(false); // another name
    // A rotation whose grace already ended: the replaced token is refused at once.
    const t3 = makeToken();
    const c3 = { ...makeContext('conf', t3, 3, t2), rotatedAt: new Date(Date.now() - 7_200_000), graceMs: 3_600_000 };
    const s3 = await t.snapshot(c3);
    await t.stage(c3, s3);
    await t.promote(c3, s3);
    expect(await appAccepts(name, t3)).toBe(true);
    expect(await appAccepts(name, t2)).toBe(false);
    expect(await appAccepts(name, t1)).toBe(false); // dropped by the second rotation
  });

  it('the documented query in config/rekey-postgres.sql matches validationQuery()', async () => {
    const sql = await readFile(new URL('../../config/rekey-postgres.sql', import.meta.url), 'utf8');
    const squash = (s: string) => s.replace(/--/g, ' ').replace(/\s+/g, ' ').replace(/\( /g, '(').trim();
    expect(squash(sql)).toContain(squash(validationQuery()));
    for (const stmt of postgresDdl()) expect(squash(sql)).toContain(squash(stmt));
  });

  it('config/rekey-postgres.sql creates a table the target works with', async () => {
    const schema = `rekey_test_${randomBytes(4).toString('hex')}`;
    const sql = await readFile(new URL('../../config/rekey-postgres.sql', import.meta.url), 'utf8');
    const c = new pg.Client({ connectionString: pgUrl() });
    await c.connect();
    try {
      await c.query(`CREATE SCHEMA "${schema}"`);
      await c.query(`SET search_path TO "${schema}"`);
      await c.query(sql);
      await c.query(sql); // idempotent
      const t = makeTarget({ schema, name: 'file' });
      const ctx = makeContext('conf', makeToken(), 1);
      const snap = await t.snapshot(ctx);
      await t.stage(ctx, snap);
      await t.promote(ctx, snap);
      expect(await t.readBack()).toBe(ctx.sha256);
    } finally {
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    }
  });

  it('initDb is idempotent and refuses an existing table whose columns do not match', async () => {
    expect(await initDb(pgUrl(), { schema: SCHEMA })).toEqual({ table: `${SCHEMA}.rekey_tokens`, created: false });
    const err = await initDb(pgUrl(), { schema: SCHEMA, columns: { sha256: 'token_hash' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RekeyError);
    expect((err as RekeyError).message).toContain('no column token_hash');
  });

  it('custom table and column names are honoured', async () => {
    const columns = { name: 'app', sha256: 'digest', status: 'state', validUntil: 'expires_at', rotatedAt: 'changed_at' };
    await initDb(pgUrl(), { schema: SCHEMA, table: 'api_keys', columns });
    const t = makeTarget({ table: 'api_keys', columns, name: 'svc' });
    const t1 = makeToken();
    const c1 = makeContext('conf', t1, 1);
    const s1 = await t.snapshot(c1);
    await t.stage(c1, s1);
    await t.promote(c1, s1);
    const c2 = makeContext('conf', makeToken(), 2, t1);
    const s2 = await t.snapshot(c2);
    await t.stage(c2, s2);
    await t.promote(c2, s2);
    const res = await admin.query(`SELECT digest, state FROM "${SCHEMA}".api_keys WHERE app = 'svc' ORDER BY state`);
    expect(res.rows).toEqual([{ digest: c2.sha256, state: 'current' }, { digest: sha256(t1), state: 'previous' }]);
    const ok = await admin.query(validationQuery({ schema: SCHEMA, table: 'api_keys', columns }), ['svc', sha256(t1)]);
    expect(ok.rowCount).toBe(1);
  });

  it('connection refused is a transient one-line error without the password', async () => {
    const config = PostgresTargetSchema.parse({ type: 'postgres', url: 'postgres://u:s3cretPW@127.0.0.1:1/test', schema: 'auth', timeoutMs: 2000 });
    const t = createPostgresTarget(config, { policy: 'p', env: process.env, log: captureLogger() });
    created.push(t);
    const err = await t.readBack().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RekeyError);
    const e = err as RekeyError;
    expect(e.code).toBe('TARGET_TRANSIENT');
    expect(e.transient).toBe(true);
    expect(e.message).toMatch(/^postgres 127\.0\.0\.1:1\/test auth\.rekey_tokens name=p: cannot connect \(ECONNREFUSED\)/);
    expect(e.message).not.toContain('\n');
    for (const shown of [e.message, renderError(e), String(e.stack), JSON.stringify(e)]) expect(shown).not.toContain('s3cretPW');
    expect(e.cause).toBeUndefined();
  });

  it('a role without privileges gets TARGET_PERMISSION naming what is missing', async () => {
    const role = `rekey_noperm_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE ROLE ${role} LOGIN`);
    try {
      const url = `postgres://${role}@127.0.0.1:5432/test`;
      const config = PostgresTargetSchema.parse({ type: 'postgres', url, schema: SCHEMA, name: 'np' });
      const t = createPostgresTarget(config, { policy: 'p', env: process.env, log: captureLogger() });
      created.push(t);
      const ctx = makeContext('conf', makeToken(), 2, makeToken());
      // No USAGE on the schema yet.
      let err = (await t.snapshot(ctx).catch((e: unknown) => e)) as RekeyError;
      expect(err).toBeInstanceOf(RekeyError);
      expect(err.code).toBe('TARGET_PERMISSION');
      expect(err.message).toContain(`user ${role} needs SELECT, INSERT, UPDATE, DELETE on ${SCHEMA}.rekey_tokens and USAGE on schema ${SCHEMA}`);
      // USAGE but no table privileges.
      await admin.query(`GRANT USAGE ON SCHEMA "${SCHEMA}" TO ${role}`);
      err = (await t.stage(ctx, { meta: {} }).catch((e: unknown) => e)) as RekeyError;
      expect(err.code).toBe('TARGET_PERMISSION');
      expect(err.message).toContain('needs SELECT, INSERT, UPDATE, DELETE');
      expect(err.message).not.toContain('\n');
      await t.close();
    } finally {
      await admin.query(`REVOKE ALL ON SCHEMA "${SCHEMA}" FROM ${role}`);
      await admin.query(`DROP ROLE ${role}`);
    }
  });

  it('rows locked by another session: the server-side timeout ends the wait with a transient error', async () => {
    const name = uniqueName('locked');
    const t1 = makeToken();
    await seedCurrent(name, t1);
    const t = makeTarget({ name, timeoutMs: 300 });
    const holder = new pg.Client({ connectionString: pgUrl() });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM ${TABLE} WHERE name = $1 FOR UPDATE`, [name]);
      const ctx = makeContext('conf', makeToken(), 2, t1);
      const err = (await t.stage(ctx, { meta: {} }).catch((e: unknown) => e)) as RekeyError;
      expect(err).toBeInstanceOf(RekeyError);
      expect(err.code).toBe('TARGET_TRANSIENT');
      expect(err.message).toContain('timed out');
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    // The target recovers on the next call.
    expect(await t.readBack()).toBe(sha256(t1));
  });

  it('a missing table says to run rekey init-db', async () => {
    const t = makeTarget({ table: 'no_such_table', name: 'x' });
    const err = (await t.readBack().catch((e: unknown) => e)) as RekeyError;
    expect(err.code).toBe('TARGET');
    expect(err.message).toBe(`postgres 127.0.0.1:5432/test ${SCHEMA}.no_such_table name=x: table ${SCHEMA}.no_such_table does not exist; run \`rekey init-db\` or apply config/rekey-postgres.sql`);
  });
});

describe('pgError', () => {
  const ctx = { description: 'postgres h:5432/app rekey_tokens name=api', user: 'rekey', table: 'rekey_tokens', op: 'stage' };
  const leaky = (code: string) => Object.assign(new Error('connection to postgres://rekey:hunter2hunter2@h/app failed'), { code });

  it('maps authentication failures to TARGET_PERMISSION without the foreign message', () => {
    for (const code of ['28P01', '28000']) {
      const e = pgError(leaky(code), ctx);
      expect(e.code).toBe('TARGET_PERMISSION');
      expect(e.message).toBe('postgres h:5432/app rekey_tokens name=api: authentication failed for user rekey; check the password in url (and pg_hba.conf)');
    }
  });

  it('maps connection trouble to transient errors', () => {
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', '57P03', '53300', '08006', '40001']) {
      const e = pgError(leaky(code), ctx);
      expect(e.transient, code).toBe(true);
      expect(e.message).not.toContain('hunter2');
    }
    expect(pgError(new Error('timeout expired'), ctx).transient).toBe(true);
    expect(pgError(new Error('Connection terminated unexpectedly'), ctx).transient).toBe(true);
  });

  it('maps anything else to a TARGET error that shows only the SQLSTATE', () => {
    const e = pgError(leaky('XX000'), ctx);
    expect(e.code).toBe('TARGET');
    expect(e.message).toBe('postgres h:5432/app rekey_tokens name=api: stage failed (SQLSTATE XX000)');
    expect(pgError(leaky('23505'), ctx).code).toBe('TARGET_CONFLICT');
  });
});
