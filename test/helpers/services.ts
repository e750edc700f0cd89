/**
 * Real services for tests: PostgreSQL (trust auth, database `test`) and Redis on 127.0.0.1.
 * A test file may skip when a service is down, but only outside CI: under CI=true an
 * unreachable service is a failure, so a broken machine never turns into green skips.
 *
 *   const pgUp = await requireService('postgres');
 *   describe.skipIf(!pgUp)('...', () => { ... });
 */
import { connect } from 'node:net';
import { userInfo } from 'node:os';

export type ServiceName = 'postgres' | 'redis';

function pgUser(): string {
  if (process.env.PGUSER) return process.env.PGUSER;
  try {
    return userInfo().username;
  } catch {
    return 'postgres';
  }
}

/** Connection URL of the test PostgreSQL (override with REKEY_TEST_PG_URL). */
export function pgUrl(): string {
  return process.env.REKEY_TEST_PG_URL ?? `postgres://${encodeURIComponent(pgUser())}@127.0.0.1:5432/test`;
}

/** Connection URL of the test Redis (override with REKEY_TEST_REDIS_URL). */
export function redisUrl(): string {
  return process.env.REKEY_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
}

function hostPort(url: string, fallbackPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname || '127.0.0.1', port: Number(u.port) || fallbackPort };
}

function reachable(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const cache = new Map<ServiceName, Promise<boolean>>();

/**
 * true when the service answers on its port; false when it does not and CI is unset (the caller
 * skips); throws when it does not and CI is set.
 */
export async function requireService(name: ServiceName): Promise<boolean> {
  const { host, port } = name === 'postgres' ? hostPort(pgUrl(), 5432) : hostPort(redisUrl(), 6379);
  let probe = cache.get(name);
  if (!probe) {
    probe = reachable(host, port);
    cache.set(name, probe);
  }
  const up = await probe;
  if (up) return true;
  if (process.env.CI !== undefined && process.env.CI !== '') {
    throw new Error(`${name} is not reachable on ${host}:${port} but CI is set: the test needs the real service`);
  }
  return false;
}
