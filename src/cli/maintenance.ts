import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';
import { buildEngine, selectPolicies } from './context.js';
import { exitCodeOf, printOutcomes } from './outcomes.js';
import { parseWait } from './rotate-now.js';

export const retire: Command = {
  name: 'retire',
  summary: 'remove previous tokens whose grace period has ended',
  usage: `Usage: rekey retire [<policy...>] | --all [options]

Removes previous tokens whose grace period has ended: from state, and from the targets
(for example an env file's previousKey line, or a PostgreSQL "previous" row).
rotate-now and the daemon do this on their own; run it to clean up early.

Options:
${CONFIG_HELP}
  -a, --all            every policy (the default when no policy is named)
      --json           print results as JSON
      --wait DURATION  wait for a policy that is being rotated

Example:
  rekey retire --all`,
  options: { ...CONFIG_OPTIONS, all: { type: 'boolean', short: 'a' }, json: { type: 'boolean' }, wait: { type: 'string' } },
  positionals: true,
  async run({ values, positionals }, io) {
    const waitMs = parseWait(values.wait);
    const { config, engine } = await buildEngine(values, io);
    const policies = selectPolicies(config, positionals, values.all === true || positionals.length === 0, 'retire');
    const outcomes = await engine.retire(policies, { waitMs, purpose: 'retire' });
    printOutcomes(outcomes, io, values.json === true, 'retired');
    return exitCodeOf(outcomes);
  },
};

export const recover: Command = {
  name: 'recover',
  summary: 'finish or roll back rotations a crashed process left unfinished',
  usage: `Usage: rekey recover [<policy...>] | --all [options]

Looks for unfinished rotations in the journal. One that had verified and begun promoting
is completed; any other is rolled back, so the previous token stays current. Every command
that touches a policy does this first; run it by hand after a crash or to check.

Options:
${CONFIG_HELP}
  -a, --all            every policy (the default when no policy is named)
      --json           print results as JSON
      --wait DURATION  wait for a policy that is being rotated

Example:
  rekey recover`,
  options: { ...CONFIG_OPTIONS, all: { type: 'boolean', short: 'a' }, json: { type: 'boolean' }, wait: { type: 'string' } },
  positionals: true,
  async run({ values, positionals }, io) {
    const waitMs = parseWait(values.wait);
    const { config, engine } = await buildEngine(values, io);
    const policies = selectPolicies(config, positionals, values.all === true || positionals.length === 0, 'recover');
    const outcomes = await engine.recover(policies, { waitMs, purpose: 'recover' });
    printOutcomes(outcomes, io, values.json === true, 'recovered');
    return exitCodeOf(outcomes);
  },
};
