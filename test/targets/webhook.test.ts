import { execFileSync } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderError } from '../../src/cli/render.js';
import { WebhookTargetSchema } from '../../src/config/schema.js';
import type { WebhookTargetConfig } from '../../src/config/schema.js';
import type { Target } from '../../src/targets/contract.js';
import { createWebhookTarget } from '../../src/targets/webhook.js';
import type { WebhookOptions } from '../../src/targets/webhook.js';
import { RekeyError } from '../../src/util/errors.js';
import { captureLogger, makeContext, makeToken, sha256 } from './conformance.js';

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

interface Receiver {
  url: string;
  requests: Received[];
  close(): Promise<void>;
}

type Reply = (req: Received, res: http.ServerResponse) => void;

const servers: Receiver[] = [];
const targets: Target[] = [];
afterEach(async () => {
  await Promise.all(targets.splice(0).map((t) => t.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function listen(server: http.Server | https.Server, scheme: 'http' | 'https', reply: Reply): Promise<Receiver> {
  const requests: Received[] = [];
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      requests.push(r);
      reply(r, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const receiver: Receiver = {
    url: `${scheme}://127.0.0.1:${port}/hook`,
    requests,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  servers.push(receiver);
  return receiver;
}

/** A receiver that answers each request with the next status of the list (the last one repeats). */
function statuses(...codes: number[]): Reply {
  let i = 0;
  return (_req, res) => {
    const code = codes[Math.min(i++, codes.length - 1)]!;
    res.writeHead(code, { 'Content-Type': 'text/plain' }).end(`status ${code}`);
  };
}

const KEY = 'whsec_test-signing-key-0123456789';

function config(raw: Partial<WebhookTargetConfig> & { url: string }): WebhookTargetConfig {
  return WebhookTargetSchema.parse({ type: 'webhook', ...raw });
}

function target(raw: Partial<WebhookTargetConfig> & { url: string }, log = captureLogger(), opts: WebhookOptions = {}): Target {
  const t = createWebhookTarget(config(raw), { policy: 'api', env: { HOOK_KEY: KEY }, log }, { retryBaseMs: 1, ...opts });
  targets.push(t);
  return t;
}

/** How a receiver checks X-Rekey-Signature (the snippet in docs/targets/webhook.md). */
function verifySignature(rawBody: Buffer, header: string | undefined, key: string): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', key).update(rawBody).digest('hex')}`);
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function failure(p: Promise<unknown>): Promise<RekeyError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(RekeyError);
  return e as RekeyError;
}

function expectClean(text: string, ...secrets: string[]): void {
  for (const s of secrets) expect(text).not.toContain(s);
}

const shown = (e: RekeyError) => `${renderError(e)}\n${e.message}\n${String(e.stack)}\n${JSON.stringify(e)}`;

describe('webhook target over http', () => {
  it('POSTs policy, version, fingerprint and rotatedAt, signed; no token by default', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(204));
    const log = captureLogger();
    const t = target({ url: rx.url, secretEnv: 'HOOK_KEY' }, log);
    expect(t.phase).toBe('notify');
    expect(t.description).toBe(`webhook ${rx.url}`);
    const token = makeToken();
    const ctx = makeContext('api', token, 7, makeToken(), log);
    await t.notify!(ctx);

    expect(rx.requests).toHaveLength(1);
    const r = rx.requests[0]!;
    expect(r.method).toBe('POST');
    expect(r.url).toBe('/hook');
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['user-agent']).toBe('rekey');
    expect(JSON.parse(r.body.toString('utf8'))).toEqual({
      policy: 'api',
      version: 7,
      fingerprint: sha256(token).slice(0, 8),
      rotatedAt: ctx.rotatedAt.toISOString(),
    });
    expect(r.body.toString('utf8')).not.toContain(token);
    expect(verifySignature(r.body, r.headers['x-rekey-signature'] as string, KEY)).toBe(true);
    expect(verifySignature(r.body, r.headers['x-rekey-signature'] as string, 'another-key-entirely')).toBe(false);
    expectClean(log.text(), token, KEY);
  });

  it('sends no signature header without secretEnv', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(200));
    await target({ url: rx.url }).notify!(makeContext('api', makeToken(), 2));
    expect(rx.requests[0]!.headers['x-rekey-signature']).toBeUndefined();
  });

  it('refuses to send when the secretEnv variable is not set', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(200));
    const t = createWebhookTarget(config({ url: rx.url, secretEnv: 'MISSING_KEY' }), { policy: 'api', env: {}, log: captureLogger() });
    targets.push(t);
    const err = await failure(t.notify!(makeContext('api', makeToken(), 2)));
    expect(err.code).toBe('CONFIG');
    expect(err.message).toContain('MISSING_KEY');
    expect(rx.requests).toHaveLength(0);
  });

  it('refuses includeToken over http at runtime, even if the loader was bypassed', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(200));
    const token = makeToken();
    const err = await failure(target({ url: rx.url, includeToken: true }).notify!(makeContext('api', token, 2)));
    expect(err.code).toBe('CONFIG');
    expect(err.message).toContain('https://');
    expect(rx.requests).toHaveLength(0);
    expectClean(shown(err), token);
  });

  it('retries 500 and 503, then succeeds', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(500, 503, 200));
    const log = captureLogger();
    await target({ url: rx.url, retries: 3 }, log).notify!(makeContext('api', makeToken(), 2, undefined, log));
    expect(rx.requests).toHaveLength(3);
    expect(log.text()).toContain('retrying');
  });

  it('retries 429', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(429, 200));
    await target({ url: rx.url, retries: 1 }).notify!(makeContext('api', makeToken(), 2));
    expect(rx.requests).toHaveLength(2);
  });

  it('gives up after retries + 1 attempts with a transient error', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(502));
    const err = await failure(target({ url: rx.url, retries: 2 }).notify!(makeContext('api', makeToken(), 2)));
    expect(rx.requests).toHaveLength(3);
    expect(err.code).toBe('TARGET_TRANSIENT');
    expect(err.transient).toBe(true);
    expect(err.message).toBe(`webhook ${rx.url}: all 3 attempts failed, the last with HTTP 502; check that the receiver is up`);
  });

  it('does not retry 400', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(400, 200));
    const err = await failure(target({ url: rx.url, retries: 3 }).notify!(makeContext('api', makeToken(), 2)));
    expect(rx.requests).toHaveLength(1);
    expect(err.code).toBe('TARGET');
    expect(err.transient).toBe(false);
    expect(err.message).toContain('HTTP 400');
  });

  it('403 and 401 are permission errors, not retried', async () => {
    for (const code of [403, 401]) {
      const rx = await listen(http.createServer(), 'http', statuses(code, 200));
      const err = await failure(target({ url: rx.url, retries: 3 }).notify!(makeContext('api', makeToken(), 2)));
      expect(rx.requests).toHaveLength(1);
      expect(err.code).toBe('TARGET_PERMISSION');
      expect(err.message).toContain(`HTTP ${code}`);
    }
  });

  it('does not follow redirects', async () => {
    const rx = await listen(http.createServer(), 'http', (_req, res) => res.writeHead(302, { Location: 'http://127.0.0.1:1/elsewhere' }).end());
    const err = await failure(target({ url: rx.url, retries: 3 }).notify!(makeContext('api', makeToken(), 2)));
    expect(rx.requests).toHaveLength(1);
    expect(err.message).toContain('redirect (HTTP 302)');
  });

  it('a receiver that never answers times out each attempt, then fails transient', async () => {
    const rx = await listen(http.createServer(), 'http', () => undefined); // never responds
    const err = await failure(target({ url: rx.url, timeoutMs: 150, retries: 1 }).notify!(makeContext('api', makeToken(), 2)));
    expect(rx.requests).toHaveLength(2);
    expect(err.code).toBe('TARGET_TRANSIENT');
    expect(err.message).toContain('no answer within 150 ms');
  });

  it('a closed port is a transient network error', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(200));
    const url = rx.url;
    await rx.close();
    servers.splice(servers.indexOf(rx), 1);
    const err = await failure(target({ url, retries: 1 }).notify!(makeContext('api', makeToken(), 2)));
    expect(err.code).toBe('TARGET_TRANSIENT');
    expect(err.message).toContain('the last with connection refused');
  });

  it('never shows userinfo or the query string, though both are used', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(403));
    const url = rx.url.replace('http://', 'http://hookuser:hook-password-xyz@') + '?key=query-secret-abc';
    const log = captureLogger();
    const t = target({ url }, log);
    expect(t.description).toBe(`webhook ${rx.url}`);
    const err = await failure(t.notify!(makeContext('api', makeToken(), 2, undefined, log)));
    expect(rx.requests[0]!.url).toBe('/hook?key=query-secret-abc');
    expect(rx.requests[0]!.headers.authorization).toBe(`Basic ${Buffer.from('hookuser:hook-password-xyz').toString('base64')}`);
    expectClean(shown(err) + log.text(), 'hook-password-xyz', 'query-secret-abc');
  });

  it('snapshot, stage, promote, rollback and retire are no-ops; nothing can be read back', async () => {
    const rx = await listen(http.createServer(), 'http', statuses(500));
    const t = target({ url: rx.url });
    const ctx = makeContext('api', makeToken(), 2);
    const snap = await t.snapshot(ctx);
    await t.stage(ctx, snap);
    await t.promote(ctx, snap);
    await t.rollback(ctx, snap);
    await t.retire({ policy: 'api', now: new Date(), log: captureLogger() });
    expect(await t.readBack()).toBeUndefined();
    expect(rx.requests).toHaveLength(0);
  });
});

describe('webhook target over https', () => {
  let dir: string;
  let key: string;
  let cert: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rekey-webhook-tls-'));
    // A self-signed certificate for 127.0.0.1 from the real openssl; targets given `ca` trust it.
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    ], { stdio: 'ignore' });
    key = await readFile(join(dir, 'key.pem'), 'utf8');
    cert = await readFile(join(dir, 'cert.pem'), 'utf8');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('includeToken sends the token over https, signed', async () => {
    const rx = await listen(https.createServer({ key, cert }), 'https', statuses(200));
    const token = makeToken();
    const log = captureLogger();
    await target({ url: rx.url, includeToken: true, secretEnv: 'HOOK_KEY' }, log, { ca: cert }).notify!(makeContext('api', token, 3, undefined, log));
    const r = rx.requests[0]!;
    expect(JSON.parse(r.body.toString('utf8')).token).toBe(token);
    expect(verifySignature(r.body, r.headers['x-rekey-signature'] as string, KEY)).toBe(true);
    expectClean(log.text(), token, KEY);
  });

  it('includeToken needs the token in memory; after a restart nothing is sent', async () => {
    const rx = await listen(https.createServer({ key, cert }), 'https', statuses(200));
    const { token: _t, ...later } = makeContext('api', makeToken(), 3);
    const err = await failure(target({ url: rx.url, includeToken: true }, captureLogger(), { ca: cert }).notify!(later));
    expect(err.code).toBe('TARGET');
    expect(rx.requests).toHaveLength(0);
  });

  it('an untrusted certificate fails at once with a TLS message', async () => {
    const rx = await listen(https.createServer({ key, cert }), 'https', statuses(200));
    const token = makeToken();
    const err = await failure(target({ url: rx.url, includeToken: true, retries: 3 }).notify!(makeContext('api', token, 3)));
    expect(err.code).toBe('TARGET');
    expect(err.message).toContain('TLS handshake failed (DEPTH_ZERO_SELF_SIGNED_CERT)');
    expect(rx.requests).toHaveLength(0);
    expectClean(shown(err), token);
  });

  it('no token, previous token or signing key in any error or log of a failing receiver', async () => {
    // The receiver echoes what it got, as a careless one would.
    const rx = await listen(https.createServer({ key, cert }), 'https', (req, res) => {
      const code = [500, 403, 400][(rx.requests.length - 1) % 3]!;
      res.writeHead(code, { 'X-Echo': req.headers['x-rekey-signature'] as string }).end(req.body);
    });
    for (const retries of [1, 0, 0]) {
      const token = makeToken();
      const previous = makeToken();
      const log = captureLogger();
      const t = target({ url: rx.url, includeToken: true, secretEnv: 'HOOK_KEY', retries }, log, { ca: cert });
      const ctx = makeContext('api', token, 4, previous, log);
      const err = await failure(t.notify!(ctx));
      expect(err.message.includes('\n')).toBe(false);
      expectClean(`${shown(err)}\n${log.text()}`, token, previous, KEY);
    }
    expect(rx.requests.length).toBeGreaterThanOrEqual(3);
  });
});
