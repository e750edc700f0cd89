/**
 * Plan: is a rotation due, and when is the next one? Pure: no I/O, the clock is an argument.
 *
 * Semantics (docs/daemon.md has the user-facing version):
 * - `every`: due `every` after the last successful rotation (state.rotatedAt).
 * - `schedule` (cron, 5 or 6 fields, in policy.timezone): due at the first scheduled time
 *   after the last successful rotation. A host that was off over several scheduled times
 *   therefore rotates once: the earliest missed tick is in the past, and the rotation moves
 *   rotatedAt past all of them.
 * - Never rotated (no state): due now, for both kinds, without jitter.
 * - Neither schedule nor every: manual only, never due.
 * - Jitter: a per-policy offset in [0, jitterMs) from a hash of the policy name, added to
 *   the due time. The same name always gets the same offset, so restarts do not move it.
 * - DST: a wall-clock time skipped by the spring-forward jump runs when the clock shows it
 *   an hour later (02:30 -> 03:30); a wall-clock time that occurs twice (fall back) counts
 *   once, the first time.
 */
import { createHash } from 'node:crypto';
import { CronExpressionParser } from 'cron-parser';
import type { Policy } from '../config/types.js';
import { RekeyError } from '../util/errors.js';

/** The scheduling part of a policy. */
export type PlanPolicy = Pick<Policy, 'name' | 'schedule' | 'everyMs' | 'timezone' | 'jitterMs'> & { maxAgeMs?: number | undefined };

/** What plan needs from state: only when the last successful rotation happened. */
export interface PlanState {
  rotatedAt?: string | undefined;
}

export type ScheduleKind = 'schedule' | 'every' | 'manual';

export interface DueInfo {
  kind: 'schedule' | 'every';
  /** The regular time without jitter: the cron tick, rotatedAt + every, or now when never rotated. */
  regular: Date;
  /** regular + jitter: when the rotation should run. */
  dueAt: Date;
  /** The policy has never rotated (no state). */
  firstRotation: boolean;
}

export interface PlannedRotation {
  /** When the rotation is expected (ISO). */
  at: string;
  policy: string;
  kind: 'schedule' | 'every';
  /** first: never rotated; overdue: the due time has passed; scheduled: a future regular time. */
  reason: 'first' | 'overdue' | 'scheduled';
}

export interface UpcomingResult {
  rotations: PlannedRotation[];
  /** Policies whose list was cut at maxPerPolicy entries. */
  truncated: string[];
}

export function scheduleKind(p: Pick<Policy, 'schedule' | 'everyMs'>): ScheduleKind {
  if (p.schedule !== undefined) return 'schedule';
  if (p.everyMs !== undefined) return 'every';
  return 'manual';
}

/** A stable number in [0, 1) from a policy name. */
export function nameHashUnit(name: string): number {
  const digest = createHash('sha256').update(name, 'utf8').digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

/**
 * The policy's jitter offset in [0, jitterMs): deterministic from its name, so a fleet spreads
 * out and a restart keeps the offset. `rand` replaces the hash (simulations, tests).
 */
export function jitterOffsetMs(p: Pick<Policy, 'name' | 'jitterMs'>, rand?: () => number): number {
  if (!(p.jitterMs > 0)) return 0;
  const u = rand ? rand() : nameHashUnit(p.name);
  return Math.min(p.jitterMs - 1, Math.max(0, Math.floor(u * p.jitterMs)));
}

const wallFormatters = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock reading of an instant in a time zone, to the second. */
function wallClock(t: number, timezone: string): string {
  let f = wallFormatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    wallFormatters.set(timezone, f);
  }
  return f.format(t);
}

/** DST shifts in use somewhere: 30 minutes (Lord Howe), 1 hour, 2 hours (Troll). */
const DST_SHIFTS_MS = [3_600_000, 1_800_000, 7_200_000];

/** True when the wall-clock time of t was already shown earlier (the repeated hour after fall back). */
export function isRepeatedWallTime(t: Date, timezone: string): boolean {
  const wall = wallClock(t.getTime(), timezone);
  return DST_SHIFTS_MS.some((d) => wallClock(t.getTime() - d, timezone) === wall);
}

/** The first scheduled time strictly after `after`, counting a repeated wall-clock time once. */
export function nextTick(schedule: string, timezone: string, after: Date): Date {
  let it;
  try {
    it = CronExpressionParser.parse(schedule, { currentDate: after, tz: timezone });
  } catch {
    throw new RekeyError('CONFIG', `schedule "${schedule}" is not a valid cron expression`);
  }
  // A bounded walk: a repeated hour holds at most 3600 per-second ticks.
  for (let i = 0; i < 10_000; i++) {
    let t: Date;
    try {
      t = it.next().toDate();
    } catch {
      break;
    }
    if (!isRepeatedWallTime(t, timezone)) return t;
  }
  throw new RekeyError('CONFIG', `schedule "${schedule}" has no next run time after ${after.toISOString()}`);
}

function rotatedAtOf(state: PlanState | undefined): Date | undefined {
  if (!state?.rotatedAt) return undefined;
  const t = Date.parse(state.rotatedAt);
  return Number.isNaN(t) ? undefined : new Date(t);
}

/** Full due information, or undefined for a manual-only policy. */
export function dueInfo(p: PlanPolicy, state: PlanState | undefined, now: Date, rand?: () => number): DueInfo | undefined {
  const kind = scheduleKind(p);
  if (kind === 'manual') return undefined;
  const last = rotatedAtOf(state);
  if (!last) return { kind, regular: now, dueAt: now, firstRotation: true };
  const regular = kind === 'every' ? new Date(last.getTime() + p.everyMs!) : nextTick(p.schedule!, p.timezone, last);
  return { kind, regular, dueAt: new Date(regular.getTime() + jitterOffsetMs(p, rand)), firstRotation: false };
}

/** When the next rotation is due (possibly in the past: overdue), or undefined when manual only. */
export function nextDue(p: PlanPolicy, state: PlanState | undefined, now: Date, rand?: () => number): Date | undefined {
  return dueInfo(p, state, now, rand)?.dueAt;
}

/** Whether a rotation is due at `now`. */
export function isDue(p: PlanPolicy, state: PlanState | undefined, now: Date, rand?: () => number): boolean {
  const d = nextDue(p, state, now, rand);
  return d !== undefined && d.getTime() <= now.getTime();
}

/** The next regular time after `t` (cron: the next tick; every: t + every), plus jitter. For retry caps. */
export function nextRegularAfter(p: PlanPolicy, t: Date, rand?: () => number): Date | undefined {
  const kind = scheduleKind(p);
  if (kind === 'manual') return undefined;
  const regular = kind === 'every' ? new Date(t.getTime() + p.everyMs!) : nextTick(p.schedule!, p.timezone, t);
  return new Date(regular.getTime() + jitterOffsetMs(p, rand));
}

/** Age of the current token in ms, or undefined when the policy never rotated. */
export function tokenAgeMs(state: PlanState | undefined, now: Date): number | undefined {
  const last = rotatedAtOf(state);
  return last ? Math.max(0, now.getTime() - last.getTime()) : undefined;
}

/** A current token older than maxAge is stale. A policy without maxAge, or never rotated, is not. */
export function isStale(p: Pick<PlanPolicy, 'maxAgeMs'>, state: PlanState | undefined, now: Date): boolean {
  const age = tokenAgeMs(state, now);
  return p.maxAgeMs !== undefined && age !== undefined && age > p.maxAgeMs;
}

/**
 * Every rotation expected in [from, from + days], in time order, assuming each one succeeds
 * when due: an overdue or never-rotated policy rotates at `from`; then the chain continues
 * (cron: every tick plus jitter; every: rotation + every + jitter).
 */
export function upcoming(
  policies: readonly PlanPolicy[],
  states: ReadonlyMap<string, PlanState | undefined>,
  from: Date,
  days: number,
  opts: { rand?: () => number; maxPerPolicy?: number } = {},
): UpcomingResult {
  const end = from.getTime() + days * 86_400_000;
  const max = opts.maxPerPolicy ?? 1000;
  const rotations: PlannedRotation[] = [];
  const truncated: string[] = [];
  for (const p of policies) {
    const info = dueInfo(p, states.get(p.name), from, opts.rand);
    if (!info) continue;
    let count = 0;
    let at = info.dueAt.getTime() <= from.getTime() ? from.getTime() : info.dueAt.getTime();
    let reason: PlannedRotation['reason'] = info.firstRotation ? 'first' : info.dueAt.getTime() <= from.getTime() ? 'overdue' : 'scheduled';
    while (at <= end) {
      if (count === max) {
        truncated.push(p.name);
        break;
      }
      rotations.push({ at: new Date(at).toISOString(), policy: p.name, kind: info.kind, reason });
      count++;
      const next = dueInfo(p, { rotatedAt: new Date(at).toISOString() }, new Date(at), opts.rand)!.dueAt.getTime();
      if (next <= at) break; // cannot happen with valid settings; guards against a loop
      at = next;
      reason = 'scheduled';
    }
  }
  rotations.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.policy < b.policy ? -1 : a.policy > b.policy ? 1 : 0));
  return { rotations, truncated };
}
