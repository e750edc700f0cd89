#!/usr/bin/env node
// Regenerate config/rekey.schema.json and the README's policy reference from src/config/schema.ts.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildJsonSchema, spliceReference } from '../dist/config/json-schema.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
writeFileSync(path.join(root, 'config', 'rekey.schema.json'), `${JSON.stringify(buildJsonSchema(), null, 2)}\n`);
const readme = path.join(root, 'README.md');
writeFileSync(readme, spliceReference(readFileSync(readme, 'utf8')));
console.log('wrote config/rekey.schema.json and the policy reference in README.md');
