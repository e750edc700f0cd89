import type { TargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { Target, TargetEnv } from './contract.js';
import { createEnvFileTarget } from './env-file.js';
import { createFileTarget } from './file.js';
import { createPostgresTarget } from './postgres.js';
import { createRedisTarget } from './redis.js';
import { createVaultKvTarget } from './vault-kv.js';
import { createAwsSecretsManagerTarget } from './aws-secrets-manager.js';
import { createExecTarget } from './exec.js';
import { createWebhookTarget } from './webhook.js';

/** Build the target object for one `targets:` entry of a policy. */
export function createTarget(config: TargetConfig, env: TargetEnv): Target {
  switch (config.type) {
    case 'env-file':
      return createEnvFileTarget(config, env);
    case 'file':
      return createFileTarget(config, env);
    case 'postgres':
      return createPostgresTarget(config, env);
    case 'redis':
      return createRedisTarget(config, env);
    case 'vault-kv':
      return createVaultKvTarget(config, env);
    case 'aws-secrets-manager':
      return createAwsSecretsManagerTarget(config, env);
    case 'exec':
      return createExecTarget(config, env);
    case 'webhook':
      return createWebhookTarget(config, env);
    default: {
      const never: never = config;
      throw new RekeyError('CONFIG', `unknown target type ${(never as { type: string }).type}`);
    }
  }
}
