import { parseDuration } from '../util/duration.js';
import { RekeyError } from '../util/errors.js';
import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';
import { buildEngine, selectPolicies } from './context.js';
import { exitCodeOf, printOutcomes } from './outcomes.js';

export function parseWait(v: unknown): number {
  if (v === undefined) return 0;
  const ms = parseDuration(String(v));
  if (ms === undefined) throw new RekeyError('USAGE', `--wait must be a duration such as 30s or 5m, not "${String(v)}"`);
  return ms;
}

export const rotateNow: Command = {
  name: 'rotate-now',
  summary: 'rotate policies now (incidents, CI, cron)',
  usage: `Usage: rekey rotate-now <policy...> | --all [options]

Rotates each named policy at once: finishes or undoes an unfinished rotation, retires
expired previous tokens, then generates, stages, verifies and promotes a fresh token.
One failing policy does not stop the others; the exit code is then 1.

Options:
${CONFIG_HELP}
  -a, --all            rotate every policy in the config
  -n, --dry-run        show what would change; write nothing
      --json           print results as JSON
      --wait DURATION  wait up to DURATION for a policy that is being rotated elsewhere (default: fail at once)

Examples:
  rekey rotate-now billing-api -c ./rekey.yaml
  rekey rotate-now --all --json
  rekey rotate-now billing-api --wait 2m`,
  options: {
    ...CONFIG_OPTIONS,
    all: { type: 'boolean', short: 'a' },
    'dry-run': { type: 'boolean', short: 'n' },
    json: { type: 'boolean' },
    wait: { type: 'string' },
  },
  positionals: true,
  async run({ values, positionals }, io) {
    const waitMs = parseWait(values.wait);
    const { config, engine } = await buildEngine(values, io);
    const policies = selectPolicies(config, positionals, values.all === true, 'rotate-now');
    const outcomes = await engine.rotate(policies, { dryRun: values['dry-run'] === true, waitMs, purpose: 'rotate-now' });
    printOutcomes(outcomes, io, values.json === true, values['dry-run'] ? 'planned' : 'rotated');
    return exitCodeOf(outcomes);
  },
};
