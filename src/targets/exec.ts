/**
 * exec target: hands the token to a program on stdin (kubectl, a vendor CLI, a script).
 * stage runs `command` with the new token; rollback runs `rollbackCommand` with the previous
 * token. The program is the store, so rekey cannot read anything back, and both commands
 * must be idempotent: the engine may run either of them again after a crash.
 */
import { basename } from 'node:path';
import type { ExecTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { RotationContext, Snapshot, Target, TargetEnv } from './contract.js';
import { runCommand } from './exec-run.js';

export function createExecTarget(config: ExecTargetConfig, env: TargetEnv): Target {
  const program = config.command[0] ?? '';
  const description = `exec ${basename(program)}${config.command.length > 1 ? ' …' : ''}`;

  /** Everything a command's output or error must never show. */
  const scrubFor = (ctx: RotationContext, previous: string | undefined): string[] =>
    [ctx.token?.reveal(), previous, ctx.sha256, ctx.previousSha256].filter((s): s is string => s !== undefined && s !== '');

  async function run(argv: readonly string[], stdin: string, ctx: RotationContext, previous: string | undefined, step: string): Promise<void> {
    const { stderr } = await runCommand({
      argv,
      stdin,
      envAllowlist: config.env,
      env: env.env,
      timeoutMs: config.timeoutMs,
      scrub: scrubFor(ctx, previous),
      what: step === 'stage' ? description : `${description} (rollbackCommand)`,
      code: 'TARGET',
    });
    if (stderr !== '') ctx.log.info({ target: description, step, stderr }, 'exec target command wrote to stderr');
  }

  return {
    kind: 'exec',
    description,
    phase: 'stage',

    // The previous token is what rollback hands back; keep it for a later process (recovery file only).
    async snapshot(ctx) {
      const previous = ctx.previousToken?.reveal();
      return {
        meta: { hasPrevious: previous !== undefined },
        ...(previous !== undefined ? { secret: { previousToken: previous } } : {}),
      };
    },

    async stage(ctx) {
      if (ctx.token === undefined) {
        throw new RekeyError('INTERNAL', `${description}: stage needs the new token, and it is not in memory; re-run the rotation`);
      }
      await run(config.command, ctx.token.reveal(), ctx, ctx.previousToken?.reveal(), 'stage');
    },

    // The command made the token live already.
    async promote() {},

    async rollback(ctx, snap: Snapshot) {
      if (config.rollbackCommand === undefined) {
        ctx.log.warn({ target: description }, 'exec target has no rollbackCommand: the token its command installed cannot be undone; fix it by hand');
        return;
      }
      const saved = snap.secret?.previousToken;
      const previous = ctx.previousToken?.reveal() ?? (typeof saved === 'string' ? saved : undefined);
      if (previous === undefined) {
        if (snap.meta.hasPrevious === true) {
          throw new RekeyError('RECOVERY', `${description}: cannot roll back: the previous token is missing from the recovery file; run the rollbackCommand by hand with the previous token on stdin`);
        }
        ctx.log.warn({ target: description }, 'exec target: no previous token is known (first rotation?); rollbackCommand skipped');
        return;
      }
      await run(config.rollbackCommand, previous, ctx, previous, 'rollback');
    },

    async retire() {},

    async readBack() {
      return undefined;
    },

    async close() {},
  };
}
