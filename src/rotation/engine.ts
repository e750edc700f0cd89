/**
 * One rotation, all or nothing across a policy's targets:
 *   lock -> recover -> retire -> openssl rand -> openssl dgst -> journal begin -> stage every target
 *   -> verify -> journal promoting -> promote -> journal done -> state -> notify/after-hooks -> unlock
 * Any failure before "promoting" (or in promote) rolls back every target already touched.
 * A process killed at any instant leaves a journal that the next command finishes or undoes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config, Policy } from '../config/types.js';
import type { LockHandle, LockProvider } from '../coordination/lock.js';
import type { Openssl } from '../openssl/index.js';
import type { PolicyState, StateStore } from '../state/store.js';
import type { Logger, RotationContext, Snapshot, Target, TargetEnv } from '../targets/contract.js';
import { createTarget as defaultCreateTarget, loadTargetKinds } from '../targets/registry.js';
import { fingerprint as fingerprintOf } from '../token/encoding.js';
import { RekeyError, describeForeign, type ErrorCode, type ExitCode } from '../util/errors.js';
import { mapLimit } from '../util/limit.js';
import { safeUrl } from '../util/url.js';
import { Secret, redact } from '../util/secret.js';
import { faultPoint } from './fault.js';
import { runHook, runVerify } from './hooks.js';
import { Journal, type JournalRecord, type RecoverySecrets } from './journal.js';
import { DEFAULT_RETRY, withRetry, type RetryPolicy } from './retry.js';

export interface EngineDeps {
  config: Config;
  openssl: Openssl;
  store: StateStore;
  locks: LockProvider;
  log: Logger;
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
  retry?: RetryPolicy;
  createTarget?: (config: Policy['targets'][number], env: TargetEnv) => Target;
}

export interface RotateOptions {
  dryRun?: boolean;
  /** How long to wait for a policy's lock (0: fail at once). */
  waitMs?: number;
  purpose?: string;
}

export type OutcomeResult = 'rotated' | 'failed' | 'planned' | 'retired' | 'recovered' | 'unchanged';

export interface PolicyOutcome {
  policy: string;
  result: OutcomeResult;
  version?: number;
  fingerprint?: string;
  targets: string[];
  /** One line, no secret. */
  error?: string;
  errorCode?: ErrorCode;
  exitCode: ExitCode;
  /** True when the targets were restored after a failure. */
  rolledBack?: boolean;
  /** What was done about an unfinished rotation found in the journal. */
  recovered?: string;
  /** Previous tokens whose grace had ended and were removed. */
  retired?: string;
  /** After commit: webhooks (notify targets) and after-hooks that failed. Reported, never rolled back. */
  postCommitFailures?: { notify: number; afterHooks: number };
  warnings: string[];
  durationMs: number;
}

type ResolvedDeps = Required<Omit<EngineDeps, 'retry' | 'createTarget'>> & { retry: RetryPolicy; createTarget: NonNullable<EngineDeps['createTarget']> };

interface Held {
  policy: Policy;
  lock: LockHandle;
  outcome: PolicyOutcome;
  started: number;
}

export class Engine {
  readonly journal: Journal;
  readonly #d: ResolvedDeps;

  constructor(deps: EngineDeps) {
    this.#d = {
      env: process.env,
      now: () => new Date(),
      retry: DEFAULT_RETRY,
      createTarget: defaultCreateTarget,
      ...deps,
    } as ResolvedDeps;
    this.journal = new Journal(deps.store);
  }

  get config(): Config {
    return this.#d.config;
  }

  /** Rotate the given policies: generation and hashing run once for the batch, the protocol per policy. */
  async rotate(policies: Policy[], opts: RotateOptions = {}): Promise<PolicyOutcome[]> {
    if (opts.dryRun) return Promise.all(policies.map((p) => this.#plan(p)));
    await this.#d.store.init();
    const held = await this.#lockAll(policies, opts);
    const ready = held.filter((h) => h.outcome.result !== 'failed');
    try {
      let tokens: Secret[] = [];
      let hashes: string[] = [];
      try {
        tokens = await this.#d.openssl.generateBatch(ready.map((h) => h.policy.token));
        hashes = await this.#d.openssl.sha256Batch(tokens);
      } catch (e) {
        for (const h of ready) this.#fail(h, e, false);
        return held.map((h) => h.outcome);
      }
      await mapLimit(ready, this.#d.config.concurrency, async (h, i) => {
        try {
          await this.#rotateOne(h, tokens[i]!, hashes[i]!);
        } catch (e) {
          this.#fail(h, e, false);
        } finally {
          tokens[i]!.forget();
        }
      });
    } finally {
      await Promise.all(held.map((h) => h.lock.release().catch(() => undefined)));
      await this.#d.store.closeAudit();
    }
    for (const h of held) h.outcome.durationMs = Date.now() - h.started;
    return held.map((h) => h.outcome);
  }

  /** Remove previous tokens whose grace has ended (the lock phase does the work). */
  async retire(policies: Policy[], opts: RotateOptions = {}): Promise<PolicyOutcome[]> {
    return this.#lockOnly(policies, opts, false, (o) => (o.retired ? 'retired' : o.recovered ? 'recovered' : 'unchanged'));
  }

  /** Finish or undo unfinished rotations (the lock phase of every command already does this). */
  async recover(policies: Policy[], opts: RotateOptions = {}): Promise<PolicyOutcome[]> {
    return this.#lockOnly(policies, opts, true, (o) => (o.recovered ? 'recovered' : 'unchanged'));
  }

  async #lockOnly(policies: Policy[], opts: RotateOptions, skipRetire: boolean, result: (o: PolicyOutcome) => OutcomeResult): Promise<PolicyOutcome[]> {
    await this.#d.store.init();
    const held = await this.#lockAll(policies, { ...opts, skipRetire });
    await Promise.all(held.map((h) => h.lock.release().catch(() => undefined)));
    await this.#d.store.closeAudit();
    for (const h of held) {
      if (h.outcome.result !== 'failed') h.outcome.result = result(h.outcome);
      h.outcome.durationMs = Date.now() - h.started;
    }
    return held.map((h) => h.outcome);
  }

  /** Is this token the current one, or the previous one within grace? Constant-time comparison. */
  async verifyToken(policy: Policy, token: Secret): Promise<{ match: 'current' | 'previous' | 'none'; validUntil?: string; version?: number }> {
    const state = await this.#d.store.read(policy.name);
    const digest = Buffer.from(await this.#d.openssl.sha256(token), 'hex');
    const same = (hex: string | undefined): boolean => {
      if (!hex || !/^[0-9a-f]{64}$/.test(hex)) return false;
      return timingSafeEqual(digest, Buffer.from(hex, 'hex'));
    };
    if (!state) return { match: 'none' };
    const cur = same(state.currentSha256);
    const prev = state.previous !== null && same(state.previous.sha256);
    if (cur) return { match: 'current', version: state.version };
    if (prev && Date.parse(state.previous!.validUntil) > this.#d.now().getTime()) {
      return { match: 'previous', validUntil: state.previous!.validUntil, version: state.version - 1 };
    }
    return { match: 'none' };
  }

  // ---- per-policy steps -------------------------------------------------------------------

  /** Lock every policy, then (once for the batch) sweep leftovers, then recover and retire each. */
  async #lockAll(policies: Policy[], opts: RotateOptions & { skipRetire?: boolean }): Promise<Held[]> {
    await loadTargetKinds(policies.flatMap((p) => p.targets.map((t) => t.type)));
    const held = await mapLimit(policies, this.#d.config.concurrency, async (policy) => {
      const started = Date.now();
      const outcome: PolicyOutcome = { policy: policy.name, result: 'unchanged', targets: policy.targets.map(describeConfig), exitCode: 0, warnings: [], durationMs: 0 };
      const h: Held = { policy, outcome, started, lock: { name: policy.name, release: async () => undefined } };
      try {
        h.lock = await this.#d.locks.acquire(policy.name, {
          waitMs: opts.waitMs ?? 0,
          purpose: opts.purpose ?? 'rotate-now',
          onTakeover: (prev) => {
            const who = prev.pid > 0 ? `dead process ${prev.pid}` : 'a process that died while writing it (incomplete lock file)';
            const msg = `${policy.name}: took over a lock left by ${who}`;
            this.#d.log.warn({ policy: policy.name, stalePid: prev.pid }, msg);
            outcome.warnings.push(msg);
            void this.#d.store.audit({ at: this.#d.now().toISOString(), policy: policy.name, event: 'lock-takeover', reason: `pid ${prev.pid}` }).catch(() => undefined);
          },
        });
      } catch (e) {
        this.#fail(h, e, false);
      }
      return h;
    });
    const locked = held.filter((h) => h.outcome.result !== 'failed');
    await this.journal.sweepTemp(locked.map((h) => h.policy.name));
    await mapLimit(locked, this.#d.config.concurrency, async (h) => {
      try {
        await this.#recoverOne(h);
        if (!opts.skipRetire) await this.#retireOne(h);
      } catch (e) {
        this.#fail(h, e, false);
      }
    });
    return held;
  }

  async #plan(policy: Policy): Promise<PolicyOutcome> {
    const state = await this.#d.store.read(policy.name).catch(() => undefined);
    const pending = await this.journal.read(policy.name).catch(() => undefined);
    return {
      policy: policy.name,
      result: 'planned',
      version: (state?.version ?? 0) + 1,
      targets: policy.targets.map(describeConfig),
      exitCode: 0,
      warnings: pending ? [`an unfinished rotation (v${pending.version}, ${pending.phase}) would be recovered first`] : [],
      durationMs: 0,
    };
  }

  #targets(policy: Policy): Target[] {
    const env: TargetEnv = { policy: policy.name, env: this.#d.env, log: this.#d.log, lockFile: (file) => this.#lockFile(file, policy.name) };
    return policy.targets.map((t) => this.#d.createTarget(t, env));
  }

  /**
   * A file shared by policies (two keys of one env file) is locked across rekey processes for
   * each read-modify-write, in the state's lock directory: the daemon rotating one policy and
   * rotate-now another can then never lose each other's line.
   */
  async #lockFile(file: string, policy: string): Promise<() => Promise<void>> {
    const name = `.file-${createHash('sha256').update(file).digest('hex').slice(0, 24)}`;
    try {
      const h = await this.#d.locks.acquire(name, { waitMs: 10_000, purpose: `write ${file} (${policy})` });
      return () => h.release();
    } catch (e) {
      if (e instanceof RekeyError && e.code === 'LOCKED') {
        throw new RekeyError('TARGET_TRANSIENT', `${file} is being written by another rekey process; try again`);
      }
      throw e;
    }
  }

  async #rotateOne(h: Held, token: Secret, sha256: string): Promise<void> {
    const { policy, outcome } = h;
    const log = this.#d.log;
    const targets = this.#targets(policy);
    try {
      const staged = targets.filter((t) => t.phase === 'stage');
      const notify = targets.filter((t) => t.phase === 'notify');
      outcome.targets = targets.map((t) => t.description);
      const prev = await this.#d.store.read(policy.name);
      const version = (prev?.version ?? 0) + 1;
      // First rotation: the token already in place (set by hand before rekey) becomes the
      // previous one, so it gets the grace period and is retired like any other.
      const previousSha256 = prev?.currentSha256 ?? (await this.#adoptExisting(staged));
      const ctx: RotationContext = {
        policy: policy.name,
        version,
        sha256,
        fingerprint: fingerprintOf(sha256),
        rotatedAt: this.#d.now(),
        graceMs: policy.graceMs,
        token,
        log,
        ...(previousSha256 ? { previousSha256 } : {}),
      };
      if (previousSha256 && policy.targets.some((t) => t.type === 'exec' && t.rollbackCommand)) {
        const pt = await this.#previousToken(staged, previousSha256);
        if (pt) ctx.previousToken = pt;
      }
      const hookRun = { policy: policy.name, token, sha256, env: this.#d.env, ...(ctx.previousToken ? { previousToken: ctx.previousToken } : {}) };
      for (const hook of policy.hooks.before) await runHook(hook, 'before', hookRun);

      const snaps: Snapshot[] = [];
      for (const t of staged) snaps.push(await this.#step(t, 'snapshot', () => t.snapshot(ctx)));
      let rec: JournalRecord = {
        policy: policy.name,
        version,
        phase: 'begin',
        sha256,
        fingerprint: ctx.fingerprint,
        rotatedAt: ctx.rotatedAt.toISOString(),
        graceMs: policy.graceMs,
        ...(previousSha256 ? { previousSha256 } : {}),
        targets: staged.map((t, i) => ({ index: i, kind: t.kind, description: t.description, meta: snaps[i]!.meta })),
        pid: process.pid,
        startedAt: new Date().toISOString(),
      };
      const secrets: RecoverySecrets = {};
      snaps.forEach((s, i) => {
        if (s.secret) secrets[i] = s.secret;
      });
      await this.journal.begin(rec, secrets);
      faultPoint('after-journal', policy.name);

      try {
        for (let i = 0; i < staged.length; i++) {
          const t = staged[i]!;
          await this.#step(t, 'stage', () => t.stage(ctx, snaps[i]!));
          faultPoint(`after-stage-${i}`, policy.name);
        }
        faultPoint('after-stage', policy.name);
        if (policy.verify) await runVerify(policy.verify, hookRun);
        faultPoint('after-verify', policy.name);
        rec = await this.journal.setPhase(rec, 'promoting');
        faultPoint('after-promoting', policy.name);
        for (let i = 0; i < staged.length; i++) {
          const t = staged[i]!;
          await this.#step(t, 'promote', () => t.promote(ctx, snaps[i]!));
          faultPoint(`after-promote-${i}`, policy.name);
        }
        faultPoint('after-promote', policy.name);
      } catch (e) {
        await this.#rollback(h, rec, staged, snaps, ctx, e);
        return;
      }

      // No separate "done" record: a journal still in "promoting" is finished by re-running the
      // idempotent promote, so one fsync per rotation is saved.
      faultPoint('after-done', policy.name);
      await this.#commit(rec, prev, staged.map((t) => t.description));
      outcome.result = 'rotated';
      outcome.version = version;
      outcome.fingerprint = ctx.fingerprint;
      log.info({ policy: policy.name, version, fingerprint: ctx.fingerprint }, `${policy.name}: rotated to v${version}`);

      for (const t of notify) {
        try {
          await t.notify?.(ctx);
        } catch (e) {
          this.#warn(outcome, `${policy.name}: notify ${t.description} failed (not rolled back): ${reasonOf(policy.name, e)}`);
          outcome.postCommitFailures = { notify: 0, afterHooks: 0, ...outcome.postCommitFailures };
          outcome.postCommitFailures.notify++;
        }
      }
      for (const hook of policy.hooks.after) {
        try {
          await runHook(hook, 'after', hookRun);
        } catch (e) {
          this.#warn(outcome, `${policy.name}: after hook failed (not rolled back): ${reasonOf(policy.name, e)}`);
          outcome.postCommitFailures = { notify: 0, afterHooks: 0, ...outcome.postCommitFailures };
          outcome.postCommitFailures.afterHooks++;
        }
      }
    } finally {
      await Promise.all(targets.map((t) => t.close().catch(() => undefined)));
    }
  }

  /** Undo every staged target, newest first; keep the journal if any undo fails so recover can retry. */
  async #rollback(h: Held, rec: JournalRecord, staged: Target[], snaps: Snapshot[], ctx: RotationContext, cause: unknown): Promise<void> {
    const { policy } = h;
    if (rec.phase !== 'begin') rec = await this.journal.setPhase(rec, 'begin');
    const failures: string[] = [];
    for (let i = staged.length - 1; i >= 0; i--) {
      const t = staged[i]!;
      try {
        await this.#step(t, 'rollback', () => t.rollback(ctx, snaps[i]!));
      } catch (e) {
        failures.push(oneLine(e));
      }
    }
    const reason = reasonOf(policy.name, cause);
    const code = cause instanceof RekeyError ? cause.code : 'ROTATION_FAILED';
    if (failures.length === 0) {
      await this.journal.finish(policy.name);
      await this.#d.store.audit({ at: this.#d.now().toISOString(), policy: policy.name, event: 'rolled-back', version: rec.version, fingerprint: rec.fingerprint, reason });
      this.#fail(h, new RekeyError(code, `${policy.name}: ${reason}; rolled back, the old token stays valid`, { exitCode: 1 }), true);
    } else {
      this.#fail(h, new RekeyError('RECOVERY', `${policy.name}: ${reason}; rollback incomplete (${failures.join('; ')}); run "rekey recover ${policy.name}" once the target is reachable`), false);
    }
  }

  /** Write the state from a journal record in phase "done", then drop the journal. */
  async #commit(rec: JournalRecord, prev: PolicyState | undefined, descriptions: string[]): Promise<void> {
    faultPoint('before-state', rec.policy);
    const writeState = !prev || prev.version < rec.version;
    if (writeState) {
      const rotatedAt = new Date(rec.rotatedAt);
      const state: PolicyState = {
        policy: rec.policy,
        version: rec.version,
        rotatedAt: rec.rotatedAt,
        currentSha256: rec.sha256,
        fingerprint: rec.fingerprint,
        previous: rec.previousSha256
          ? { sha256: rec.previousSha256, fingerprint: fingerprintOf(rec.previousSha256), validUntil: new Date(rotatedAt.getTime() + rec.graceMs).toISOString() }
          : null,
        targets: descriptions,
      };
      await this.#d.store.write(state);
    }
    faultPoint('after-state', rec.policy);
    // The audit line goes in before the journal is dropped, so a crash cannot lose it. A crash
    // between the two repeats this commit, which finds the line (the state was already written)
    // and does not write it twice.
    const rotated = { policy: rec.policy, event: 'rotated' as const, version: rec.version, fingerprint: rec.fingerprint };
    if (writeState || !(await this.#d.store.hasAudit(rotated))) {
      await this.#d.store.audit({
        at: this.#d.now().toISOString(),
        ...rotated,
        ...(rec.previousSha256 ? { previousFingerprint: fingerprintOf(rec.previousSha256) } : {}),
        targets: descriptions,
      });
    }
    faultPoint('after-audit', rec.policy);
    await this.journal.finish(rec.policy);
    await this.#d.store.recordAttempt(rec.policy, 'success', this.#d.now(), { version: rec.version });
  }

  /** Finish (phase promoting/done) or undo (phase begin) a rotation a dead process left behind. */
  async #recoverOne(h: Held): Promise<void> {
    const { policy, outcome } = h;
    const rec = await this.journal.read(policy.name);
    if (!rec) {
      await this.journal.dropOrphanRecovery(policy.name);
      return;
    }
    const targets = this.#targets(policy);
    try {
      const staged = targets.filter((t) => t.phase === 'stage');
      const same = staged.length === rec.targets.length && staged.every((t, i) => t.kind === rec.targets[i]!.kind && t.description === rec.targets[i]!.description);
      if (!same) {
        throw new RekeyError('RECOVERY', `${policy.name}: an unfinished rotation (v${rec.version}) used other targets than the config now lists; restore the config it ran with, run "rekey recover ${policy.name}", then apply the change`);
      }
      const secrets = await this.journal.readRecovery(policy.name);
      const snaps: Snapshot[] = rec.targets.map((t) => ({ meta: t.meta, ...(secrets[t.index] ? { secret: secrets[t.index] } : {}) }));
      const ctx: RotationContext = {
        policy: policy.name,
        version: rec.version,
        sha256: rec.sha256,
        fingerprint: rec.fingerprint,
        rotatedAt: new Date(rec.rotatedAt),
        graceMs: rec.graceMs,
        log: this.#d.log,
        ...(rec.previousSha256 ? { previousSha256: rec.previousSha256 } : {}),
      };
      const prev = await this.#d.store.read(policy.name);
      let msg: string;
      if (rec.phase === 'begin') {
        for (let i = staged.length - 1; i >= 0; i--) {
          const t = staged[i]!;
          await this.#step(t, 'rollback', () => t.rollback(ctx, snaps[i]!));
        }
        await this.journal.finish(policy.name);
        await this.#d.store.audit({ at: this.#d.now().toISOString(), policy: policy.name, event: 'recovered', version: rec.version, fingerprint: rec.fingerprint, reason: 'rolled back an unfinished rotation' });
        await this.#d.store.recordAttempt(policy.name, 'failure', this.#d.now(), { version: rec.version, error: 'interrupted; rolled back' });
        msg = `${policy.name}: rolled back an unfinished rotation to v${rec.version} (started by pid ${rec.pid} at ${rec.startedAt}); v${prev?.version ?? 0} stays current`;
      } else {
        if (rec.phase === 'promoting') {
          for (let i = 0; i < staged.length; i++) {
            const t = staged[i]!;
            await this.#step(t, 'promote', () => t.promote(ctx, snaps[i]!));
          }
        }
        await this.#commit({ ...rec, phase: 'done' }, prev, staged.map((t) => t.description));
        msg = `${policy.name}: completed an unfinished rotation to v${rec.version} (started by pid ${rec.pid} at ${rec.startedAt})`;
      }
      outcome.recovered = msg;
      outcome.warnings.push(msg);
      this.#d.log.warn({ policy: policy.name, version: rec.version, fingerprint: rec.fingerprint }, msg);
    } finally {
      await Promise.all(targets.map((t) => t.close().catch(() => undefined)));
    }
  }

  async #retireOne(h: Held): Promise<void> {
    const { policy, outcome } = h;
    const state = await this.#d.store.read(policy.name);
    const now = this.#d.now();
    if (!state?.previous || Date.parse(state.previous.validUntil) > now.getTime()) return;
    const targets = this.#targets(policy);
    try {
      for (const t of targets.filter((x) => x.phase === 'stage')) {
        await this.#step(t, 'retire', () => t.retire({ policy: policy.name, now, previousSha256: state.previous!.sha256, log: this.#d.log }));
      }
    } finally {
      await Promise.all(targets.map((t) => t.close().catch(() => undefined)));
    }
    const fp = state.previous.fingerprint;
    await this.#d.store.write({ ...state, previous: null });
    await this.#d.store.audit({ at: now.toISOString(), policy: policy.name, event: 'retired', version: state.version - 1, fingerprint: fp });
    outcome.retired = `${policy.name}: retired the previous token ${fp} (grace ended ${state.previous.validUntil})`;
    this.#d.log.info({ policy: policy.name, version: state.version - 1, fingerprint: fp }, outcome.retired);
  }

  /** The hash of a token some target already holds (first one that can be read back). */
  async #adoptExisting(targets: Target[]): Promise<string | undefined> {
    for (const t of targets) {
      const h = await t.readBack().catch(() => undefined);
      if (h && /^[0-9a-f]{64}$/.test(h)) return h;
    }
    return undefined;
  }

  async #previousToken(targets: Target[], expected: string): Promise<Secret | undefined> {
    for (const t of targets) {
      if (!t.readCurrentToken) continue;
      const s = await t.readCurrentToken().catch(() => undefined);
      if (s && createHash('sha256').update(s.reveal()).digest('hex') === expected) return s;
    }
    return undefined;
  }

  /** Run one target step with retries of transient errors; foreign errors become one safe line. */
  async #step<T>(t: Target, step: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(fn, this.#d.retry, (n, e) => {
        this.#d.log.warn({ target: t.description, step, attempt: n }, `${t.description}: ${step} failed (${oneLine(e)}), retrying`);
      });
    } catch (e) {
      if (e instanceof RekeyError) throw e;
      throw new RekeyError('TARGET', `${step} on ${t.description} failed: ${describeForeign(e)}`);
    }
  }

  #warn(outcome: PolicyOutcome, msg: string): void {
    outcome.warnings.push(msg);
    this.#d.log.warn({ policy: outcome.policy }, msg);
  }

  #fail(h: Held, e: unknown, rolledBack: boolean): void {
    const err = e instanceof RekeyError ? e : new RekeyError('INTERNAL', `${h.policy.name}: ${describeForeign(e)}`);
    const msg = oneLine(err);
    h.outcome.result = 'failed';
    h.outcome.error = msg.startsWith(`${h.policy.name}:`) ? msg : `${h.policy.name}: ${msg}`;
    h.outcome.errorCode = err.code;
    h.outcome.exitCode = err.exitCode === 0 ? 1 : err.exitCode;
    if (rolledBack) h.outcome.rolledBack = true;
    // A busy lock is an expected outcome (the caller retries or reports it), not an error.
    if (err.code === 'LOCKED') this.#d.log.info({ policy: h.policy.name }, h.outcome.error);
    else this.#d.log.error({ policy: h.policy.name }, h.outcome.error);
    if (err.code !== 'LOCKED') {
      void this.#d.store.recordAttempt(h.policy.name, 'failure', this.#d.now(), { error: h.outcome.error }).catch(() => undefined);
    }
  }
}

function oneLine(e: unknown): string {
  const m = e instanceof RekeyError ? e.message : describeForeign(e);
  return redact(m.split('\n')[0] ?? '');
}

/** oneLine without a leading "<policy>: " (hook and verify errors carry it), so messages don't say it twice. */
function reasonOf(policy: string, e: unknown): string {
  const m = oneLine(e);
  return m.startsWith(`${policy}: `) ? m.slice(policy.length + 2) : m;
}

/** A target's description before it is built (dry runs, failures before construction). */
export function describeConfig(t: Policy['targets'][number]): string {
  switch (t.type) {
    case 'env-file':
      return `env-file ${t.path} ${t.key}`;
    case 'file':
      return `file ${t.path} ${t.content}`; // as the file target describes itself
    case 'postgres':
      return `postgres ${safeUrl(t.url)} ${t.table}`;
    case 'redis':
      return `redis ${safeUrl(t.url)} ${t.key}`;
    case 'vault-kv':
      return `vault-kv ${safeUrl(t.address)} ${t.mount}/${t.path}#${t.field}`;
    case 'aws-secrets-manager':
      return `aws-secrets-manager ${t.secretId}${t.jsonKey ? `#${t.jsonKey}` : ''}`;
    case 'exec':
      return `exec ${t.command[0]}`;
    case 'webhook':
      return `webhook ${safeUrl(t.url)}`;
  }
}
