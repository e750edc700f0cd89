/**
 * Target kinds by name. Modules are loaded on first use (loadTargetKinds), so a run that only
 * writes env files does not pay for the AWS SDK, pg or ioredis at start-up.
 */
import type { TargetConfig, TargetType } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { Target, TargetEnv } from './contract.js';

type Factory = (config: never, env: TargetEnv) => Target;

const LOADERS: Record<TargetType, () => Promise<Factory>> = {
  'env-file': async () => (await import('./env-file.js')).createEnvFileTarget as Factory,
  file: async () => (await import('./file.js')).createFileTarget as Factory,
  postgres: async () => (await import('./postgres.js')).createPostgresTarget as Factory,
  redis: async () => (await import('./redis.js')).createRedisTarget as Factory,
  'vault-kv': async () => (await import('./vault-kv.js')).createVaultKvTarget as Factory,
  'aws-secrets-manager': async () => (await import('./aws-secrets-manager.js')).createAwsSecretsManagerTarget as Factory,
  exec: async () => (await import('./exec.js')).createExecTarget as Factory,
  webhook: async () => (await import('./webhook.js')).createWebhookTarget as Factory,
};

const loaded = new Map<TargetType, Factory>();

/** Load the modules of the given kinds (idempotent). Call before createTarget. */
export async function loadTargetKinds(kinds: Iterable<TargetType>): Promise<void> {
  await Promise.all(
    [...new Set(kinds)].filter((k) => !loaded.has(k)).map(async (k) => {
      const loader = LOADERS[k];
      if (!loader) throw new RekeyError('CONFIG', `unknown target type ${String(k)}`);
      loaded.set(k, await loader());
    }),
  );
}

/** Build the target object for one `targets:` entry of a policy (its kind must be loaded). */
export function createTarget(config: TargetConfig, env: TargetEnv): Target {
  const factory = loaded.get(config.type);
  if (!factory) throw new RekeyError('INTERNAL', `target type ${config.type} was not loaded`);
  return (factory as (c: TargetConfig, e: TargetEnv) => Target)(config, env);
}
