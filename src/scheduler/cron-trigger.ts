/**
 * node-cron 4 fires cron schedules in production: one task per policy, in the policy's time
 * zone. A tick only asks the scheduler to look at the policy; rotation/plan decides whether a
 * rotation is due (node-cron keeps no state and its DST handling differs from cron-parser's).
 */
import cron from 'node-cron';
import type { Policy } from '../config/types.js';
import type { Logger } from '../targets/contract.js';

export interface CronHandle {
  stop(): void;
}

export interface CronTrigger {
  /** Call onTick at every scheduled time of policy.schedule (in policy.timezone). */
  start(policy: Policy, onTick: () => void): CronHandle;
}

export function nodeCronTrigger(log: Logger): CronTrigger {
  const cronLog = {
    info: (m: string) => log.info({ component: 'node-cron' }, String(m)),
    warn: (m: string) => log.warn({ component: 'node-cron' }, String(m)),
    error: (m: string | Error) => log.error({ component: 'node-cron' }, m instanceof Error ? m.message : String(m)),
    debug: () => undefined,
  };
  return {
    start(policy, onTick) {
      const task = cron.createTask(policy.schedule!, () => onTick(), {
        timezone: policy.timezone,
        noOverlap: true,
        logger: cronLog,
      });
      // A tick missed because the event loop was busy (or the host slept) still counts:
      // plan decides, and a late look is harmless.
      task.on('execution:missed', () => onTick());
      void task.start();
      return {
        stop: () => {
          void task.destroy();
        },
      };
    },
  };
}
