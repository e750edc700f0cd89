/** node-cron 4 is what fires cron schedules in production: a short real-time check with seconds-level cron. */
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/scheduler/clock.js';
import { nodeCronTrigger } from '../../src/scheduler/cron-trigger.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { FakeRunner, memoryLogger, pol } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('node-cron trigger', () => {
  it('fires a 6-field (seconds) schedule until stopped', async () => {
    const ticks: number[] = [];
    let two!: () => void;
    const done = new Promise<void>((r) => (two = r));
    const handle = nodeCronTrigger(memoryLogger()).start(pol({ name: 's', schedule: '* * * * * *', timezone: 'Europe/Berlin' }), () => {
      ticks.push(Date.now());
      if (ticks.length === 2) two();
    });
    await done;
    handle.stop();
    const seen = ticks.length;
    await sleep(1_500);
    expect(ticks.length).toBe(seen);
  });

  it('drives the scheduler: cron policies rotate on node-cron ticks (the backup timer is an hour away)', async () => {
    const runner = new FakeRunner(systemClock);
    runner.seed('s', new Date().toISOString());
    const log = memoryLogger();
    const sched = new Scheduler({
      runner,
      store: runner,
      log,
      cron: nodeCronTrigger(log),
      options: { safetyMarginMs: 3_600_000, maxSleepMs: 3_600_000, refreshMs: 3_600_000 },
    });
    await sched.start([pol({ name: 's', schedule: '*/1 * * * * *' })]);
    for (let i = 0; i < 200 && runner.rotations('s').length < 2; i++) await sleep(25);
    await sched.stop(5_000);
    expect(runner.rotations('s').length).toBeGreaterThanOrEqual(2);
    expect(runner.maxPerPolicy).toBe(1);
  });
});
