import { createRequire } from 'node:module';
import { RekeyError, type ExitCode } from '../util/errors.js';
import { parseCommandArgs, type Io } from './command.js';
import { COMMANDS } from './commands.js';
import { didYouMean } from '../config/did-you-mean.js';
import { renderError } from './render.js';

const require = createRequire(import.meta.url);

export function version(): string {
  return (require('../../package.json') as { version: string }).version;
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `rekey ${version()}: rotate API tokens safely (staged, verified, rolled back on failure)

Usage: rekey <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run "rekey <command> --help" for a command's options and examples.
Exit codes: 0 ok, 1 the work failed, 2 usage or config error, 3 environment broken.
`;
}

/** Run the CLI; returns the exit code. Never throws, never prints a stack trace. */
export async function runCli(argv: string[], io: Io): Promise<ExitCode> {
  try {
    const [name, ...rest] = argv;
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      io.stdout(mainHelp());
      return name === undefined ? 2 : 0;
    }
    if (name === '--version' || name === '-V' || name === 'version') {
      io.stdout(`${version()}\n`);
      return 0;
    }
    const cmd = COMMANDS.find((c) => c.name === name);
    if (!cmd) {
      const hint = didYouMean(name, COMMANDS.map((c) => c.name));
      throw new RekeyError('USAGE', `unknown command "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}; see "rekey --help"`);
    }
    const args = parseCommandArgs(cmd, rest);
    if (args.values.help) {
      io.stdout(`${cmd.usage}\n`);
      return 0;
    }
    return await cmd.run(args, io);
  } catch (e) {
    io.stderr(`${renderError(e)}\n`);
    return e instanceof RekeyError ? e.exitCode : 1;
  }
}
