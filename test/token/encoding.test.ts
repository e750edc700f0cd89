import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkEncoded, encodedLength, encodeToken, fingerprint, TOKEN_ENCODINGS } from '../../src/token/encoding.js';
import type { TokenEncoding } from '../../src/token/encoding.js';
import { RekeyError } from '../../src/util/errors.js';

const ALPHABET: Record<TokenEncoding, RegExp> = {
  hex: /^[0-9a-f]*$/,
  base64: /^[A-Za-z0-9+/]*={0,2}$/,
  base64url: /^[A-Za-z0-9_-]*$/,
};

const SIZES = [0, 1, 2, 3, 4, 5, 15, 16, 17, 18, 20, 31, 32, 33, 47, 48, 49, 63, 64, 65, 96, 100, 128, 255, 256, 512, 1000, 1024];

describe('TOKEN_ENCODINGS', () => {
  it('lists the three encodings', () => {
    expect([...TOKEN_ENCODINGS].sort()).toEqual(['base64', 'base64url', 'hex']);
  });
});

describe('encodedLength', () => {
  it('gives the known lengths', () => {
    expect(encodedLength(32, 'hex')).toBe(64);
    expect(encodedLength(32, 'base64')).toBe(44);
    expect(encodedLength(32, 'base64url')).toBe(43);
    expect(encodedLength(16, 'base64url')).toBe(22);
    expect(encodedLength(64, 'base64')).toBe(88);
    expect(encodedLength(1, 'base64url')).toBe(2);
    expect(encodedLength(2, 'base64url')).toBe(3);
    expect(encodedLength(3, 'base64url')).toBe(4);
  });

  for (const enc of TOKEN_ENCODINGS) {
    it(`matches the actual ${enc} encoding for many sizes`, () => {
      for (const n of SIZES) {
        expect(encodeToken(randomBytes(n), enc).length, `${n} bytes`).toBe(encodedLength(n, enc));
      }
    });
  }

  it('rejects a negative or fractional byte count', () => {
    expect(() => encodedLength(-1, 'hex')).toThrow(RekeyError);
    expect(() => encodedLength(1.5, 'hex')).toThrow(RekeyError);
  });
});

describe('encodeToken', () => {
  it('encodes known bytes', () => {
    const raw = Buffer.from([0xfb, 0xff, 0xfe, 0x00, 0x10]);
    expect(encodeToken(raw, 'hex')).toBe('fbfffe0010');
    expect(encodeToken(raw, 'base64')).toBe('+//+ABA=');
    expect(encodeToken(raw, 'base64url')).toBe('-__-ABA');
  });

  it('puts the prefix in front', () => {
    const raw = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    expect(encodeToken(raw, 'hex', 'rk_live_')).toBe('rk_live_00112233445566778899aabbccddeeff');
    expect(encodeToken(raw, 'base64url', 'ghp_').startsWith('ghp_')).toBe(true);
    expect(encodeToken(raw, 'base64url', '')).toBe(encodeToken(raw, 'base64url'));
  });

  it('base64url never holds + / = or a newline (200 samples per size, incl. sizes openssl -base64 would wrap)', () => {
    for (const n of [16, 32, 48, 64, 65, 96, 128, 256]) {
      for (let i = 0; i < 200; i++) {
        const t = encodeToken(randomBytes(n), 'base64url');
        expect(t).not.toMatch(/[+/=\r\n]/);
        expect(t).toMatch(ALPHABET.base64url);
        expect(checkEncoded(t, n, 'base64url')).toBe(true);
      }
    }
  });

  it('base64 is one line with padding, also past 64 characters', () => {
    for (const n of [64, 65, 66, 100, 256, 1024]) {
      for (let i = 0; i < 50; i++) {
        const t = encodeToken(randomBytes(n), 'base64');
        expect(t).not.toMatch(/[\r\n]/);
        expect(t.length).toBe(encodedLength(n, 'base64'));
        expect(t.length % 4).toBe(0);
        expect(t).toMatch(ALPHABET.base64);
        expect(Buffer.from(t, 'base64').length).toBe(n);
      }
    }
    expect(encodeToken(randomBytes(64), 'base64').endsWith('==')).toBe(true);
    expect(encodeToken(randomBytes(65), 'base64')).toMatch(/[^=]=$/);
    expect(encodeToken(randomBytes(66), 'base64')).not.toMatch(/=$/);
  });

  it('hex is lowercase', () => {
    for (let i = 0; i < 50; i++) expect(encodeToken(randomBytes(32), 'hex')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('rejects an unknown encoding', () => {
    expect(() => encodeToken(randomBytes(16), 'base32' as TokenEncoding)).toThrow(RekeyError);
  });
});

describe('checkEncoded', () => {
  for (const enc of TOKEN_ENCODINGS) {
    it(`accepts fresh ${enc} tokens of every size, with and without a prefix`, () => {
      for (const n of SIZES) {
        const raw = randomBytes(n);
        expect(checkEncoded(encodeToken(raw, enc), n, enc)).toBe(true);
        expect(checkEncoded(encodeToken(raw, enc, 'rk_'), n, enc, 'rk_')).toBe(true);
      }
    });

    it(`rejects ${enc} text of the wrong length`, () => {
      const t = encodeToken(randomBytes(32), enc);
      expect(checkEncoded(t, 31, enc)).toBe(false);
      expect(checkEncoded(t, 33, enc)).toBe(false);
      expect(checkEncoded(t.slice(1), 32, enc)).toBe(false);
      expect(checkEncoded(`${t}A`, 32, enc)).toBe(false);
      expect(checkEncoded(`${t}\n`, 32, enc)).toBe(false);
    });
  }

  it('rejects a missing or wrong prefix', () => {
    const raw = randomBytes(32);
    const t = encodeToken(raw, 'hex', 'rk_');
    expect(checkEncoded(t, 32, 'hex', 'xx_')).toBe(false);
    expect(checkEncoded(encodeToken(raw, 'hex'), 32, 'hex', 'rk_')).toBe(false);
    expect(checkEncoded(t, 32, 'hex')).toBe(false); // prefix counted as body: wrong length
  });

  it('rejects characters outside the alphabet', () => {
    const hex = encodeToken(randomBytes(32), 'hex');
    expect(checkEncoded(hex.toUpperCase().replace(/[0-9]/g, 'A'), 32, 'hex')).toBe(false);
    expect(checkEncoded(`g${hex.slice(1)}`, 32, 'hex')).toBe(false);

    const url = encodeToken(randomBytes(32), 'base64url');
    expect(checkEncoded(`+${url.slice(1)}`, 32, 'base64url')).toBe(false);
    expect(checkEncoded(`/${url.slice(1)}`, 32, 'base64url')).toBe(false);
    expect(checkEncoded(`${url.slice(0, -1)}=`, 32, 'base64url')).toBe(false);

    const b64 = encodeToken(randomBytes(32), 'base64'); // 44 chars, one '='
    expect(checkEncoded(`-${b64.slice(1)}`, 32, 'base64')).toBe(false);
    expect(checkEncoded(`_${b64.slice(1)}`, 32, 'base64')).toBe(false);
    expect(checkEncoded(`${b64.slice(0, -1)}A`, 32, 'base64')).toBe(false); // padding missing
    expect(checkEncoded(`${b64.slice(0, 20)}=${b64.slice(21)}`, 32, 'base64')).toBe(false);
    expect(checkEncoded(`${b64.slice(0, 20)}\n${b64.slice(21)}`, 32, 'base64')).toBe(false);
  });

  it('rejects non-canonical base64 (unused bits set)', () => {
    // 32 bytes: 43 data chars, the last carries 2 unused bits. 'B' sets one of them.
    const b64 = encodeToken(Buffer.alloc(32), 'base64');
    expect(checkEncoded(b64, 32, 'base64')).toBe(true);
    expect(checkEncoded(`${b64.slice(0, 42)}B=`, 32, 'base64')).toBe(false);
    const url = encodeToken(Buffer.alloc(32), 'base64url');
    expect(checkEncoded(`${url.slice(0, 42)}B`, 32, 'base64url')).toBe(false);
  });

  it('rejects an unknown encoding instead of throwing', () => {
    expect(checkEncoded('abcd', 2, 'base32' as TokenEncoding)).toBe(false);
  });
});

describe('fingerprint', () => {
  it('is the first 8 hex digits of the digest', () => {
    expect(fingerprint('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')).toBe('ba7816bf');
  });

  it('refuses anything that is not a lowercase SHA-256 hex digest', () => {
    expect(() => fingerprint('ba7816bf')).toThrow(RekeyError);
    expect(() => fingerprint('BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD')).toThrow(RekeyError);
    expect(() => fingerprint('rk_live_not-a-digest-but-a-token-value-of-some-length-0000000000')).toThrow(RekeyError);
  });
});
