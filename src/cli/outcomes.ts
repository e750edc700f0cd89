import type { PolicyOutcome } from '../rotation/engine.js';
import type { ExitCode } from '../util/errors.js';
import type { Io } from './command.js';

/** Worst exit code among the outcomes: 3 (environment) > 2 (config) > 1 (work failed) > 0. */
export function exitCodeOf(outcomes: PolicyOutcome[]): ExitCode {
  return outcomes.reduce<ExitCode>((acc, o) => (o.exitCode > acc ? o.exitCode : acc), 0);
}

const ICON: Record<PolicyOutcome['result'], string> = {
  rotated: 'rotated  ',
  failed: 'FAILED   ',
  planned: 'would rotate',
  retired: 'retired  ',
  recovered: 'recovered',
  unchanged: 'unchanged',
};

/** One line per policy, then a summary line. Never a token: outcomes hold fingerprints only. */
export function printOutcomes(outcomes: PolicyOutcome[], io: Io, json: boolean, verb: string): void {
  if (json) {
    io.stdout(`${JSON.stringify({ ok: outcomes.every((o) => o.result !== 'failed'), results: outcomes }, null, 2)}\n`);
    return;
  }
  for (const o of outcomes) {
    if (o.result === 'failed') {
      io.stdout(`${ICON.failed} ${o.error ?? o.policy}\n`);
      continue;
    }
    const v = o.version !== undefined ? ` v${o.version}` : '';
    const fp = o.fingerprint ? ` fp ${o.fingerprint}` : '';
    io.stdout(`${ICON[o.result]} ${o.policy}${v}${fp}${o.targets.length ? ` -> ${o.targets.join(', ')}` : ''}\n`);
    for (const w of o.warnings) if (!o.recovered || w !== o.recovered) io.stdout(`  warning: ${w}\n`);
    if (o.retired && o.result !== 'retired') io.stdout(`  ${o.retired}\n`);
  }
  const failed = outcomes.filter((o) => o.result === 'failed');
  const done = outcomes.filter((o) => o.result === verb).length;
  const summary = failed.length
    ? `${done} ${verb}, ${failed.length} failed: ${failed.map((o) => o.policy).join(', ')}`
    : `${done} ${verb}${outcomes.length > done ? `, ${outcomes.length - done} unchanged` : ''}`;
  io.stdout(`${summary}\n`);
}
