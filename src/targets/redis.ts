// Placeholder while the redis target is being written; replaced by its real module.
import type { RedisTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { Target, TargetEnv } from './contract.js';

export function createRedisTarget(_config: RedisTargetConfig, _env: TargetEnv): Target {
  throw new RekeyError('CONFIG', 'target type redis is not available yet');
}
