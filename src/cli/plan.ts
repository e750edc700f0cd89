/** `rekey plan`: every rotation expected in the next N days, in time order. */
import type { Config } from '../config/types.js';
import { scheduleKind, upcoming, type PlannedRotation, type PlanState } from '../rotation/plan.js';
import { StateStore } from '../state/store.js';
import { RekeyError } from '../util/errors.js';
import { redact } from '../util/secret.js';
import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';
import { readConfig } from './context.js';
import { isoSeconds, readPolicyData, relative } from './status.js';

/** The documented `rekey plan --json` shape (docs/daemon.md). Add fields; never rename or remove. */
export interface PlanReport {
  schemaVersion: 1;
  generatedAt: string;
  from: string;
  until: string;
  days: number;
  rotations: PlannedRotation[];
  /** Policies with neither schedule nor every: rotated only by rotate-now. */
  manual: string[];
  /** Policies whose list was cut at 1000 entries. */
  truncated: string[];
  /** Policies whose state could not be read (assumed never rotated). */
  errors: { policy: string; error: string }[];
}

export const MAX_PER_POLICY = 1000;

export function parseDays(v: unknown): number {
  if (v === undefined) return 7;
  const s = String(v).trim();
  const n = Number(s);
  if (!/^\d+$/.test(s) || !Number.isInteger(n) || n < 1 || n > 3660) {
    throw new RekeyError('USAGE', `--days must be a whole number of days from 1 to 3660, not "${String(v)}"`);
  }
  return n;
}

/** Pure: config + states + time -> the plan report. */
export function buildPlan(config: Config, states: ReadonlyMap<string, PlanState | undefined>, now: Date, days: number, errors: PlanReport['errors'] = []): PlanReport {
  const { rotations, truncated } = upcoming(config.policies, states, now, days, { maxPerPolicy: MAX_PER_POLICY });
  return {
    schemaVersion: 1,
    generatedAt: now.toISOString(),
    from: now.toISOString(),
    until: new Date(now.getTime() + days * 86_400_000).toISOString(),
    days,
    rotations,
    manual: config.policies.filter((p) => scheduleKind(p) === 'manual').map((p) => p.name),
    truncated,
    errors,
  };
}

export function renderPlan(r: PlanReport, config: Config, now: Date): string {
  const byName = new Map(config.policies.map((p) => [p.name, p]));
  const out: string[] = [];
  const span = `the next ${r.days} day${r.days === 1 ? '' : 's'} (${isoSeconds(r.from)} to ${isoSeconds(r.until)})`;
  if (r.rotations.length === 0) {
    out.push(`No rotations expected in ${span}.`);
  } else {
    out.push(`Rotations expected in ${span}:`);
    const rows = r.rotations.map((x) => {
      const p = byName.get(x.policy);
      const rule = p?.schedule !== undefined ? `schedule "${p.schedule}" ${p.timezone}` : p?.everyMs !== undefined ? `every ${formatEvery(p.everyMs)}` : '';
      const why = x.reason === 'first' ? 'first rotation (never rotated)' : x.reason === 'overdue' ? `overdue: ${rule}` : rule;
      const when = Date.parse(x.at) - now.getTime();
      return [isoSeconds(x.at), x.reason === 'scheduled' ? relative(when) : 'now', x.policy, why];
    });
    const widths = [0, 1, 2].map((i) => Math.max(...rows.map((row) => row[i]!.length)));
    for (const row of rows) out.push(row.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c)).join('  ').trimEnd());
    out.push(`${r.rotations.length} rotation${r.rotations.length === 1 ? '' : 's'}`);
  }
  if (r.truncated.length) out.push(`(only the first ${MAX_PER_POLICY} of: ${r.truncated.join(', ')})`);
  if (r.manual.length) out.push(`manual only (rotate-now): ${r.manual.join(', ')}`);
  for (const e of r.errors) out.push(`${e.policy}: ${e.error}`);
  return redact(`${out.join('\n')}\n`);
}

function formatEvery(ms: number): string {
  for (const [unit, size] of [['w', 604_800_000], ['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export const plan: Command = {
  name: 'plan',
  summary: 'list every rotation expected in the next N days',
  usage: `Usage: rekey plan [-c FILE] [--days N] [--json]

Lists, in time order, every rotation expected in the next N days (default 7): every cron
time in the window (plus the policy's jitter) and every "every" interval from the next due
time, assuming each rotation succeeds. Overdue and never-rotated policies show as "now".

Options:
${CONFIG_HELP}
      --days N   how many days ahead (1 to 3660; default 7)
      --json     print the documented JSON report (schemaVersion 1; see docs/daemon.md)

Examples:
  rekey plan
  rekey plan --days 30 --json`,
  options: { ...CONFIG_OPTIONS, days: { type: 'string' }, json: { type: 'boolean' } },
  async run({ values }, io) {
    const days = parseDays(values.days);
    const config = await readConfig(values, io);
    const data = await readPolicyData(new StateStore(config.stateDir), config.policies);
    const states = new Map([...data].map(([name, d]) => [name, d.state] as const));
    const errors = [...data].filter(([, d]) => d.error).map(([policy, d]) => ({ policy, error: d.error! }));
    const now = new Date();
    const report = buildPlan(config, states, now, days, errors);
    io.stdout(values.json ? `${redact(JSON.stringify(report, null, 2))}\n` : renderPlan(report, config, now));
    return 0;
  },
};
