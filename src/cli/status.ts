/**
 * `rekey status`: one row per policy from the config, the state and the last-attempt records.
 * Works with or without a running daemon (it only reads files; no openssl needed).
 */
import type { Config, Policy } from '../config/types.js';
import { LocalLockProvider } from '../coordination/local-lock.js';
import { dueInfo, isStale, scheduleKind, tokenAgeMs, type ScheduleKind } from '../rotation/plan.js';
import { DAEMON_LOCK } from '../scheduler/daemon-lock.js';
import { StateStore, type AttemptRecord, type PolicyState } from '../state/store.js';
import { formatDuration } from '../util/duration.js';
import { describeForeign, isRekeyError } from '../util/errors.js';
import { mapLimit } from '../util/limit.js';
import { redact } from '../util/secret.js';
import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';
import { readConfig } from './context.js';

/** The documented `rekey status --json` shape (docs/daemon.md). Add fields; never rename or remove. */
export interface StatusReport {
  schemaVersion: 1;
  generatedAt: string;
  config: string;
  stateDir: string;
  daemon: { running: boolean; pid: number | null; host: string | null; since: string | null };
  policies: StatusPolicy[];
}

export interface StatusPolicy {
  name: string;
  schedule: StatusSchedule;
  version: number | null;
  fingerprint: string | null;
  rotatedAt: string | null;
  ageSeconds: number | null;
  lastAttempt: { result: 'success' | 'failure'; at: string; consecutiveFailures: number; error: string | null } | null;
  nextRotation: string | null;
  nextRotationInSeconds: number | null;
  due: boolean;
  graceUntil: string | null;
  maxAgeSeconds: number | null;
  stale: boolean;
  error: string | null;
}

export interface StatusSchedule {
  kind: ScheduleKind;
  cron: string | null;
  timezone: string | null;
  everySeconds: number | null;
  jitterSeconds: number;
}

export interface PolicyData {
  state?: PolicyState | undefined;
  attempt?: AttemptRecord | undefined;
  /** The state or attempt record could not be read. */
  error?: string;
}

export interface DaemonInfo {
  running: boolean;
  pid?: number;
  host?: string;
  since?: string;
}

/** "2025-01-02T03:04:05Z": ISO to the second. */
export function isoSeconds(d: Date | string): string {
  return (typeof d === 'string' ? new Date(d) : d).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** "in 3d 4h", "3d 4h ago", "now". */
export function relative(ms: number): string {
  if (Math.abs(ms) < 1000) return 'now';
  return ms > 0 ? `in ${formatDuration(ms)}` : `${formatDuration(-ms)} ago`;
}

export function scheduleOf(p: Policy): StatusSchedule {
  const kind = scheduleKind(p);
  return {
    kind,
    cron: kind === 'schedule' ? p.schedule! : null,
    timezone: kind === 'schedule' ? p.timezone : null,
    everySeconds: kind === 'every' ? p.everyMs! / 1000 : null,
    jitterSeconds: p.jitterMs / 1000,
  };
}

/** Pure: config + state + attempts + time -> the status report. */
export function buildStatus(config: Config, data: ReadonlyMap<string, PolicyData>, now: Date, daemon: DaemonInfo): StatusReport {
  const policies = config.policies.map((p): StatusPolicy => {
    const d = data.get(p.name) ?? {};
    const s = d.state;
    let next: Date | undefined;
    let error = d.error ?? null;
    try {
      next = dueInfo(p, s, now)?.dueAt;
    } catch (e) {
      error = isRekeyError(e) ? e.message : describeForeign(e);
    }
    const age = tokenAgeMs(s, now);
    const a = d.attempt;
    return {
      name: p.name,
      schedule: scheduleOf(p),
      version: s?.version ?? null,
      fingerprint: s?.fingerprint ?? null,
      rotatedAt: s?.rotatedAt ?? null,
      ageSeconds: age === undefined ? null : Math.floor(age / 1000),
      // Only failures are recorded apart; the last success is the state's own rotation time.
      lastAttempt: a
        ? { result: a.result, at: a.at, consecutiveFailures: a.consecutiveFailures, error: a.error ?? null }
        : s
          ? { result: 'success', at: s.rotatedAt, consecutiveFailures: 0, error: null }
          : null,
      nextRotation: next ? next.toISOString() : null,
      nextRotationInSeconds: next ? Math.round((next.getTime() - now.getTime()) / 1000) : null,
      due: next !== undefined && next.getTime() <= now.getTime(),
      graceUntil: s?.previous?.validUntil ?? null,
      maxAgeSeconds: p.maxAgeMs === undefined ? null : p.maxAgeMs / 1000,
      stale: isStale(p, s, now),
      error,
    };
  });
  return {
    schemaVersion: 1,
    generatedAt: now.toISOString(),
    config: config.file,
    stateDir: config.stateDir,
    daemon: { running: daemon.running, pid: daemon.pid ?? null, host: daemon.host ?? null, since: daemon.since ?? null },
    policies,
  };
}

function lastResult(p: StatusPolicy, now: Date): string {
  const a = p.lastAttempt;
  if (!a) return p.version === null ? 'never' : '-';
  const ago = relative(Date.parse(a.at) - now.getTime());
  if (a.result === 'success') return `ok ${ago}`;
  return `FAILED${a.consecutiveFailures > 1 ? ` x${a.consecutiveFailures}` : ''} ${ago}`;
}

function nextText(p: StatusPolicy): string {
  if (p.error && p.nextRotation === null && p.schedule.kind !== 'manual') return 'unknown (see below)';
  if (p.schedule.kind === 'manual') return 'manual';
  if (p.nextRotation === null) return '-';
  if (p.version === null) return 'now (first rotation)';
  const ms = p.nextRotationInSeconds! * 1000;
  if (p.due) return `overdue since ${isoSeconds(p.nextRotation)} (${relative(ms)})`;
  return `${isoSeconds(p.nextRotation)} (${relative(ms)})`;
}

/** The human table. */
export function renderStatus(r: StatusReport, now: Date): string {
  const head = ['POLICY', 'VERSION', 'AGE', 'LAST RESULT', 'NEXT ROTATION', 'GRACE UNTIL', 'STALE'];
  const rows = r.policies.map((p) => [
    p.name,
    p.version === null ? '-' : `v${p.version}`,
    p.ageSeconds === null ? '-' : formatDuration(p.ageSeconds * 1000),
    lastResult(p, now),
    nextText(p),
    p.graceUntil && Date.parse(p.graceUntil) > now.getTime() ? isoSeconds(p.graceUntil) : '-',
    p.stale ? `YES (maxAge ${formatDuration(p.maxAgeSeconds! * 1000)})` : p.maxAgeSeconds === null ? '-' : 'no',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(head), ...rows.map(line)];
  if (r.policies.length === 0) out.push('(no policies)');
  const notes: string[] = [];
  for (const p of r.policies) {
    if (p.error) notes.push(`${p.name}: ${p.error}`);
    else if (p.lastAttempt?.result === 'failure' && p.lastAttempt.error) notes.push(`${p.name}: last error: ${p.lastAttempt.error}`);
  }
  if (notes.length) out.push('', ...notes);
  const d = r.daemon;
  out.push('', d.running ? `daemon: running (pid ${d.pid}${d.host ? ` on ${d.host}` : ''}, since ${d.since ?? 'unknown'})` : `daemon: not running on ${r.stateDir}`);
  return redact(`${out.join('\n')}\n`);
}

/** Read state and attempt records of every policy (missing files are fine). */
export async function readPolicyData(store: StateStore, policies: Policy[]): Promise<Map<string, PolicyData>> {
  const out = new Map<string, PolicyData>();
  await mapLimit(policies, 32, async (p) => {
    const d: PolicyData = {};
    try {
      d.state = await store.read(p.name);
    } catch (e) {
      d.error = isRekeyError(e) ? e.message : describeForeign(e);
    }
    try {
      d.attempt = await store.readAttempt(p.name);
    } catch (e) {
      d.error ??= isRekeyError(e) ? e.message : describeForeign(e);
    }
    out.set(p.name, d);
  });
  return out;
}

export async function daemonInfo(store: StateStore): Promise<DaemonInfo> {
  try {
    const owner = await new LocalLockProvider(store.path('locks')).owner(DAEMON_LOCK);
    return owner ? { running: true, pid: owner.pid, host: owner.hostname, since: owner.acquiredAt } : { running: false };
  } catch {
    return { running: false };
  }
}

export const status: Command = {
  name: 'status',
  summary: 'show every policy: version, age, last result, next rotation, grace, stale',
  usage: `Usage: rekey status [-c FILE] [--json]

One row per policy: current version, token age, last result, next rotation (absolute and
relative), end of the previous token's grace period, and whether the token is older than
maxAge. Reads the config and the state directory only: works whether or not a daemon runs.

Options:
${CONFIG_HELP}
      --json   print the documented JSON report (schemaVersion 1; see docs/daemon.md)

Examples:
  rekey status
  rekey status --json | jq '.policies[] | select(.stale)'`,
  options: { ...CONFIG_OPTIONS, json: { type: 'boolean' } },
  async run({ values }, io) {
    const config = await readConfig(values, io);
    const store = new StateStore(config.stateDir);
    const [data, daemon] = await Promise.all([readPolicyData(store, config.policies), daemonInfo(store)]);
    const now = new Date();
    const report = buildStatus(config, data, now, daemon);
    io.stdout(values.json ? `${redact(JSON.stringify(report, null, 2))}\n` : renderStatus(report, now));
    return 0;
  },
};
