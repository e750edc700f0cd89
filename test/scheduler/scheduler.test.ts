import { describe, expect, it } from 'vitest';
import { jitterOffsetMs } from '../../src/rotation/plan.js';
import { backoffMs } from '../../src/scheduler/backoff.js';
import { Scheduler, policyKey, type SchedulerOptions } from '../../src/scheduler/scheduler.js';
import { D, FakeCron, FakeRunner, H, MIN, ManualClock, gapsInMinutes, memoryLogger, pol } from './helpers.js';
import type { Policy } from '../../src/config/types.js';

function setup(start = '2025-01-01T00:00:00.000Z', opts: SchedulerOptions = {}, withCron = true) {
  const clock = new ManualClock(start);
  const runner = new FakeRunner(clock);
  const log = memoryLogger();
  const cron = withCron ? new FakeCron(clock) : null;
  const outcomes: string[] = [];
  const sched = new Scheduler({
    runner,
    store: runner,
    log,
    clock,
    cron,
    options: opts,
    observer: { outcome: (o, a) => outcomes.push(`${a}:${o.policy}:${o.result}${o.errorCode ? `:${o.errorCode}` : ''}`) },
  });
  clock.settle = () => sched.idle();
  return { clock, runner, log, cron, sched, outcomes };
}

describe('backoff', () => {
  it('is 1m, 2m, 4m ... capped at 1h', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 50, 5000].map((n) => backoffMs(n) / MIN)).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    expect(backoffMs(0)).toBe(MIN);
  });
});

describe('catch-up at start', () => {
  it('rotates every overdue and never-rotated policy once, in one batch', async () => {
    const { clock, runner, sched } = setup('2025-03-01T00:00:00.000Z');
    runner.seed('overdue-every', '2025-01-01T00:00:00.000Z');
    runner.seed('overdue-cron', '2025-02-20T03:00:00.000Z'); // off over 8 daily ticks
    runner.seed('fresh', '2025-02-28T00:00:00.000Z');
    await sched.start([
      pol({ name: 'overdue-every', everyMs: 30 * D }),
      pol({ name: 'overdue-cron', schedule: '0 3 * * *' }),
      pol({ name: 'fresh', everyMs: 30 * D }),
      pol({ name: 'never', everyMs: 30 * D }),
      pol({ name: 'manual' }),
    ]);
    await sched.idle();
    expect(runner.calls).toEqual([{ action: 'rotate', names: ['overdue-every', 'overdue-cron', 'never'], at: '2025-03-01T00:00:00.000Z' }]);
    // The cron policy then follows its schedule: once at 03:00, not once per missed tick.
    await clock.advanceTo('2025-03-02T12:00:00.000Z');
    expect(runner.rotations('overdue-cron').map((c) => c.at)).toEqual(['2025-03-01T00:00:00.000Z', '2025-03-01T03:00:00.000Z', '2025-03-02T03:00:00.000Z']);
    expect(runner.rotations('manual')).toEqual([]);
    await sched.stop(0);
  });

  it('a restart does not rotate again what is not due', async () => {
    const { runner, sched } = setup('2025-03-01T10:00:00.000Z');
    runner.seed('a', '2025-03-01T03:00:00.500Z');
    await sched.start([pol({ name: 'a', schedule: '0 3 * * *' })]);
    await sched.idle();
    expect(runner.calls).toEqual([]);
    await sched.stop(0);
  });
});

describe('every', () => {
  it('rotates every interval after the last successful rotation', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    runner.seed('e', '2024-12-31T23:30:00.000Z');
    await sched.start([pol({ name: 'e', everyMs: H })]);
    await clock.advance(4 * H);
    expect(runner.rotations('e').map((c) => c.at)).toEqual([
      '2025-01-01T00:30:00.000Z',
      '2025-01-01T01:30:00.000Z',
      '2025-01-01T02:30:00.000Z',
      '2025-01-01T03:30:00.000Z',
    ]);
    await sched.stop(0);
  });

  it('adds the policy jitter to each due time', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    const p = pol({ name: 'jittery', everyMs: H, jitterMs: 10 * MIN });
    const off = jitterOffsetMs(p);
    runner.seed('jittery', '2025-01-01T00:00:00.000Z');
    await sched.start([p]);
    await clock.advance(3 * H);
    const times = runner.rotations('jittery').map((c) => Date.parse(c.at));
    expect(times[0]).toBe(Date.parse('2025-01-01T01:00:00.000Z') + off);
    expect(gapsInMinutes(runner.rotations('jittery').map((c) => c.at))).toEqual([60 + off / MIN]);
    await sched.stop(0);
  });
});

describe('cron', () => {
  it('node-cron ticks trigger rotations; plan decides (jitter delays them)', async () => {
    const { clock, runner, sched, cron } = setup('2025-01-01T00:00:00.000Z');
    const p = pol({ name: 'c', schedule: '0 */6 * * *', jitterMs: 20 * MIN });
    const off = jitterOffsetMs(p);
    runner.seed('c', '2025-01-01T00:00:00.000Z');
    await sched.start([p]);
    expect(cron?.started).toEqual(['c']);
    await clock.advanceTo('2025-01-01T13:00:00.000Z');
    expect(runner.rotations('c').map((x) => Date.parse(x.at))).toEqual([Date.parse('2025-01-01T06:00:00Z') + off, Date.parse('2025-01-01T12:00:00Z') + off]);
    await sched.stop(0);
    expect(cron?.stopped).toEqual(['c']);
  });

  it('without a tick from node-cron, the timer backs up a due cron policy one margin later', async () => {
    const clock = new ManualClock('2025-01-01T00:00:00.000Z');
    const runner = new FakeRunner(clock);
    // A trigger that never fires (as if node-cron skipped the day, e.g. a DST disagreement).
    const silent = new Scheduler({ runner, store: runner, log: memoryLogger(), clock, cron: { start: () => ({ stop: () => undefined }) }, options: { safetyMarginMs: MIN } });
    clock.settle = () => silent.idle();
    runner.seed('c', '2025-01-01T00:00:00.000Z');
    await silent.start([pol({ name: 'c', schedule: '5 6 * * *' })]);
    await clock.advanceTo('2025-01-01T07:00:00.000Z');
    expect(runner.rotations('c').map((x) => x.at)).toEqual(['2025-01-01T06:06:00.000Z']);
    await silent.stop(0);
  });
});

describe('failures', () => {
  it('retries with capped exponential backoff 1m, 2m, 4m ... 1h, counting and logging each failure', async () => {
    const { clock, runner, sched, log, outcomes } = setup('2025-01-01T00:00:00.000Z');
    runner.fail.set('f', 'TARGET');
    await sched.start([pol({ name: 'f', everyMs: 30 * D })]);
    await clock.advance(5 * H);
    const times = runner.rotations('f').map((c) => c.at);
    expect(gapsInMinutes(times).slice(0, 9)).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60]);
    const failures = log.lines.filter((l) => l.level === 'error' && l.msg.includes('rotation failed'));
    expect(failures).toHaveLength(times.length);
    expect(failures[2]!.msg).toContain('3 in a row');
    expect(failures[2]!.obj).toMatchObject({ policy: 'f', failures: 3, version: 0, fingerprint: null });
    expect(outcomes.filter((o) => o === 'rotate:f:failed:TARGET')).toHaveLength(times.length);
    expect(sched.snapshot()[0]!.failures).toBe(times.length);

    // It recovers: the next success resets the count, then the regular interval applies.
    runner.fail.delete('f');
    await clock.advance(H);
    const last = runner.rotations('f').at(-1)!;
    expect(sched.snapshot()[0]).toMatchObject({ failures: 0, version: 1 });
    await clock.advance(2 * D);
    expect(runner.rotations('f').at(-1)).toEqual(last);
    await sched.stop(0);
  });

  it('the backoff never waits past the next regular time', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    runner.seed('c', '2025-01-01T00:00:00.000Z');
    runner.fail.set('c', 'TARGET');
    await sched.start([pol({ name: 'c', schedule: '*/10 * * * *' })]);
    await clock.advanceTo('2025-01-01T00:35:00.000Z');
    // tick 00:10 fails; retries +1m (00:11), +2m (00:13), +4m would be 00:17; then +8m is cut by the 00:20 tick, ...
    expect(runner.rotations('c').map((x) => x.at.slice(11, 16))).toEqual(['00:10', '00:11', '00:13', '00:17', '00:20', '00:30']);
    await sched.stop(0);
  });

  it('LOCKED (a rotate-now holds the policy) is tried again shortly and is not a failure', async () => {
    const { clock, runner, sched, log, outcomes } = setup('2025-01-01T00:00:00.000Z', { lockedRetryMs: 10_000 });
    runner.fail.set('l', 'LOCKED');
    await sched.start([pol({ name: 'l', everyMs: D })]);
    await clock.advance(25_000);
    expect(runner.rotations('l').map((c) => c.at)).toEqual(['2025-01-01T00:00:00.000Z', '2025-01-01T00:00:10.000Z', '2025-01-01T00:00:20.000Z']);
    expect(sched.snapshot()[0]!.failures).toBe(0);
    expect(log.lines.some((l) => l.level === 'error' && l.msg.includes('rotation failed'))).toBe(false);
    expect(outcomes).toContain('rotate:l:failed:LOCKED');
    // The other process finished its rotation: state moved on, nothing left to do.
    runner.fail.delete('l');
    runner.seed('l', '2025-01-01T00:00:22.000Z', { version: 7 });
    await clock.advance(H);
    expect(runner.rotations('l')).toHaveLength(3);
    await sched.stop(0);
  });

  it('a rotation done by rotate-now meanwhile is noticed before rotating', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    runner.seed('x', '2025-01-01T00:00:00.000Z');
    await sched.start([pol({ name: 'x', everyMs: H })]);
    await clock.advance(30 * MIN);
    runner.seed('x', '2025-01-01T00:30:00.000Z', { version: 2 }); // rotate-now in another process
    await clock.advance(40 * MIN);
    expect(runner.rotations('x')).toEqual([]);
    await clock.advance(30 * MIN);
    expect(runner.rotations('x').map((c) => c.at)).toEqual(['2025-01-01T01:30:00.000Z']);
    await sched.stop(0);
  });
});

describe('no overlapping runs', () => {
  it('a policy whose rotation is in flight is not started again', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    let release!: () => void;
    runner.gate = new Promise((r) => (release = r));
    runner.seed('slow', '2024-12-31T23:59:00.000Z');
    await sched.start([pol({ name: 'slow', schedule: '* * * * *' })]);
    clock.settle = () => new Promise((r) => setImmediate(r)); // the rotation never settles while gated
    await clock.advance(10 * MIN);
    expect(runner.rotations('slow')).toHaveLength(1);
    expect(sched.snapshot()[0]!.running).toBe(true);
    runner.gate = undefined;
    release();
    clock.settle = () => sched.idle();
    await sched.idle();
    // It started at 00:00; the 00:01 ... 00:10 ticks came after: due once more, not ten times.
    expect(runner.rotations('slow')).toHaveLength(2);
    expect(runner.maxPerPolicy).toBe(1);
    await sched.stop(0);
  });
});

describe('grace and staleness', () => {
  it('retires the previous token when its grace period ends', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    runner.seed('g', '2024-12-01T00:00:00.000Z');
    await sched.start([pol({ name: 'g', everyMs: 30 * D, graceMs: 2 * H })]);
    await sched.idle();
    expect(runner.states.get('g')?.previous?.validUntil).toBe('2025-01-01T02:00:00.000Z');
    await clock.advance(3 * H);
    expect(runner.calls.filter((c) => c.action === 'retire')).toEqual([{ action: 'retire', names: ['g'], at: '2025-01-01T02:00:00.000Z' }]);
    expect(runner.states.get('g')?.previous).toBeNull();
    await sched.stop(0);
  });

  it('logs and reports a token older than maxAge', async () => {
    const { clock, runner, sched, log } = setup('2025-01-01T00:00:00.000Z');
    runner.seed('old', '2024-12-20T00:00:00.000Z');
    runner.fail.set('old', 'TARGET');
    await sched.start([pol({ name: 'old', everyMs: 10 * D, maxAgeMs: 15 * D })]);
    expect(sched.snapshot()[0]!.stale).toBe(false);
    await clock.advanceTo('2025-01-04T00:00:01.000Z');
    const stale = log.lines.filter((l) => l.obj.stale === true);
    expect(stale).toHaveLength(1);
    expect(stale[0]!.obj).toMatchObject({ policy: 'old', version: 1, fingerprint: 'aaaaaaaa' });
    expect(stale[0]!.msg).toContain('past maxAge 15d');
    expect(sched.snapshot()[0]).toMatchObject({ stale: true });
    await sched.stop(0);
  });
});

describe('reload', () => {
  it('swaps schedules: removed stop, new start, changed are rescheduled, unchanged keep their state', async () => {
    const { clock, runner, sched, cron } = setup('2025-01-01T00:00:00.000Z');
    for (const n of ['keep', 'gone', 'change']) runner.seed(n, '2025-01-01T00:00:00.000Z');
    const keep = pol({ name: 'keep', everyMs: 2 * H });
    await sched.start([keep, pol({ name: 'gone', schedule: '0 * * * *' }), pol({ name: 'change', everyMs: 6 * H })]);
    await clock.advance(30 * MIN);
    const summary = await sched.reload([
      { ...keep, source: { file: 'rekey.yaml', line: 40, col: 3 } }, // moved in the file: unchanged
      pol({ name: 'change', everyMs: 20 * MIN }),
      pol({ name: 'added', everyMs: D }),
    ]);
    expect(summary).toEqual({ added: ['added'], removed: ['gone'], changed: ['change'], unchanged: ['keep'] });
    expect(cron?.stopped).toEqual(['gone']);
    await sched.idle();
    // added: first rotation now; change: 20m after 00:00 is past -> now
    expect(runner.calls.at(-1)).toEqual({ action: 'rotate', names: ['change', 'added'], at: '2025-01-01T00:30:00.000Z' });
    await clock.advance(3 * H);
    expect(runner.rotations('gone')).toEqual([]);
    expect(runner.rotations('keep').map((c) => c.at)).toEqual(['2025-01-01T02:00:00.000Z']);
    expect(runner.rotations('change').map((c) => c.at.slice(11, 16))).toEqual(['00:30', '00:50', '01:10', '01:30', '01:50', '02:10', '02:30', '02:50', '03:10', '03:30']);
    expect(sched.snapshot().map((v) => v.policy)).toEqual(['keep', 'change', 'added']);
    await sched.stop(0);
  });

  it('a policy removed while it was queued, then added back, is scheduled again', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    runner.seed('q', '2025-01-01T00:00:00.000Z');
    const q = pol({ name: 'q', schedule: '*/5 * * * *' });
    await sched.start([q]);
    clock.settle = async () => undefined; // leave the tick queued: no flush yet
    await clock.advanceTo('2025-01-01T00:05:00.000Z');
    await sched.reload([]); // removed while queued
    clock.settle = () => sched.idle();
    await sched.idle();
    expect(runner.rotations('q')).toEqual([]);
    await sched.reload([q]);
    await clock.advanceTo('2025-01-01T00:07:00.000Z');
    expect(runner.rotations('q').map((c) => c.at)).toEqual(['2025-01-01T00:06:00.000Z']); // the backup timer: tick + 1m
    await sched.stop(0);
  });

  it('compares policies by their settings, not their position in the file', () => {
    const a = pol({ name: 'a', everyMs: H });
    expect(policyKey({ ...a, source: { file: 'x', line: 9, col: 9 } })).toBe(policyKey(a));
    expect(policyKey({ ...a, everyMs: 2 * H })).not.toBe(policyKey(a));
    const reordered = Object.fromEntries(Object.entries(a).reverse()) as unknown as Policy;
    expect(policyKey(reordered)).toBe(policyKey(a));
  });
});

describe('stop', () => {
  it('stops taking work at once and waits for a rotation in flight', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    let release!: () => void;
    runner.gate = new Promise((r) => (release = r));
    await sched.start([pol({ name: 'a', everyMs: H }), pol({ name: 'b', schedule: '* * * * *' })]);
    clock.settle = () => new Promise((r) => setImmediate(r));
    await clock.settle();
    expect(runner.calls).toHaveLength(1);
    const stopping = sched.stop(30_000);
    expect(sched.isRunning).toBe(false);
    await clock.advance(10_000);
    runner.gate = undefined;
    release();
    await expect(stopping).resolves.toEqual({ drained: true, inFlight: [] });
    await clock.advance(2 * H);
    expect(runner.calls).toHaveLength(1);
  });

  it('gives up waiting after the timeout and names what is still in flight', async () => {
    const { clock, runner, sched } = setup('2025-01-01T00:00:00.000Z');
    let release!: () => void;
    runner.gate = new Promise((r) => (release = r));
    await sched.start([pol({ name: 'stuck', everyMs: H })]);
    clock.settle = () => new Promise((r) => setImmediate(r));
    await clock.settle();
    const stopping = sched.stop(30_000);
    await clock.advance(30_000);
    await expect(stopping).resolves.toEqual({ drained: false, inFlight: ['stuck'] });
    release();
  });
});
