import { describe, expect, it } from 'vitest';
import { Health } from '../../src/observability/health.js';
import { formatListen, parseListen, startHttpServer } from '../../src/observability/http.js';
import { DaemonMetrics, METRIC_NAMES, type MetricsPolicyView } from '../../src/observability/metrics.js';
import type { PolicyOutcome } from '../../src/rotation/engine.js';
import { RekeyError } from '../../src/util/errors.js';

const outcome = (policy: string, result: PolicyOutcome['result'], extra: Partial<PolicyOutcome> = {}): PolicyOutcome => ({
  policy,
  result,
  targets: [],
  exitCode: result === 'failed' ? 1 : 0,
  warnings: [],
  durationMs: 1500,
  ...extra,
});

describe('--listen', () => {
  it('accepts HOST:PORT with an explicit host', () => {
    expect(parseListen('127.0.0.1:9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseListen('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    expect(parseListen('localhost:0')).toEqual({ host: 'localhost', port: 0 });
    expect(parseListen('0.0.0.0:80')).toEqual({ host: '0.0.0.0', port: 80 });
    expect(formatListen({ host: '::1', port: 1 })).toBe('[::1]:1');
  });

  it.each(['9464', ':9464', '127.0.0.1', '127.0.0.1:', '127.0.0.1:65536', '127.0.0.1:abc', '::1:9464', '[nope]:1', '999.0.0.1:80', 'http://127.0.0.1:9464', 'a b:1', ''])(
    'rejects %j as a usage error (exit 2)',
    (value) => {
      let err: unknown;
      try {
        parseListen(value);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RekeyError);
      expect((err as RekeyError).exitCode).toBe(2);
      expect((err as RekeyError).message).toContain('HOST:PORT');
    },
  );
});

describe('metrics endpoint', () => {
  it('serves the Prometheus text format, health as JSON, and 404 elsewhere; binds only the given address', async () => {
    const views: MetricsPolicyView[] = [
      { policy: 'a', rotatedAt: '2025-01-01T00:00:00.000Z', nextAttemptAt: new Date('2025-01-31T00:00:00.000Z'), tokenAgeMs: 90_000, stale: false },
      { policy: 'old', rotatedAt: '2024-01-01T00:00:00.000Z', nextAttemptAt: new Date('2024-02-01T00:00:00.000Z'), tokenAgeMs: 400 * 86_400_000, stale: true },
      { policy: 'never', nextAttemptAt: new Date('2025-01-01T00:00:00.000Z'), stale: false },
      { policy: 'manual', stale: false },
    ];
    const metrics = new DaemonMetrics({ views: () => views });
    metrics.recordOutcome(outcome('a', 'rotated', { version: 2, postCommitFailures: { notify: 1, afterHooks: 0 } }), 'rotate');
    metrics.recordOutcome(outcome('old', 'failed', { errorCode: 'TARGET' }), 'rotate');
    metrics.recordOutcome(outcome('old', 'failed', { errorCode: 'LOCKED' }), 'rotate');
    metrics.recordOutcome(outcome('a', 'retired'), 'retire');
    const health = new Health();
    health.setScheduler(true);
    health.setOpenssl(true, new Date());
    const server = await startHttpServer({ host: '127.0.0.1', port: 0 }, { metrics: () => metrics.render(), health: () => health.status() });
    try {
      const base = `http://127.0.0.1:${server.address.port}`;
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const body = await res.text();
      for (const name of METRIC_NAMES) expect(body).toContain(`# HELP ${name} `);
      expect(body).toContain('rekey_rotations_total{policy="a",result="success"} 1');
      expect(body).toContain('rekey_rotations_total{policy="old",result="failure"} 1');
      expect(body).toContain('rekey_rotations_total{policy="old",result="locked"} 1');
      expect(body).toContain('rekey_rotations_total{policy="never",result="failure"} 0'); // zero-initialised
      expect(body).toContain('rekey_rotation_duration_seconds_bucket{le="2.5"} 2');
      expect(body).toContain('rekey_rotation_duration_seconds_count 2');
      expect(body).toContain('rekey_last_success_timestamp_seconds{policy="a"} 1735689600');
      expect(body).toContain('rekey_next_rotation_timestamp_seconds{policy="a"} 1738281600');
      expect(body).not.toContain('rekey_next_rotation_timestamp_seconds{policy="manual"}');
      expect(body).toContain('rekey_token_age_seconds{policy="a"} 90');
      expect(body).not.toContain('rekey_token_age_seconds{policy="never"}');
      expect(body).toContain('rekey_policy_stale{policy="old"} 1');
      expect(body).toContain('rekey_policy_stale{policy="a"} 0');
      expect(body).toContain('rekey_retirements_total{policy="a",result="success"} 1');
      expect(body).toContain('rekey_post_commit_failures_total{policy="a",kind="notify"} 1');

      const ok = await fetch(`${base}/healthz`);
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ ok: true, scheduler: 'running', openssl: 'ok' });
      health.setOpenssl(false, new Date(), 'openssl at /usr/bin/openssl failed its self-test');
      const bad = await fetch(`${base}/healthz`);
      expect(bad.status).toBe(503);
      expect(await bad.json()).toMatchObject({ ok: false, openssl: 'failed', opensslError: 'openssl at /usr/bin/openssl failed its self-test' });
      health.setOpenssl(true, new Date());
      health.setScheduler(false);
      expect((await fetch(`${base}/healthz`)).status).toBe(503);

      for (const path of ['/', '/metrics/', '/health', '/healthz/x', '/favicon.ico']) expect((await fetch(`${base}${path}`)).status).toBe(404);
      expect((await fetch(`${base}/metrics`, { method: 'DELETE' })).status).toBe(404);
      expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);
      // 127.0.0.2 is loopback too on Linux: the listener must not answer there.
      await expect(fetch(`http://127.0.0.2:${server.address.port}/metrics`)).rejects.toThrow();
    } finally {
      await server.close();
    }
  });

  it('a port in use is an environment error (exit 3), not a stack trace', async () => {
    const first = await startHttpServer({ host: '127.0.0.1', port: 0 }, { metrics: async () => ({ contentType: 'text/plain', body: '' }), health: () => new Health().status() });
    try {
      const err = await startHttpServer(first.address, { metrics: async () => ({ contentType: 'text/plain', body: '' }), health: () => new Health().status() }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RekeyError);
      expect((err as RekeyError).exitCode).toBe(3);
      expect((err as RekeyError).message).toContain('EADDRINUSE');
    } finally {
      await first.close();
    }
  });
});
