/**
 * The --listen endpoint: GET /metrics (Prometheus text format) and GET /healthz. It binds exactly
 * the host and port it is given (off by default) and answers 404 to everything else.
 */
import http from 'node:http';
import { isIP } from 'node:net';
import { RekeyError } from '../util/errors.js';
import type { HealthStatus } from './health.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** "127.0.0.1:9464", "[::1]:9464", "localhost:9464". The host is required: no implicit 0.0.0.0. */
export function parseListen(value: string): ListenAddress {
  const bad = (why: string): RekeyError =>
    new RekeyError('USAGE', `--listen "${value}" ${why}; give HOST:PORT such as 127.0.0.1:9464 or [::1]:9464`);
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/]+)):(\d{1,5})$/.exec(value.trim());
  if (!m) throw bad('is not HOST:PORT');
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port > 65_535) throw bad('has a port outside 0-65535');
  if (m[1] !== undefined && isIP(host) !== 6) throw bad('has an invalid IPv6 address');
  if (m[2] !== undefined && isIP(host) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(host)) {
    throw bad('has an invalid host name');
  }
  if (m[2] !== undefined && /^\d+(\.\d+)*$/.test(host) && isIP(host) !== 4) throw bad('has an invalid IPv4 address');
  return { host, port };
}

export function formatListen(a: ListenAddress): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export interface HttpHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  health(): HealthStatus;
}

export interface HttpServer {
  /** Where it really listens (port 0 becomes the chosen port). */
  address: ListenAddress;
  close(): Promise<void>;
}

export async function startHttpServer(addr: ListenAddress, handlers: HttpHandlers): Promise<HttpServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(404, 'text/plain; charset=utf-8', 'not found\n');
    if (path === '/metrics') {
      handlers.metrics().then(
        (m) => send(200, m.contentType, m.body),
        () => send(500, 'text/plain; charset=utf-8', 'metrics unavailable\n'),
      );
      return;
    }
    if (path === '/healthz') {
      const h = handlers.health();
      return send(h.ok ? 200 : 503, 'application/json', `${JSON.stringify(h)}\n`);
    }
    return send(404, 'text/plain; charset=utf-8', 'not found\n');
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      const code = e.code ?? 'error';
      const hint =
        code === 'EADDRINUSE' ? 'another process uses that port'
          : code === 'EADDRNOTAVAIL' ? 'that address is not on this host'
            : code === 'EACCES' ? 'ports below 1024 need privileges'
              : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'the host name does not resolve'
                : 'the listener could not start';
      reject(new RekeyError('USAGE', `cannot listen on ${formatListen(addr)} (${code}: ${hint}); pick another --listen address`, { exitCode: 3 }));
    };
    server.once('error', onError);
    server.listen({ host: addr.host, port: addr.port, exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const bound = server.address();
  const address = bound && typeof bound === 'object' ? { host: addr.host, port: bound.port } : addr;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
