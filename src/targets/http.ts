/**
 * A small HTTP(S) client for targets that speak plain HTTP APIs (vault-kv). node:http/https
 * rather than fetch, because a custom CA (caFile) needs an https.Agent. One deadline covers the
 * whole exchange, bodies are capped, and failures are classified without keeping the foreign
 * error: its message could name a host with userinfo, and nothing here is allowed to carry it on.
 */
import http from 'node:http';
import https from 'node:https';

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  /** Request body (already serialised). Never logged, never put in an error. */
  body?: string;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export type HttpFailureKind = 'timeout' | 'refused' | 'reset' | 'unreachable' | 'dns' | 'tls' | 'too-large' | 'network';

/** A transport failure: no HTTP status came back. Its message is ours, never the foreign one. */
export class HttpFailure extends Error {
  readonly kind: HttpFailureKind;
  /** The errno / OpenSSL code, e.g. ECONNREFUSED or CERT_HAS_EXPIRED (safe to show). */
  readonly errno: string | undefined;

  constructor(kind: HttpFailureKind, errno?: string) {
    super(errno ? `${kind} (${errno})` : kind);
    this.name = 'HttpFailure';
    this.kind = kind;
    this.errno = errno;
  }

  /** Worth retrying: the service may answer next time. An unknown host and TLS trust problems are not. */
  get transient(): boolean {
    if (this.kind === 'dns') return this.errno === 'EAI_AGAIN';
    return this.kind !== 'tls' && this.kind !== 'too-large';
  }

  /** A short phrase for an error message, e.g. "no answer within 10000 ms". */
  describe(timeoutMs: number): string {
    switch (this.kind) {
      case 'timeout':
        return `no answer within ${timeoutMs} ms`;
      case 'refused':
        return 'connection refused';
      case 'reset':
        return `connection dropped (${this.errno ?? 'reset'})`;
      case 'unreachable':
        return `host unreachable (${this.errno ?? 'unreachable'})`;
      case 'dns':
        return `cannot resolve the host name (${this.errno ?? 'dns'})`;
      case 'tls':
        return `TLS handshake failed (${this.errno ?? 'tls'})`;
      case 'too-large':
        return 'the answer was too large';
      default:
        return `network error (${this.errno ?? 'unknown'})`;
    }
  }
}

export interface HttpClientOptions {
  timeoutMs: number;
  /** Extra trusted CA certificates (PEM) for https:// URLs. */
  ca?: Buffer | string;
  /** Largest answer accepted; default 4 MiB. */
  maxBodyBytes?: number;
}

export interface HttpClient {
  request(req: HttpRequest): Promise<HttpResponse>;
  /** Drop idle keep-alive sockets. */
  close(): void;
}

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH|ERR_OSSL_)/;

function classify(e: unknown): HttpFailure {
  if (e instanceof HttpFailure) return e;
  const code = typeof (e as { code?: unknown } | null)?.code === 'string' ? (e as { code: string }).code : undefined;
  if (!code) return new HttpFailure('network');
  if (code === 'ECONNREFUSED') return new HttpFailure('refused', code);
  if (['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'HPE_INVALID_CONSTANT'].includes(code)) return new HttpFailure('reset', code);
  if (['EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENETDOWN', 'EHOSTDOWN'].includes(code)) return new HttpFailure('unreachable', code);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL') return new HttpFailure('dns', code);
  if (TLS_CODE.test(code)) return new HttpFailure('tls', code);
  return new HttpFailure('network', /^[A-Z0-9_]{2,40}$/.test(code) ? code : undefined);
}

export function createHttpClient(opts: HttpClientOptions): HttpClient {
  const maxBody = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 8, ...(opts.ca ? { ca: opts.ca } : {}) });

  function request(req: HttpRequest): Promise<HttpResponse> {
    return new Promise<HttpResponse>((resolve, reject) => {
      const isHttps = req.url.protocol === 'https:';
      const mod = isHttps ? https : http;
      const headers: Record<string, string> = { Accept: 'application/json', ...(req.headers ?? {}) };
      const body = req.body === undefined ? undefined : Buffer.from(req.body, 'utf8');
      if (body) headers['Content-Length'] = String(body.length);
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const r = mod.request(req.url, { method: req.method, headers, agent: isHttps ? httpsAgent : httpAgent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBody) {
            r.destroy();
            finish(() => reject(new HttpFailure('too-large')));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => finish(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') })));
        res.on('error', (e) => finish(() => reject(classify(e))));
        res.on('aborted', () => finish(() => reject(new HttpFailure('reset', 'ECONNRESET'))));
      });
      const timer = setTimeout(() => {
        finish(() => reject(new HttpFailure('timeout')));
        r.destroy();
      }, opts.timeoutMs);
      r.on('error', (e) => finish(() => reject(classify(e))));
      if (body) r.end(body);
      else r.end();
    });
  }

  return {
    request,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

/** Parse a JSON body; undefined when it is empty or not JSON. */
export function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
