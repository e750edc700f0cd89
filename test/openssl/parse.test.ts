import { describe, expect, it } from 'vitest';
import { parseDgstR } from '../../src/openssl/index.js';
import { RekeyError } from '../../src/util/errors.js';

const ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const EMPTY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function expectBad(fn: () => unknown, marker?: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(RekeyError);
  const err = caught as RekeyError;
  expect(err.code).toBe('OPENSSL_BAD_OUTPUT');
  expect(err.exitCode).toBe(3);
  expect(err.message).toMatch(/^openssl dgst printed unexpected output \(expected \d+ lines? of 64 hex digits\)$/);
  if (marker !== undefined) expect(err.message).not.toContain(marker);
}

describe('parseDgstR', () => {
  it('parses the -r line for stdin (same in OpenSSL 1.1.1 and 3.x)', () => {
    expect(parseDgstR(`${ABC} *stdin\n`, 1)).toEqual([ABC]);
    expect(parseDgstR(`${ABC} *stdin`, 1)).toEqual([ABC]);
    expect(parseDgstR(`${ABC} *stdin\n`, 1, ['stdin'])).toEqual([ABC]);
  });

  it('parses one line per file, in order (3.x and 1.1.1 -r print the same)', () => {
    const out = `${ABC} */tmp/rekey-dgst-x/p0\n${EMPTY} */tmp/rekey-dgst-x/p1\n${ABC} */tmp/rekey-dgst-x/p2\n`;
    expect(parseDgstR(out, 3)).toEqual([ABC, EMPTY, ABC]);
    expect(parseDgstR(out, 3, ['/tmp/rekey-dgst-x/p0', '/tmp/rekey-dgst-x/p1', '/tmp/rekey-dgst-x/p2'])).toEqual([ABC, EMPTY, ABC]);
  });

  it('accepts a file name with spaces', () => {
    expect(parseDgstR(`${ABC} */tmp/a b/p0\n`, 1, ['/tmp/a b/p0'])).toEqual([ABC]);
  });

  it('rejects the non -r formats of 1.1.1 and 3.x', () => {
    expectBad(() => parseDgstR(`(stdin)= ${ABC}\n`, 1));
    expectBad(() => parseDgstR(`SHA2-256(stdin)= ${ABC}\n`, 1));
    expectBad(() => parseDgstR(`SHA256(f)= ${ABC}\n`, 1));
  });

  it('rejects garbage without quoting it', () => {
    const marker = 'GARBAGE-7c1d-ZZZZ';
    expectBad(() => parseDgstR(`${marker}\n`, 1), marker);
    expectBad(() => parseDgstR('', 1));
    expectBad(() => parseDgstR('\n', 1));
    expectBad(() => parseDgstR(`${ABC}\n`, 1));
    expectBad(() => parseDgstR(`${ABC} stdin\n`, 1));
    expectBad(() => parseDgstR(`${ABC}  *stdin\n`, 1));
    expectBad(() => parseDgstR(` ${ABC} *stdin\n`, 1));
    expectBad(() => parseDgstR(`${ABC} *stdin\r\n`, 1));
    expectBad(() => parseDgstR(`${ABC.slice(1)} *stdin\n`, 1));
    expectBad(() => parseDgstR(`${ABC}0 *stdin\n`, 1));
    expectBad(() => parseDgstR(`${ABC.slice(0, 63)}g *stdin\n`, 1));
  });

  it('rejects uppercase hex', () => {
    expectBad(() => parseDgstR(`${ABC.toUpperCase()} *stdin\n`, 1));
  });

  it('rejects the wrong number of lines', () => {
    expectBad(() => parseDgstR(`${ABC} *p0\n`, 2));
    expectBad(() => parseDgstR(`${ABC} *p0\n${ABC} *p1\n`, 1));
    expectBad(() => parseDgstR(`${ABC} *p0\n${ABC} *p1\n`, 3));
  });

  it('rejects extra lines, blank lines and warnings', () => {
    expectBad(() => parseDgstR(`${ABC} *stdin\n\n`, 1));
    expectBad(() => parseDgstR(`${ABC} *stdin\nwarning: something\n`, 1));
    expectBad(() => parseDgstR(`\n${ABC} *stdin\n`, 1));
    expectBad(() => parseDgstR(`${ABC} *p0\n\n${ABC} *p1\n`, 2));
  });

  it('rejects names out of order or different from the expected ones', () => {
    const out = `${ABC} *p1\n${EMPTY} *p0\n`;
    expectBad(() => parseDgstR(out, 2, ['p0', 'p1']));
    expectBad(() => parseDgstR(`${ABC} *stdin\n`, 1, ['p0']));
  });

  it('says how many lines it expected', () => {
    try {
      parseDgstR('nope', 5);
      expect.unreachable();
    } catch (e) {
      expect((e as RekeyError).message).toBe('openssl dgst printed unexpected output (expected 5 lines of 64 hex digits)');
    }
  });
});
