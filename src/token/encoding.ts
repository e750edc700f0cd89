import { RekeyError } from '../util/errors.js';

/** How raw random bytes become a token's text. */
export type TokenEncoding = 'hex' | 'base64' | 'base64url';

export const TOKEN_ENCODINGS: readonly TokenEncoding[] = Object.freeze(['hex', 'base64', 'base64url'] as const);

export function isTokenEncoding(value: unknown): value is TokenEncoding {
  return typeof value === 'string' && (TOKEN_ENCODINGS as readonly string[]).includes(value);
}

function assertEncoding(encoding: TokenEncoding): void {
  if (!isTokenEncoding(encoding)) {
    throw new RekeyError('CONFIG', `token.encoding must be one of ${TOKEN_ENCODINGS.join(', ')}`);
  }
}

/**
 * prefix + the encoded bytes. We encode in-process (never `openssl rand -base64`):
 * openssl wraps base64 at 64 columns and has no URL-safe alphabet.
 */
export function encodeToken(raw: Buffer, encoding: TokenEncoding, prefix = ''): string {
  assertEncoding(encoding);
  // Node's encoders never wrap lines; base64url has no padding.
  return prefix + raw.toString(encoding);
}

/** Exact length of the encoded text (without any prefix). */
export function encodedLength(bytes: number, encoding: TokenEncoding): number {
  assertEncoding(encoding);
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new RekeyError('INTERNAL', 'encodedLength needs a non-negative whole number of bytes');
  }
  switch (encoding) {
    case 'hex':
      return bytes * 2;
    case 'base64':
      return 4 * Math.ceil(bytes / 3);
    case 'base64url':
      return Math.ceil((bytes * 4) / 3);
  }
}

const HEX = /^[0-9a-f]*$/;
const B64_BODY = /^[A-Za-z0-9+/]*$/;
const B64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Whether text is prefix + exactly `bytes` bytes in `encoding`: exact length, alphabet, padding,
 * and canonical form (decoding and re-encoding gives the same text).
 */
export function checkEncoded(text: string, bytes: number, encoding: TokenEncoding, prefix = ''): boolean {
  if (typeof text !== 'string' || !isTokenEncoding(encoding)) return false;
  if (!Number.isSafeInteger(bytes) || bytes < 0) return false;
  if (!text.startsWith(prefix)) return false;
  const body = text.slice(prefix.length);
  if (body.length !== encodedLength(bytes, encoding)) return false;
  switch (encoding) {
    case 'hex':
      return HEX.test(body);
    case 'base64': {
      const pad = (3 - (bytes % 3)) % 3;
      const data = body.slice(0, body.length - pad);
      if (body.slice(data.length) !== '='.repeat(pad) || !B64_BODY.test(data)) return false;
      return Buffer.from(body, 'base64').toString('base64') === body;
    }
    case 'base64url':
      if (!B64URL.test(body)) return false;
      return Buffer.from(body, 'base64url').toString('base64url') === body;
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The 8-hex fingerprint the audit log keeps: the first 8 hex digits of the token's SHA-256. */
export function fingerprint(sha256hex: string): string {
  // Refuse anything that is not a digest, so a token passed here by mistake never gets logged.
  if (typeof sha256hex !== 'string' || !SHA256_HEX.test(sha256hex)) {
    throw new RekeyError('INTERNAL', 'fingerprint needs a SHA-256 digest (64 lowercase hex digits)');
  }
  return sha256hex.slice(0, 8);
}
