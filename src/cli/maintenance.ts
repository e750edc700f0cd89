import type { Engine, PolicyOutcome, RotateOptions } from '../rotation/engine.js';
import type { Policy } from '../config/types.js';
import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';
import { buildEngine, selectPolicies } from './context.js';
import { exitCodeOf, printOutcomes } from './outcomes.js';
import { parseWait } from './rotate-now.js';

/** retire and recover: lock each policy, do the work of the lock phase, print one line each. */
function lockPhaseCommand(
  name: string,
  summary: string,
  description: string,
  example: string,
  verb: PolicyOutcome['result'],
  act: (engine: Engine, policies: Policy[], opts: RotateOptions) => Promise<PolicyOutcome[]>,
): Command {
  return {
    name,
    summary,
    usage: `Usage: rekey ${name} [<policy...>] | --all [options]

${description}

Options:
${CONFIG_HELP}
  -a, --all            every policy (the default when no policy is named)
      --json           print results as JSON
      --wait DURATION  wait for a policy that is being rotated

Example:
  ${example}`,
    options: { ...CONFIG_OPTIONS, all: { type: 'boolean', short: 'a' }, json: { type: 'boolean' }, wait: { type: 'string' } },
    positionals: true,
    async run({ values, positionals }, io) {
      const waitMs = parseWait(values.wait);
      const { config, engine } = await buildEngine(values, io);
      const policies = selectPolicies(config, positionals, values.all === true || positionals.length === 0, name);
      const outcomes = await act(engine, policies, { waitMs, purpose: name });
      printOutcomes(outcomes, io, values.json === true, verb);
      return exitCodeOf(outcomes);
    },
  };
}

export const retire = lockPhaseCommand(
  'retire',
  'remove previous tokens whose grace period has ended',
  `Removes previous tokens whose grace period has ended: from state, and from the targets
(for example an env file's previousKey line, or a PostgreSQL "previous" row).
rotate-now and the daemon do this on their own; run it to clean up early.`,
  'rekey retire --all',
  'retired',
  (engine, policies, opts) => engine.retire(policies, opts),
);

export const recover = lockPhaseCommand(
  'recover',
  'finish or roll back rotations a crashed process left unfinished',
  `Looks for unfinished rotations in the journal. One that had verified and begun promoting
is completed; any other is rolled back, so the previous token stays current. Every command
that touches a policy does this first; run it by hand after a crash or to check.`,
  'rekey recover',
  'recovered',
  (engine, policies, opts) => engine.recover(policies, opts),
);
