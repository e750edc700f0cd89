import type { Command } from './command.js';
import { recover, retire } from './maintenance.js';
import { rotateNow } from './rotate-now.js';
import { generate, hash, verify } from './tokens.js';
import { validate } from './validate.js';
import { daemon } from './daemon.js';
import { plan } from './plan.js';
import { status } from './status.js';
import { initDbCommand } from './init-db.js';

/** Every command, in the order --help lists them. */
export const COMMANDS: Command[] = [rotateNow, validate, verify, retire, recover, generate, hash, initDbCommand, daemon, status, plan];
