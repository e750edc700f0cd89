import { Openssl } from '../openssl/index.js';
import { TOKEN_ENCODINGS, type TokenEncoding } from '../token/encoding.js';
import { RekeyError } from '../util/errors.js';
import { Secret } from '../util/secret.js';
import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';
import { buildEngine, selectPolicies } from './context.js';

const opensslOptions = (io: { env: NodeJS.ProcessEnv }) => ({ env: io.env });

export const generate: Command = {
  name: 'generate',
  summary: 'print one fresh token',
  usage: `Usage: rekey generate [--bytes N] [--encoding hex|base64|base64url] [--prefix P]

Prints one token from openssl rand. This is the one command whose job is to print a secret.

Options:
  --bytes N        random bytes, 16 to 1024 (default 32)
  --encoding E     hex, base64 or base64url (default base64url)
  --prefix P       text put in front of the token

Example:
  rekey generate --bytes 48 --encoding hex`,
  options: { bytes: { type: 'string' }, encoding: { type: 'string' }, prefix: { type: 'string' } },
  async run({ values }, io) {
    const bytesText = (values.bytes as string | undefined) ?? '32';
    if (!/^\d+$/.test(bytesText)) throw new RekeyError('USAGE', `--bytes must be a whole number, not "${bytesText}"`);
    const bytes = Number(bytesText);
    if (bytes < 16) throw new RekeyError('USAGE', `--bytes must be at least 16: fewer than 128 random bits can be guessed`);
    if (bytes > 1024) throw new RekeyError('USAGE', '--bytes must be at most 1024');
    const encoding = ((values.encoding as string | undefined) ?? 'base64url') as TokenEncoding;
    if (!TOKEN_ENCODINGS.includes(encoding)) throw new RekeyError('USAGE', `--encoding must be one of ${TOKEN_ENCODINGS.join(', ')}`);
    const prefix = (values.prefix as string | undefined) ?? '';
    if (!/^[A-Za-z0-9_.-]*$/.test(prefix)) throw new RekeyError('USAGE', '--prefix may hold only letters, digits, "_", "." and "-"');
    const openssl = await Openssl.probe(opensslOptions(io));
    const token = await openssl.generate({ bytes, encoding, prefix });
    io.stdout(`${token.reveal()}\n`);
    return 0;
  },
};

/** Read a token from stdin: the whole input minus one trailing newline (CRLF too). */
export async function readTokenFromStdin(io: { readStdin: () => Promise<Buffer> }, command: string): Promise<Secret> {
  const buf = await io.readStdin();
  const text = buf.toString('utf8').replace(/\r?\n$/, '');
  if (text.length === 0) throw new RekeyError('USAGE', `${command}: give the token on stdin, e.g. "rekey ${command} ... < token.txt"`);
  return new Secret(text);
}

export const hash: Command = {
  name: 'hash',
  summary: 'print the SHA-256 of stdin',
  usage: `Usage: rekey hash < token.txt

Prints the SHA-256 (hex) of the token read on stdin, computed by openssl dgst -sha256.
One trailing newline is ignored, so "rekey generate | rekey hash" hashes the token itself.

Example:
  printf %s "$TOKEN" | rekey hash`,
  options: {},
  async run(_args, io) {
    const token = await readTokenFromStdin(io, 'hash');
    const openssl = await Openssl.probe(opensslOptions(io));
    io.stdout(`${await openssl.sha256(token)}\n`);
    return 0;
  },
};

export const verify: Command = {
  name: 'verify',
  summary: 'check a token (stdin) against a policy: current, previous within grace, or no',
  usage: `Usage: rekey verify <policy> [options] < token.txt

Reads a token on stdin and compares its SHA-256 with the policy's state in constant time.
  exit 0, prints "current"                      it is the current token
  exit 0, prints "previous (valid until ...)"   the previous token, still inside its grace
  exit 1, prints "no match"                     any other token (or one whose grace ended)

Options:
${CONFIG_HELP}
  --json   print {"policy","match","validUntil"} as JSON

Example:
  printf %s "$API_TOKEN" | rekey verify billing-api`,
  options: { ...CONFIG_OPTIONS, json: { type: 'boolean' } },
  positionals: true,
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new RekeyError('USAGE', 'verify: name exactly one policy; see "rekey verify --help"');
    const token = await readTokenFromStdin(io, 'verify');
    const { config, engine } = await buildEngine(values, io);
    const [policy] = selectPolicies(config, positionals, false, 'verify');
    const r = await engine.verifyToken(policy!, token);
    if (values.json) {
      io.stdout(`${JSON.stringify({ policy: policy!.name, match: r.match, ...(r.validUntil ? { validUntil: r.validUntil } : {}) })}\n`);
    } else {
      io.stdout(r.match === 'current' ? 'current\n' : r.match === 'previous' ? `previous (valid until ${r.validUntil})\n` : 'no match\n');
    }
    return r.match === 'none' ? 1 : 0;
  },
};
