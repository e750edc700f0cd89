// Placeholder while the vault-kv target is being written; replaced by its real module.
import type { VaultKvTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { Target, TargetEnv } from './contract.js';

export function createVaultKvTarget(_config: VaultKvTargetConfig, _env: TargetEnv): Target {
  throw new RekeyError('CONFIG', 'target type vault-kv is not available yet');
}
