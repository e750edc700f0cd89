/**
 * The daemon's logger: pino, one JSON object per line when stdout is not a TTY, readable lines
 * on a TTY (formatted here rather than with pino-pretty's worker thread, to keep memory low).
 *
 * Redaction happens twice: string arguments are passed through redact() before pino formats
 * them (hooks.logMethod), and every finished line is passed through redact() again before it
 * is written, so a registered secret never reaches the output even when some code logs it in
 * an object by mistake. A Secret object serializes as [redacted] on its own.
 */
import { pino, type Logger as PinoLogger } from 'pino';
import type { Logger } from '../targets/contract.js';
import { redact } from '../util/secret.js';

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

export interface DaemonLogger extends Logger {
  debug(obj: Record<string, unknown>, msg: string): void;
  /** The underlying pino logger (child loggers, level changes). */
  readonly pino: PinoLogger;
}

export interface LoggerOptions {
  format: LogFormat;
  /** Where finished lines go (each ends in "\n"). */
  write: (line: string) => void;
  /** pino level name; default "info". */
  level?: string;
  /** ANSI colours in pretty mode. */
  color?: boolean;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLORS: Record<string, string> = { TRACE: '90', DEBUG: '90', INFO: '32', WARN: '33', ERROR: '31', FATAL: '35' };
const HIDDEN = new Set(['time', 'level', 'msg', 'pid', 'hostname']);

/** One pino JSON line as a readable line: time, level, message, then key=value fields. */
export function formatPretty(jsonLine: string, color = false): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return jsonLine.endsWith('\n') ? jsonLine : `${jsonLine}\n`;
  }
  const level = typeof rec.level === 'number' ? (LEVEL_NAMES[rec.level] ?? String(rec.level)) : String(rec.level ?? 'INFO').toUpperCase();
  const time = typeof rec.time === 'string' ? rec.time : typeof rec.time === 'number' ? new Date(rec.time).toISOString() : '';
  const fields = Object.entries(rec)
    .filter(([k, v]) => !HIDDEN.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)}`);
  const lvl = level.padEnd(5);
  const paint = (code: string | undefined, text: string): string => (color && code ? `\u001b[${code}m${text}\u001b[0m` : text);
  const tail = fields.length > 0 ? `  ${paint('90', fields.join(' '))}` : '';
  return `${paint('90', time)} ${paint(LEVEL_COLORS[level], lvl)} ${String(rec.msg ?? '')}${tail}\n`;
}

export function createLogger(opts: LoggerOptions): DaemonLogger {
  const sink = {
    write(line: string): void {
      const clean = redact(line);
      opts.write(opts.format === 'pretty' ? redact(formatPretty(clean, opts.color ?? false)) : clean);
    },
  };
  const logger = pino(
    {
      level: opts.level ?? 'info',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          const clean = (args as unknown[]).map((a) => (typeof a === 'string' ? redact(a) : a));
          (method as (...a: unknown[]) => void).apply(this, clean);
        },
      },
    },
    sink,
  );
  return {
    pino: logger,
    debug: (obj, msg) => logger.debug(obj, msg),
    info: (obj, msg) => logger.info(obj, msg),
    warn: (obj, msg) => logger.warn(obj, msg),
    error: (obj, msg) => logger.error(obj, msg),
  };
}
