import { RekeyError } from '../util/errors.js';

const DGST_LINE = /^([0-9a-f]{64}) \*(.*)$/;

function badOutput(expectedLines: number): RekeyError {
  const what = expectedLines === 1 ? '1 line' : `${expectedLines} lines`;
  return new RekeyError('OPENSSL_BAD_OUTPUT', `openssl dgst printed unexpected output (expected ${what} of 64 hex digits)`);
}

/**
 * Parse `openssl dgst -sha256 -r` output: one "<64 lowercase hex> *<name>" line per input,
 * the same in OpenSSL 1.1.1 and 3.x. Exactly `expectedLines` lines (one final newline allowed);
 * when `expectedNames` is given, line i must name expectedNames[i].
 * The error never quotes the output.
 */
export function parseDgstR(stdout: string, expectedLines: number, expectedNames?: readonly string[]): string[] {
  if (!Number.isSafeInteger(expectedLines) || expectedLines < 1) {
    throw new RekeyError('INTERNAL', 'parseDgstR needs a positive number of expected lines');
  }
  if (expectedNames !== undefined && expectedNames.length !== expectedLines) {
    throw new RekeyError('INTERNAL', 'parseDgstR got a name list of the wrong length');
  }
  if (typeof stdout !== 'string') throw badOutput(expectedLines);
  const body = stdout.endsWith('\n') ? stdout.slice(0, -1) : stdout;
  const lines = body.split('\n');
  if (lines.length !== expectedLines) throw badOutput(expectedLines);
  return lines.map((line, i) => {
    const m = DGST_LINE.exec(line);
    if (!m) throw badOutput(expectedLines);
    if (expectedNames !== undefined && m[2] !== expectedNames[i]) throw badOutput(expectedLines);
    return m[1]!;
  });
}
