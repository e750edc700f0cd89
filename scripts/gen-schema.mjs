#!/usr/bin/env node
// Regenerate config/rekey.schema.json, the README's policy reference and its target sections
// (from docs/targets/*.md). A test fails when the committed files drift from these.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGET_DOC_ORDER, buildJsonSchema, spliceReadme } from '../dist/config/json-schema.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
writeFileSync(path.join(root, 'config', 'rekey.schema.json'), `${JSON.stringify(buildJsonSchema(), null, 2)}\n`);
const docs = {};
for (const k of TARGET_DOC_ORDER) {
  const f = path.join(root, 'docs', 'targets', `${k}.md`);
  if (existsSync(f)) docs[k] = readFileSync(f, 'utf8');
}
const readme = path.join(root, 'README.md');
writeFileSync(readme, spliceReadme(readFileSync(readme, 'utf8'), docs, readFileSync(path.join(root, 'docs', 'daemon.md'), 'utf8')));
console.log('wrote config/rekey.schema.json and the generated sections of README.md');
