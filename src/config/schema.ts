/**
 * The single source of the policy format: TypeScript types, validation, and the committed
 * config/rekey.schema.json (scripts/gen-schema.mjs) all come from here.
 */
import { z } from 'zod';
import { DURATION_PATTERN } from '../util/duration.js';

export const POLICY_NAME = /^[a-z0-9][a-z0-9._-]*$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const duration = (what: string) =>
  z.string({ invalid_type_error: `${what} must be a duration such as "90s", "15m", "24h" or "7d"` })
    .regex(DURATION_PATTERN, `${what} must be a duration such as "90s", "15m", "24h" or "7d"`)
    .describe(`${what}: a duration such as 90s, 15m, 24h, 7d (units ms, s, m, h, d, w; may be combined: 1h30m)`);

const timeoutMs = z.number().int().min(100).max(600_000).describe('Timeout in milliseconds');

const argv = z.array(z.string().min(1)).min(1, 'command must name a program: a list like ["/usr/bin/curl", "-sf", "..."]')
  .describe('argv list; run directly, never through a shell');

const envAllowlist = z.array(z.string().regex(ENV_NAME, 'env entries are variable names')).default([])
  .describe('Names of environment variables passed through to the child; everything else is removed');

export const TokenSchema = z.object({
  bytes: z.number({ invalid_type_error: 'token.bytes must be a number' }).int('token.bytes must be a whole number')
    .min(16, 'token.bytes must be at least 16: fewer than 128 random bits can be guessed')
    .max(1024, 'token.bytes must be at most 1024').optional()
    .describe('Random bytes per token, 16 to 1024 (default 32)'),
  encoding: z.enum(['hex', 'base64', 'base64url'], {
    errorMap: () => ({ message: 'token.encoding must be one of hex, base64, base64url' }),
  }).optional().describe('hex, base64 (standard, padded) or base64url (URL-safe, unpadded; default)'),
  prefix: z.string().max(32).regex(/^[A-Za-z0-9_.-]*$/, 'token.prefix may hold only letters, digits, "_", "." and "-"').optional()
    .describe('Text put in front of every token, e.g. "rk_live_"; hashes cover the prefix too'),
}).strict();

const followSymlinks = z.boolean().default(false).describe('Write through a symlinked path (refused by default)');

export const EnvFileTargetSchema = z.object({
  type: z.literal('env-file'),
  path: z.string().min(1).describe('The env file; created 0600 if missing, otherwise keeps its mode'),
  key: z.string().regex(ENV_NAME, 'key must be an environment variable name like API_TOKEN').describe('Variable that receives the token'),
  previousKey: z.string().regex(ENV_NAME, 'previousKey must be an environment variable name').optional()
    .describe('Variable that holds the previous token until its grace period ends'),
  followSymlinks,
}).strict().describe('Sets KEY=<token> in an env file, leaving every other byte as it was');

export const FileTargetSchema = z.object({
  type: z.literal('file'),
  path: z.string().min(1).describe('File written atomically, mode 0600'),
  content: z.enum(['token', 'sha256']).default('token').describe('token (the raw token) or sha256 (its hex digest)'),
  followSymlinks,
}).strict().describe('Writes the raw token or its SHA-256 to a file');

const identifier = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain SQL identifier');

export const PostgresTargetSchema = z.object({
  type: z.literal('postgres'),
  url: z.string().regex(/^postgres(ql)?:\/\//, 'url must start with postgres:// or postgresql://').describe('Connection URL, usually "${DATABASE_URL}"'),
  table: identifier.default('rekey_tokens').describe('Table of hashes (see config/rekey-postgres.sql)'),
  schema: identifier.optional().describe('Schema of the table (default: the search_path)'),
  name: z.string().min(1).optional().describe('Value of the name column (default: the policy name)'),
  columns: z.object({
    name: identifier.default('name'),
    sha256: identifier.default('sha256'),
    status: identifier.default('status'),
    validUntil: identifier.default('valid_until'),
    rotatedAt: identifier.default('rotated_at'),
  }).strict().default({}).describe('Column names'),
  timeoutMs: timeoutMs.default(10_000),
}).strict().describe('Stores the SHA-256 in a PostgreSQL table an application validates against');

export const RedisTargetSchema = z.object({
  type: z.literal('redis'),
  url: z.string().regex(/^rediss?:\/\//, 'url must start with redis:// or rediss://').default('redis://127.0.0.1:6379').describe('Redis URL'),
  key: z.string().min(1).describe('Key that receives the SHA-256; the previous one goes to <key>:previous with TTL = grace'),
  hash: z.boolean().default(false).describe('Use a Redis hash (HSET fields current / previous / pending) instead of plain keys'),
  timeoutMs: timeoutMs.default(5_000),
}).strict().describe('Stores the SHA-256 in Redis');

export const VaultKvTargetSchema = z.object({
  type: z.literal('vault-kv'),
  address: z.string().url('address must be a URL such as https://vault.example:8200').describe('Vault address'),
  mount: z.string().min(1).default('secret').describe('KV v2 mount'),
  path: z.string().min(1).describe('Secret path inside the mount'),
  field: z.string().min(1).default('token').describe('Field that receives the token; other fields are kept'),
  namespace: z.string().min(1).optional().describe('Vault Enterprise namespace (X-Vault-Namespace)'),
  caFile: z.string().min(1).optional().describe('CA bundle for TLS'),
  tokenEnv: z.string().regex(ENV_NAME).optional().describe('Environment variable holding a Vault token'),
  tokenFile: z.string().min(1).optional().describe('File holding a Vault token'),
  roleId: z.string().min(1).optional().describe('AppRole role_id'),
  secretIdEnv: z.string().regex(ENV_NAME).optional().describe('Environment variable holding the AppRole secret_id'),
  approleMount: z.string().min(1).default('approle').describe('AppRole auth mount'),
  timeoutMs: timeoutMs.default(10_000),
}).strict().describe('Writes the token into a HashiCorp Vault KV v2 secret with check-and-set');

export const AwsSecretsManagerTargetSchema = z.object({
  type: z.literal('aws-secrets-manager'),
  secretId: z.string().min(1).describe('Secret name or ARN'),
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'region must look like eu-west-1').optional().describe('AWS region (default: the SDK chain)'),
  endpoint: z.string().url('endpoint must be a URL').optional().describe('Custom endpoint (VPC endpoint, LocalStack)'),
  jsonKey: z.string().min(1).optional().describe('Merge the token into this key of a JSON secret instead of replacing the string'),
  timeoutMs: timeoutMs.default(10_000),
}).strict().describe('Stages the token in AWS Secrets Manager (AWSPENDING -> AWSCURRENT)');

export const ExecTargetSchema = z.object({
  type: z.literal('exec'),
  command: argv.describe('Program that receives the token on stdin'),
  rollbackCommand: argv.optional().describe('Program that receives the previous token on stdin when the rotation is rolled back'),
  env: envAllowlist,
  timeoutMs: timeoutMs.default(30_000),
}).strict().describe('Runs a program with the token on stdin (kubectl, vault CLI, aws CLI, scripts)');

export const WebhookTargetSchema = z.object({
  type: z.literal('webhook'),
  url: z.string().url('url must be an http:// or https:// URL').regex(/^https?:\/\//, 'url must be an http:// or https:// URL').describe('Endpoint that receives the POST'),
  secretEnv: z.string().regex(ENV_NAME).optional().describe('Environment variable with the HMAC key for X-Rekey-Signature'),
  includeToken: z.boolean().default(false).describe('Include the token in the body (https:// URLs only)'),
  timeoutMs: timeoutMs.default(5_000),
  retries: z.number().int().min(0).max(10).default(3).describe('Retries on 5xx and network errors'),
}).strict().describe('Notifies an app after promote; a failure is reported, never rolled back');

export const TargetSchema = z.discriminatedUnion('type', [
  EnvFileTargetSchema,
  FileTargetSchema,
  PostgresTargetSchema,
  RedisTargetSchema,
  VaultKvTargetSchema,
  AwsSecretsManagerTargetSchema,
  ExecTargetSchema,
  WebhookTargetSchema,
], {
  errorMap: (issue, ctx) =>
    issue.code === 'invalid_union_discriminator'
      ? { message: `type must be one of ${TARGET_TYPES.join(', ')}` }
      : { message: ctx.defaultError },
});

export const TARGET_TYPES = ['env-file', 'file', 'postgres', 'redis', 'vault-kv', 'aws-secrets-manager', 'exec', 'webhook'] as const;

export const HookSchema = z.object({
  command: argv,
  stdin: z.enum(['none', 'token']).default('none').describe('token: the new token is written to the hook\'s stdin'),
  env: envAllowlist,
  timeoutMs: timeoutMs.default(30_000),
}).strict();

export const VerifySchema = z.object({
  command: argv.describe('Program that gets the new token on stdin and exits 0 if it works'),
  env: envAllowlist,
  timeoutMs: timeoutMs.default(30_000),
}).strict().describe('Checked after staging, before promote; a non-zero exit rolls the rotation back');

const scheduling = {
  schedule: z.string().min(1).optional().describe('Cron expression, 5 or 6 fields (seconds first when 6)'),
  every: duration('every').optional().describe('Rotate this long after the last successful rotation'),
  timezone: z.string().min(1).optional().describe('IANA time zone for schedule (default UTC)'),
  jitter: duration('jitter').optional().describe('Random delay added per policy so a fleet does not rotate at once'),
  grace: duration('grace').optional().describe('How long the previous token stays valid (default 24h)'),
  maxAge: duration('maxAge').optional().describe('A current token older than this is reported as stale'),
};

export const DefaultsSchema = z.object({
  token: TokenSchema.optional(),
  ...scheduling,
  verify: VerifySchema.optional(),
  hooks: z.object({ before: z.array(HookSchema).optional(), after: z.array(HookSchema).optional() }).strict().optional(),
}).strict().describe('Settings every policy inherits unless it sets its own');

export const PolicySchema = z.object({
  name: z.string({ required_error: 'every policy needs a name' })
    .regex(POLICY_NAME, 'name must match [a-z0-9][a-z0-9._-]* (lowercase letters, digits, ".", "_", "-")')
    .max(128).describe('Unique policy name'),
  description: z.string().optional(),
  token: TokenSchema.optional(),
  ...scheduling,
  verify: VerifySchema.optional(),
  hooks: z.object({
    before: z.array(HookSchema).optional().describe('Run before staging; a failure aborts the rotation'),
    after: z.array(HookSchema).optional().describe('Run after the rotation is committed; a failure is reported, not rolled back'),
  }).strict().optional(),
  targets: z.array(TargetSchema, { required_error: 'every policy needs targets' })
    .min(1, 'targets must list at least one target').describe('Where the token (or its hash) goes'),
}).strict();

export const ConfigSchema = z.object({
  $schema: z.string().optional(),
  version: z.literal(1, { errorMap: () => ({ message: 'version must be 1' }) }).describe('Format version; must be 1'),
  openssl: z.object({
    path: z.string().min(1).optional().describe('Path of the openssl binary (default: found on PATH)'),
    timeoutMs: timeoutMs.default(10_000),
  }).strict().default({}),
  state: z.object({
    dir: z.string().min(1).optional().describe('State directory (default $REKEY_STATE_DIR, then .rekey/ next to this file)'),
  }).strict().default({}),
  concurrency: z.number().int().min(1).max(256).default(16).describe('Policies rotated in parallel'),
  defaults: DefaultsSchema.optional(),
  policies: z.array(PolicySchema, { required_error: 'policies is required: a list of policies' }),
}).strict();

export type RawConfig = z.infer<typeof ConfigSchema>;
export type RawPolicy = z.infer<typeof PolicySchema>;
export type TargetConfig = z.infer<typeof TargetSchema>;
export type TargetType = TargetConfig['type'];
export type EnvFileTargetConfig = z.infer<typeof EnvFileTargetSchema>;
export type FileTargetConfig = z.infer<typeof FileTargetSchema>;
export type PostgresTargetConfig = z.infer<typeof PostgresTargetSchema>;
export type RedisTargetConfig = z.infer<typeof RedisTargetSchema>;
export type VaultKvTargetConfig = z.infer<typeof VaultKvTargetSchema>;
export type AwsSecretsManagerTargetConfig = z.infer<typeof AwsSecretsManagerTargetSchema>;
export type ExecTargetConfig = z.infer<typeof ExecTargetSchema>;
export type WebhookTargetConfig = z.infer<typeof WebhookTargetSchema>;
export type HookConfig = z.infer<typeof HookSchema>;
export type VerifyConfig = z.infer<typeof VerifySchema>;
