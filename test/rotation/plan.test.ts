import { describe, expect, it } from 'vitest';
import type { Policy } from '../../src/config/types.js';
import {
  dueInfo,
  isDue,
  isRepeatedWallTime,
  isStale,
  jitterOffsetMs,
  nextDue,
  nextRegularAfter,
  nextTick,
  tokenAgeMs,
  upcoming,
  type PlanState,
} from '../../src/rotation/plan.js';
import { RekeyError } from '../../src/util/errors.js';

const H = 3_600_000;
const D = 24 * H;

function pol(over: Partial<Policy> = {}): Policy {
  return {
    name: 'p',
    token: { bytes: 32, encoding: 'base64url', prefix: '' },
    timezone: 'UTC',
    jitterMs: 0,
    graceMs: D,
    hooks: { before: [], after: [] },
    targets: [{ type: 'file', path: '/tmp/x', content: 'token', followSymlinks: false }],
    source: { file: 'rekey.yaml', line: 1, col: 1 },
    ...over,
  };
}

const at = (s: string): Date => new Date(s);
const state = (rotatedAt: string): PlanState => ({ rotatedAt });

/** A daemon that looks at the policy at each of the given instants and rotates when due. */
function simulate(p: Policy, start: PlanState | undefined, looks: Date[]): Date[] {
  let s = start;
  const rotations: Date[] = [];
  for (const t of looks) {
    if (isDue(p, s, t)) {
      rotations.push(t);
      s = { rotatedAt: t.toISOString() };
    }
  }
  return rotations;
}

function everyMinute(from: string, to: string): Date[] {
  const out: Date[] = [];
  for (let t = Date.parse(from); t <= Date.parse(to); t += 60_000) out.push(new Date(t));
  return out;
}

describe('every', () => {
  const p = pol({ everyMs: 30 * D });

  it('is due "every" after the last successful rotation', () => {
    const s = state('2025-01-01T00:00:00.000Z');
    expect(nextDue(p, s, at('2025-01-10T00:00:00Z'))?.toISOString()).toBe('2025-01-31T00:00:00.000Z');
    expect(isDue(p, s, at('2025-01-30T23:59:59.999Z'))).toBe(false);
    expect(isDue(p, s, at('2025-01-31T00:00:00.000Z'))).toBe(true);
  });

  it('a policy that never rotated is due now', () => {
    const now = at('2025-06-01T12:00:00Z');
    expect(nextDue(p, undefined, now)).toEqual(now);
    expect(isDue(p, undefined, now)).toBe(true);
    expect(dueInfo(p, undefined, now)?.firstRotation).toBe(true);
    expect(isDue(p, {}, now)).toBe(true);
  });

  it('a host that was off for three periods rotates once when it comes back', () => {
    const looks = [at('2025-04-15T00:00:00Z'), ...everyMinute('2025-04-15T00:01:00Z', '2025-04-15T02:00:00Z')];
    const rotations = simulate(p, state('2025-01-01T00:00:00.000Z'), looks);
    expect(rotations.map((d) => d.toISOString())).toEqual(['2025-04-15T00:00:00.000Z']);
  });
});

describe('manual', () => {
  it('a policy with neither schedule nor every is never due', () => {
    const p = pol();
    expect(nextDue(p, undefined, new Date())).toBeUndefined();
    expect(isDue(p, undefined, new Date())).toBe(false);
    expect(isDue(p, state('2000-01-01T00:00:00Z'), new Date())).toBe(false);
  });
});

describe('schedule (cron)', () => {
  const daily = pol({ schedule: '0 3 * * *' });

  it('is due at the first scheduled time after the last rotation', () => {
    const s = state('2025-01-01T03:00:05.000Z');
    expect(nextDue(daily, s, at('2025-01-01T12:00:00Z'))?.toISOString()).toBe('2025-01-02T03:00:00.000Z');
    expect(isDue(daily, s, at('2025-01-02T02:59:59Z'))).toBe(false);
    expect(isDue(daily, s, at('2025-01-02T03:00:00Z'))).toBe(true);
  });

  it('catch-up: a host that was off over four scheduled times rotates once, then follows the schedule', () => {
    const s = state('2025-01-01T03:00:05.000Z');
    const boot = at('2025-01-05T10:00:00Z');
    expect(nextDue(daily, s, boot)?.toISOString()).toBe('2025-01-02T03:00:00.000Z'); // the earliest missed tick: overdue
    const rotations = simulate(daily, s, [boot, ...everyMinute('2025-01-05T10:01:00Z', '2025-01-07T04:00:00Z')]);
    expect(rotations.map((d) => d.toISOString())).toEqual(['2025-01-05T10:00:00.000Z', '2025-01-06T03:00:00.000Z', '2025-01-07T03:00:00.000Z']);
  });

  it('a cron policy that never rotated is due now', () => {
    const now = at('2025-01-01T12:34:56Z');
    expect(nextDue(daily, undefined, now)).toEqual(now);
    expect(isDue(daily, undefined, now)).toBe(true);
  });

  it('supports 6 fields (seconds first)', () => {
    const p = pol({ schedule: '*/10 * * * * *' });
    expect(nextDue(p, state('2025-01-01T00:00:03.000Z'), at('2025-01-01T00:00:04Z'))?.toISOString()).toBe('2025-01-01T00:00:10.000Z');
  });

  it('uses the policy time zone', () => {
    const p = pol({ schedule: '0 9 * * 1-5', timezone: 'Asia/Tokyo' });
    // Friday 2025-01-03 09:00 JST = 00:00Z; next is Monday 2025-01-06 09:00 JST = 2025-01-06T00:00Z
    expect(nextDue(p, state('2025-01-03T00:00:01Z'), at('2025-01-03T01:00:00Z'))?.toISOString()).toBe('2025-01-06T00:00:00.000Z');
  });

  it('a rotation by rotate-now between the tick and the jittered due time satisfies the tick', () => {
    const p = pol({ schedule: '0 3 * * *', jitterMs: 30 * 60_000 });
    const off = jitterOffsetMs(p);
    const s = state('2025-01-02T03:00:00.001Z'); // just after the tick, before tick + jitter
    expect(nextDue(p, s, at('2025-01-02T03:01:00Z'))?.getTime()).toBe(Date.parse('2025-01-03T03:00:00Z') + off);
  });

  it('an invalid expression is a CONFIG error', () => {
    expect(() => nextTick('not a cron', 'UTC', new Date())).toThrow(RekeyError);
  });
});

describe('jitter', () => {
  it('is a deterministic per-policy offset in [0, jitterMs)', () => {
    const jitterMs = 10 * 60_000;
    const offsets = Array.from({ length: 1000 }, (_, i) => jitterOffsetMs({ name: `policy-${i}`, jitterMs }));
    for (const o of offsets) {
      expect(Number.isInteger(o)).toBe(true);
      expect(o).toBeGreaterThanOrEqual(0);
      expect(o).toBeLessThan(jitterMs);
    }
    // Stable across calls (and so across restarts).
    expect(jitterOffsetMs({ name: 'policy-7', jitterMs })).toBe(offsets[7]);
    // A fleet spreads out over the window.
    expect(new Set(offsets).size).toBeGreaterThan(990);
    const mean = offsets.reduce((a, b) => a + b, 0) / offsets.length;
    expect(mean).toBeGreaterThan(jitterMs * 0.4);
    expect(mean).toBeLessThan(jitterMs * 0.6);
    expect(Math.min(...offsets)).toBeLessThan(jitterMs * 0.05);
    expect(Math.max(...offsets)).toBeGreaterThan(jitterMs * 0.95);
  });

  it('stays inside the bounds at the extremes of the random source', () => {
    expect(jitterOffsetMs({ name: 'x', jitterMs: 1000 }, () => 0)).toBe(0);
    expect(jitterOffsetMs({ name: 'x', jitterMs: 1000 }, () => 0.9999999999)).toBe(999);
    expect(jitterOffsetMs({ name: 'x', jitterMs: 1 }, () => 0.99)).toBe(0);
    expect(jitterOffsetMs({ name: 'x', jitterMs: 0 })).toBe(0);
  });

  it('is added to the due time of every and cron policies (not to a first rotation)', () => {
    const jitterMs = 15 * 60_000;
    for (let i = 0; i < 200; i++) {
      const e = pol({ name: `e-${i}`, everyMs: D, jitterMs });
      const due = nextDue(e, state('2025-01-01T00:00:00.000Z'), at('2025-01-01T01:00:00Z'))!.getTime();
      expect(due).toBeGreaterThanOrEqual(Date.parse('2025-01-02T00:00:00Z'));
      expect(due).toBeLessThan(Date.parse('2025-01-02T00:00:00Z') + jitterMs);
      const c = pol({ name: `c-${i}`, schedule: '0 3 * * *', jitterMs });
      const cdue = nextDue(c, state('2025-01-01T04:00:00.000Z'), at('2025-01-01T05:00:00Z'))!.getTime();
      expect(cdue).toBeGreaterThanOrEqual(Date.parse('2025-01-02T03:00:00Z'));
      expect(cdue).toBeLessThan(Date.parse('2025-01-02T03:00:00Z') + jitterMs);
    }
    const now = at('2025-01-01T00:00:00Z');
    expect(nextDue(pol({ everyMs: D, jitterMs }), undefined, now)).toEqual(now);
  });
});

describe('DST', () => {
  describe('Europe/Berlin, daily at 02:30', () => {
    const p = pol({ schedule: '30 2 * * *', timezone: 'Europe/Berlin' });

    it('spring forward (2025-03-30, 02:00 -> 03:00): the skipped 02:30 runs at 03:30 CEST, then back to 02:30', () => {
      const s = state('2025-03-29T01:30:00.000Z'); // 02:30 CET on the 29th
      expect(nextDue(p, s, at('2025-03-29T12:00:00Z'))?.toISOString()).toBe('2025-03-30T01:30:00.000Z'); // 03:30 CEST
      expect(nextDue(p, state('2025-03-30T01:30:00.100Z'), at('2025-03-30T02:00:00Z'))?.toISOString()).toBe('2025-03-31T00:30:00.000Z'); // 02:30 CEST
      const rotations = simulate(p, s, everyMinute('2025-03-29T12:00:00Z', '2025-03-31T12:00:00Z'));
      expect(rotations.map((d) => d.toISOString())).toEqual(['2025-03-30T01:30:00.000Z', '2025-03-31T00:30:00.000Z']);
    });

    it('fall back (2025-10-26, 03:00 -> 02:00): 02:30 happens twice but rotates once, at the first', () => {
      const s = state('2025-10-25T00:30:00.000Z'); // 02:30 CEST on the 25th
      expect(nextDue(p, s, at('2025-10-25T12:00:00Z'))?.toISOString()).toBe('2025-10-26T00:30:00.000Z'); // first 02:30 (CEST)
      expect(nextDue(p, state('2025-10-26T00:30:00.200Z'), at('2025-10-26T01:45:00Z'))?.toISOString()).toBe('2025-10-27T01:30:00.000Z'); // 02:30 CET next day
      // A rotation that landed in the repeated hour (e.g. delayed by jitter) does not make the second 02:30 due.
      expect(nextDue(p, state('2025-10-26T01:20:00.000Z'), at('2025-10-26T01:25:00Z'))?.toISOString()).toBe('2025-10-27T01:30:00.000Z');
      expect(isRepeatedWallTime(at('2025-10-26T01:30:00Z'), 'Europe/Berlin')).toBe(true);
      expect(isRepeatedWallTime(at('2025-10-26T00:30:00Z'), 'Europe/Berlin')).toBe(false);
      const rotations = simulate(p, s, everyMinute('2025-10-25T12:00:00Z', '2025-10-27T12:00:00Z'));
      expect(rotations.map((d) => d.toISOString())).toEqual(['2025-10-26T00:30:00.000Z', '2025-10-27T01:30:00.000Z']);
    });
  });

  describe('America/New_York', () => {
    it('spring forward (2025-03-09): the skipped 02:30 runs at 03:30 EDT', () => {
      const p = pol({ schedule: '30 2 * * *', timezone: 'America/New_York' });
      const s = state('2025-03-08T07:30:00.000Z'); // 02:30 EST
      expect(nextDue(p, s, at('2025-03-08T12:00:00Z'))?.toISOString()).toBe('2025-03-09T07:30:00.000Z'); // 03:30 EDT
      expect(nextDue(p, state('2025-03-09T07:30:00.000Z'), at('2025-03-09T08:00:00Z'))?.toISOString()).toBe('2025-03-10T06:30:00.000Z'); // 02:30 EDT
    });

    it('fall back (2025-11-02, 02:00 -> 01:00): a daily 01:30 rotates once, at the first 01:30 (EDT)', () => {
      const p = pol({ schedule: '30 1 * * *', timezone: 'America/New_York' });
      const s = state('2025-11-01T05:30:00.000Z'); // 01:30 EDT on Nov 1
      expect(nextDue(p, s, at('2025-11-01T12:00:00Z'))?.toISOString()).toBe('2025-11-02T05:30:00.000Z'); // 01:30 EDT
      expect(nextDue(p, state('2025-11-02T05:30:00.000Z'), at('2025-11-02T05:31:00Z'))?.toISOString()).toBe('2025-11-03T06:30:00.000Z'); // 01:30 EST next day
      expect(nextDue(p, state('2025-11-02T06:10:00.000Z'), at('2025-11-02T06:15:00Z'))?.toISOString()).toBe('2025-11-03T06:30:00.000Z'); // not the repeated 01:30 EST
      const rotations = simulate(p, s, everyMinute('2025-11-01T12:00:00Z', '2025-11-03T12:00:00Z'));
      expect(rotations.map((d) => d.toISOString())).toEqual(['2025-11-02T05:30:00.000Z', '2025-11-03T06:30:00.000Z']);
    });

    it('an hourly schedule skips the repeated hour instead of running it twice', () => {
      const p = pol({ schedule: '15 * * * *', timezone: 'America/New_York' });
      const rotations = simulate(p, state('2025-11-02T04:20:00.000Z'), everyMinute('2025-11-02T04:20:00Z', '2025-11-02T08:00:00Z'));
      // 01:15 EDT (05:15Z), the repeated 01:15 EST (06:15Z) is skipped, 02:15 EST (07:15Z)
      expect(rotations.map((d) => d.toISOString())).toEqual(['2025-11-02T05:15:00.000Z', '2025-11-02T07:15:00.000Z']);
    });
  });
});

describe('age and staleness', () => {
  it('is stale when the current token is older than maxAge', () => {
    const p = pol({ everyMs: 30 * D, maxAgeMs: 45 * D });
    const s = state('2025-01-01T00:00:00.000Z');
    expect(tokenAgeMs(s, at('2025-01-11T00:00:00Z'))).toBe(10 * D);
    expect(isStale(p, s, at('2025-02-15T00:00:00Z'))).toBe(false); // exactly 45d
    expect(isStale(p, s, at('2025-02-15T00:00:00.001Z'))).toBe(true);
    expect(isStale(pol({ everyMs: D }), s, at('2030-01-01T00:00:00Z'))).toBe(false); // no maxAge
    expect(isStale(p, undefined, at('2030-01-01T00:00:00Z'))).toBe(false); // never rotated: no token to be old
    expect(tokenAgeMs(undefined, new Date())).toBeUndefined();
  });
});

describe('nextRegularAfter (the cap on retry backoff)', () => {
  it('is the next tick (cron) or t + every, plus jitter', () => {
    expect(nextRegularAfter(pol({ schedule: '0 * * * *' }), at('2025-01-01T10:20:00Z'))?.toISOString()).toBe('2025-01-01T11:00:00.000Z');
    expect(nextRegularAfter(pol({ everyMs: 5 * 60_000 }), at('2025-01-01T10:20:00Z'))?.toISOString()).toBe('2025-01-01T10:25:00.000Z');
    expect(nextRegularAfter(pol(), at('2025-01-01T10:20:00Z'))).toBeUndefined();
  });
});

describe('upcoming (rekey plan)', () => {
  const from = at('2025-01-01T00:00:00Z');

  it('lists every cron tick and every interval in the window, in time order', () => {
    const policies = [
      pol({ name: 'cron-daily', schedule: '0 6 * * *' }),
      pol({ name: 'every-2d', everyMs: 2 * D }),
      pol({ name: 'manual' }),
      pol({ name: 'new', everyMs: 30 * D }),
      pol({ name: 'overdue', schedule: '0 0 1 * *' }),
    ];
    const states = new Map<string, PlanState | undefined>([
      ['cron-daily', state('2024-12-31T06:00:00.000Z')],
      ['every-2d', state('2024-12-31T12:00:00.000Z')],
      ['overdue', state('2024-11-01T00:00:00.000Z')],
    ]);
    const { rotations, truncated } = upcoming(policies, states, from, 3);
    expect(truncated).toEqual([]);
    expect(rotations.map((r) => `${r.at} ${r.policy} ${r.reason}`)).toEqual([
      '2025-01-01T00:00:00.000Z new first',
      '2025-01-01T00:00:00.000Z overdue overdue',
      '2025-01-01T06:00:00.000Z cron-daily scheduled',
      '2025-01-02T06:00:00.000Z cron-daily scheduled',
      '2025-01-02T12:00:00.000Z every-2d scheduled',
      '2025-01-03T06:00:00.000Z cron-daily scheduled',
    ]);
    expect(rotations.find((r) => r.policy === 'overdue')?.kind).toBe('schedule');
    expect(rotations.find((r) => r.policy === 'every-2d')?.kind).toBe('every');
  });

  it('continues an every chain from an overdue rotation at "from"', () => {
    const { rotations } = upcoming([pol({ name: 'e', everyMs: D })], new Map([['e', state('2024-12-01T00:00:00.000Z')]]), from, 3);
    expect(rotations.map((r) => r.at)).toEqual(['2025-01-01T00:00:00.000Z', '2025-01-02T00:00:00.000Z', '2025-01-03T00:00:00.000Z', '2025-01-04T00:00:00.000Z']);
    expect(rotations.map((r) => r.reason)).toEqual(['overdue', 'scheduled', 'scheduled', 'scheduled']);
  });

  it('adds the jitter to each entry and keeps the list bounded', () => {
    const p = pol({ name: 'j', schedule: '0 * * * *', jitterMs: 10 * 60_000 });
    const off = jitterOffsetMs(p);
    const { rotations } = upcoming([p], new Map([['j', state('2024-12-31T23:59:00.000Z')]]), from, 1);
    expect(rotations.length).toBeGreaterThanOrEqual(23);
    for (const r of rotations) expect(new Date(r.at).getUTCMinutes() * 60_000 + new Date(r.at).getUTCSeconds() * 1000 + new Date(r.at).getUTCMilliseconds()).toBe(off);
    const busy = upcoming([pol({ name: 's', schedule: '* * * * * *' })], new Map([['s', state('2024-12-31T23:59:59.000Z')]]), from, 1, { maxPerPolicy: 50 });
    expect(busy.rotations).toHaveLength(50);
    expect(busy.truncated).toEqual(['s']);
  });
});
