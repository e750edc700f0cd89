import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/index.js';
import { pgUrl, requireService } from '../helpers/services.js';

const up = await requireService('postgres');
const schema = `rekey_initdb_${process.pid}_${Date.now()}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'rekey-initdb-'));

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (!up) return;
  const c = new pg.Client({ connectionString: pgUrl() });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
});

async function run(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    readStdin: async () => Buffer.alloc(0),
    env: { PATH: process.env.PATH, DATABASE_URL: pgUrl() },
    cwd: dir,
    isTTY: false,
  });
  return { code, stdout, stderr };
}

describe.skipIf(!up)('rekey init-db', () => {
  it('creates the table of every postgres target, is idempotent, and --print shows the SQL', async () => {
    writeFileSync(path.join(dir, 'rekey.yaml'), `version: 1
policies:
  - name: api
    targets:
      - { type: postgres, url: "\${DATABASE_URL}", schema: ${schema}, table: api_tokens }
`);
    const printed = await run(['init-db', '--print']);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain(`CREATE TABLE IF NOT EXISTS "${schema}"."api_tokens"`);
    const first = await run(['init-db']);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toMatch(new RegExp(`^created ${schema}\\.api_tokens on postgres://127\\.0\\.0\\.1:5432/test\\n$`));
    const second = await run(['init-db']);
    expect(second.stdout).toMatch(/^exists /);
    const c = new pg.Client({ connectionString: pgUrl() });
    await c.connect();
    const cols = await c.query(`SELECT column_name FROM information_schema.columns WHERE table_schema=$1 AND table_name='api_tokens' ORDER BY 1`, [schema]);
    await c.end();
    expect(cols.rows.map((r) => r.column_name)).toEqual(['name', 'rotated_at', 'sha256', 'status', 'valid_until']);
  });

  it('a config without postgres targets is a usage error', async () => {
    writeFileSync(path.join(dir, 'rekey.yaml'), 'version: 1\npolicies:\n  - name: a\n    targets: [{ type: file, path: a }]\n');
    const r = await run(['init-db']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^rekey: init-db: .* has no postgres targets\n$/);
  });
});
