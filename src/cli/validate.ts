import { promises as fsp } from 'node:fs';
import { findConfigFile, parseConfigText } from '../config/loader.js';
import { formatProblem } from '../config/types.js';
import { RekeyError } from '../util/errors.js';
import { CONFIG_HELP, CONFIG_OPTIONS, type Command } from './command.js';

export const validate: Command = {
  name: 'validate',
  summary: 'check the config; silent and exit 0 when it is valid',
  usage: `Usage: rekey validate [-c FILE] [--json]

Parses and validates the config. Prints nothing and exits 0 when it is valid; otherwise
lists every problem as file:line:col: path: message and exits 2.

Options:
${CONFIG_HELP}
  --json   print {"valid", "problems": [...]} as JSON

Example:
  rekey validate -c ./rekey.yaml`,
  options: { ...CONFIG_OPTIONS, json: { type: 'boolean' } },
  async run({ values }, io) {
    const file = findConfigFile(values.config as string | undefined, io.env, io.cwd);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (e) {
      throw new RekeyError('CONFIG', `cannot read config file ${file}: ${(e as { code?: string }).code === 'ENOENT' ? 'no such file' : 'read failed'}`);
    }
    const { problems } = parseConfigText(text, file, { env: io.env });
    if (values.json) {
      io.stdout(`${JSON.stringify({ valid: problems.length === 0, problems }, null, 2)}\n`);
    } else {
      for (const p of problems) io.stderr(`${formatProblem(p)}\n`);
    }
    return problems.length === 0 ? 0 : 2;
  },
};
