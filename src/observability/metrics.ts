/**
 * Prometheus metrics (prom-client, a Registry of our own: nothing global, no default process
 * metrics and their event-loop sampler). Per-policy gauges are computed at scrape time from the
 * scheduler's view, so they are never out of date and cost nothing between scrapes.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PolicyOutcome } from '../rotation/engine.js';

/** What the gauges read at scrape time (the scheduler's PolicyView, trimmed). */
export interface MetricsPolicyView {
  policy: string;
  rotatedAt?: string;
  nextAttemptAt?: Date;
  tokenAgeMs?: number;
  stale: boolean;
}

export interface MetricsSource {
  views(): MetricsPolicyView[];
}

export const METRIC_NAMES = [
  'rekey_rotations_total',
  'rekey_rotation_duration_seconds',
  'rekey_last_success_timestamp_seconds',
  'rekey_next_rotation_timestamp_seconds',
  'rekey_token_age_seconds',
  'rekey_policy_stale',
  'rekey_retirements_total',
  'rekey_config_reloads_total',
  'rekey_openssl_up',
  'rekey_scheduler_up',
] as const;

export type RotationResultLabel = 'success' | 'failure' | 'locked';

export class DaemonMetrics {
  readonly registry = new Registry();
  readonly #rotations: Counter<'policy' | 'result'>;
  readonly #retirements: Counter<'policy' | 'result'>;
  readonly #duration: Histogram;
  readonly #reloads: Counter<'result'>;
  readonly #postCommit: Counter<'policy' | 'kind'>;
  readonly #opensslUp: Gauge;
  readonly #schedulerUp: Gauge;

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    const seen = new Set<string>();
    this.#rotations = new Counter({
      name: 'rekey_rotations_total',
      help: 'Rotation attempts by the daemon, by policy and result (success, failure, locked: skipped because another process held the policy)',
      labelNames: ['policy', 'result'],
      registers,
      collect: () => {
        // Zero-initialise every policy's series so rate() and alerts see them from the start.
        for (const v of source.views()) {
          if (seen.has(v.policy)) continue;
          seen.add(v.policy);
          for (const result of ['success', 'failure'] as const) this.#rotations.inc({ policy: v.policy, result }, 0);
        }
      },
    });
    this.#retirements = new Counter({
      name: 'rekey_retirements_total',
      help: 'Retirements of previous tokens after their grace period, by policy and result',
      labelNames: ['policy', 'result'],
      registers,
    });
    this.#postCommit = new Counter({
      name: 'rekey_post_commit_failures_total',
      help: 'Failures after a rotation was committed (kind: notify = a webhook, after_hook); reported, never rolled back',
      labelNames: ['policy', 'kind'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'rekey_rotation_duration_seconds',
      help: 'Duration of one policy rotation (lock to unlock), successful or not',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    new Gauge({
      name: 'rekey_last_success_timestamp_seconds',
      help: 'Unix time of the last successful rotation of the policy (by the daemon or rotate-now)',
      labelNames: ['policy'],
      registers,
      collect() {
        this.reset();
        for (const v of source.views()) {
          const t = v.rotatedAt ? Date.parse(v.rotatedAt) : NaN;
          if (!Number.isNaN(t)) this.set({ policy: v.policy }, t / 1000);
        }
      },
    });
    new Gauge({
      name: 'rekey_next_rotation_timestamp_seconds',
      help: 'Unix time of the next rotation attempt (past: overdue); absent for manual-only policies',
      labelNames: ['policy'],
      registers,
      collect() {
        this.reset();
        for (const v of source.views()) if (v.nextAttemptAt) this.set({ policy: v.policy }, v.nextAttemptAt.getTime() / 1000);
      },
    });
    new Gauge({
      name: 'rekey_token_age_seconds',
      help: 'Age of the current token of the policy; absent when it never rotated',
      labelNames: ['policy'],
      registers,
      collect() {
        this.reset();
        for (const v of source.views()) if (v.tokenAgeMs !== undefined) this.set({ policy: v.policy }, v.tokenAgeMs / 1000);
      },
    });
    new Gauge({
      name: 'rekey_policy_stale',
      help: '1 when the current token is older than the policy maxAge, else 0',
      labelNames: ['policy'],
      registers,
      collect() {
        this.reset();
        for (const v of source.views()) this.set({ policy: v.policy }, v.stale ? 1 : 0);
      },
    });
    this.#reloads = new Counter({
      name: 'rekey_config_reloads_total',
      help: 'Config reloads (SIGHUP) by result: success, failure (the old config stays in effect)',
      labelNames: ['result'],
      registers,
    });
    this.#reloads.inc({ result: 'success' }, 0);
    this.#reloads.inc({ result: 'failure' }, 0);
    this.#opensslUp = new Gauge({ name: 'rekey_openssl_up', help: '1 when the last openssl probe (self-test) passed', registers });
    this.#schedulerUp = new Gauge({ name: 'rekey_scheduler_up', help: '1 while the scheduler runs', registers });
  }

  recordOutcome(o: PolicyOutcome, action: 'rotate' | 'retire'): void {
    if (action === 'retire') {
      if (o.result === 'retired' || o.result === 'failed') this.#retirements.inc({ policy: o.policy, result: o.result === 'retired' ? 'success' : 'failure' });
      return;
    }
    if (o.result !== 'rotated' && o.result !== 'failed') return;
    const result: RotationResultLabel = o.result === 'rotated' ? 'success' : o.errorCode === 'LOCKED' ? 'locked' : 'failure';
    this.#rotations.inc({ policy: o.policy, result });
    if (o.postCommitFailures?.notify) this.#postCommit.inc({ policy: o.policy, kind: 'notify' }, o.postCommitFailures.notify);
    if (o.postCommitFailures?.afterHooks) this.#postCommit.inc({ policy: o.policy, kind: 'after_hook' }, o.postCommitFailures.afterHooks);
    if (result !== 'locked') this.#duration.observe(o.durationMs / 1000);
  }

  recordReload(ok: boolean): void {
    this.#reloads.inc({ result: ok ? 'success' : 'failure' });
  }

  setOpensslUp(ok: boolean): void {
    this.#opensslUp.set(ok ? 1 : 0);
  }

  setSchedulerUp(ok: boolean): void {
    this.#schedulerUp.set(ok ? 1 : 0);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
