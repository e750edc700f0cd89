import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { ExitCode } from '../util/errors.js';
import { RekeyError } from '../util/errors.js';

/** Where a command writes. Tests pass their own. */
export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readStdin: () => Promise<Buffer>;
  env: NodeJS.ProcessEnv;
  cwd: string;
  isTTY: boolean;
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Command {
  name: string;
  summary: string;
  /** Usage line(s) and examples, shown by --help. */
  usage: string;
  options: Options;
  /** Allow positional arguments. */
  positionals?: boolean;
  run(args: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] }, io: Io): Promise<ExitCode>;
}

/** Options every command that reads a config accepts. */
export const CONFIG_OPTIONS: Options = {
  config: { type: 'string', short: 'c' },
};

export const CONFIG_HELP = `  -c, --config FILE   config file (default: $REKEY_CONFIG, ./rekey.yaml, /etc/rekey/rekey.yaml)`;

export function parseCommandArgs(cmd: Command, argv: string[]): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { ...cmd.options, help: { type: 'boolean', short: 'h' } }, allowPositionals: cmd.positionals ?? false, strict: true });
    return { values: values as Record<string, string | boolean | string[] | undefined>, positionals };
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0]?.replace(/\. To specify a positional argument.*$/, '') ?? 'bad arguments';
    throw new RekeyError('USAGE', `${cmd.name}: ${msg}; see "rekey ${cmd.name} --help"`);
  }
}
