/** The verify command and before/after hooks: argv lists, no shell, token on stdin only. */
import type { HookConfig, VerifyConfig } from '../config/schema.js';
import type { ErrorCode } from '../util/errors.js';
import type { Secret } from '../util/secret.js';
import { runCommand } from '../targets/exec-run.js';

export interface HookRun {
  policy: string;
  token: Secret;
  sha256: string;
  previousToken?: Secret;
  env: NodeJS.ProcessEnv;
}

function scrubList(run: HookRun): string[] {
  return [run.token.reveal(), run.sha256, ...(run.previousToken ? [run.previousToken.reveal()] : [])];
}

/** The new token goes to the verify command's stdin; a non-zero exit fails the rotation. */
export async function runVerify(verify: VerifyConfig, run: HookRun): Promise<void> {
  await runCommand({
    argv: verify.command,
    stdin: run.token,
    envAllowlist: verify.env,
    env: run.env,
    timeoutMs: verify.timeoutMs,
    scrub: scrubList(run),
    what: `${run.policy}: verify command ${verify.command[0]}`,
    code: 'VERIFY_FAILED' satisfies ErrorCode,
  });
}

export async function runHook(hook: HookConfig, when: 'before' | 'after', run: HookRun): Promise<void> {
  await runCommand({
    argv: hook.command,
    ...(hook.stdin === 'token' ? { stdin: run.token } : {}),
    envAllowlist: hook.env,
    env: run.env,
    timeoutMs: hook.timeoutMs,
    scrub: scrubList(run),
    what: `${run.policy}: ${when} hook ${hook.command[0]}`,
    code: 'HOOK_FAILED' satisfies ErrorCode,
  });
}
