#!/usr/bin/env node
// `npm start`: a real rotation of the example policies into ./out, with local state in ./.rekey.
import { chmodSync, copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'out');
mkdirSync(out, { recursive: true, mode: 0o700 });
const appEnv = path.join(out, 'app.env');
if (!existsSync(appEnv)) {
  copyFileSync(path.join(root, 'config', 'example-app.env'), appEnv);
  chmodSync(appEnv, 0o600); // it will hold tokens
}

const cli = path.join(root, 'dist', 'main.js');
const config = path.join(root, 'config', 'rekey.example.yaml');
const r = spawnSync(process.execPath, [cli, 'rotate-now', '--all', '-c', config, ...process.argv.slice(2)], { stdio: 'inherit' });
if (r.status === 0) {
  console.log(`\nTokens written to ${path.relative(process.cwd(), out) || '.'}/ (try: cat out/app.env), state in .rekey/.`);
  console.log('Next: node dist/main.js status -c config/rekey.example.yaml');
}
process.exit(r.status ?? 1);
