import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TARGET_DOC_ORDER, buildJsonSchema, spliceReadme } from '../../src/config/json-schema.js';

describe('generated files stay in step with the schema', () => {
  it('config/rekey.schema.json is what src/config/schema.ts generates (run npm run schema)', () => {
    const committed = JSON.parse(readFileSync('config/rekey.schema.json', 'utf8'));
    expect(committed).toEqual(JSON.parse(JSON.stringify(buildJsonSchema())));
  });

  it('the README policy reference and target sections are current (run npm run schema)', () => {
    const docs: Record<string, string> = {};
    for (const k of TARGET_DOC_ORDER) {
      const f = path.join('docs', 'targets', `${k}.md`);
      if (existsSync(f)) docs[k] = readFileSync(f, 'utf8');
    }
    const readme = readFileSync('README.md', 'utf8');
    expect(readme).toContain('#### Target `type: env-file`');
    expect(spliceReadme(readme, docs, readFileSync('docs/daemon.md', 'utf8')) === readme).toBe(true);
  });

  it('the JSON schema rejects unknown keys and knows every target type', () => {
    const s = buildJsonSchema() as { additionalProperties?: boolean; properties: Record<string, unknown> };
    expect(JSON.stringify(s)).toContain('"additionalProperties":false');
    for (const t of ['env-file', 'file', 'postgres', 'redis', 'vault-kv', 'aws-secrets-manager', 'exec', 'webhook']) {
      expect(JSON.stringify(s)).toContain(`"const":"${t}"`);
    }
  });
});
