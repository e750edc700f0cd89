/**
 * The kill test. `node dist/main.js rotate-now api` is killed with SIGKILL (a) at every named
 * step boundary, through the fault hook (REKEY_TEST_KILL_AT + REKEY_TEST_KILL_CONFIRM), and (b)
 * from outside after a random delay. Then `rekey recover` (or another rotate-now) runs, and the
 * invariant must hold: the env file, the token file and the sha256 file hold the same token,
 * its hash is state.currentSha256, no journal / recovery file / lock is left, the version is the
 * old one (rolled back) or old+1 (completed) as the journal's phase at the kill implies, and the
 * audit log is valid JSONL with one "rotated" line per committed version.
 *
 * REKEY_CHAOS_RUNS sets the number of runs (default: every boundary once plus 10 random kills);
 * `npm run test:chaos` runs 240. The summary line is printed with console.log.
 */
import { watch } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, makeTempDir, runRekey as runBuilt, snapshotCli, startRekey as startBuilt, type RunOptions, type RunResult } from '../helpers/cli.js';
import {
  VERIFY_FAIL,
  VERIFY_OK,
  envValue,
  fileShots,
  listDir,
  readAudit,
  readState,
  readText,
  sha256,
  threeTargets,
  writeConfig,
} from './helpers.js';

afterAll(cleanupTempDirs);

// A private copy of the build: a rebuild elsewhere in the tree mid-run cannot break a child.
let cli: string;
beforeAll(async () => {
  cli = await snapshotCli();
});
const runRekey = (args: string[], opts: RunOptions = {}) => runBuilt(args, { cli, ...opts });
const startRekey = (args: string[], opts: RunOptions = {}) => startBuilt(args, { cli, ...opts });

const KILL_ENV = { REKEY_TEST_KILL_CONFIRM: 'yes-kill-this-process', REKEY_TEST_KILL_POLICY: 'api' };

/** Killing before the journal says "promoting" must roll back; from then on it must complete. */
const ROLLBACK_POINTS = ['after-journal', 'after-stage-0', 'after-stage-1', 'after-stage-2', 'after-stage', 'after-verify'];
const COMPLETE_POINTS = ['after-promoting', 'after-promote-0', 'after-promote-1', 'after-promote-2', 'after-promote', 'after-done', 'before-state', 'after-state', 'after-audit'];

interface Boundary {
  kind: 'boundary';
  point: string;
  /** Use the policy whose verify command fails (the process itself is rolling back). */
  failing: boolean;
  expect: 'rolled back' | 'completed';
}

interface RandomKill {
  kind: 'random';
  /** The delay counts from the lock file's creation or from the journal's. */
  anchor: 'lock' | 'journal';
  delayMs: number;
  failing: boolean;
  /** Also kill the first `recover` at a random moment, then recover again. */
  killRecover: boolean;
  recoverWith: 'recover' | 'rotate-now';
}

type Scenario = Boundary | RandomKill;

const BOUNDARIES: Boundary[] = [
  ...ROLLBACK_POINTS.map((point): Boundary => ({ kind: 'boundary', point, failing: false, expect: 'rolled back' })),
  ...COMPLETE_POINTS.map((point): Boundary => ({ kind: 'boundary', point, failing: false, expect: 'completed' })),
  // Between removing the journal and the recovery file, at the end of a commit and of a rollback.
  { kind: 'boundary', point: 'in-finish', failing: false, expect: 'completed' },
  { kind: 'boundary', point: 'in-finish', failing: true, expect: 'rolled back' },
  { kind: 'boundary', point: 'after-stage-1', failing: true, expect: 'rolled back' },
];

const RUNS = Math.max(BOUNDARIES.length, Number(process.env.REKEY_CHAOS_RUNS ?? '') || BOUNDARIES.length + 10);
const LANES = 3;

interface Lane {
  id: number;
  dir: string;
  config: string;
  failConfig: string;
  stateDir: string;
  env: string;
  token: string;
  hash: string;
}

async function makeLane(id: number): Promise<Lane> {
  const dir = await makeTempDir(`rekey-crash-${id}-`);
  const lane: Lane = {
    id,
    dir,
    config: join(dir, 'rekey.yaml'),
    failConfig: join(dir, 'rekey-failing-verify.yaml'),
    stateDir: join(dir, 'state'),
    env: join(dir, 'app.env'),
    token: join(dir, 'api.token'),
    hash: join(dir, 'api.sha256'),
  };
  const policy = { name: 'api', grace: '24h', targets: threeTargets(lane) };
  await writeConfig(lane.config, lane.stateDir, [{ ...policy, verify: { command: [VERIFY_OK] } }]);
  await writeConfig(lane.failConfig, lane.stateDir, [{ ...policy, verify: { command: [VERIFY_FAIL] } }]);
  await fsp.writeFile(lane.env, 'OTHER=1\nAPI_TOKEN=handmade-token-before-rekey\nLAST=yes\n', { mode: 0o640 });
  await fsp.chmod(lane.env, 0o640);
  for (const sub of ['locks', 'journal']) await fsp.mkdir(join(lane.stateDir, sub), { recursive: true, mode: 0o700 }); // watched
  return lane;
}

interface Windows {
  /** From the lock file's creation to the exit. */
  lock?: number;
  /** From the journal's creation to the exit. */
  journal?: number;
}

/** Watch the state dir for the lock file and the journal of policy api. */
function watchState(lane: Lane, on: (what: 'lock' | 'journal') => void): () => void {
  const seen = new Set<string>();
  const fire = (what: 'lock' | 'journal') => {
    if (!seen.has(what)) {
      seen.add(what);
      on(what);
    }
  };
  const a = watch(join(lane.stateDir, 'locks'), (_e, f) => f === 'api.lock' && fire('lock'));
  const b = watch(join(lane.stateDir, 'journal'), (_e, f) => f === 'api.json' && fire('journal'));
  return () => {
    a.close();
    b.close();
  };
}

/** Run rotate-now to the end; measure how long the protocol ran (for the random kill delays). */
async function rotateTimed(lane: Lane): Promise<{ r: RunResult; windows: Windows }> {
  const at: Windows = {};
  const stop = watchState(lane, (what) => {
    at[what] = performance.now();
  });
  try {
    const r = await runRekey(['rotate-now', 'api', '-c', lane.config], { cwd: lane.dir });
    const end = performance.now();
    return { r, windows: { ...(at.lock ? { lock: end - at.lock } : {}), ...(at.journal ? { journal: end - at.journal } : {}) } };
  } finally {
    stop();
  }
}

interface Before {
  version: number;
  token: string;
  shots: Awaited<ReturnType<typeof fileShots>>;
}

async function snapshot(lane: Lane): Promise<Before> {
  const state = (await readState(lane.stateDir))!;
  const token = envValue((await readText(lane.env))!, 'API_TOKEN')!;
  return { version: state.version, token, shots: await fileShots([lane.env, lane.token, lane.hash]) };
}

/** What is left for the next command: the journal's phase, or none. */
async function journalPhase(lane: Lane): Promise<'begin' | 'promoting' | 'done' | undefined> {
  const text = await readText(join(lane.stateDir, 'journal', 'api.json'));
  return text === undefined ? undefined : (JSON.parse(text) as { phase: 'begin' | 'promoting' | 'done' }).phase;
}

/** Every broken invariant, as text; empty when the lane is consistent. */
async function invariantProblems(lane: Lane, before: Before, expectedVersion: number, rolledBack: boolean | undefined): Promise<string[]> {
  const problems: string[] = [];
  const envText = (await readText(lane.env)) ?? '';
  const tok = envValue(envText, 'API_TOKEN');
  const prev = envValue(envText, 'API_TOKEN_PREVIOUS');
  const tokenFile = await readText(lane.token);
  const hashFile = await readText(lane.hash);
  const state = await readState(lane.stateDir);
  if (!tok) problems.push('the env file has no API_TOKEN');
  if (tokenFile !== `${tok}\n`) problems.push('the token file differs from the env file');
  if (hashFile !== `${sha256(tok ?? '')}\n`) problems.push('the sha256 file is not the hash of the env file token');
  if (!state) problems.push('no state');
  else {
    if (state.currentSha256 !== sha256(tok ?? '')) problems.push(`state.currentSha256 is not the hash of the token in the targets (v${state.version})`);
    if (state.version !== expectedVersion) problems.push(`state version ${state.version}, expected ${expectedVersion}`);
    if (!state.previous || !prev || state.previous.sha256 !== sha256(prev)) problems.push('API_TOKEN_PREVIOUS is not state.previous');
  }
  if (rolledBack === true) {
    const now = await fileShots([lane.env, lane.token, lane.hash]);
    if (JSON.stringify(now) !== JSON.stringify(before.shots)) problems.push('rolled back, but the targets are not byte-identical to before');
  }
  if (rolledBack === false && prev !== before.token) problems.push('completed, but API_TOKEN_PREVIOUS is not the token from before');
  for (const sub of ['journal', 'recovery', 'locks']) {
    const left = (await listDir(join(lane.stateDir, sub))).filter((f) => !isTemp(f));
    if (left.length > 0) problems.push(`left in ${sub}/: ${left.join(', ')}`);
  }
  try {
    // Valid JSONL, and every committed version logged as rotated exactly once.
    const rotated = (await readAudit(lane.stateDir)).filter((a) => a.event === 'rotated').map((a) => a.version);
    const want = Array.from({ length: state?.version ?? 0 }, (_, i) => i + 1);
    if (JSON.stringify(rotated) !== JSON.stringify(want)) problems.push(`audit "rotated" versions ${rotated.join(',')}, expected ${want.join(',')}`);
  } catch (e) {
    problems.push(`audit log: ${(e as Error).message}`);
  }
  return problems;
}

/** Atomic-write temp files (.<name>.rekey-<hex>.tmp) and lock temp files (<name>.lock.<pid>-<hex>.tmp). */
const isTemp = (f: string) => /^\..*\.rekey-(?:\d+-)?[0-9a-f]+\.tmp$/.test(f) || /\.lock\.\d+-[0-9a-f]+\.tmp$/.test(f);

/** Temp files that a kill left behind (removed, and counted by where they were). */
async function sweepTemp(lane: Lane): Promise<Record<string, number>> {
  const where: Record<string, number> = {};
  const dirs: Array<[string, string]> = [
    ['target dir', lane.dir],
    ...['journal', 'recovery', 'policies', 'attempts', 'locks'].map((sub): [string, string] => [`state/${sub}`, join(lane.stateDir, sub)]),
  ];
  for (const [label, d] of dirs) {
    for (const f of await listDir(d)) {
      if (isTemp(f)) {
        where[label] = (where[label] ?? 0) + 1;
        await fsp.rm(join(d, f), { force: true });
      }
    }
  }
  return where;
}

interface Outcome {
  scenario: Scenario;
  killed: boolean;
  phaseAtKill: string;
  /** untouched: killed with no journal and the old version (before the journal, or after its own rollback). */
  result: 'rolled back' | 'completed' | 'untouched' | 'finished before the kill';
  problems: string[];
  tempLeft: Record<string, number>;
}

/** Start rotate-now and SIGKILL it `delayMs` after it creates its lock file (or its journal). */
async function killAfter(lane: Lane, args: string[], anchor: 'lock' | 'journal', delayMs: number): Promise<RunResult> {
  let timer: NodeJS.Timeout | undefined;
  const run = startRekey(args, { cwd: lane.dir });
  const stop = watchState(lane, (what) => {
    if (what === anchor) timer = setTimeout(() => run.child.kill('SIGKILL'), delayMs);
  });
  try {
    return await run.done;
  } finally {
    stop();
    clearTimeout(timer);
  }
}

async function runScenario(lane: Lane, sc: Scenario, lockWindowMs: number): Promise<Outcome> {
  const before = await snapshot(lane);
  const config = sc.failing ? lane.failConfig : lane.config;
  let r: RunResult;
  if (sc.kind === 'boundary') {
    r = await runRekey(['rotate-now', 'api', '-c', config], { cwd: lane.dir, env: { ...KILL_ENV, REKEY_TEST_KILL_AT: sc.point } });
  } else {
    r = await killAfter(lane, ['rotate-now', 'api', '-c', config], sc.anchor, sc.delayMs);
  }
  const problems: string[] = [];
  const killed = r.signal === 'SIGKILL';
  if (sc.kind === 'boundary' && !killed) problems.push(`not killed at ${sc.point} (exit ${r.code}): ${r.stdout.trim()} ${r.stderr.trim()}`);
  if (!killed && r.code !== (sc.failing ? 1 : 0)) problems.push(`exit ${r.code} without a kill: ${r.stdout.trim()} ${r.stderr.trim()}`);

  const phase = await journalPhase(lane);
  const stateAtKill = (await readState(lane.stateDir))!;
  // What the journal implies; with no journal, whatever the state already says.
  // No journal and the old version: nothing was touched, or the process rolled back itself.
  const rolledBack = phase === 'begin' ? true : phase ? false : stateAtKill.version === before.version;
  const expectedVersion = phase === 'begin' ? before.version : phase ? before.version + 1 : stateAtKill.version;
  if (sc.kind === 'boundary') {
    const want = sc.expect === 'rolled back' ? before.version : before.version + 1;
    if (expectedVersion !== want) problems.push(`killed at ${sc.point} (journal ${phase ?? 'none'}): the next command would give v${expectedVersion}, expected v${want}`);
    if (sc.point !== 'in-finish' && phase === undefined) problems.push(`killed at ${sc.point} but no journal was left`);
  }
  if (sc.failing && expectedVersion !== before.version) problems.push('a rotation whose verify failed would be completed');

  if (sc.kind === 'random' && sc.killRecover) {
    await killAfter(lane, ['recover', 'api', '-c', lane.config], 'lock', Math.random() * lockWindowMs);
  }

  const recoverWith = sc.kind === 'random' ? sc.recoverWith : 'recover';
  const rec = await runRekey([recoverWith, 'api', '-c', lane.config, '--json'], { cwd: lane.dir });
  if (rec.code !== 0) problems.push(`${recoverWith} exited ${rec.code}: ${rec.stdout.trim()} ${rec.stderr.trim()}`);
  if (sc.kind === 'boundary' && !/took over a lock left by dead process \d+/.test(rec.stderr)) problems.push('recover did not report taking over the dead process\'s lock');
  if (phase && !(sc.kind === 'random' && sc.killRecover)) {
    let recovered: string | undefined;
    try {
      recovered = (JSON.parse(rec.stdout) as { results: Array<{ recovered?: string }> }).results[0]?.recovered;
    } catch {
      problems.push(`${recoverWith} --json printed no JSON`);
    }
    const word = phase === 'begin' ? 'rolled back an unfinished rotation' : 'completed an unfinished rotation';
    if (!recovered?.includes(word)) problems.push(`${recoverWith} did not say "${word}": ${recovered ?? 'nothing'}`);
  }

  const tempLeft = await sweepTemp(lane);
  // The state directory is rekey's own: the next command must have cleaned it. (Target
  // directories are counted only: their atomic writes are the targets' business.)
  for (const [k, n] of Object.entries(tempLeft)) if (k.startsWith('state/')) problems.push(`${n} temp file(s) left in ${k}`);
  if (recoverWith === 'rotate-now') {
    // It recovered, then rotated once more: the invariant holds one version later.
    problems.push(...(await invariantProblems(lane, before, expectedVersion + 1, undefined)));
  } else {
    problems.push(...(await invariantProblems(lane, before, expectedVersion, rolledBack)));
  }
  const finalVersion = (await readState(lane.stateDir))?.version ?? -1;
  const net = recoverWith === 'rotate-now' ? finalVersion - 1 : finalVersion;
  return {
    scenario: sc,
    killed,
    phaseAtKill: phase ?? 'none',
    result: !killed ? 'finished before the kill' : net !== before.version ? 'completed' : phase ? 'rolled back' : 'untouched',
    problems,
    tempLeft,
  };
}

function randomScenario(i: number, w: Required<Windows>): RandomKill {
  const anchor = i % 3 === 0 ? 'lock' : 'journal';
  return {
    kind: 'random',
    anchor,
    delayMs: Math.random() * w[anchor] * (anchor === 'journal' ? 1.4 : 1.1),
    failing: i % 5 === 4,
    killRecover: i % 4 === 3,
    recoverWith: i % 3 === 2 && i % 4 !== 3 ? 'rotate-now' : 'recover',
  };
}

describe('crash safety (SIGKILL)', () => {
  it('the kill hook is inert without REKEY_TEST_KILL_CONFIRM, with a wrong value, or for another policy', async () => {
    const lane = await makeLane(0);
    for (const env of [
      { REKEY_TEST_KILL_AT: 'after-journal' },
      { REKEY_TEST_KILL_AT: 'after-journal', REKEY_TEST_KILL_CONFIRM: 'yes' },
      { REKEY_TEST_KILL_AT: 'after-journal', REKEY_TEST_KILL_CONFIRM: 'yes-kill-this-process', REKEY_TEST_KILL_POLICY: 'another-policy' },
    ]) {
      const r = await runRekey(['rotate-now', 'api', '-c', lane.config], { cwd: lane.dir, env });
      expect(r.signal).toBeNull();
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('rotated');
    }
    expect((await readState(lane.stateDir))!.version).toBe(3);
  });

  it(
    `every step boundary, then random kills: ${RUNS} runs, zero inconsistencies`,
    async () => {
      const lanes = await Promise.all(Array.from({ length: LANES }, (_, i) => makeLane(i + 1)));
      // Two rotations per lane first, so that there is a state and a previous token; they also
      // measure how long the protocol runs after the lock and after the journal (median).
      const samples: Windows[] = [];
      await Promise.all(
        lanes.map(async (lane) => {
          for (let k = 0; k < 2; k++) {
            const { r, windows } = await rotateTimed(lane);
            expect(r.code, r.stderr).toBe(0);
            samples.push(windows);
          }
        }),
      );
      const median = (xs: number[], fallback: number) => {
        const v = [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? fallback;
        return Math.min(2000, Math.max(20, v));
      };
      const w = {
        lock: median(samples.flatMap((x) => (x.lock ? [x.lock] : [])), 150),
        journal: median(samples.flatMap((x) => (x.journal ? [x.journal] : [])), 100),
      };

      const scenarios: Scenario[] = [...BOUNDARIES];
      for (let i = 0; scenarios.length < RUNS; i++) scenarios.push(randomScenario(i, w));

      const outcomes: Outcome[] = [];
      let next = 0;
      await Promise.all(
        lanes.map(async (lane) => {
          for (;;) {
            const i = next++;
            if (i >= scenarios.length) return;
            outcomes.push(await runScenario(lane, scenarios[i]!, w.lock));
          }
        }),
      );

      const count = (f: (o: Outcome) => boolean) => outcomes.filter(f).length;
      const bad = outcomes.filter((o) => o.problems.length > 0);
      const temp: Record<string, number> = {};
      for (const o of outcomes) for (const [k, v] of Object.entries(o.tempLeft)) temp[k] = (temp[k] ?? 0) + v;
      const tempTotal = Object.values(temp).reduce((a, b) => a + b, 0);
      const summary =
        `rekey chaos: runs=${outcomes.length} (boundaries=${BOUNDARIES.length}, random=${outcomes.length - BOUNDARIES.length};` +
        ` protocol ≈${Math.round(w.lock)}ms after the lock, ≈${Math.round(w.journal)}ms after the journal)` +
        ` rolled back=${count((o) => o.result === 'rolled back' || o.result === 'untouched')}` +
        ` (from a journal ${count((o) => o.result === 'rolled back')}, nothing to undo ${count((o) => o.result === 'untouched')})` +
        ` completed=${count((o) => o.result === 'completed')}` +
        ` finished before the kill=${count((o) => o.result === 'finished before the kill')}` +
        ` recover killed too=${count((o) => o.scenario.kind === 'random' && o.scenario.killRecover)}` +
        ` leftover temp files=${tempTotal}${tempTotal ? ` (${Object.entries(temp).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}` +
        ` inconsistencies=${bad.length}`;
      console.log(summary);
      for (const o of bad.slice(0, 10)) console.log(`  ${JSON.stringify(o.scenario)} journal=${o.phaseAtKill}: ${o.problems.join('; ')}`);
      expect(bad.map((o) => `${JSON.stringify(o.scenario)}: ${o.problems.join('; ')}`)).toEqual([]);
      expect(outcomes).toHaveLength(RUNS);
    },
    60_000 + RUNS * 6_000,
  );
});
