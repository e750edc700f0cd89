/**
 * SQL shared by the postgres target and `rekey init-db`: identifier quoting, the DDL of the
 * hash table, connection settings, and the one place that turns a pg error into a RekeyError.
 * pg errors can carry the connection string or row data, so their messages are never forwarded.
 */
import pg from 'pg';
import { RekeyError } from '../util/errors.js';
import { redact, registerSecret } from '../util/secret.js';
import { registerUrlPassword } from '../util/url.js';

export interface PostgresColumns {
  name: string;
  sha256: string;
  status: string;
  validUntil: string;
  rotatedAt: string;
}

export const DEFAULT_COLUMNS: PostgresColumns = {
  name: 'name',
  sha256: 'sha256',
  status: 'status',
  validUntil: 'valid_until',
  rotatedAt: 'rotated_at',
};

export const DEFAULT_TABLE = 'rekey_tokens';

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Double-quote an identifier. The schema already limits identifiers; this refuses anything else too. */
export function quoteIdent(id: string): string {
  if (!IDENT.test(id)) throw new RekeyError('CONFIG', `postgres: "${id.slice(0, 64)}" is not a plain SQL identifier`);
  return `"${id}"`;
}

/** "schema"."table", or "table" when the search_path decides. */
export function qualifiedTable(table: string, schema?: string): string {
  return schema ? `${quoteIdent(schema)}.${quoteIdent(table)}` : quoteIdent(table);
}

/** schema.table for humans (unquoted). */
export function tableLabel(table: string, schema?: string): string {
  return schema ? `${schema}.${table}` : table;
}

export interface TableOptions {
  table?: string;
  schema?: string;
  columns?: Partial<PostgresColumns>;
}

function resolve(opts: TableOptions): { table: string; schema?: string; columns: PostgresColumns } {
  return {
    table: opts.table ?? DEFAULT_TABLE,
    ...(opts.schema !== undefined ? { schema: opts.schema } : {}),
    columns: { ...DEFAULT_COLUMNS, ...(opts.columns ?? {}) },
  };
}

/**
 * The DDL statements of the hash table: one row per token hash, at most one `current` and one
 * `pending` row per name (partial unique indexes), any number of `previous` rows.
 * The primary key (name, sha256) also serves the application's validation query.
 */
export function postgresDdl(opts: TableOptions = {}): string[] {
  const { table, schema, columns: c } = resolve(opts);
  const t = qualifiedTable(table, schema);
  const q = {
    name: quoteIdent(c.name),
    sha256: quoteIdent(c.sha256),
    status: quoteIdent(c.status),
    validUntil: quoteIdent(c.validUntil),
    rotatedAt: quoteIdent(c.rotatedAt),
  };
  return [
    `CREATE TABLE IF NOT EXISTS ${t} (
  ${q.name} text NOT NULL,
  ${q.sha256} text NOT NULL CHECK (${q.sha256} ~ '^[0-9a-f]{64}$'),
  ${q.status} text NOT NULL CHECK (${q.status} IN ('pending', 'current', 'previous')),
  ${q.validUntil} timestamptz NULL,
  ${q.rotatedAt} timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (${q.name}, ${q.sha256})
)`,
    `CREATE UNIQUE INDEX IF NOT EXISTS ${quoteIdent(`${table}_one_current`)} ON ${t} (${q.name}) WHERE ${q.status} = 'current'`,
    `CREATE UNIQUE INDEX IF NOT EXISTS ${quoteIdent(`${table}_one_pending`)} ON ${t} (${q.name}) WHERE ${q.status} = 'pending'`,
  ];
}

/** The query an application runs to accept a presented token (parameters: name, sha256 of the token). */
export function validationQuery(opts: TableOptions = {}): string {
  const { table, schema, columns: c } = resolve(opts);
  return `SELECT 1 FROM ${qualifiedTable(table, schema)} WHERE ${quoteIdent(c.name)} = $1 AND ${quoteIdent(c.sha256)} = $2 AND (${quoteIdent(c.status)} = 'current' OR (${quoteIdent(c.status)} = 'previous' AND ${quoteIdent(c.validUntil)} > now()))`;
}

// ---------------------------------------------------------------------------------------------
// Connection

export interface ParsedUrl {
  /** "host:port/db", safe to show. */
  where: string;
  user: string;
  database: string;
}

/**
 * Read host, port, database and user from the URL for messages. The password is registered with
 * the redaction registry; if the URL is malformed we say so without echoing it.
 */
export function parsePostgresUrl(url: string, what = 'postgres target'): ParsedUrl {
  const rawPassword = registerUrlPassword(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RekeyError('CONFIG', `${what}: url is not a valid postgres:// URL; percent-encode special characters in the user name and password`);
  }
  let password = '';
  try {
    password = decodeURIComponent(u.password);
  } catch {
    password = u.password;
  }
  if (password) registerSecret(password);
  const scrub = [rawPassword, password, u.password].filter((s) => s.length > 0);
  const host = u.hostname || u.searchParams.get('host') || 'localhost';
  const port = u.port || u.searchParams.get('port') || '5432';
  let database = u.pathname.replace(/^\//, '');
  try {
    database = decodeURIComponent(database);
  } catch {
    /* keep it encoded */
  }
  let user = u.username;
  try {
    user = decodeURIComponent(user);
  } catch {
    /* keep it encoded */
  }
  user ||= u.searchParams.get('user') || process.env.PGUSER || safeOsUser();
  const where = redact(`${host}:${port}/${database || '(default)'}`, scrub);
  return { where, user: redact(user, scrub), database: redact(database, scrub) };
}

function safeOsUser(): string {
  return process.env.USER || process.env.LOGNAME || '(default user)';
}

/**
 * Client settings. Only startup parameters every server and pooler accepts (PgBouncer refuses
 * statement_timeout at startup); the server-side limits are set per transaction by beginSql().
 */
export function pgConfig(url: string, timeoutMs: number): pg.PoolConfig {
  return {
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs + 1000,
    application_name: 'rekey',
  };
}

/** BEGIN plus per-transaction limits, one round trip. */
export function beginSql(timeoutMs: number): string {
  const ms = Math.max(1, Math.floor(timeoutMs));
  return `BEGIN; SET LOCAL statement_timeout = ${ms}; SET LOCAL lock_timeout = ${ms}; SET LOCAL idle_in_transaction_session_timeout = ${Math.max(ms * 2, 10_000)}`;
}

// ---------------------------------------------------------------------------------------------
// Errors

export interface PgErrorContext {
  /** The target's description, e.g. "postgres 127.0.0.1:5432/app rekey_tokens name=api". */
  description: string;
  user: string;
  /** schema.table for humans. */
  table: string;
  schema?: string;
  /** What we were doing: "stage", "promote", "create the table"... */
  op: string;
  /** init-db needs CREATE rather than row privileges. */
  ddl?: boolean;
}

const CONNECT_ERRNO = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH',
  'EPIPE', 'ECONNABORTED', 'EADDRNOTAVAIL', 'ENOENT', 'EHOSTDOWN', 'ENETDOWN',
]);

/** Messages pg and pg-pool produce themselves (no data in them); matched, never forwarded. */
const PG_TIMEOUT_MESSAGES = new Set([
  'timeout expired',
  'Connection terminated due to connection timeout',
  'timeout exceeded when trying to connect',
  'Query read timeout',
]);
const PG_LOST_MESSAGES = new Set([
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
]);

function errnoOf(e: unknown): string | undefined {
  const err = e as { code?: unknown; errors?: unknown } | null;
  if (err && typeof err.code === 'string') return err.code;
  if (e instanceof AggregateError) {
    for (const inner of e.errors) {
      const code = (inner as { code?: unknown } | null)?.code;
      if (typeof code === 'string') return code;
    }
  }
  return undefined;
}

/** Turn anything pg throws into a one-line RekeyError built from codes only. */
export function pgError(e: unknown, ctx: PgErrorContext): RekeyError {
  if (e instanceof RekeyError) return e;
  const d = ctx.description;
  const code = errnoOf(e);
  const message = typeof (e as { message?: unknown } | null)?.message === 'string' ? (e as Error).message : '';
  const fail = (c: 'TARGET' | 'TARGET_PERMISSION' | 'TARGET_TRANSIENT' | 'TARGET_CONFLICT', text: string) =>
    new RekeyError(c, `${d}: ${text}`);

  if (code && CONNECT_ERRNO.has(code)) {
    return fail('TARGET_TRANSIENT', `cannot connect (${code}); check that PostgreSQL is running and the url's host and port`);
  }
  if (PG_TIMEOUT_MESSAGES.has(message)) {
    return fail('TARGET_TRANSIENT', `cannot connect (timeout) during ${ctx.op}; check that PostgreSQL is reachable, or raise timeoutMs`);
  }
  if (PG_LOST_MESSAGES.has(message)) {
    return fail('TARGET_TRANSIENT', `connection lost during ${ctx.op}; it will be retried`);
  }
  if (message.startsWith('SASL') || message.includes('password must be a string')) {
    return fail('TARGET_PERMISSION', `authentication failed for user ${ctx.user}; the server wants a password: put it in the url`);
  }
  if (message.includes('does not support SSL') || (code !== undefined && /CERT|TLS|SSL/.test(code))) {
    return fail('TARGET', `TLS setup failed${code ? ` (${code})` : ''}; check sslmode and the CA in the url`);
  }
  if (code === undefined || !/^[0-9A-Z]{5}$/.test(code)) {
    return fail('TARGET', `${ctx.op} failed (${code ?? (e as { name?: unknown } | null)?.name ?? 'unknown error'})`);
  }

  // SQLSTATE codes: https://www.postgresql.org/docs/current/errcodes-appendix.html
  switch (code) {
    case '28P01':
    case '28000':
      return fail('TARGET_PERMISSION', `authentication failed for user ${ctx.user}; check the password in url (and pg_hba.conf)`);
    case '42501':
      return ctx.ddl
        ? fail('TARGET_PERMISSION', `user ${ctx.user} needs CREATE on ${ctx.schema ? `schema ${ctx.schema}` : 'the schema'} (or ownership of ${ctx.table}) to ${ctx.op}`)
        : fail('TARGET_PERMISSION', `user ${ctx.user} needs SELECT, INSERT, UPDATE, DELETE on ${ctx.table}${ctx.schema ? ` and USAGE on schema ${ctx.schema}` : ''}`);
    case '42P01':
      return fail('TARGET', `table ${ctx.table} does not exist; run \`rekey init-db\` or apply config/rekey-postgres.sql`);
    case '3F000':
      return fail('TARGET', `schema ${ctx.schema ?? '(search_path)'} does not exist; run \`rekey init-db\` or create it`);
    case '42703':
      return fail('TARGET', `a column of ${ctx.table} is missing; check the target's columns setting against the table (see config/rekey-postgres.sql)`);
    case '3D000':
      return fail('TARGET', `database does not exist; check the database name in url`);
    case '23505':
      return fail('TARGET_CONFLICT', `another writer changed ${ctx.table} for this name during ${ctx.op}; run the rotation again`);
    case '23514':
    case '22P02':
    case '22001':
      return fail('TARGET', `${ctx.table} refused the row (SQLSTATE ${code}); its columns must match config/rekey-postgres.sql`);
    case '25006':
      return fail('TARGET_TRANSIENT', `the server is read-only (a standby?) during ${ctx.op}; point url at the primary`);
    case '57014':
      return fail('TARGET_TRANSIENT', `${ctx.op} timed out (statement_timeout); raise timeoutMs if the server is slow`);
    case '55P03':
      return fail('TARGET_TRANSIENT', `${ctx.op} timed out waiting for a lock on ${ctx.table}`);
    case '40001':
    case '40P01':
      return fail('TARGET_TRANSIENT', `${ctx.op} was cancelled by a conflicting transaction (SQLSTATE ${code}); it will be retried`);
    default:
      break;
  }
  if (code.startsWith('08') || code.startsWith('53') || code.startsWith('57P')) {
    return fail('TARGET_TRANSIENT', `${ctx.op} failed (SQLSTATE ${code}): the server is unavailable or overloaded; it will be retried`);
  }
  if (code.startsWith('28')) {
    return fail('TARGET_PERMISSION', `authentication failed for user ${ctx.user} (SQLSTATE ${code}); check the credentials in url`);
  }
  return fail('TARGET', `${ctx.op} failed (SQLSTATE ${code})`);
}

// ---------------------------------------------------------------------------------------------
// init-db

export interface InitDbOptions extends TableOptions {
  timeoutMs?: number;
}

export interface InitDbResult {
  /** schema.table for humans. */
  table: string;
  /** false when the table already existed (its indexes are still ensured). */
  created: boolean;
}

/**
 * Create the hash table and its indexes if they are missing (`rekey init-db`). Idempotent.
 * Creates the schema too when it is named and missing. Refuses an existing table that lacks
 * one of the configured columns.
 */
export async function initDb(url: string, opts: InitDbOptions = {}): Promise<InitDbResult> {
  const { table, schema, columns } = resolve(opts);
  const parsed = parsePostgresUrl(url, 'init-db');
  const label = tableLabel(table, schema);
  const errCtx: PgErrorContext = {
    description: `postgres ${parsed.where} ${label}`,
    user: parsed.user,
    table: label,
    ...(schema !== undefined ? { schema } : {}),
    op: 'create the table',
    ddl: true,
  };
  const client = new pg.Client(pgConfig(url, opts.timeoutMs ?? 10_000));
  client.on('error', () => undefined); // reported through the failing query instead
  try {
    await client.connect();
    await client.query(beginSql(opts.timeoutMs ?? 10_000));
    if (schema !== undefined) {
      const ns = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (ns.rowCount === 0) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    }
    const existed = await client.query('SELECT to_regclass($1) IS NOT NULL AS found', [qualifiedTable(table, schema)]);
    const created = existed.rows[0]?.found !== true;
    for (const stmt of postgresDdl({ table, ...(schema !== undefined ? { schema } : {}), columns })) {
      await client.query(stmt);
    }
    const cols = await client.query<{ attname: string }>(
      'SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped',
      [qualifiedTable(table, schema)],
    );
    const have = new Set(cols.rows.map((r) => r.attname));
    const missing = Object.values(columns).filter((c) => !have.has(c));
    if (missing.length > 0) {
      throw new RekeyError('TARGET', `${errCtx.description}: the table exists but has no column ${missing.join(', ')}; fix the columns setting or alter the table`);
    }
    await client.query('COMMIT');
    return { table: label, created };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw pgError(e, errCtx);
  } finally {
    await client.end().catch(() => undefined);
  }
}
