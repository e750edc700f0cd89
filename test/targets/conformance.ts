/**
 * The conformance suite every target kind passes: stage, promote, rollback, read-back,
 * idempotent retry, recovery without the plaintext, retire, and no secret in any error.
 * Usage, in test/targets/<kind>.test.ts:
 *   runConformance({ name: 'env-file', setup: async () => ({...}), broken: async () => ({...}) });
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { renderError } from '../../src/cli/render.js';
import type { Logger, RotationContext, Target } from '../../src/targets/contract.js';
import { RekeyError } from '../../src/util/errors.js';
import { Secret } from '../../src/util/secret.js';

export interface Fixture {
  target: Target;
  /**
   * The value the target currently holds, read independently of the target's own code
   * (read the file, query the table, GET the double): the token, its hash, or undefined if empty.
   */
  current(): Promise<string | undefined>;
  /** What current() returns for a token: the token itself or its sha256 hex. */
  holds: 'token' | 'sha256';
  /** Put an initial value in place, as if an earlier rotation had written `token`. */
  seed(token: string): Promise<void>;
  teardown(): Promise<void>;
}

export interface BrokenFixture {
  /** A target whose every call fails: permission denied, server down, 403, 500... */
  target: Target;
  /** Text the target may have logged, searched for the token too. */
  logs?(): string;
  teardown(): Promise<void>;
}

export interface ConformanceHarness {
  name: string;
  setup(): Promise<Fixture>;
  broken?(): Promise<BrokenFixture>;
  /** Targets that cannot promote without their own state (none today) may skip recovery tests. */
  skip?: Array<'retire' | 'readBack'>;
}

export function captureLogger(): Logger & { text(): string } {
  const lines: string[] = [];
  const push = (obj: Record<string, unknown>, msg: string) => lines.push(`${msg} ${JSON.stringify(obj)}`);
  return { info: push, warn: push, error: push, text: () => lines.join('\n') };
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export function makeToken(): string {
  return `tok_${randomBytes(24).toString('base64url')}`;
}

export function makeContext(policy: string, token: string, version: number, previous?: string, log: Logger = captureLogger()): RotationContext {
  const hash = sha256(token);
  return {
    policy,
    version,
    sha256: hash,
    fingerprint: hash.slice(0, 8),
    rotatedAt: new Date(),
    graceMs: 3_600_000,
    token: new Secret(token),
    ...(previous !== undefined ? { previousSha256: sha256(previous), previousToken: new Secret(previous) } : {}),
    log,
  };
}

function withoutToken(ctx: RotationContext): RotationContext {
  const { token: _t, previousToken: _p, ...rest } = ctx;
  return rest;
}

export function runConformance(h: ConformanceHarness): void {
  describe(`target conformance: ${h.name}`, () => {
    let fx: Fixture | undefined;
    afterEach(async () => {
      await fx?.target.close();
      await fx?.teardown();
      fx = undefined;
    });
    const expected = (f: Fixture, token: string) => (f.holds === 'token' ? token : sha256(token));

    it('stage + promote makes the new token current; readBack agrees', async () => {
      fx = await h.setup();
      const old = makeToken();
      await fx.seed(old);
      const next = makeToken();
      const ctx = makeContext('conf', next, 2, old);
      const snap = await fx.target.snapshot(ctx);
      JSON.stringify(snap); // the snapshot must be serialisable for the journal
      expect(JSON.stringify(snap.meta)).not.toContain(old);
      expect(JSON.stringify(snap.meta)).not.toContain(next);
      await fx.target.stage(ctx, snap);
      await fx.target.promote(ctx, snap);
      expect(await fx.current()).toBe(expected(fx, next));
      if (!h.skip?.includes('readBack')) expect(await fx.target.readBack()).toBe(sha256(next));
    });

    it('stage is idempotent: a retried stage and promote give the same result', async () => {
      fx = await h.setup();
      const old = makeToken();
      await fx.seed(old);
      const next = makeToken();
      const ctx = makeContext('conf', next, 2, old);
      const snap = await fx.target.snapshot(ctx);
      await fx.target.stage(ctx, snap);
      await fx.target.stage(ctx, snap);
      await fx.target.promote(ctx, snap);
      await fx.target.promote(ctx, snap);
      expect(await fx.current()).toBe(expected(fx, next));
    });

    it('rollback after stage restores the previous value, and is idempotent', async () => {
      fx = await h.setup();
      const old = makeToken();
      await fx.seed(old);
      const before = await fx.current();
      const ctx = makeContext('conf', makeToken(), 2, old);
      const snap = await fx.target.snapshot(ctx);
      await fx.target.stage(ctx, snap);
      await fx.target.rollback(ctx, snap);
      await fx.target.rollback(ctx, snap);
      expect(await fx.current()).toBe(before);
    });

    it('rollback after promote restores the previous value', async () => {
      fx = await h.setup();
      const old = makeToken();
      await fx.seed(old);
      const before = await fx.current();
      const ctx = makeContext('conf', makeToken(), 2, old);
      const snap = await fx.target.snapshot(ctx);
      await fx.target.stage(ctx, snap);
      await fx.target.promote(ctx, snap);
      await fx.target.rollback(ctx, snap);
      expect(await fx.current()).toBe(before);
    });

    it('rollback when stage never ran changes nothing', async () => {
      fx = await h.setup();
      const old = makeToken();
      await fx.seed(old);
      const before = await fx.current();
      const ctx = makeContext('conf', makeToken(), 2, old);
      const snap = await fx.target.snapshot(ctx);
      await fx.target.rollback(ctx, snap);
      expect(await fx.current()).toBe(before);
    });

    it('promote and rollback work from the journal alone (no plaintext, after a crash)', async () => {
      fx = await h.setup();
      const old = makeToken();
      await fx.seed(old);
      const before = await fx.current();
      const next = makeToken();
      const ctx = makeContext('conf', next, 2, old);
      const snap = JSON.parse(JSON.stringify(await fx.target.snapshot(ctx)));
      await fx.target.stage(ctx, snap);
      await fx.target.promote(withoutToken(ctx), snap);
      expect(await fx.current()).toBe(expected(fx, next));
      await fx.target.rollback(withoutToken(ctx), snap);
      expect(await fx.current()).toBe(before);
    });

    it('two rotations in a row, then retire, leave the latest token current', async () => {
      if (h.skip?.includes('retire')) return;
      fx = await h.setup();
      const t1 = makeToken();
      await fx.seed(t1);
      const t2 = makeToken();
      const c2 = makeContext('conf', t2, 2, t1);
      const s2 = await fx.target.snapshot(c2);
      await fx.target.stage(c2, s2);
      await fx.target.promote(c2, s2);
      const t3 = makeToken();
      const c3 = makeContext('conf', t3, 3, t2);
      const s3 = await fx.target.snapshot(c3);
      await fx.target.stage(c3, s3);
      await fx.target.promote(c3, s3);
      const log = captureLogger();
      await fx.target.retire({ policy: 'conf', now: new Date(Date.now() + 7_200_000), previousSha256: sha256(t2), log });
      await fx.target.retire({ policy: 'conf', now: new Date(Date.now() + 7_200_000), previousSha256: sha256(t2), log });
      expect(await fx.current()).toBe(expected(fx, t3));
    });

    if (h.broken) {
      it('every failure is a one-line RekeyError that holds no token and no credential', async () => {
        const b = await h.broken!();
        try {
          const token = makeToken();
          const previous = makeToken();
          const log = captureLogger();
          const ctx = makeContext('conf', token, 2, previous, log);
          const snap = { meta: {}, secret: {} };
          const calls: Array<[string, () => Promise<unknown>]> = [
            ['snapshot', () => b.target.snapshot(ctx)],
            ['stage', () => b.target.stage(ctx, snap)],
            ['promote', () => b.target.promote(ctx, snap)],
            ['rollback', () => b.target.rollback(ctx, snap)],
            ['retire', () => b.target.retire({ policy: 'conf', now: new Date(), previousSha256: sha256(previous), log })],
            ...(b.target.notify ? [['notify', () => b.target.notify!(ctx)] as [string, () => Promise<unknown>]] : []),
          ];
          let failures = 0;
          for (const [name, call] of calls) {
            let err: unknown;
            try {
              await call();
            } catch (e) {
              err = e;
            }
            if (err === undefined) continue; // some steps are no-ops for some kinds
            failures++;
            expect(err, `${name} must throw a RekeyError`).toBeInstanceOf(RekeyError);
            const shown = `${renderError(err)}\n${(err as Error).message}\n${String((err as Error).stack)}`;
            expect(shown, `${name} error leaks the token`).not.toContain(token);
            expect(shown, `${name} error leaks the previous token`).not.toContain(previous);
            expect((err as Error).message.includes('\n'), `${name} error must be one line`).toBe(false);
          }
          expect(failures, 'the broken fixture must make at least one step fail').toBeGreaterThan(0);
          const logs = `${log.text()}\n${b.logs?.() ?? ''}`;
          expect(logs).not.toContain(token);
          expect(logs).not.toContain(previous);
        } finally {
          await b.target.close().catch(() => undefined);
          await b.teardown();
        }
      });
    }
  });
}
