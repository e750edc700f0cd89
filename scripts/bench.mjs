#!/usr/bin/env node
// `npm run bench`: rotate N policies (default 1000) with `rekey rotate-now --all` and compare with
// baselines measured in the same run on the same machine: the naive bash + openssl loop that
// rekey replaces, and a bare `node -e 0`. Figures are medians of REPEAT runs, reported as ratios.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_POLICIES ?? 1000);
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
const cli = path.join(root, 'dist', 'main.js');

function timeIt(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const work = mkdtempSync(path.join(os.tmpdir(), 'rekey-bench-'));
try {
  // The same job for both: per token, a fresh 32-byte token, its SHA-256, an env file and a hash file.
  const policies = Array.from({ length: N }, (_, i) => `  - name: p${i}
    targets:
      - { type: env-file, path: out/p${i}.env, key: API_TOKEN }
      - { type: file, path: out/p${i}.sha256, content: sha256 }
`).join('');
  writeFileSync(path.join(work, 'rekey.yaml'), `version: 1\nconcurrency: 32\ndefaults: { grace: 1h }\npolicies:\n${policies}`);
  writeFileSync(path.join(work, 'loop.sh'), `#!/bin/bash
set -e
mkdir -p "$1"
for i in $(seq 0 $(( $2 - 1 ))); do
  t=$(openssl rand -hex 32)
  h=$(printf %s "$t" | openssl dgst -sha256 -r | cut -d' ' -f1)
  printf 'API_TOKEN=%s\\n' "$t" > "$1/p$i.env.tmp" && mv "$1/p$i.env.tmp" "$1/p$i.env"
  printf '%s\\n' "$h" > "$1/p$i.sha256"
done
`);

  const nodeFloor = [];
  const bash = [];
  const rekeyFirst = [];
  const rekeyAgain = [];
  for (let r = 0; r < REPEAT; r++) {
    nodeFloor.push(timeIt(() => execFileSync(process.execPath, ['-e', '0'])));
    rmSync(path.join(work, 'bash-out'), { recursive: true, force: true });
    bash.push(timeIt(() => execFileSync('bash', [path.join(work, 'loop.sh'), path.join(work, 'bash-out'), String(N)])));
    rmSync(path.join(work, 'out'), { recursive: true, force: true });
    rmSync(path.join(work, '.rekey'), { recursive: true, force: true });
    mkdirSync(path.join(work, 'out'));
    for (const [list] of [[rekeyFirst], [rekeyAgain]]) {
      let res;
      list.push(timeIt(() => {
        res = spawnSync(process.execPath, [cli, 'rotate-now', '--all', '--json', '-c', path.join(work, 'rekey.yaml')], { encoding: 'utf8', maxBuffer: 1 << 26 });
      }));
      if (res.status !== 0) throw new Error(`rekey exited ${res.status}: ${res.stderr.slice(0, 500)}`);
      const doc = JSON.parse(res.stdout);
      if (doc.results.filter((x) => x.result === 'rotated').length !== N) throw new Error('not every policy rotated');
    }
  }
  const m = { node: median(nodeFloor), bash: median(bash), first: median(rekeyFirst), again: median(rekeyAgain) };
  const report = {
    policies: N,
    repeat: REPEAT,
    cpus: os.cpus().length,
    openssl: execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim(),
    medianMs: Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Math.round(v)])),
    ratios: {
      rekeyFirstVsBashLoop: +(m.first / m.bash).toFixed(3),
      rekeyAgainVsBashLoop: +(m.again / m.bash).toFixed(3),
      rekeyAgainVsNodeStartup: +(m.again / m.node).toFixed(1),
    },
  };
  console.log(`rotate-now --all, ${N} policies (env file + hash file each), median of ${REPEAT}:`);
  console.log(`  bash + openssl loop (baseline) ${m.bash.toFixed(0)} ms`);
  console.log(`  rekey, first rotation          ${m.first.toFixed(0)} ms  (${report.ratios.rekeyFirstVsBashLoop}x the loop)`);
  console.log(`  rekey, rotating again          ${m.again.toFixed(0)} ms  (${report.ratios.rekeyAgainVsBashLoop}x the loop, with grace + previous kept)`);
  console.log(`  node -e 0 (floor)              ${m.node.toFixed(0)} ms`);
  console.log(JSON.stringify(report));
} finally {
  rmSync(work, { recursive: true, force: true });
}

const daemonBench = path.join(root, 'scripts', 'bench-daemon.mjs');
if (existsSync(daemonBench) && process.env.BENCH_SKIP_DAEMON !== '1') {
  const r = spawnSync(process.execPath, [daemonBench], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
}
