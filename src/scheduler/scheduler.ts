/**
 * The daemon's scheduler. Correctness comes from rotation/plan and the state on disk, never
 * from remembering ticks: at start, after a reload, on every cron tick (node-cron) and on every
 * timer wake-up it re-reads state and asks plan whether a rotation is due.
 *
 * One timer: it sleeps until the earliest of every policy's next event (an `every` due time, a
 * jittered cron due time, a retry after a failure, the end of a grace period, a token turning
 * stale), at most maxSleepMs. Cron policies are fired by node-cron; the timer only backs them
 * up safetyMarginMs after their due time in case a tick never came (DST differences between
 * node-cron and cron-parser, a blocked event loop, a suspended host).
 *
 * Due policies found together are rotated in one engine batch (one openssl process for the
 * batch). A policy never runs twice at once: in-process by the `claimed` set, across processes
 * by the engine's lock (waitMs 0; LOCKED means "another process is at it: look again shortly").
 */
import type { Policy } from '../config/types.js';
import type { PolicyOutcome, RotateOptions } from '../rotation/engine.js';
import { dueInfo, isStale, nextRegularAfter, scheduleKind, tokenAgeMs, type DueInfo, type ScheduleKind } from '../rotation/plan.js';
import type { PolicyState } from '../state/store.js';
import type { Logger } from '../targets/contract.js';
import { formatDuration } from '../util/duration.js';
import { describeForeign, isRekeyError, type ErrorCode } from '../util/errors.js';
import { mapLimit } from '../util/limit.js';
import { redact } from '../util/secret.js';
import { BACKOFF_BASE_MS, BACKOFF_MAX_MS, backoffMs } from './backoff.js';
import { systemClock, type Clock } from './clock.js';
import type { CronHandle, CronTrigger } from './cron-trigger.js';

/** What the scheduler needs from the engine. */
export interface RotationRunner {
  rotate(policies: Policy[], opts?: RotateOptions): Promise<PolicyOutcome[]>;
  retire(policies: Policy[], opts?: RotateOptions): Promise<PolicyOutcome[]>;
  recover?(policies: Policy[], opts?: RotateOptions): Promise<PolicyOutcome[]>;
}

/** What the scheduler needs from the state store. */
export interface StateReader {
  read(policy: string): Promise<PolicyState | undefined>;
}

export interface SchedulerObserver {
  /** Every engine outcome, for metrics. */
  outcome?(o: PolicyOutcome, action: 'rotate' | 'retire'): void;
  /** A rotation failed because openssl misbehaved: re-probe it. */
  opensslFailure?(): void;
}

export interface SchedulerOptions {
  /** Look again this long after LOCKED (another process holds the policy). Default 10s. */
  lockedRetryMs?: number;
  /** The timer never sleeps longer than this (wall-clock jumps, periodic checks). Default 5m. */
  maxSleepMs?: number;
  /** A cron policy whose tick did not arrive is looked at this long after its due time. Default 1m. */
  safetyMarginMs?: number;
  /** Re-read every policy's state this often (rotations by other processes, metrics). Default 10m. */
  refreshMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Parallel state reads. Default 32. */
  readConcurrency?: number;
}

export interface SchedulerDeps {
  runner: RotationRunner;
  store: StateReader;
  log: Logger;
  clock?: Clock;
  /** Fires cron schedules; null: none (the timer alone drives cron policies, e.g. in tests). */
  cron?: CronTrigger | null;
  observer?: SchedulerObserver;
  options?: SchedulerOptions;
}

/** One policy as the daemon sees it (metrics, tests). */
export interface PolicyView {
  policy: string;
  kind: ScheduleKind;
  version?: number;
  fingerprint?: string;
  rotatedAt?: string;
  /** When plan says the rotation is due (may be past: overdue). */
  dueAt?: Date;
  /** When the daemon will next try: dueAt, or the retry time after a failure. */
  nextAttemptAt?: Date;
  graceUntil?: string;
  tokenAgeMs?: number;
  stale: boolean;
  running: boolean;
  failures: number;
}

export interface ReloadSummary {
  added: string[];
  removed: string[];
  changed: string[];
  unchanged: string[];
}

export interface StopResult {
  /** Every in-flight rotation finished before the timeout. */
  drained: boolean;
  /** Policies still rotating when stop() returned. */
  inFlight: string[];
}

interface Entry {
  policy: Policy;
  key: string;
  state: PolicyState | undefined;
  /** When state was last read (clock ms); -Infinity: never. */
  loadedAt: number;
  info: DueInfo | undefined;
  planError?: string;
  /** The last state read error, logged once until it changes. */
  readError?: string;
  failures: number;
  retryAt?: number;
  /** A retry never waits past the next regular time. */
  retryCap?: number;
  retireRetryAt?: number;
  staleLogged: boolean;
  cron?: CronHandle;
  /** When node-cron last ticked for this policy (clock ms). */
  lastTickAt?: number;
}

type Action = 'rotate' | 'retire';

/** A stable JSON of a policy's settings (not its position in the file): equal means unchanged. */
export function policyKey(p: Policy): string {
  const { source: _source, ...rest } = p;
  return stableJson(rest);
}

export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : stableJson(x))).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

const iso = (ms: number): string => new Date(ms).toISOString();

function oneLine(e: unknown): string {
  const m = isRekeyError(e) ? e.message : describeForeign(e);
  return redact(m.split('\n')[0] ?? '');
}

export class Scheduler {
  readonly #d: SchedulerDeps;
  readonly #clock: Clock;
  readonly #cron: CronTrigger | null;
  readonly #o: Required<SchedulerOptions>;
  #runner: RotationRunner;
  #entries = new Map<string, Entry>();
  /** Names queued, being looked at, or rotating: nobody else may start them. */
  readonly #claimed = new Set<string>();
  readonly #pending = new Set<string>();
  readonly #running = new Set<string>();
  readonly #inFlight = new Set<Promise<void>>();
  #flushScheduled = false;
  #flushActive = false;
  #flushChain: Promise<void> = Promise.resolve();
  #timer: unknown;
  #timerAt: number | undefined;
  #phase: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  #nextRefreshAt = 0;
  #forceStop: (() => void) | undefined;

  constructor(deps: SchedulerDeps) {
    this.#d = deps;
    this.#clock = deps.clock ?? systemClock;
    this.#cron = deps.cron ?? null;
    this.#runner = deps.runner;
    const o = deps.options ?? {};
    this.#o = {
      lockedRetryMs: o.lockedRetryMs ?? 10_000,
      maxSleepMs: o.maxSleepMs ?? 300_000,
      safetyMarginMs: o.safetyMarginMs ?? 60_000,
      refreshMs: o.refreshMs ?? 600_000,
      backoffBaseMs: o.backoffBaseMs ?? BACKOFF_BASE_MS,
      backoffMaxMs: o.backoffMaxMs ?? BACKOFF_MAX_MS,
      readConcurrency: o.readConcurrency ?? 32,
    };
  }

  /** True between start() and stop(). */
  get isRunning(): boolean {
    return this.#phase === 'running';
  }

  /** When the timer fires next (clock ms), for tests and diagnostics. */
  get nextWakeAt(): number | undefined {
    return this.#timerAt;
  }

  policies(): Policy[] {
    return [...this.#entries.values()].map((e) => e.policy);
  }

  /** Load state, start cron tasks, and rotate whatever is overdue (catch-up). */
  async start(policies: Policy[]): Promise<void> {
    if (this.#phase !== 'new') throw new Error('scheduler already started');
    this.#phase = 'running';
    for (const p of policies) this.#entries.set(p.name, this.#newEntry(p));
    await this.#load([...this.#entries.values()]);
    if (this.#phase !== 'running') return;
    for (const e of this.#entries.values()) this.#startCron(e);
    const now = this.#now();
    this.#nextRefreshAt = now + this.#o.refreshMs;
    const kinds = { schedule: 0, every: 0, manual: 0 };
    let due = 0;
    for (const e of this.#entries.values()) {
      kinds[scheduleKind(e.policy)]++;
      const w = this.#rotationWake(e);
      if (w !== undefined && w <= now) due++;
    }
    this.#d.log.info(
      { policies: this.#entries.size, cron: kinds.schedule, every: kinds.every, manual: kinds.manual, due },
      `scheduler started: ${this.#entries.size} policies (${kinds.schedule} cron, ${kinds.every} every, ${kinds.manual} manual); ${due} due now`,
    );
    this.#wake();
  }

  /** Swap the policy set: removed ones stop, new ones start, changed ones are rescheduled. */
  async reload(policies: Policy[], runner?: RotationRunner): Promise<ReloadSummary> {
    if (this.#phase !== 'running') throw new Error('scheduler is not running');
    const summary: ReloadSummary = { added: [], removed: [], changed: [], unchanged: [] };
    const names = new Set(policies.map((p) => p.name));
    for (const [name, e] of this.#entries) {
      if (names.has(name)) continue;
      e.cron?.stop();
      if (this.#pending.delete(name) && !this.#running.has(name)) this.#claimed.delete(name);
      summary.removed.push(name);
    }
    const next = new Map<string, Entry>();
    const fresh: Entry[] = [];
    for (const p of policies) {
      const old = this.#entries.get(p.name);
      const key = policyKey(p);
      if (old && old.key === key) {
        old.policy = p;
        next.set(p.name, old);
        summary.unchanged.push(p.name);
        continue;
      }
      old?.cron?.stop();
      const e = this.#newEntry(p);
      if (old) e.state = old.state;
      next.set(p.name, e);
      fresh.push(e);
      (old ? summary.changed : summary.added).push(p.name);
    }
    this.#entries = next;
    if (runner) this.#runner = runner;
    await this.#load(fresh);
    if (this.#phase !== 'running') return summary;
    for (const e of fresh) this.#startCron(e);
    this.#wake();
    return summary;
  }

  /**
   * Stop taking work: timers and cron tasks stop at once; rotations in flight may finish
   * for up to timeoutMs (or until forceStop()).
   */
  async stop(timeoutMs: number): Promise<StopResult> {
    if (this.#phase === 'new' || this.#phase === 'stopped') {
      this.#phase = 'stopped';
      return { drained: true, inFlight: [] };
    }
    this.#phase = 'stopping';
    this.#clearTimer();
    for (const e of this.#entries.values()) {
      e.cron?.stop();
      e.cron = undefined;
    }
    for (const n of this.#pending) this.#claimed.delete(n);
    this.#pending.clear();
    const all = (async () => {
      await this.#flushChain;
      while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
      return true;
    })();
    let handle: unknown;
    const timeout = new Promise<boolean>((r) => {
      handle = this.#clock.setTimeout(() => r(false), timeoutMs);
    });
    const forced = new Promise<boolean>((r) => {
      this.#forceStop = () => r(false);
    });
    const drained = await Promise.race([all, timeout, forced]);
    this.#clock.clearTimeout(handle);
    this.#forceStop = undefined;
    this.#phase = 'stopped';
    return { drained, inFlight: [...this.#running] };
  }

  /** End a stop() that is waiting for rotations in flight (a second SIGTERM). */
  forceStop(): void {
    this.#forceStop?.();
  }

  /** Resolves when nothing is queued, being looked at, or rotating (tests). */
  async idle(): Promise<void> {
    for (let quiet = 0; quiet < 3; ) {
      await new Promise<void>((r) => setImmediate(r));
      if (this.#flushScheduled || this.#flushActive || this.#pending.size > 0 || this.#inFlight.size > 0) {
        quiet = 0;
        await this.#flushChain;
        await Promise.allSettled([...this.#inFlight]);
      } else {
        quiet++;
      }
    }
  }

  /** Every policy as the daemon sees it now. */
  snapshot(): PolicyView[] {
    const now = this.#now();
    return [...this.#entries.values()].map((e) => {
      const s = e.state;
      const age = tokenAgeMs(s, new Date(now));
      const next = this.#attemptAt(e);
      return {
        policy: e.policy.name,
        kind: scheduleKind(e.policy),
        ...(s ? { version: s.version, fingerprint: s.fingerprint, rotatedAt: s.rotatedAt } : {}),
        ...(e.info ? { dueAt: e.info.dueAt } : {}),
        ...(next !== undefined ? { nextAttemptAt: new Date(next) } : {}),
        ...(s?.previous ? { graceUntil: s.previous.validUntil } : {}),
        ...(age !== undefined ? { tokenAgeMs: age } : {}),
        stale: isStale(e.policy, s, new Date(now)),
        running: this.#running.has(e.policy.name),
        failures: e.failures,
      };
    });
  }

  // ---- internals ------------------------------------------------------------------------

  #now(): number {
    return this.#clock.now().getTime();
  }

  #newEntry(p: Policy): Entry {
    return { policy: p, key: policyKey(p), state: undefined, loadedAt: -Infinity, info: undefined, failures: 0, staleLogged: false };
  }

  #startCron(e: Entry): void {
    if (!this.#cron || e.policy.schedule === undefined || e.cron) return;
    const name = e.policy.name;
    try {
      e.cron = this.#cron.start(e.policy, () => this.#tick(name));
    } catch (err) {
      this.#d.log.error({ policy: name }, `${name}: cannot schedule "${e.policy.schedule}" with node-cron (${oneLine(err)}); the timer checks it instead`);
    }
  }

  /** node-cron says a scheduled time came: look at the policy now. */
  #tick(name: string): void {
    if (this.#phase !== 'running') return;
    const e = this.#entries.get(name);
    if (!e) return;
    e.lastTickAt = this.#now();
    if (!this.#claimed.has(name)) this.#claim(name);
  }

  #claim(name: string): void {
    this.#claimed.add(name);
    this.#pending.add(name);
    this.#scheduleFlush();
  }

  /** Read state for the entries and recompute when they are due. */
  async #load(entries: Entry[]): Promise<void> {
    await mapLimit(entries, this.#o.readConcurrency, async (e) => {
      const name = e.policy.name;
      let state = e.state;
      try {
        state = await this.#d.store.read(name);
        e.readError = undefined;
      } catch (err) {
        const msg = oneLine(err);
        if (e.readError !== msg) this.#d.log.error({ policy: name }, `${name}: cannot read state (${msg}); using what was read before`);
        e.readError = msg;
      }
      const loadedBefore = e.loadedAt !== -Infinity || e.state !== undefined;
      if (loadedBefore && state?.rotatedAt !== e.state?.rotatedAt) {
        // Rotated by someone (this daemon or a rotate-now): failures and retries are history.
        e.failures = 0;
        e.retryAt = undefined;
        e.retryCap = undefined;
        e.staleLogged = false;
      }
      e.state = state;
      e.loadedAt = this.#now();
      this.#computeInfo(e);
    });
  }

  #computeInfo(e: Entry): void {
    try {
      e.info = dueInfo(e.policy, e.state, new Date(this.#now()));
      e.planError = undefined;
    } catch (err) {
      e.info = undefined;
      const msg = oneLine(err);
      if (e.planError !== msg) this.#d.log.error({ policy: e.policy.name }, `${e.policy.name}: ${msg}; not scheduled`);
      e.planError = msg;
    }
  }

  /** The next time this entry's rotation should be attempted (ignoring the cron safety margin). */
  #attemptAt(e: Entry): number | undefined {
    if (!e.info) return undefined;
    const due = e.info.dueAt.getTime();
    if (e.retryAt !== undefined) return Math.max(due, Math.min(e.retryAt, e.retryCap ?? Infinity));
    return due;
  }

  /** When the timer should look at this entry's rotation. */
  #rotationWake(e: Entry): number | undefined {
    const at = this.#attemptAt(e);
    if (at === undefined || !e.info) return undefined;
    // node-cron fires the regular time; until its tick for it came, the timer only backs it up.
    const regular = e.info.regular.getTime();
    if (e.retryAt === undefined && e.info.kind === 'schedule' && this.#cron && !e.info.firstRotation && !((e.lastTickAt ?? -Infinity) >= regular)) {
      return Math.max(at, regular + this.#o.safetyMarginMs);
    }
    return at;
  }

  #retireWake(e: Entry): number | undefined {
    const v = e.state?.previous?.validUntil;
    if (!v) return undefined;
    const t = Date.parse(v);
    if (Number.isNaN(t)) return undefined;
    return Math.max(t, e.retireRetryAt ?? -Infinity);
  }

  #staleWake(e: Entry): number | undefined {
    if (e.policy.maxAgeMs === undefined || e.staleLogged || !e.state?.rotatedAt) return undefined;
    const t = Date.parse(e.state.rotatedAt);
    return Number.isNaN(t) ? undefined : t + e.policy.maxAgeMs + 1;
  }

  #logStale(e: Entry, now: number): void {
    e.staleLogged = true;
    const s = e.state!;
    const age = now - Date.parse(s.rotatedAt);
    this.#d.log.warn(
      { policy: e.policy.name, version: s.version, fingerprint: s.fingerprint, stale: true, ageSeconds: Math.round(age / 1000), maxAgeSeconds: Math.round(e.policy.maxAgeMs! / 1000) },
      `${e.policy.name}: the current token (v${s.version}) is ${formatDuration(age)} old, past maxAge ${formatDuration(e.policy.maxAgeMs!)}; check why it is not rotating`,
    );
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = undefined;
  }

  /** Timer fired (or state changed): claim every entry with something to do now, then re-arm. */
  #wake(): void {
    this.#clearTimer();
    if (this.#phase !== 'running') return;
    const now = this.#now();
    if (now >= this.#nextRefreshAt) {
      this.#nextRefreshAt = now + this.#o.refreshMs;
      for (const e of this.#entries.values()) {
        if (!this.#claimed.has(e.policy.name)) this.#claim(e.policy.name);
      }
    }
    for (const e of this.#entries.values()) {
      const name = e.policy.name;
      if (this.#claimed.has(name)) continue;
      const s = this.#staleWake(e);
      if (s !== undefined && s <= now) this.#logStale(e, now);
      const r = this.#rotationWake(e);
      const t = this.#retireWake(e);
      if ((r !== undefined && r <= now) || (t !== undefined && t <= now)) this.#claim(name);
    }
    this.#arm();
  }

  #arm(): void {
    this.#clearTimer();
    if (this.#phase !== 'running') return;
    const now = this.#now();
    let min = this.#nextRefreshAt;
    for (const e of this.#entries.values()) {
      if (this.#claimed.has(e.policy.name)) continue;
      for (const w of [this.#rotationWake(e), this.#retireWake(e), this.#staleWake(e)]) {
        if (w !== undefined && w < min) min = w;
      }
    }
    const delay = Math.min(this.#o.maxSleepMs, Math.max(0, min - now));
    this.#timerAt = now + delay;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = undefined;
      this.#wake();
    }, delay);
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // setImmediate: every node-cron task firing in this turn of the event loop joins one batch.
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flushChain = this.#flushChain
        .then(() => this.#flush())
        .catch((err) => this.#d.log.error({}, `scheduler: ${oneLine(err)}`));
    });
  }

  /** Look at the claimed entries with fresh state; start a batch for those that are due. */
  async #flush(): Promise<void> {
    this.#flushActive = true;
    const names = [...this.#pending];
    this.#pending.clear();
    const release = (n: string): void => {
      if (!this.#running.has(n)) this.#claimed.delete(n);
    };
    try {
      if (this.#phase !== 'running') {
        names.forEach(release);
        return;
      }
      // Always fresh state: a rotate-now in another process may have rotated it meanwhile.
      await this.#load(names.map((n) => this.#entries.get(n)).filter((e): e is Entry => e !== undefined));
      if (this.#phase !== 'running') {
        names.forEach(release);
        return;
      }
      const now = this.#now();
      const rotate: Entry[] = [];
      const retire: Entry[] = [];
      for (const name of names) {
        const e = this.#entries.get(name);
        if (!e) {
          release(name);
          continue;
        }
        const r = this.#rotationWake(e);
        const t = this.#retireWake(e);
        if (r !== undefined && r <= now) rotate.push(e);
        else if (t !== undefined && t <= now) retire.push(e);
        else release(name);
      }
      if (rotate.length > 0) this.#startBatch('rotate', rotate);
      if (retire.length > 0) this.#startBatch('retire', retire);
      this.#arm();
    } catch (err) {
      // Never leave a policy claimed by a look that failed: it would not be scheduled again.
      names.forEach(release);
      this.#d.log.error({}, `scheduler: ${oneLine(err)}`);
      this.#arm();
    } finally {
      this.#flushActive = false;
    }
  }

  #startBatch(action: Action, entries: Entry[]): void {
    for (const e of entries) this.#running.add(e.policy.name);
    const p = this.#runBatch(action, entries).catch((err) => this.#d.log.error({}, `scheduler: ${oneLine(err)}`));
    const tracked = p.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  async #runBatch(action: Action, entries: Entry[]): Promise<void> {
    const runner = this.#runner;
    const policies = entries.map((e) => e.policy);
    const log = this.#d.log;
    for (const e of entries) {
      const s = e.state;
      const why = action === 'retire' ? 'grace period ended' : !s ? 'first rotation' : e.failures > 0 ? `retry ${e.failures}` : e.retryAt !== undefined ? 'retry' : 'due';
      log.info({ policy: e.policy.name, version: s?.version ?? 0, fingerprint: s?.fingerprint ?? null, action, reason: why }, `${e.policy.name}: ${action === 'rotate' ? 'rotating' : 'retiring the previous token'} (${why})`);
    }
    let outcomes: PolicyOutcome[];
    try {
      const opts: RotateOptions = { waitMs: 0, purpose: 'daemon' };
      outcomes = action === 'rotate' ? await runner.rotate(policies, opts) : await runner.retire(policies, opts);
    } catch (err) {
      const code: ErrorCode = isRekeyError(err) ? err.code : 'INTERNAL';
      const msg = oneLine(err);
      outcomes = policies.map((p) => failedOutcome(p.name, msg, code));
    }
    try {
      const byName = new Map(outcomes.map((o) => [o.policy, o]));
      const now = this.#now();
      for (const e of entries) {
        const o = byName.get(e.policy.name) ?? failedOutcome(e.policy.name, 'no result from the engine', 'INTERNAL');
        try {
          this.#d.observer?.outcome?.(o, action);
        } catch {
          // metrics must never break scheduling
        }
        this.#apply(e, o, action, now);
      }
      const current = entries.map((e) => this.#entries.get(e.policy.name)).filter((e): e is Entry => e !== undefined);
      await this.#load(current);
      for (const e of current) {
        const o = byName.get(e.policy.name);
        if (action === 'rotate' && o?.result === 'rotated' && o.version !== undefined && (e.state?.version ?? 0) < o.version) {
          // The state could not be read back: remember the rotation so it is not repeated at once.
          e.state = { policy: e.policy.name, version: o.version, rotatedAt: iso(now), currentSha256: '', fingerprint: o.fingerprint ?? '', previous: e.state?.previous ?? null, targets: o.targets };
          this.#computeInfo(e);
        }
        if (action === 'retire' && o?.result !== 'failed') {
          // Guards against a busy loop when the engine's clock says grace has not ended yet.
          const v = e.state?.previous?.validUntil;
          e.retireRetryAt = v && Date.parse(v) <= now ? now + this.#o.backoffBaseMs : undefined;
        }
      }
    } finally {
      for (const e of entries) {
        this.#running.delete(e.policy.name);
        this.#claimed.delete(e.policy.name);
      }
      // Not just re-arm: a policy may be due again already (a tick came while it was rotating).
      this.#wake();
    }
  }

  #apply(e: Entry, o: PolicyOutcome, action: Action, now: number): void {
    const cur = this.#entries.get(e.policy.name);
    if (!cur) return; // removed by a reload meanwhile
    const name = cur.policy.name;
    const s = cur.state;
    const fields = { policy: name, version: s?.version ?? 0, fingerprint: s?.fingerprint ?? null };
    const log = this.#d.log;
    if (action === 'retire') {
      if (o.result === 'failed') {
        const wait = o.errorCode === 'LOCKED' ? this.#o.lockedRetryMs : this.#o.backoffBaseMs;
        cur.retireRetryAt = now + wait;
        log.warn({ ...fields, error: o.error }, `${name}: retiring the previous token failed (${o.error ?? 'unknown error'}); trying again in ${formatDuration(wait)}`);
      }
      return;
    }
    if (o.result === 'rotated') {
      cur.failures = 0;
      cur.retryAt = undefined;
      cur.retryCap = undefined;
      cur.retireRetryAt = undefined;
      cur.staleLogged = false;
      return;
    }
    if (o.result !== 'failed') return;
    if (o.errorCode === 'LOCKED') {
      cur.retryAt = now + this.#o.lockedRetryMs;
      cur.retryCap = undefined;
      log.info({ ...fields, busy: true }, `${name}: ${o.error ?? 'locked by another process'}; trying again in ${formatDuration(this.#o.lockedRetryMs)} (not counted as a failure)`);
      return;
    }
    cur.failures++;
    const retryAt = now + backoffMs(cur.failures, this.#o.backoffBaseMs, this.#o.backoffMaxMs);
    let cap: number | undefined;
    try {
      cap = nextRegularAfter(cur.policy, new Date(now))?.getTime();
    } catch {
      cap = undefined;
    }
    cur.retryAt = retryAt;
    cur.retryCap = cap;
    const at = Math.min(retryAt, cap ?? Infinity);
    log.error(
      { ...fields, failures: cur.failures, retryAt: iso(at), errorCode: o.errorCode ?? null, ...(o.rolledBack ? { rolledBack: true } : {}) },
      `${name}: rotation failed (${cur.failures} in a row): ${o.error ?? 'unknown error'}; next attempt ${iso(at)} (in ${formatDuration(at - now)})`,
    );
    if (o.errorCode?.startsWith('OPENSSL')) this.#d.observer?.opensslFailure?.();
  }
}

function failedOutcome(policy: string, msg: string, code: ErrorCode): PolicyOutcome {
  return {
    policy,
    result: 'failed',
    error: msg.startsWith(`${policy}:`) ? msg : `${policy}: ${msg}`,
    errorCode: code,
    exitCode: 1,
    targets: [],
    warnings: [],
    durationMs: 0,
  };
}
