/**
 * The local lock file: O_EXCL-style creation with the owner's PID and start time, the busy
 * message, waiting, takeover of a dead owner's lock (dead PID, reused PID, torn file), and the
 * takeover guard under real contention from several processes (test/coordination/lock-worker.mjs,
 * which runs the built code in dist/).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { LockOwner } from '../../src/coordination/lock.js';
import { LocalLockProvider, isAlive, processStartTicks } from '../../src/coordination/local-lock.js';
import { RekeyError } from '../../src/util/errors.js';
import { assertBuilt, baseEnv, cleanupTempDirs, makeTempDir, runRekey } from '../helpers/cli.js';
import { policyDir, readAudit, readState } from '../rotation/helpers.js';

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'lock-worker.mjs');

afterAll(cleanupTempDirs);

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  for (;;) {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    const pid = child.pid!;
    await new Promise((r) => child.once('close', r));
    try {
      process.kill(pid, 0);
    } catch {
      return pid; // ESRCH: nobody has it now
    }
  }
}

function owner(pid: number, extra: Partial<LockOwner> = {}): LockOwner {
  return { pid, startTicks: processStartTicks(pid), hostname: os.hostname(), acquiredAt: new Date().toISOString(), purpose: 'rotate-now', ...extra };
}

async function writeLock(dir: string, name: string, content: string | LockOwner, ageMs = 0): Promise<string> {
  const file = join(dir, `${name}.lock`);
  await fsp.writeFile(file, typeof content === 'string' ? content : JSON.stringify(content), { mode: 0o600 });
  if (ageMs > 0) {
    const t = new Date(Date.now() - ageMs);
    await fsp.utimes(file, t, t);
  }
  return file;
}

async function readLock(dir: string, name: string): Promise<LockOwner> {
  return JSON.parse(await fsp.readFile(join(dir, `${name}.lock`), 'utf8')) as LockOwner;
}

async function lockError(p: Promise<unknown>): Promise<RekeyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RekeyError);
  return e as RekeyError;
}

// ---- worker processes ---------------------------------------------------------------------

type Msg = Record<string, unknown>;

class Worker {
  readonly child: ChildProcess;
  readonly #queue: Msg[] = [];
  readonly #waiting: Array<(m: Msg) => void> = [];
  readonly exited: Promise<void>;

  constructor(args: string[]) {
    assertBuilt();
    this.child = spawn(process.execPath, [WORKER, ...args], { stdio: ['pipe', 'pipe', 'inherit'], env: baseEnv() });
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      const m = JSON.parse(l) as Msg;
      const w = this.#waiting.shift();
      if (w) w(m);
      else this.#queue.push(m);
    });
    this.exited = new Promise((r) => this.child.once('close', () => r()));
  }

  get pid(): number {
    return this.child.pid!;
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  next(): Promise<Msg> {
    const m = this.#queue.shift();
    return m ? Promise.resolve(m) : new Promise((r) => this.#waiting.push(r));
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.send('exit');
      this.child.stdin!.end();
    }
    await this.exited;
  }
}

const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

async function duelists(n: number, dir: string, name: string): Promise<Worker[]> {
  const ws = Array.from({ length: n }, () => new Worker(['duel', dir, name]));
  workers.push(...ws);
  for (const w of ws) expect(await w.next()).toMatchObject({ ready: true });
  return ws;
}

// ---- tests ------------------------------------------------------------------------------

describe('LocalLockProvider', () => {
  it('acquire writes the owner (pid, start time, host); release removes it; it can be taken again', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const locks = new LocalLockProvider(dir);
    const h = await locks.acquire('api', { purpose: 'rotate-now' });
    const o = await readLock(dir, 'api');
    expect(o).toMatchObject({ pid: process.pid, hostname: os.hostname(), purpose: 'rotate-now' });
    expect(o.startTicks).toBe(processStartTicks(process.pid));
    expect((await fsp.stat(join(dir, 'api.lock'))).mode & 0o777).toBe(0o600);
    expect(await locks.owner('api')).toMatchObject({ pid: process.pid });
    await h.release();
    await h.release(); // twice is fine
    expect(await fsp.readdir(dir)).toEqual([]);
    const again = await locks.acquire('api');
    await again.release();
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('a lock held by another process fails at once with "policy X is being rotated by pid N"', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const [holder] = await duelists(1, dir, 'api');
    holder!.send('go 1');
    expect(await holder!.next()).toMatchObject({ round: 1, won: true });
    const e = await lockError(new LocalLockProvider(dir).acquire('api', { waitMs: 0 }));
    expect(e.code).toBe('LOCKED');
    expect(e.exitCode).toBe(1);
    expect(e.message).toBe(`policy api is being rotated by pid ${holder!.pid}; pass --wait <duration> to wait for it`);
    holder!.send('release 1');
    expect(await holder!.next()).toMatchObject({ released: true });
    await (await new LocalLockProvider(dir).acquire('api')).release();
  });

  it('the new holder removes temp files of processes killed while creating the lock', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const dead = await deadPid();
    const [live] = await duelists(1, dir, 'unused');
    const deadTemp = join(dir, `api.lock.${dead}-0a1b2c3d.tmp`);
    const liveTemp = join(dir, `api.lock.${live!.pid}-0a1b2c3d.tmp`);
    for (const f of [deadTemp, liveTemp]) await fsp.writeFile(f, JSON.stringify(owner(dead)));
    await (await new LocalLockProvider(dir).acquire('api')).release();
    expect((await fsp.readdir(dir)).sort()).toEqual([`api.lock.${live!.pid}-0a1b2c3d.tmp`]);
  });

  it('the same provider cannot take a lock it holds', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const locks = new LocalLockProvider(dir);
    const h = await locks.acquire('api');
    const e = await lockError(locks.acquire('api'));
    expect(e.message).toContain(`is being rotated by pid ${process.pid}`);
    await h.release();
  });

  it('waitMs waits for the holder to let go', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const [holder] = await duelists(1, dir, 'api');
    holder!.send('go 1');
    expect(await holder!.next()).toMatchObject({ won: true });
    let got = false;
    const waiting = new LocalLockProvider(dir).acquire('api', { waitMs: 30_000 }).then((h) => {
      got = true;
      return h;
    });
    await new Promise((r) => setTimeout(r, 150));
    expect(got).toBe(false); // still held by the worker
    holder!.send('release 1');
    const h = await waiting;
    expect((await readLock(dir, 'api')).pid).toBe(process.pid);
    await h.release();
  });

  it('waitMs gives up after the wait and says so', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const [holder] = await duelists(1, dir, 'api');
    holder!.send('go 1');
    expect(await holder!.next()).toMatchObject({ won: true });
    const e = await lockError(new LocalLockProvider(dir).acquire('api', { waitMs: 300 }));
    expect(e.message).toBe(`policy api is being rotated by pid ${holder!.pid} (waited 300ms)`);
  });

  it('a lock left by a dead process is taken over and reported through onTakeover', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const dead = await deadPid();
    await writeLock(dir, 'api', owner(dead, { startTicks: 12345 }));
    expect(isAlive(owner(dead))).toBe(false);
    const seen: LockOwner[] = [];
    const h = await new LocalLockProvider(dir).acquire('api', { waitMs: 0, onTakeover: (o) => seen.push(o) });
    expect(seen.map((o) => o.pid)).toEqual([dead]);
    expect((await readLock(dir, 'api')).pid).toBe(process.pid);
    await h.release();
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('rotate-now takes over a dead process\'s lock and prints a line about it', async () => {
    const p = await policyDir(await makeTempDir('rekey-lock-cli-'));
    const locksDir = join(p.stateDir, 'locks');
    await fsp.mkdir(locksDir, { recursive: true, mode: 0o700 });
    const dead = await deadPid();
    await writeLock(locksDir, 'api', owner(dead));
    const r = await runRekey(['rotate-now', 'api', '-c', p.configFile], { cwd: p.dir });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toContain(`rekey: api: took over a lock left by dead process ${dead}`);
    expect((await readState(p.stateDir))!.version).toBe(1);
    expect((await readAudit(p.stateDir)).find((a) => a.event === 'lock-takeover')).toMatchObject({ policy: 'api', reason: `pid ${dead}` });
    expect(await fsp.readdir(locksDir)).toEqual([]);

    // An empty lock file, old enough to be judged abandoned: no pid to name.
    await writeLock(locksDir, 'api', '', 10_000);
    const torn = await runRekey(['rotate-now', 'api', '-c', p.configFile], { cwd: p.dir });
    expect(torn.code, torn.stdout + torn.stderr).toBe(0);
    expect(torn.stderr).toContain('rekey: api: took over a lock left by a process that died while writing it (incomplete lock file)');
  });

  it('a live PID with another start time (the PID was reused) is taken over; the real owner is not', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const [live] = await duelists(1, dir, 'unused');
    const ticks = processStartTicks(live!.pid);
    expect(ticks).not.toBeNull();

    await writeLock(dir, 'api', owner(live!.pid, { startTicks: ticks! + 1 }));
    const seen: number[] = [];
    const h = await new LocalLockProvider(dir).acquire('api', { onTakeover: (o) => seen.push(o.pid) });
    expect(seen).toEqual([live!.pid]);
    await h.release();

    await writeLock(dir, 'api', owner(live!.pid, { startTicks: ticks! }));
    const e = await lockError(new LocalLockProvider(dir).acquire('api', { onTakeover: (o) => seen.push(o.pid) }));
    expect(e.message).toContain(`is being rotated by pid ${live!.pid}`);
    expect(seen).toHaveLength(1);
  });

  it('a lock from another host is never judged dead', async () => {
    const dir = await makeTempDir('rekey-lock-');
    await writeLock(dir, 'api', owner(await deadPid(), { hostname: 'some-other-host', startTicks: null }));
    const e = await lockError(new LocalLockProvider(dir).acquire('api'));
    expect(e.message).toMatch(/^policy api is being rotated by pid \d+ on some-other-host; pass --wait/);
  });

  it('an empty or torn lock file younger than 2 s is respected; an older one is taken over', async () => {
    const dir = await makeTempDir('rekey-lock-');
    for (const torn of ['', '{"pid": 12']) {
      await writeLock(dir, 'api', torn);
      const e = await lockError(new LocalLockProvider(dir).acquire('api', { waitMs: 0 }));
      expect(e.code).toBe('LOCKED');
      expect(e.message).toBe('policy api is being rotated by another process (its lock file is still being written); pass --wait <duration> to wait for it');
      expect(await fsp.readFile(join(dir, 'api.lock'), 'utf8')).toBe(torn);

      await writeLock(dir, 'api', torn, 10_000);
      const seen: LockOwner[] = [];
      const h = await new LocalLockProvider(dir).acquire('api', { waitMs: 0, onTakeover: (o) => seen.push(o) });
      expect(seen).toHaveLength(1);
      expect(seen[0]!.pid).toBe(-1);
      expect((await readLock(dir, 'api')).pid).toBe(process.pid);
      await h.release();
    }
  });

  it('with waitMs, an empty lock file is taken over once it is old enough', async () => {
    const dir = await makeTempDir('rekey-lock-');
    await writeLock(dir, 'api', '');
    const seen: number[] = [];
    const h = await new LocalLockProvider(dir).acquire('api', { waitMs: 30_000, onTakeover: (o) => seen.push(o.pid) });
    expect(seen).toEqual([-1]);
    await h.release();
  });

  it('a takeover in progress elsewhere (a live taker holds the guard) is not doubled, and waitMs 0 gives up instead of spinning', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const [taker] = await duelists(1, dir, 'unused');
    const dead = await deadPid();
    await writeLock(dir, 'api', owner(dead));
    await fsp.writeFile(join(dir, 'api.lock.takeover.0'), JSON.stringify(owner(taker!.pid)));
    const seen: number[] = [];
    const e = await lockError(new LocalLockProvider(dir).acquire('api', { waitMs: 0, onTakeover: (o) => seen.push(o.pid) }));
    expect(e.message).toBe(`policy api: another process is taking over the lock left by dead process ${dead}; try again, or pass --wait <duration> to wait for it`);
    expect(seen).toEqual([]);
    expect((await readLock(dir, 'api')).pid).toBe(dead);
  });

  it('guard files left by takers that died are stepped over, then removed by the new holder', async () => {
    const dir = await makeTempDir('rekey-lock-');
    const dead = await deadPid();
    await writeLock(dir, 'api', owner(dead));
    await fsp.writeFile(join(dir, 'api.lock.takeover.0'), JSON.stringify(owner(await deadPid())));
    await fsp.writeFile(join(dir, 'api.lock.takeover.1'), JSON.stringify(owner(await deadPid())));
    const seen: number[] = [];
    const h = await new LocalLockProvider(dir).acquire('api', { waitMs: 0, onTakeover: (o) => seen.push(o.pid) });
    expect(seen).toEqual([dead]);
    expect(await fsp.readdir(dir)).toEqual(['api.lock']);
    await h.release();
    expect(await fsp.readdir(dir)).toEqual([]);
  });
});

describe('takeover under contention (several processes)', () => {
  it('each round, exactly one of five processes takes over the stale lock; the others name the winner', async () => {
    const dir = await makeTempDir('rekey-lock-duel-');
    const ws = await duelists(5, dir, 'api');
    const rounds = 15;
    const winners: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const dead = await deadPid();
      await writeLock(dir, 'api', owner(dead));
      // Round 3, 6, ...: an earlier taker died holding the guard, too.
      if (round % 3 === 0) await fsp.writeFile(join(dir, 'api.lock.takeover.0'), JSON.stringify(owner(await deadPid())));
      for (const w of ws) w.send(`go ${round}`);
      const answers = await Promise.all(ws.map(async (w) => ({ w, m: await w.next() })));
      const won = answers.filter((a) => a.m.won === true);
      expect(won, JSON.stringify(answers.map((a) => a.m))).toHaveLength(1);
      const winner = won[0]!.w;
      expect(won[0]!.m.took).toBe(dead);
      expect((await readLock(dir, 'api')).pid).toBe(winner.pid);
      for (const a of answers.filter((x) => x.w !== winner)) {
        expect(a.m.code).toBe('LOCKED');
        expect(a.m.message).toBe(`policy api is being rotated by pid ${winner.pid}; pass --wait <duration> to wait for it`);
      }
      winner.send(`release ${round}`);
      expect(await winner.next()).toMatchObject({ round, released: true });
      winners.push(winner.pid);
    }
    expect(winners).toHaveLength(rounds);
    expect(await fsp.readdir(dir)).toEqual([]);
  });

  it('four processes acquiring 25 times each, starting from a stale lock: one takeover, never two holders', async () => {
    const dir = await makeTempDir('rekey-lock-stress-');
    const dead = await deadPid();
    await writeLock(dir, 'api', owner(dead));
    const marker = join(await makeTempDir('rekey-lock-marker-'), 'inside');
    const ws = Array.from({ length: 4 }, () => new Worker(['stress', dir, 'api', '25', marker]));
    workers.push(...ws);
    const results = await Promise.all(ws.map((w) => w.next()));
    const sum = (k: string) => results.reduce((n, r) => n + Number(r[k]), 0);
    expect(sum('acquired')).toBe(100);
    expect(sum('overlaps')).toBe(0);
    expect(sum('takeovers')).toBe(1);
    expect(await fsp.readdir(dir)).toEqual([]);
  });
});
