/**
 * webhook target: after a rotation is committed, POSTs {policy, version, fingerprint, rotatedAt}
 * (and the token, only when includeToken is set and the URL is https://) to a URL, signed with
 * HMAC-SHA256 when secretEnv names a key. A failure is reported, never rolled back.
 * The shared HTTP client (./http.ts) follows no redirects, so a redirect cannot carry the token
 * elsewhere, and never keeps a foreign error message.
 */
import { createHmac } from 'node:crypto';
import type { WebhookTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import { registerSecret } from '../util/secret.js';
import type { RotationContext, Target, TargetEnv } from './contract.js';
import { createHttpClient, HttpFailure } from './http.js';
import { sleep } from '../util/limit.js';
import { safeUrl } from '../util/url.js';

export interface WebhookOptions {
  /** CA certificates (PEM) trusted instead of the default roots for https:// URLs. A test hook: the tests use it for their self-signed receiver. */
  ca?: string | Buffer;
  /** Base of the exponential backoff between attempts, in ms. Default 200. */
  retryBaseMs?: number;
}


export function createWebhookTarget(config: WebhookTargetConfig, env: TargetEnv, options: WebhookOptions = {}): Target {
  const url = new URL(config.url);
  const description = `webhook ${safeUrl(config.url)}`;
  const retryBaseMs = options.retryBaseMs ?? 200;
  const client = createHttpClient({ timeoutMs: config.timeoutMs, ...(options.ca !== undefined ? { ca: options.ca } : {}) });

  function body(ctx: RotationContext): string {
    const payload: Record<string, unknown> = {
      policy: ctx.policy,
      version: ctx.version,
      fingerprint: ctx.fingerprint,
      rotatedAt: ctx.rotatedAt.toISOString(),
    };
    if (config.includeToken) {
      // The config loader refuses this too; a token never crosses the network in clear text.
      if (url.protocol !== 'https:') {
        throw new RekeyError('CONFIG', `${description}: includeToken needs an https:// url; nothing was sent`);
      }
      if (ctx.token === undefined) {
        throw new RekeyError('TARGET', `${description}: includeToken is set but the token is no longer in memory (the rotation was finished by a later process); nothing was sent, tell the receiver by hand`);
      }
      payload.token = ctx.token.reveal();
    }
    return JSON.stringify(payload);
  }

  function headers(data: string): Record<string, string> {
    const h: Record<string, string> = { 'Content-Type': 'application/json', 'User-Agent': 'rekey' };
    if (config.secretEnv !== undefined) {
      const key = env.env[config.secretEnv];
      if (key === undefined || key === '') {
        throw new RekeyError('CONFIG', `${description}: environment variable ${config.secretEnv} (secretEnv) is not set; set it to the signing key the receiver checks`);
      }
      registerSecret(key);
      // Over the exact bytes sent: the client writes the body as UTF-8.
      h['X-Rekey-Signature'] = `sha256=${createHmac('sha256', key).update(Buffer.from(data, 'utf8')).digest('hex')}`;
    }
    return h;
  }

  /** HTTP status, or the transport failure (its message is ours and safe). */
  async function attempt(data: string, h: Record<string, string>): Promise<number | HttpFailure> {
    try {
      return (await client.request({ method: 'POST', url, headers: h, body: data })).status;
    } catch (e) {
      if (e instanceof HttpFailure) return e;
      throw new RekeyError('INTERNAL', `${description}: unexpected failure while sending`);
    }
  }

  const outcome = (a: number | HttpFailure): string => (typeof a === 'number' ? `HTTP ${a}` : a.describe(config.timeoutMs));

  return {
    kind: 'webhook',
    description,
    phase: 'notify',

    async snapshot() {
      return { meta: {} };
    },
    async stage() {},
    async promote() {},
    async rollback() {},
    async retire() {},
    async readBack() {
      return undefined;
    },
    async close() {
      client.close();
    },

    async notify(ctx) {
      const data = body(ctx);
      const h = headers(data);
      const attempts = config.retries + 1;
      let last: number | HttpFailure = 0;
      for (let i = 1; i <= attempts; i++) {
        last = await attempt(data, h);
        if (typeof last === 'number') {
          const s = last;
          if (s >= 200 && s < 300) {
            ctx.log.info({ target: description, status: s, attempt: i }, 'webhook delivered');
            return;
          }
          if (s === 401 || s === 403) {
            throw new RekeyError('TARGET_PERMISSION', `${description}: the receiver refused the notification (HTTP ${s}); check that it accepts this sender and the signing key in secretEnv`);
          }
          if (s >= 300 && s < 400) {
            throw new RekeyError('TARGET', `${description}: the receiver answered with a redirect (HTTP ${s}), which is not followed; set url to the final address`);
          }
          if (s !== 429 && s < 500) {
            throw new RekeyError('TARGET', `${description}: the receiver rejected the notification (HTTP ${s}); check what it expects`);
          }
        } else if (last.kind === 'tls') {
          throw new RekeyError('TARGET', `${description}: ${outcome(last)}; give the receiver a certificate this host trusts (or add its CA with NODE_EXTRA_CA_CERTS)`);
        } else if (!last.transient) {
          throw new RekeyError('TARGET', `${description}: ${outcome(last)}; check the url`);
        }
        if (i < attempts) {
          const ceiling = retryBaseMs * 2 ** (i - 1);
          const delayMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
          ctx.log.warn({ target: description, attempt: i, of: attempts, outcome: outcome(last), delayMs }, 'webhook attempt failed; retrying');
          await sleep(delayMs);
        }
      }
      throw new RekeyError('TARGET_TRANSIENT', `${description}: ${attempts === 1 ? 'the attempt' : `all ${attempts} attempts`} failed, the last with ${outcome(last)}; check that the receiver is up`);
    },
  };
}
