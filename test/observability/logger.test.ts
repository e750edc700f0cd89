import { describe, expect, it } from 'vitest';
import { createLogger, formatPretty } from '../../src/observability/logger.js';
import type { Logger } from '../../src/targets/contract.js';
import { Secret, registerSecret } from '../../src/util/secret.js';

function capture(format: 'json' | 'pretty') {
  const lines: string[] = [];
  const log = createLogger({ format, write: (l) => lines.push(l) });
  return { log, lines, text: () => lines.join('') };
}

describe('daemon logger', () => {
  it('writes one JSON object per line with level, time, message and the rotation fields', () => {
    const { log, lines } = capture('json');
    const asContract: Logger = log; // it is what the engine takes
    asContract.info({ policy: 'billing', version: 3, fingerprint: '1a2b3c4d' }, 'billing: rotated to v3');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('\n')).toBe(true);
    const rec = JSON.parse(lines[0]!);
    expect(rec).toMatchObject({ level: 'info', msg: 'billing: rotated to v3', policy: 'billing', version: 3, fingerprint: '1a2b3c4d', pid: process.pid });
    expect(new Date(rec.time).toISOString()).toBe(rec.time);
  });

  it('redacts a registered token even when code logs it by mistake, in every place it can hide', () => {
    const secret = new Secret('rk_live_Zm9vYmFyYmF6cXV4LXRva2VuLTEyMzQ1');
    const value = secret.reveal();
    const credential = 'hunter2-database-password';
    registerSecret(credential);
    for (const format of ['json', 'pretty'] as const) {
      const { log, text } = capture(format);
      log.info({ policy: 'p', token: secret }, 'a Secret object');
      log.warn({ policy: 'p', leaked: value, nested: { deeper: [`x ${value} y`] } }, `oops: ${value}`);
      log.error({ policy: 'p', err: new Error(`connect failed for postgres://app:${credential}@db/x with ${value}`) }, 'error object');
      log.info({ url: `postgres://app:${credential}@db/x` }, `credential ${credential}`);
      const out = text();
      expect(out).not.toContain(value);
      expect(out).not.toContain(credential);
      expect(out.split('[redacted]').length - 1).toBeGreaterThanOrEqual(7);
    }
    secret.forget();
  });

  it('pretty mode prints readable lines: time, level, message, key=value fields', () => {
    const { log, lines } = capture('pretty');
    log.warn({ policy: 'billing', version: 2, fingerprint: 'abcd1234', note: 'two words' }, 'billing: something');
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN  billing: something {2}policy=billing version=2 fingerprint=abcd1234 note="two words"\n$/);
    expect(formatPretty('not json')).toBe('not json\n');
  });

  it('honours the level', () => {
    const lines: string[] = [];
    const log = createLogger({ format: 'json', write: (l) => lines.push(l), level: 'warn' });
    log.info({}, 'hidden');
    log.debug({}, 'hidden');
    log.warn({}, 'shown');
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['shown']);
  });
});
