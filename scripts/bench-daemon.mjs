#!/usr/bin/env node
/**
 * Idle cost of `rekey daemon` with 1,000 policies loaded.
 *
 *   npm run build && node scripts/bench-daemon.mjs [--policies 1000] [--window 60] [--settle 15]
 *
 * 1. Writes a config with N policies (every: 30d, a `file` target each) into a temp dir.
 * 2. Seeds the state with `rekey rotate-now --all`, so the daemon's start-up catch-up finds
 *    nothing due (otherwise it would rotate all N first).
 * 3. Starts a baseline `node -e "setInterval(()=>{},1e9)"`, then the daemon (with --listen, as
 *    in production) twice: as `node dist/main.js daemon` runs by default, and with the
 *    NODE_OPTIONS that config/rekey.service sets. Each time it lets the daemon settle, then
 *    samples daemon and baseline for the window: RSS from /proc/<pid>/status every second, CPU
 *    time from /proc/<pid>/stat.
 * 4. Prints the figures as JSON on stdout (a summary on stderr), including the ratio against
 *    the baseline measured in the same run, then stops everything and removes the temp dir.
 * Linux only (/proc).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'main.js');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : def;
}
const POLICIES = arg('policies', 1000);
const WINDOW_S = arg('window', 60);
const SETTLE_S = arg('settle', 15);
const GOAL_RSS_MB = 80;
/** Keep in step with Environment=NODE_OPTIONS in config/rekey.service. */
const UNIT_NODE_OPTIONS = '--max-semi-space-size=1';

if (!existsSync(CLI)) {
  console.error(`${CLI} is missing: run "npm run build" first`);
  process.exit(2);
}
if (!existsSync('/proc/self/stat')) {
  console.error('bench-daemon needs Linux /proc');
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  /* keep 100 */
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clkTck;
}

/** { rss, hwm } of a process, in MB. */
function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

const round = (x, d = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);

const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-daemon-'));
const children = [];
const cleanup = () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
};
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

try {
  const lines = ['version: 1', 'state:', '  dir: ./state', 'policies:'];
  for (let i = 0; i < POLICIES; i++) {
    const name = `p-${String(i).padStart(4, '0')}`;
    lines.push(`  - name: ${name}`, '    every: 30d', '    targets:', '      - type: file', `        path: ./targets/${name}.tok`);
  }
  const cfg = join(dir, 'rekey.yaml');
  mkdirSync(join(dir, 'targets'), { mode: 0o700 });
  writeFileSync(cfg, `${lines.join('\n')}\n`);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? dir, LANG: 'C.UTF-8' };

  // 1. Seed: every policy rotates once, so nothing is due when the daemon starts.
  const seedStart = process.hrtime.bigint();
  const seed = await new Promise((res) => {
    const c = spawn(process.execPath, [CLI, 'rotate-now', '--all', '-c', cfg], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (b) => (err += b));
    c.on('close', (code) => res({ code, err }));
  });
  const seedSeconds = Number(process.hrtime.bigint() - seedStart) / 1e9;
  if (seed.code !== 0) throw new Error(`rotate-now --all exited ${seed.code}: ${seed.err.split('\n')[0]}`);

  // 2. The baseline runs through both measurements.
  const baseline = spawn(process.execPath, ['-e', 'setInterval(()=>{},1e9)'], { stdio: 'ignore' });
  children.push(baseline);

  /** Start the daemon with extra environment, let it settle, measure it and the baseline over the window, stop it. */
  async function measure(extraEnv) {
    const daemonStart = process.hrtime.bigint();
    const daemon = spawn(process.execPath, [CLI, 'daemon', '-c', cfg, '--log-format', 'json', '--listen', '127.0.0.1:0'], { cwd: dir, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(daemon);
    const logs = [];
    let buf = '';
    let stderr = '';
    daemon.stderr.on('data', (b) => (stderr += b));
    daemon.stdout.on('data', (b) => {
      buf += b.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        try {
          logs.push(JSON.parse(buf.slice(0, i)));
        } catch {
          /* ignore */
        }
        buf = buf.slice(i + 1);
      }
    });
    const exited = new Promise((res) => daemon.on('close', (code) => res(code)));
    for (let i = 0; ; i++) {
      if (logs.some((r) => String(r.msg).startsWith('rekey daemon started'))) break;
      if (daemon.exitCode !== null) throw new Error(`daemon exited ${daemon.exitCode}: ${stderr.split('\n')[0]}`);
      if (i > 1200) throw new Error('daemon did not start within 60 s');
      await sleep(50);
    }
    const startupSeconds = Number(process.hrtime.bigint() - daemonStart) / 1e9;
    const started = logs.find((r) => String(r.msg).startsWith('scheduler started'));
    const listen = logs.find((r) => typeof r.listen === 'string')?.listen;
    await sleep(SETTLE_S * 1000);

    const cpu0 = { d: cpuSeconds(daemon.pid), b: cpuSeconds(baseline.pid) };
    const t0 = process.hrtime.bigint();
    const rss = { d: [], b: [] };
    for (let s = 0; s < WINDOW_S; s++) {
      await sleep(1000);
      rss.d.push(memory(daemon.pid).rss);
      rss.b.push(memory(baseline.pid).rss);
    }
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu1 = { d: cpuSeconds(daemon.pid), b: cpuSeconds(baseline.pid) };
    const memD = memory(daemon.pid);
    const memB = memory(baseline.pid);

    // Outside the window: one scrape, to show the endpoint works with N policies.
    let metricsBytes = null;
    let rotationsInWindow = null;
    if (listen) {
      const body = await (await fetch(`http://${listen}/metrics`)).text();
      metricsBytes = body.length;
      rotationsInWindow = [...body.matchAll(/^rekey_rotations_total\{[^}]*result="success"\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
    }
    daemon.kill('SIGTERM');
    const exitCode = await exited;

    const avg = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const d = {
      env: extraEnv,
      // RSS at the end of the window; the first sample and the average show V8 giving back
      // start-up memory during the window (its memory reducer runs a while after start).
      rssMB: round(memD.rss, 1),
      rssFirstMB: round(rss.d[0], 1),
      rssAvgMB: round(avg(rss.d), 1),
      peakRssMB: round(memD.hwm, 1),
      cpuSeconds: round(cpu1.d - cpu0.d, 3),
      cpuPercent: round(((cpu1.d - cpu0.d) / elapsed) * 100, 3),
      startupSeconds: round(startupSeconds, 2),
      dueAtStart: started?.due ?? null,
      rotationsInWindow,
      metricsBytes,
      exitCode,
    };
    const b = {
      rssMB: round(memB.rss, 1),
      cpuSeconds: round(cpu1.b - cpu0.b, 3),
      cpuPercent: round(((cpu1.b - cpu0.b) / elapsed) * 100, 3),
    };
    return {
      windowSeconds: round(elapsed, 1),
      daemon: d,
      baseline: b,
      ratio: {
        rss: round(d.rssMB / b.rssMB, 2),
        // Both are usually 0 or 1 clock tick in the window; the difference in seconds says more.
        cpu: b.cpuSeconds > 0 ? round(d.cpuSeconds / b.cpuSeconds, 2) : null,
        cpuSecondsAboveBaseline: round(d.cpuSeconds - b.cpuSeconds, 3),
      },
      goalMet: d.rssMB < GOAL_RSS_MB,
    };
  }

  // 3. As `node dist/main.js daemon` runs by default, then with the NODE_OPTIONS that
  //    config/rekey.service sets (a small V8 young generation: the idle heap stays small).
  const plain = await measure({});
  const unit = await measure({ NODE_OPTIONS: UNIT_NODE_OPTIONS });
  baseline.kill('SIGKILL');

  const result = {
    bench: 'rekey daemon idle',
    node: process.version,
    policies: POLICIES,
    seedSeconds: round(seedSeconds, 2),
    settleSeconds: SETTLE_S,
    clockTicksPerSecond: clkTck,
    goalRssMB: GOAL_RSS_MB,
    default: plain,
    systemdUnit: unit,
  };
  console.log(JSON.stringify(result, null, 2));
  for (const [label, r] of [['default', plain], [`NODE_OPTIONS=${UNIT_NODE_OPTIONS} (rekey.service)`, unit]]) {
    console.error(
      `rekey daemon, ${POLICIES} policies, ${label}, idle ${r.windowSeconds}s: RSS ${r.daemon.rssMB} MB (peak ${r.daemon.peakRssMB} MB; baseline ${r.baseline.rssMB} MB, x${r.ratio.rss}), ` +
        `CPU ${r.daemon.cpuSeconds}s = ${r.daemon.cpuPercent}% (baseline ${r.baseline.cpuSeconds}s); goal < ${GOAL_RSS_MB} MB: ${r.goalMet ? 'met' : 'NOT met'}`,
    );
  }
  if (plain.daemon.exitCode !== 0 || unit.daemon.exitCode !== 0) process.exitCode = 1;
} finally {
  cleanup();
}
