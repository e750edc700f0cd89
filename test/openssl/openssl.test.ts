import { createHash } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Openssl } from '../../src/openssl/index.js';
import type { TokenSpec } from '../../src/openssl/index.js';
import { checkEncoded, encodedLength, TOKEN_ENCODINGS } from '../../src/token/encoding.js';
import type { TokenEncoding } from '../../src/token/encoding.js';
import { Secret } from '../../src/util/secret.js';
import { expectRekeyError, KAT_ABC, makeTempDir, REAL_OPENSSL, SYSTEM_PATH } from './helpers.js';

const nodeSha = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

let ossl: Openssl;
let tmp: string;
let oldTmpdir: string | undefined;

beforeAll(async () => {
  // A private TMPDIR (os.tmpdir() reads it per call) lets us check the fifo dirs are removed.
  const base = await makeTempDir('rekey-openssl-');
  oldTmpdir = process.env.TMPDIR;
  tmp = join(base, 'tmp');
  await mkdir(tmp);
  process.env.TMPDIR = tmp;
  ossl = await Openssl.probe({ env: { PATH: SYSTEM_PATH } });
});

afterAll(async () => {
  if (oldTmpdir === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = oldTmpdir;
  await rm(join(tmp, '..'), { recursive: true, force: true });
});

describe('probe', () => {
  it('finds the real openssl on PATH and reads its version', () => {
    expect(isAbsolute(ossl.info.binary)).toBe(true);
    expect(ossl.info.binary.endsWith('/openssl')).toBe(true);
    expect(ossl.info.version).toMatch(/^(OpenSSL|LibreSSL) \d+\.\d+\.\d+/);
    expect(ossl.info.version).not.toContain('Library:');
    expect(ossl.info.version).not.toMatch(/[\r\n]/);
  });

  it('uses an explicit path', async () => {
    const o = await Openssl.probe({ path: REAL_OPENSSL, env: { PATH: '' } });
    expect(o.info.binary).toBe(REAL_OPENSSL);
  });

  it('reports a missing openssl on an empty PATH', async () => {
    const empty = await makeTempDir('rekey-empty-');
    try {
      const err = await expectRekeyError(Openssl.probe({ env: { PATH: empty } }), 'OPENSSL_MISSING');
      expect(err.message).toBe('openssl not found on PATH; install it or set openssl.path in the config');
      await expectRekeyError(Openssl.probe({ env: {} }), 'OPENSSL_MISSING');
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('reports a missing explicit path', async () => {
    const err = await expectRekeyError(Openssl.probe({ path: '/nonexistent/openssl' }), 'OPENSSL_MISSING');
    expect(err.message).toContain('/nonexistent/openssl');
    expect(err.message).toContain('openssl.path');
  });

  it('skips relative PATH entries', async () => {
    // "." would hold an openssl if cwd were a hostile dir; it must never be searched.
    await expectRekeyError(Openssl.probe({ env: { PATH: '.:bin:' } }), 'OPENSSL_MISSING');
  });

  it('rejects a bad timeout', async () => {
    await expectRekeyError(Openssl.probe({ timeoutMs: 0 }), 'CONFIG', [], 2);
    await expectRekeyError(Openssl.probe({ timeoutMs: 1.5 }), 'CONFIG', [], 2);
  });
});

describe('sha256', () => {
  it('gives the known answer for "abc"', async () => {
    expect(await ossl.sha256('abc')).toBe(KAT_ABC);
    expect(await ossl.sha256(new Secret('abc'))).toBe(KAT_ABC);
  });

  it('hashes the exact bytes (empty, trailing newline, UTF-8)', async () => {
    for (const s of ['', '\n', 'abc\n', 'tøken-ünïcode-☃', 'a'.repeat(5000)]) {
      expect(await ossl.sha256(s)).toBe(nodeSha(s));
    }
  });

  it('matches node crypto for generated tokens', async () => {
    const tokens = await ossl.generateBatch(TOKEN_ENCODINGS.map((encoding) => ({ bytes: 32, encoding, prefix: 'rk_' })));
    for (const t of tokens) expect(await ossl.sha256(t)).toBe(nodeSha(t.reveal()));
  });
});

describe('sha256Batch', () => {
  it('hashes 1000 tokens in order, matching node crypto, and removes its fifo dir', async () => {
    const tokens = await ossl.generateBatch(Array.from({ length: 1000 }, (_, i) => ({
      bytes: 16 + (i % 50),
      encoding: TOKEN_ENCODINGS[i % 3]!,
      prefix: i % 2 ? 'rk_' : '',
    })));
    const digests = await ossl.sha256Batch(tokens);
    expect(digests).toHaveLength(1000);
    digests.forEach((d, i) => expect(d, `token ${i}`).toBe(nodeSha(tokens[i]!.reveal())));
    expect(await readdir(tmp)).toEqual([]);
  });

  it('handles every small size and the empty batch', async () => {
    for (const n of [0, 1, 2, 3, 4, 5, 9]) {
      const tokens = Array.from({ length: n }, (_, i) => new Secret(`token-number-${i}-${'x'.repeat(i)}`));
      const digests = await ossl.sha256Batch(tokens);
      expect(digests).toEqual(tokens.map((t) => nodeSha(t.reveal())));
    }
    expect(await readdir(tmp)).toEqual([]);
  });

  it('hashes equal, empty and newline-ended tokens', async () => {
    const values = ['same', 'same', '', 'ends-with-newline\n', '☃☃☃', 'same'];
    const digests = await ossl.sha256Batch(values.map((v) => new Secret(v)));
    expect(digests).toEqual(values.map(nodeSha));
  });
});

describe('randomBytes', () => {
  it('returns exactly n bytes', async () => {
    for (const n of [1, 2, 10, 16, 32, 255, 4096, 100_000]) {
      const b = await ossl.randomBytes(n);
      expect(Buffer.isBuffer(b)).toBe(true);
      expect(b.length).toBe(n);
    }
  });

  it('returns different bytes each time', async () => {
    const a = await ossl.randomBytes(32);
    const b = await ossl.randomBytes(32);
    expect(a.equals(b)).toBe(false);
  });

  it('rejects a bad count without spawning', async () => {
    await expectRekeyError(ossl.randomBytes(0), 'INTERNAL', [], 1);
    await expectRekeyError(ossl.randomBytes(-1), 'INTERNAL', [], 1);
    await expectRekeyError(ossl.randomBytes(2.5), 'INTERNAL', [], 1);
  });
});

describe('generate', () => {
  for (const encoding of TOKEN_ENCODINGS) {
    it(`makes a ${encoding} token of the exact length, wrapped as a Secret`, async () => {
      for (const bytes of [16, 32, 48, 64, 65, 100, 1024]) {
        const t = await ossl.generate({ bytes, encoding, prefix: 'rk_live_' });
        expect(t).toBeInstanceOf(Secret);
        expect(String(t)).toBe('[redacted]');
        expect(JSON.stringify({ t })).not.toContain(t.reveal());
        expect(t.reveal().length).toBe('rk_live_'.length + encodedLength(bytes, encoding));
        expect(checkEncoded(t.reveal(), bytes, encoding, 'rk_live_')).toBe(true);
      }
    });
  }

  it('base64url from openssl never holds + / = or a newline (200 samples of 64 bytes)', async () => {
    const tokens = await ossl.generateBatch(Array.from({ length: 200 }, () => ({ bytes: 64, encoding: 'base64url' as const })));
    for (const t of tokens) {
      expect(t.reveal()).toMatch(/^[A-Za-z0-9_-]{86}$/);
    }
  });

  it('base64 from openssl is one line even past 64 characters', async () => {
    const tokens = await ossl.generateBatch(Array.from({ length: 50 }, () => ({ bytes: 96, encoding: 'base64' as const })));
    for (const t of tokens) {
      expect(t.reveal()).not.toMatch(/[\r\n]/);
      expect(t.reveal()).toHaveLength(128);
    }
  });

  it('refuses fewer than 16 bytes, more than 1024, fractions and unknown encodings (exit 2)', async () => {
    const few = await expectRekeyError(ossl.generate({ bytes: 15, encoding: 'hex' }), 'CONFIG', [], 2);
    expect(few.message).toMatch(/^token\.bytes must be at least 16 \(128 bits\)/);
    await expectRekeyError(ossl.generate({ bytes: 0, encoding: 'hex' }), 'CONFIG', [], 2);
    await expectRekeyError(ossl.generate({ bytes: 1025, encoding: 'hex' }), 'CONFIG', [], 2);
    await expectRekeyError(ossl.generate({ bytes: 16.5, encoding: 'hex' }), 'CONFIG', [], 2);
    await expectRekeyError(ossl.generate({ bytes: 32, encoding: 'base32' as TokenEncoding }), 'CONFIG', [], 2);
    await expectRekeyError(ossl.generateBatch([{ bytes: 32, encoding: 'hex' }, { bytes: 8, encoding: 'hex' }]), 'CONFIG', [], 2);
  });
});

describe('generateBatch', () => {
  it('gives each spec its own token of the right length and encoding', async () => {
    const specs: TokenSpec[] = [];
    for (let i = 0; i < 300; i++) {
      specs.push({ bytes: [16, 20, 32, 33, 64, 1024][i % 6]!, encoding: TOKEN_ENCODINGS[i % 3]!, prefix: i % 4 === 0 ? `p${i}_` : undefined });
    }
    const tokens = await ossl.generateBatch(specs);
    expect(tokens).toHaveLength(specs.length);
    tokens.forEach((t, i) => {
      const s = specs[i]!;
      expect(checkEncoded(t.reveal(), s.bytes, s.encoding, s.prefix ?? ''), `token ${i}`).toBe(true);
    });
    expect(new Set(tokens.map((t) => t.reveal())).size).toBe(tokens.length);
  });

  it('returns [] for an empty batch', async () => {
    expect(await ossl.generateBatch([])).toEqual([]);
  });
});
