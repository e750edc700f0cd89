/**
 * postgres target: keeps the SHA-256 of the token (never the token) in a table the application
 * validates against. One row per hash with status pending | current | previous.
 *   stage    insert the new hash as pending
 *   promote  one transaction: drop old previous rows, current -> previous (valid_until =
 *            rotatedAt + grace), pending -> current
 *   rollback delete our pending row; if promote ran, put the snapshot's current/previous back
 *   retire   delete previous rows whose valid_until has passed
 * Everything works from ctx.sha256 and the snapshot meta, so a later process can finish or undo
 * a rotation from the journal.
 */
import pg from 'pg';
import type { PostgresTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { RetireContext, RotationContext, Snapshot, Target, TargetEnv } from './contract.js';
import {
  beginSql,
  DEFAULT_COLUMNS,
  type PgErrorContext,
  parsePostgresUrl,
  pgConfig,
  pgError,
  qualifiedTable,
  quoteIdent,
  tableLabel,
} from './postgres-sql.js';

type Status = 'pending' | 'current' | 'previous';

interface Row {
  sha256: string;
  status: Status;
  valid_until: Date | null;
  rotated_at: Date;
}

/** What snapshot() records; everything is a hash or a timestamp, safe for the journal. */
interface PostgresMeta {
  current: string | null;
  previous: string | null;
  currentRotatedAt: string | null;
  previousValidUntil: string | null;
  previousRotatedAt: string | null;
}

const HEX64 = /^[0-9a-f]{64}$/;

export function createPostgresTarget(config: PostgresTargetConfig, env: TargetEnv): Target {
  const columns = { ...DEFAULT_COLUMNS, ...config.columns };
  const name = config.name ?? env.policy;
  const table = qualifiedTable(config.table, config.schema);
  const label = tableLabel(config.table, config.schema);
  const parsed = parsePostgresUrl(config.url, `postgres target of policy ${env.policy}`);
  const description = `postgres ${parsed.where} ${label} name=${name}`;
  const c = {
    name: quoteIdent(columns.name),
    sha256: quoteIdent(columns.sha256),
    status: quoteIdent(columns.status),
    validUntil: quoteIdent(columns.validUntil),
    rotatedAt: quoteIdent(columns.rotatedAt),
  };
  const selectRows =
    `SELECT ${c.sha256} AS sha256, ${c.status} AS status, ${c.validUntil} AS valid_until, ${c.rotatedAt} AS rotated_at ` +
    `FROM ${table} WHERE ${c.name} = $1`;

  let pool: pg.Pool | undefined;
  const getPool = (): pg.Pool => {
    if (!pool) {
      pool = new pg.Pool({ ...pgConfig(config.url, config.timeoutMs), max: 1, idleTimeoutMillis: 5_000, allowExitOnIdle: true });
      // An idle connection that dies emits here; the next query reports it. Never log the pg message.
      pool.on('error', (e) => env.log.warn({ target: description, code: (e as { code?: unknown }).code ?? null }, 'postgres connection lost'));
    }
    return pool;
  };

  const errCtx = (op: string): PgErrorContext => ({
    description,
    user: parsed.user,
    table: label,
    ...(config.schema !== undefined ? { schema: config.schema } : {}),
    op,
  });

  /** Run fn inside one transaction on a pooled connection; map every failure. */
  async function tx<T>(op: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient | undefined;
    let broken = false;
    try {
      client = await getPool().connect();
      await client.query(beginSql(config.timeoutMs));
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (e) {
      // Our own refusal or a server error (it has a severity) leaves a usable connection; anything else (a timeout,
      // a dropped socket) may leave it mid-query, so drop it instead of queueing a ROLLBACK.
      const usable = e instanceof RekeyError || typeof (e as { severity?: unknown } | null)?.severity === 'string';
      if (client && usable) await client.query('ROLLBACK').catch(() => { broken = true; });
      else broken = true;
      throw pgError(e, errCtx(op));
    } finally {
      client?.release(broken);
    }
  }

  /** One statement, inside a transaction so that the server-side timeouts apply to it too. */
  function query<R extends pg.QueryResultRow>(op: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    return tx(op, (client) => client.query<R>(text, values));
  }

  /** All rows of our name, locked for the rest of the transaction. */
  async function lockRows(client: pg.PoolClient): Promise<Row[]> {
    const res = await client.query<Row>(`${selectRows} FOR UPDATE`, [name]);
    return res.rows.map((r) => ({ ...r, sha256: r.sha256.trim() }));
  }

  const meta = (snap: Snapshot, op: string): Partial<PostgresMeta> & { known: boolean } => {
    const m = (snap?.meta ?? {}) as Record<string, unknown>;
    const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
    const known = 'current' in m;
    const current = str(m.current);
    if (current !== null && !HEX64.test(current)) {
      throw new RekeyError('RECOVERY', `${description}: the snapshot for ${op} is damaged (current is not a SHA-256)`);
    }
    return {
      known,
      current,
      previous: str(m.previous),
      currentRotatedAt: str(m.currentRotatedAt),
      previousValidUntil: str(m.previousValidUntil),
      previousRotatedAt: str(m.previousRotatedAt),
    };
  };

  const checkHash = (ctx: RotationContext, op: string) => {
    if (!HEX64.test(ctx.sha256)) throw new RekeyError('INTERNAL', `${description}: ${op} got a malformed sha256`);
  };

  const target: Target = {
    kind: 'postgres',
    description,
    phase: 'stage',

    async snapshot(): Promise<Snapshot> {
      const res = await query<Row>('snapshot', selectRows, [name]);
      const rows = res.rows.map((r) => ({ ...r, sha256: r.sha256.trim() }));
      const current = rows.find((r) => r.status === 'current');
      // With several previous rows (only possible by hand), remember the one valid longest.
      const previous = rows
        .filter((r) => r.status === 'previous')
        .sort((a, b) => (b.valid_until?.getTime() ?? 0) - (a.valid_until?.getTime() ?? 0))[0];
      const m: PostgresMeta = {
        current: current?.sha256 ?? null,
        previous: previous?.sha256 ?? null,
        currentRotatedAt: current?.rotated_at.toISOString() ?? null,
        previousValidUntil: previous?.valid_until?.toISOString() ?? null,
        previousRotatedAt: previous?.rotated_at.toISOString() ?? null,
      };
      return { meta: { ...m } };
    },

    async stage(ctx: RotationContext): Promise<void> {
      checkHash(ctx, 'stage');
      await tx('stage', async (client) => {
        const rows = await lockRows(client);
        const mine = rows.find((r) => r.sha256 === ctx.sha256);
        if (mine) {
          if (mine.status === 'previous') {
            throw new RekeyError('TARGET_CONFLICT', `${description}: the new hash ${ctx.fingerprint} is already the previous token; refusing to reuse it`);
          }
          return; // already pending (a retried stage) or already current (promote ran)
        }
        const stale = rows.filter((r) => r.status === 'pending');
        if (stale.length > 0) {
          await client.query(`DELETE FROM ${table} WHERE ${c.name} = $1 AND ${c.status} = 'pending'`, [name]);
          ctx.log.warn({ target: description, stale: stale.map((r) => r.sha256.slice(0, 8)) }, 'replaced a pending hash left by an earlier attempt');
        }
        await client.query(
          `INSERT INTO ${table} (${c.name}, ${c.sha256}, ${c.status}, ${c.validUntil}, ${c.rotatedAt}) VALUES ($1, $2, 'pending', NULL, $3)`,
          [name, ctx.sha256, new Date(ctx.rotatedAt)],
        );
      });
    },

    async promote(ctx: RotationContext): Promise<void> {
      checkHash(ctx, 'promote');
      await tx('promote', async (client) => {
        const rows = await lockRows(client);
        if (rows.some((r) => r.status === 'current' && r.sha256 === ctx.sha256)) return; // already promoted
        if (!rows.some((r) => r.status === 'pending' && r.sha256 === ctx.sha256)) {
          throw new RekeyError('TARGET_CONFLICT', `${description}: no pending row for hash ${ctx.fingerprint} (removed by someone else?); run the rotation again`);
        }
        const rotatedAt = new Date(ctx.rotatedAt); // a Date, or its ISO text when rebuilt from the journal
        const validUntil = new Date(rotatedAt.getTime() + ctx.graceMs);
        // Order matters for the partial unique indexes: free the `current` slot before filling it.
        await client.query(`DELETE FROM ${table} WHERE ${c.name} = $1 AND ${c.status} = 'previous'`, [name]);
        await client.query(
          `UPDATE ${table} SET ${c.status} = 'previous', ${c.validUntil} = $2 WHERE ${c.name} = $1 AND ${c.status} = 'current'`,
          [name, validUntil],
        );
        await client.query(
          `UPDATE ${table} SET ${c.status} = 'current', ${c.validUntil} = NULL, ${c.rotatedAt} = $3 WHERE ${c.name} = $1 AND ${c.sha256} = $2 AND ${c.status} = 'pending'`,
          [name, ctx.sha256, rotatedAt],
        );
      });
    },

    async rollback(ctx: RotationContext, snap: Snapshot): Promise<void> {
      checkHash(ctx, 'rollback');
      const m = meta(snap, 'rollback');
      await tx('rollback', async (client) => {
        const rows = await lockRows(client);
        await client.query(
          `DELETE FROM ${table} WHERE ${c.name} = $1 AND ${c.sha256} = $2 AND ${c.status} = 'pending'`,
          [name, ctx.sha256],
        );
        const promoted = rows.some((r) => r.status === 'current' && r.sha256 === ctx.sha256) && m.current !== ctx.sha256;
        if (!promoted) return;
        if (!m.known) {
          throw new RekeyError('RECOVERY', `${description}: promote already ran but the snapshot does not say what was current before; restore the row by hand`);
        }
        await client.query(`DELETE FROM ${table} WHERE ${c.name} = $1 AND ${c.sha256} = $2`, [name, ctx.sha256]);
        if (m.current) {
          // The old current is now `previous` (or was retired meanwhile): make it current again.
          await client.query(`DELETE FROM ${table} WHERE ${c.name} = $1 AND ${c.sha256} = $2`, [name, m.current]);
          await client.query(
            `INSERT INTO ${table} (${c.name}, ${c.sha256}, ${c.status}, ${c.validUntil}, ${c.rotatedAt}) VALUES ($1, $2, 'current', NULL, COALESCE($3::timestamptz, now()))`,
            [name, m.current, m.currentRotatedAt],
          );
        }
        // Promote dropped the older previous row; put it back with its own valid_until.
        await client.query(`DELETE FROM ${table} WHERE ${c.name} = $1 AND ${c.status} = 'previous'`, [name]);
        if (m.previous && HEX64.test(m.previous) && m.previous !== m.current) {
          await client.query(
            `INSERT INTO ${table} (${c.name}, ${c.sha256}, ${c.status}, ${c.validUntil}, ${c.rotatedAt}) VALUES ($1, $2, 'previous', $3::timestamptz, COALESCE($4::timestamptz, now()))`,
            [name, m.previous, m.previousValidUntil, m.previousRotatedAt],
          );
        }
      });
    },

    async retire(ctx: RetireContext): Promise<void> {
      const res = await query('retire',
        `DELETE FROM ${table} WHERE ${c.name} = $1 AND ${c.status} = 'previous' AND (${c.validUntil} IS NULL OR ${c.validUntil} <= $2)`,
        [name, ctx.now]);
      if ((res.rowCount ?? 0) > 0) ctx.log.info({ target: description, removed: res.rowCount }, 'retired previous token hash');
    },

    async readBack(): Promise<string | undefined> {
      const res = await query<{ sha256: string }>('read back',
        `SELECT ${c.sha256} AS sha256 FROM ${table} WHERE ${c.name} = $1 AND ${c.status} = 'current'`, [name]);
      return res.rows[0]?.sha256.trim();
    },

    async close(): Promise<void> {
      const p = pool;
      pool = undefined;
      await p?.end().catch(() => undefined);
    },
  };
  return target;
}
