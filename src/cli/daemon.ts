import { findConfigFile } from '../config/loader.js';
import { parseListen, type ListenAddress } from '../observability/http.js';
import type { LogFormat } from '../observability/logger.js';
import { parseDuration } from '../util/duration.js';
import { RekeyError } from '../util/errors.js';
import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';

export function parseShutdownTimeout(v: unknown): number {
  if (v === undefined) return 30_000;
  const ms = parseDuration(String(v));
  if (ms === undefined) throw new RekeyError('USAGE', `--shutdown-timeout must be a duration such as 30s or 2m, not "${String(v)}"`);
  return ms;
}

export function parseLogFormat(v: unknown, isTTY: boolean): LogFormat {
  if (v === undefined) return isTTY ? 'pretty' : 'json';
  if (v !== 'json' && v !== 'pretty') throw new RekeyError('USAGE', `--log-format must be json or pretty, not "${String(v)}"`);
  return v as LogFormat;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export function parseLogLevel(v: string | undefined): string {
  if (v === undefined || v === '') return 'info';
  if (!LEVELS.includes(v)) throw new RekeyError('USAGE', `REKEY_LOG_LEVEL must be one of ${LEVELS.join(', ')}, not "${v}"`);
  return v;
}

export const daemon: Command = {
  name: 'daemon',
  summary: 'run every policy on its schedule (catch-up, retries, grace retirement, metrics)',
  usage: `Usage: rekey daemon [-c FILE] [--listen HOST:PORT] [--shutdown-timeout 30s] [--log-format json|pretty]

Runs in the foreground (systemd: config/rekey.service) and rotates each policy on its
schedule or every interval. At start, and after every reload, policies that are overdue
(for example because the host was off) are rotated once. Failed rotations are retried
after 1m, 2m, 4m ... up to 1h, or at the next regular time if that comes first. Previous
tokens are retired when their grace period ends. One daemon per state directory.

Signals: SIGHUP re-reads the config (a broken config is logged and the old one kept);
SIGTERM/SIGINT stop taking work and let rotations in flight finish, then exit 0.

Options:
${CONFIG_HELP}
      --listen HOST:PORT        serve GET /metrics and GET /healthz there (off by default),
                                e.g. 127.0.0.1:9464; binds exactly that address
      --shutdown-timeout DUR    how long rotations in flight may finish after SIGTERM (default 30s)
      --log-format FORMAT       json (default when stdout is not a terminal) or pretty

Environment: REKEY_LOG_LEVEL (debug, info, warn, error; default info).

Examples:
  rekey daemon -c /etc/rekey/rekey.yaml --listen 127.0.0.1:9464
  kill -HUP $(pidof rekey)     # apply an edited config`,
  options: {
    ...CONFIG_OPTIONS,
    listen: { type: 'string' },
    'shutdown-timeout': { type: 'string' },
    'log-format': { type: 'string' },
  },
  async run({ values }, io) {
    const listen: ListenAddress | undefined = values.listen !== undefined ? parseListen(String(values.listen)) : undefined;
    const shutdownTimeoutMs = parseShutdownTimeout(values['shutdown-timeout']);
    const format = parseLogFormat(values['log-format'], io.isTTY);
    const level = parseLogLevel(io.env.REKEY_LOG_LEVEL);
    // Loaded here, not at CLI start: one-shot commands need neither pino, prom-client nor node-cron.
    const [{ createLogger }, { DaemonRuntime }] = await Promise.all([import('../observability/logger.js'), import('../scheduler/daemon.js')]);
    const log = createLogger({ format, write: (line) => io.stdout(line), color: format === 'pretty' && io.isTTY, level });
    const configFile = findConfigFile(values.config as string | undefined, io.env, io.cwd);
    const runtime = new DaemonRuntime({ configFile, env: io.env, log, shutdownTimeoutMs, ...(listen ? { listen } : {}) });

    // Handlers go in before start: SIGHUP's default action would kill a starting daemon.
    let started = false;
    let pendingStop: string | undefined;
    let pendingReload = false;
    const onHup = (): void => {
      if (started) void runtime.reload();
      else pendingReload = true;
    };
    const onStop = (signal: NodeJS.Signals): void => {
      if (started) void runtime.shutdown(`${signal} received`);
      else pendingStop = signal;
    };
    process.on('SIGHUP', onHup);
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    const unhook = (): void => {
      process.off('SIGHUP', onHup);
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
    };
    try {
      await runtime.start();
    } catch (e) {
      unhook();
      throw e;
    }
    started = true;
    if (pendingStop) void runtime.shutdown(`${pendingStop} received`);
    else if (pendingReload) void runtime.reload();
    const result = await runtime.stopped;
    unhook();
    if (!result.drained) {
      // Rotations still in flight (their child processes) would keep the process alive; the
      // journal lets the next start finish or undo them. Let main.ts set the exit code first.
      setTimeout(() => process.exit(0), 1_000).unref();
    }
    return 0;
  },
};
