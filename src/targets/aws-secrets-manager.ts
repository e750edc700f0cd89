// Placeholder while the aws-secrets-manager target is being written; replaced by its real module.
import type { AwsSecretsManagerTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { Target, TargetEnv } from './contract.js';

export function createAwsSecretsManagerTarget(_config: AwsSecretsManagerTargetConfig, _env: TargetEnv): Target {
  throw new RekeyError('CONFIG', 'target type aws-secrets-manager is not available yet');
}
