/** A manual clock, a fake engine and a fake cron trigger: the scheduler driven without sleeping. */
import type { Policy } from '../../src/config/types.js';
import type { PolicyOutcome, RotateOptions } from '../../src/rotation/engine.js';
import { nextTick } from '../../src/rotation/plan.js';
import type { Clock } from '../../src/scheduler/clock.js';
import type { CronTrigger } from '../../src/scheduler/cron-trigger.js';
import type { RotationRunner } from '../../src/scheduler/scheduler.js';
import type { PolicyState } from '../../src/state/store.js';
import type { Logger } from '../../src/targets/contract.js';
import type { ErrorCode } from '../../src/util/errors.js';

export const MIN = 60_000;
export const H = 60 * MIN;
export const D = 24 * H;

export function pol(over: Partial<Policy> = {}): Policy {
  return {
    name: 'p',
    token: { bytes: 32, encoding: 'base64url', prefix: '' },
    timezone: 'UTC',
    jitterMs: 0,
    graceMs: D,
    hooks: { before: [], after: [] },
    targets: [{ type: 'file', path: '/tmp/never-written', content: 'token', followSymlinks: false }],
    source: { file: 'rekey.yaml', line: 1, col: 1 },
    ...over,
  };
}

export class ManualClock implements Clock {
  t: number;
  #seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  /** Awaited after every timer fires, so async work it started can finish (e.g. scheduler.idle). */
  settle: () => Promise<void> = () => new Promise((r) => setImmediate(r));

  constructor(start: string | number) {
    this.t = typeof start === 'string' ? Date.parse(start) : start;
  }

  now(): Date {
    return new Date(this.t);
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }

  async advance(ms: number): Promise<void> {
    await this.advanceTo(this.t + ms);
  }

  /** Move time forward, firing every timer due on the way, in order. */
  async advanceTo(target: number | string): Promise<void> {
    const end = typeof target === 'string' ? Date.parse(target) : target;
    await this.settle();
    for (let guard = 0; guard < 1_000_000; guard++) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) {
        if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
      await this.settle();
    }
    this.t = Math.max(this.t, end);
    await this.settle();
  }
}

export interface Call {
  action: 'rotate' | 'retire';
  names: string[];
  at: string;
}

/** Engine and state store in one: rotations write state at the clock's time. */
export class FakeRunner implements RotationRunner {
  readonly states = new Map<string, PolicyState>();
  readonly calls: Call[] = [];
  /** Error code per policy: its rotations fail with it until removed. */
  readonly fail = new Map<string, ErrorCode>();
  /** While set, rotations wait for it (a rotation in flight). */
  gate: Promise<void> | undefined;
  concurrent = 0;
  maxConcurrent = 0;
  readonly perPolicyConcurrent = new Map<string, number>();
  maxPerPolicy = 0;

  constructor(readonly clock: Clock) {}

  seed(name: string, rotatedAt: string, extra: Partial<PolicyState> = {}): void {
    this.states.set(name, { policy: name, version: 1, rotatedAt, currentSha256: 'a'.repeat(64), fingerprint: 'aaaaaaaa', previous: null, targets: [], ...extra });
  }

  async read(name: string): Promise<PolicyState | undefined> {
    const s = this.states.get(name);
    return s ? structuredClone(s) : undefined;
  }

  rotations(name?: string): Call[] {
    return this.calls.filter((c) => c.action === 'rotate' && (name === undefined || c.names.includes(name)));
  }

  async rotate(policies: Policy[], _opts?: RotateOptions): Promise<PolicyOutcome[]> {
    this.calls.push({ action: 'rotate', names: policies.map((p) => p.name), at: this.clock.now().toISOString() });
    const startedAt = this.clock.now();
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    for (const p of policies) {
      const n = (this.perPolicyConcurrent.get(p.name) ?? 0) + 1;
      this.perPolicyConcurrent.set(p.name, n);
      this.maxPerPolicy = Math.max(this.maxPerPolicy, n);
    }
    try {
      if (this.gate) await this.gate;
      return policies.map((p): PolicyOutcome => {
        const code = this.fail.get(p.name);
        if (code) {
          return { policy: p.name, result: 'failed', error: `${p.name}: ${code === 'LOCKED' ? 'policy is being rotated by pid 1' : 'target said no'}`, errorCode: code, exitCode: 1, targets: [], warnings: [], durationMs: 5 };
        }
        const prev = this.states.get(p.name);
        const version = (prev?.version ?? 0) + 1;
        this.states.set(p.name, {
          policy: p.name,
          version,
          rotatedAt: startedAt.toISOString(),
          currentSha256: String(version).padStart(64, '0'),
          fingerprint: String(version).padStart(8, '0'),
          previous: prev ? { sha256: prev.currentSha256, fingerprint: prev.fingerprint, validUntil: new Date(startedAt.getTime() + p.graceMs).toISOString() } : null,
          targets: [],
        });
        return { policy: p.name, result: 'rotated', version, fingerprint: String(version).padStart(8, '0'), targets: [], exitCode: 0, warnings: [], durationMs: 5 };
      });
    } finally {
      this.concurrent--;
      for (const p of policies) this.perPolicyConcurrent.set(p.name, (this.perPolicyConcurrent.get(p.name) ?? 1) - 1);
    }
  }

  async retire(policies: Policy[], _opts?: RotateOptions): Promise<PolicyOutcome[]> {
    this.calls.push({ action: 'retire', names: policies.map((p) => p.name), at: this.clock.now().toISOString() });
    return policies.map((p): PolicyOutcome => {
      const s = this.states.get(p.name);
      if (s?.previous && Date.parse(s.previous.validUntil) <= this.clock.now().getTime()) {
        this.states.set(p.name, { ...s, previous: null });
        return { policy: p.name, result: 'retired', targets: [], exitCode: 0, warnings: [], durationMs: 1 };
      }
      return { policy: p.name, result: 'unchanged', targets: [], exitCode: 0, warnings: [], durationMs: 1 };
    });
  }
}

/** Fires cron ticks on the manual clock (stands in for node-cron). */
export class FakeCron implements CronTrigger {
  readonly started: string[] = [];
  readonly stopped: string[] = [];
  constructor(readonly clock: ManualClock) {}

  start(policy: Policy, onTick: () => void): { stop(): void } {
    this.started.push(policy.name);
    let handle: unknown;
    const arm = (from: number): void => {
      const t = nextTick(policy.schedule!, policy.timezone, new Date(from)).getTime();
      handle = this.clock.setTimeout(() => {
        arm(t);
        onTick();
      }, t - this.clock.t);
    };
    arm(this.clock.t);
    return {
      stop: () => {
        this.clock.clearTimeout(handle);
        this.stopped.push(policy.name);
      },
    };
  }
}

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}

export function memoryLogger(): Logger & { lines: LogLine[]; text(): string } {
  const lines: LogLine[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => lines.push({ level: 'error', obj, msg }),
    text: () => lines.map((l) => `${l.level} ${l.msg} ${JSON.stringify(l.obj)}`).join('\n'),
  };
}

/** Differences between consecutive ISO times, in minutes. */
export function gapsInMinutes(times: string[]): number[] {
  return times.slice(1).map((t, i) => (Date.parse(t) - Date.parse(times[i]!)) / MIN);
}
