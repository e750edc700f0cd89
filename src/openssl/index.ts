import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdtemp, open, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { encodeToken, isTokenEncoding, TOKEN_ENCODINGS } from '../token/encoding.js';
import type { TokenEncoding } from '../token/encoding.js';
import { describeForeign, RekeyError } from '../util/errors.js';
import { Secret } from '../util/secret.js';
import { parseDgstR } from './parse.js';
import { checkExplicit, findOnPath } from './resolve.js';
import { runChild } from './run.js';

export { parseDgstR } from './parse.js';

export interface OpensslOptions {
  /** An explicit openssl binary (config `openssl.path`); otherwise PATH is searched. */
  path?: string;
  /** Timeout of every openssl call, in ms. Default 10000. */
  timeoutMs?: number;
  /** Where PATH is read from (for the search and for the child). Default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface OpensslInfo {
  /** Absolute path of the binary, resolved once by probe(). */
  binary: string;
  /** e.g. "OpenSSL 3.0.19 27 Jan 2026" */
  version: string;
}

export interface TokenSpec {
  bytes: number;
  encoding: TokenEncoding;
  prefix?: string;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
export const MIN_TOKEN_BYTES = 16;
export const MAX_TOKEN_BYTES = 1024;

const KAT_INPUT = 'abc';
const KAT_SHA256 = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
/** One `openssl rand` call never asks for more than this; larger batches are split. */
const MAX_RAND_BYTES = 16 * 1024 * 1024;
/** Below this many tokens, one stdin process per token is cheaper than the fifo set-up. */
const FIFO_BATCH_MIN = 4;
/** Keeps argv well below ARG_MAX; larger batches use several dgst processes. */
const FIFO_BATCH_MAX = 2000;
const MAX_TIMEOUT_MS = 10 * 60_000;

function checkTimeout(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 1 || ms > MAX_TIMEOUT_MS) {
    throw new RekeyError('CONFIG', `openssl.timeout must be a whole number of milliseconds between 1 and ${MAX_TIMEOUT_MS}`);
  }
  return ms;
}

function checkSpec(spec: TokenSpec): void {
  const { bytes, encoding, prefix } = spec;
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes)) {
    throw new RekeyError('CONFIG', 'token.bytes must be a whole number between 16 and 1024');
  }
  if (bytes < MIN_TOKEN_BYTES) {
    throw new RekeyError('CONFIG', `token.bytes must be at least ${MIN_TOKEN_BYTES} (128 bits); got ${bytes}`);
  }
  if (bytes > MAX_TOKEN_BYTES) {
    throw new RekeyError('CONFIG', `token.bytes must be at most ${MAX_TOKEN_BYTES}; got ${bytes}`);
  }
  if (!isTokenEncoding(encoding)) {
    throw new RekeyError('CONFIG', `token.encoding must be one of ${TOKEN_ENCODINGS.join(', ')}`);
  }
  if (prefix !== undefined && typeof prefix !== 'string') {
    throw new RekeyError('CONFIG', 'token.prefix must be a string');
  }
}

function nodeSha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function wrongDigest(): RekeyError {
  return new RekeyError('OPENSSL_BAD_OUTPUT', 'openssl dgst returned a wrong digest');
}

function reveal(token: Secret | string): string {
  return typeof token === 'string' ? token : token.reveal();
}

/** First line of `openssl version`, without the " (Library: ...)" suffix of 3.x. */
function parseVersion(stdout: Buffer): string {
  const first = stdout.toString('utf8').split('\n')[0] ?? '';
  const version = first.replace(/\s*\(Library:[^)]*\)\s*$/, '').trim();
  if (version.length > 120 || !/^(OpenSSL|LibreSSL) [0-9][\x20-\x7e]*$/.test(version)) {
    throw new RekeyError('OPENSSL_BAD_OUTPUT', 'openssl version printed unexpected output (expected a line like "OpenSSL 3.0.x ...")');
  }
  return version;
}

/**
 * The system openssl, probed once: binary resolved, version read, self-test passed.
 * Every call runs the same absolute binary with a timeout, no shell and only PATH in its env.
 */
export class Openssl {
  readonly info: OpensslInfo;
  readonly #timeoutMs: number;
  readonly #pathVar: string | undefined;

  private constructor(info: OpensslInfo, timeoutMs: number, pathVar: string | undefined) {
    this.info = Object.freeze({ ...info });
    this.#timeoutMs = timeoutMs;
    this.#pathVar = pathVar;
  }

  static async probe(opts: OpensslOptions = {}): Promise<Openssl> {
    const timeoutMs = checkTimeout(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const pathVar = (opts.env ?? process.env).PATH;

    let binary: string | undefined;
    if (opts.path !== undefined) {
      binary = await checkExplicit(opts.path);
      if (binary === undefined) {
        throw new RekeyError('OPENSSL_MISSING', `openssl.path ${resolve(opts.path)} is not an executable file; install openssl or fix openssl.path in the config`);
      }
    } else {
      binary = await findOnPath('openssl', pathVar);
      if (binary === undefined) {
        throw new RekeyError('OPENSSL_MISSING', 'openssl not found on PATH; install it or set openssl.path in the config');
      }
    }

    const out = await runChild({ file: binary, args: ['version'], label: 'openssl version', timeoutMs, path: pathVar });
    const ossl = new Openssl({ binary, version: parseVersion(out.stdout) }, timeoutMs, pathVar);

    // Known-answer test through the same dgst path that sha256() uses.
    const digest = await ossl.#dgstStdin(Buffer.from(KAT_INPUT, 'utf8'), KAT_INPUT);
    if (digest !== KAT_SHA256) {
      throw new RekeyError('OPENSSL_SELFTEST', `openssl at ${binary} failed its self-test (wrong SHA-256 of "abc"); repair or replace it`);
    }
    return ossl;
  }

  /** n random bytes from `openssl rand n`, read raw from stdout. */
  async randomBytes(n: number): Promise<Buffer> {
    if (!Number.isSafeInteger(n) || n < 1 || n > MAX_RAND_BYTES) {
      throw new RekeyError('INTERNAL', `randomBytes needs a whole number of bytes between 1 and ${MAX_RAND_BYTES}`);
    }
    const { stdout } = await runChild({
      file: this.info.binary,
      args: ['rand', String(n)],
      label: 'openssl rand',
      timeoutMs: this.#timeoutMs,
      path: this.#pathVar,
    });
    if (stdout.length !== n) {
      const got = stdout.length;
      stdout.fill(0);
      throw new RekeyError('OPENSSL_BAD_OUTPUT', `openssl rand printed ${got} bytes instead of ${n}`);
    }
    return stdout;
  }

  async generate(spec: TokenSpec): Promise<Secret> {
    const [secret] = await this.generateBatch([spec]);
    return secret!;
  }

  /** All tokens of the batch from one `openssl rand` (split only past 16 MiB). */
  async generateBatch(specs: TokenSpec[]): Promise<Secret[]> {
    specs.forEach(checkSpec);
    const out: Secret[] = [];
    let start = 0;
    while (start < specs.length) {
      let end = start;
      let total = 0;
      while (end < specs.length && total + specs[end]!.bytes <= MAX_RAND_BYTES) total += specs[end++]!.bytes;
      const raw = await this.randomBytes(total);
      try {
        let offset = 0;
        for (const spec of specs.slice(start, end)) {
          const slice = raw.subarray(offset, offset + spec.bytes);
          offset += spec.bytes;
          out.push(new Secret(encodeToken(slice, spec.encoding, spec.prefix ?? '')));
        }
      } finally {
        raw.fill(0);
      }
      start = end;
    }
    return out;
  }

  /** SHA-256 (lowercase hex) of the token's UTF-8 bytes, fed through stdin, checked against node's. */
  async sha256(token: Secret | string): Promise<string> {
    const text = reveal(token);
    const data = Buffer.from(text, 'utf8');
    try {
      const digest = await this.#dgstStdin(data, text);
      if (digest !== nodeSha256(data)) throw wrongDigest();
      return digest;
    } finally {
      data.fill(0);
    }
  }

  /** SHA-256 of many tokens: one `openssl dgst` over named pipes per batch (small batches: stdin). */
  async sha256Batch(tokens: Secret[]): Promise<string[]> {
    if (tokens.length < FIFO_BATCH_MIN) {
      const out: string[] = [];
      for (const t of tokens) out.push(await this.sha256(t));
      return out;
    }
    const mkfifo = (await findOnPath('mkfifo', this.#pathVar)) ?? (await checkExplicit('/usr/bin/mkfifo')) ?? (await checkExplicit('/bin/mkfifo'));
    const out: string[] = [];
    for (let i = 0; i < tokens.length; i += FIFO_BATCH_MAX) {
      const chunk = tokens.slice(i, i + FIFO_BATCH_MAX);
      if (mkfifo === undefined) {
        // No mkfifo: correct but slower.
        for (const t of chunk) out.push(await this.sha256(t));
      } else {
        out.push(...(await this.#dgstFifos(chunk, mkfifo)));
      }
    }
    return out;
  }

  async #dgstStdin(data: Buffer, scrub: string): Promise<string> {
    const { stdout } = await runChild({
      file: this.info.binary,
      args: ['dgst', '-sha256', '-r'],
      label: 'openssl dgst',
      timeoutMs: this.#timeoutMs,
      path: this.#pathVar,
      input: data,
      scrub: [scrub],
    });
    return parseDgstR(stdout.toString('utf8'), 1, ['stdin'])[0]!;
  }

  async #dgstFifos(tokens: Secret[], mkfifo: string): Promise<string[]> {
    const texts = tokens.map(reveal);
    const data = texts.map((t) => Buffer.from(t, 'utf8'));
    const dir = await mkdtemp(join(resolve(tmpdir()), 'rekey-dgst-'));
    try {
      await chmod(dir, 0o700);
      const paths = tokens.map((_, i) => join(dir, `p${i}`));
      await runChild({ file: mkfifo, args: ['-m', '600', ...paths], label: 'mkfifo', timeoutMs: this.#timeoutMs, path: this.#pathVar });

      const state: { done: boolean; current: string | undefined } = { done: false, current: undefined };
      const writer = writeFifos(paths, data, state);
      writer.catch(() => undefined); // handled below; keep Node from flagging it early

      const child = runChild({
        file: this.info.binary,
        args: ['dgst', '-sha256', '-r', ...paths],
        label: 'openssl dgst',
        timeoutMs: this.#timeoutMs,
        path: this.#pathVar,
        scrub: texts,
      });
      const release = async (): Promise<void> => {
        state.done = true;
        // The writer may be blocked opening a fifo that the (dead) child will never open:
        // open it for reading ourselves so that open() returns and the writer stops.
        const pending = state.current;
        if (pending === undefined) return;
        let reader: FileHandle | undefined;
        try {
          reader = await open(pending, constants.O_RDONLY | constants.O_NONBLOCK);
        } catch {
          // The writer's open failed or finished already.
        }
        await writer.catch(() => undefined);
        await reader?.close().catch(() => undefined);
      };
      await child.then(release, release);

      const [childResult, writerResult] = await Promise.allSettled([child, writer]);
      if (childResult.status === 'rejected') throw childResult.reason;
      if (writerResult.status === 'rejected') {
        throw new RekeyError('OPENSSL_FAILED', `could not feed openssl dgst through named pipes (${describeForeign(writerResult.reason)})`);
      }
      const digests = parseDgstR(childResult.value.stdout.toString('utf8'), tokens.length, paths);
      digests.forEach((d, i) => {
        if (d !== nodeSha256(data[i]!)) throw wrongDigest();
      });
      return digests;
    } finally {
      for (const d of data) d.fill(0);
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** Write each fifo in argument order, one at a time: openssl opens them in that order. */
async function writeFifos(paths: string[], data: Buffer[], state: { done: boolean; current: string | undefined }): Promise<void> {
  for (let i = 0; i < paths.length; i++) {
    if (state.done) return;
    const path = paths[i]!;
    // Set and open in the same tick, so release() always knows which fifo we may be blocked on.
    state.current = path;
    // No O_CREAT: if the fifo is gone we fail instead of writing a token into a regular file.
    const fh = await open(path, constants.O_WRONLY | constants.O_NOFOLLOW);
    state.current = undefined;
    try {
      if (state.done) return;
      await fh.writeFile(data[i]!);
    } finally {
      await fh.close();
    }
  }
}
