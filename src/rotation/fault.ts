/**
 * Fault injection for the crash tests: kill this process with SIGKILL at a named step.
 * It takes two variables so that it cannot be switched on by accident:
 *   REKEY_TEST_KILL_AT=<point>    (e.g. after-journal, after-stage-0, after-promote, before-state)
 *   REKEY_TEST_KILL_CONFIRM=yes-kill-this-process
 * Points: after-journal, after-stage-<i>, after-stage, after-verify, after-promoting,
 * after-promote-<i>, after-promote, after-done, before-state, after-state, after-audit, and
 * in-finish (the journal removed, its recovery file not yet: at the end of a commit or of a
 * rollback). Optional REKEY_TEST_KILL_POLICY=<name> limits it to one policy.
 */
const point = process.env.REKEY_TEST_KILL_AT;
const armed = point !== undefined && process.env.REKEY_TEST_KILL_CONFIRM === 'yes-kill-this-process';
const policyFilter = process.env.REKEY_TEST_KILL_POLICY;

export function faultPoint(name: string, policy: string): void {
  if (armed && name === point && (policyFilter === undefined || policyFilter === policy)) {
    process.kill(process.pid, 'SIGKILL');
  }
}
