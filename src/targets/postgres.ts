// Placeholder while the postgres target is being written; replaced by its real module.
import type { PostgresTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { Target, TargetEnv } from './contract.js';

export function createPostgresTarget(_config: PostgresTargetConfig, _env: TargetEnv): Target {
  throw new RekeyError('CONFIG', 'target type postgres is not available yet');
}
