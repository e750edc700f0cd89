import type { PostgresTargetConfig } from '../config/schema.js';
import { initDb, postgresDdl } from '../targets/postgres-sql.js';
import { safeUrl } from '../util/url.js';
import { RekeyError } from '../util/errors.js';
import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';
import { readConfig } from './context.js';

export const initDbCommand: Command = {
  name: 'init-db',
  summary: 'create the PostgreSQL table(s) of the postgres targets',
  usage: `Usage: rekey init-db [-c FILE] [--print]

Creates the table and indexes each postgres target of the config writes to (schema too, when
the target names one). Safe to run twice; an existing table missing a configured column is
refused. The same DDL, for the default names, is in config/rekey-postgres.sql.

Options:
${CONFIG_HELP}
  --print   print the SQL instead of running it

Example:
  DATABASE_URL=postgres://rekey@db/app rekey init-db -c /etc/rekey/rekey.yaml`,
  options: { ...CONFIG_OPTIONS, print: { type: 'boolean' } },
  async run({ values }, io) {
    const config = await readConfig(values, io);
    const targets = new Map<string, PostgresTargetConfig>();
    for (const p of config.policies) {
      for (const t of p.targets) {
        if (t.type === 'postgres') targets.set(`${t.url}\0${t.schema ?? ''}\0${t.table}\0${JSON.stringify(t.columns)}`, t);
      }
    }
    if (targets.size === 0) throw new RekeyError('USAGE', `init-db: ${config.file} has no postgres targets`);
    for (const t of targets.values()) {
      const opts = { table: t.table, ...(t.schema ? { schema: t.schema } : {}), columns: t.columns, timeoutMs: t.timeoutMs };
      if (values.print) {
        io.stdout(`-- ${safeUrl(t.url)}\n${postgresDdl(opts).map((s) => `${s};`).join('\n')}\n`);
        continue;
      }
      const r = await initDb(t.url, opts);
      io.stdout(`${r.created ? 'created' : 'exists '} ${r.table} on ${safeUrl(t.url)}\n`);
    }
    return 0;
  },
};
