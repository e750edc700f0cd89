// Placeholder while the webhook target is being written; replaced by its real module.
import type { WebhookTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import type { Target, TargetEnv } from './contract.js';

export function createWebhookTarget(_config: WebhookTargetConfig, _env: TargetEnv): Target {
  throw new RekeyError('CONFIG', 'target type webhook is not available yet');
}
