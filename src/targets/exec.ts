// Placeholder while the exec target is being written; replaced by its real module.
import type { ExecTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { Target, TargetEnv } from './contract.js';

export function createExecTarget(_config: ExecTargetConfig, _env: TargetEnv): Target {
  throw new RekeyError('CONFIG', 'target type exec is not available yet');
}
