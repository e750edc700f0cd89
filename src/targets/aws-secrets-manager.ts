/**
 * aws-secrets-manager: follows AWS's own rotation protocol. stage = PutSecretValue to AWSPENDING
 * with a ClientRequestToken derived from (policy, version, sha256), which AWS uses as the VersionId;
 * promote = move AWSCURRENT (AWS moves AWSPREVIOUS by itself); rollback = move the labels back.
 * Because the version id is derived, promote and rollback after a crash need only the journal.
 * Credentials come from the SDK's default chain; the SDK never retries (the engine does).
 */
import { createHash } from 'node:crypto';
import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
  type DescribeSecretCommandOutput,
  type GetSecretValueCommandOutput,
  type PutSecretValueCommandOutput,
} from '@aws-sdk/client-secrets-manager';
import type { AwsSecretsManagerTargetConfig } from '../config/schema.js';
import { RekeyError } from '../util/errors.js';
import { Secret } from '../util/secret.js';
import type { RotationContext, Snapshot, Target, TargetEnv } from './contract.js';

// The SDK prints a ten-line notice on Node 20 about its future Node 22 requirement; rekey
// supports Node 20 and keeps stderr to one line per problem. A user's explicit setting wins.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const CURRENT = 'AWSCURRENT';
const PENDING = 'AWSPENDING';
const PREVIOUS = 'AWSPREVIOUS';

type Action = 'DescribeSecret' | 'GetSecretValue' | 'PutSecretValue' | 'UpdateSecretVersionStage';
type Stages = Record<string, string[]>;

/** One label change: UpdateSecretVersionStage's parameters. */
export interface LabelMove {
  label: string;
  moveTo?: string;
  removeFrom?: string;
}

export interface AwsMeta {
  /** The version our stage writes (derived, so it is known without the token). */
  versionId?: string;
  currentVersionId?: string;
  previousVersionId?: string;
  pendingVersionId?: string;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * The ClientRequestToken (and so the VersionId) of one rotation: the same for every retry of the
 * same version, different for any other token. UUID-shaped, 36 characters (AWS wants 32 to 64).
 */
export function awsVersionId(policy: string, version: number, tokenSha256: string): string {
  const h = sha256(`rekey/aws-secrets-manager/v1\0${policy}\0${version}\0${tokenSha256}`);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function holderOf(stages: Stages, label: string): string | undefined {
  for (const [id, labels] of Object.entries(stages)) if (labels.includes(label)) return id;
  return undefined;
}

/**
 * Put a label back where it was, or drop it from our version when it was nowhere. The old holder
 * may be unlabelled now (DescribeSecret omits those), but AWS keeps it and it can be labelled again.
 */
function restore(label: string, ours: string, before: string | undefined): LabelMove {
  if (before && before !== ours) return { label, moveTo: before, removeFrom: ours };
  return { label, removeFrom: ours };
}

/**
 * The next label change that rollback needs, or undefined when the labels are as the snapshot
 * found them. Pure, so each step can be re-derived after a crash. `stages` lists labelled versions.
 * Throws a plain Error (caller words it) when AWSCURRENT is ours and the snapshot lacks the old one.
 */
export function nextRollbackMove(stages: Stages, ours: string, meta: AwsMeta): LabelMove | undefined {
  const mine = stages[ours];
  if (!mine) return undefined;
  if (mine.includes(CURRENT)) {
    if (!meta.currentVersionId || meta.currentVersionId === ours) throw new Error('no previous AWSCURRENT');
    return { label: CURRENT, moveTo: meta.currentVersionId, removeFrom: ours };
  }
  // Moving AWSCURRENT back parks AWSPREVIOUS on our version; put it back where it was.
  if (mine.includes(PREVIOUS)) return restore(PREVIOUS, ours, meta.previousVersionId);
  if (mine.includes(PENDING)) return restore(PENDING, ours, meta.pendingVersionId);
  return undefined;
}

/** The next label change that promote needs; 'missing' when our version is gone; 'conflict' when AWSCURRENT moved. */
export function nextPromoteMove(stages: Stages, ours: string, meta: AwsMeta): LabelMove | 'missing' | 'conflict' | undefined {
  const mine = stages[ours];
  if (!mine) return 'missing';
  if (!mine.includes(CURRENT)) {
    const holder = holderOf(stages, CURRENT);
    if (holder !== meta.currentVersionId) return 'conflict';
    return { label: CURRENT, moveTo: ours, ...(holder ? { removeFrom: holder } : {}) };
  }
  if (mine.includes(PENDING)) return { label: PENDING, removeFrom: ours };
  return undefined;
}

/** Region named by an ARN secretId: arn:aws:secretsmanager:<region>:<account>:secret:<name>. */
function regionOfArn(id: string): string | undefined {
  const m = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):/.exec(id);
  return m?.[1];
}

const ERR_NAME = /^[A-Za-z][A-Za-z0-9.]{0,63}$/;

export function createAwsSecretsManagerTarget(config: AwsSecretsManagerTargetConfig, env: TargetEnv): Target {
  const secretId = config.secretId;
  const jsonKey = config.jsonKey;
  const region = config.region ?? regionOfArn(secretId);
  const shownRegion = region ?? env.env.AWS_REGION ?? env.env.AWS_DEFAULT_REGION ?? 'default region';
  const description = `aws-secrets-manager ${secretId}${jsonKey ? `#${jsonKey}` : ''} (${shownRegion})`;
  const timeoutMs = config.timeoutMs;

  let client: SecretsManagerClient | undefined;
  const getClient = () =>
    (client ??= new SecretsManagerClient({
      ...(region ? { region } : {}),
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      maxAttempts: 1, // the engine retries transient failures
      requestHandler: { requestTimeout: timeoutMs, connectionTimeout: timeoutMs, throwOnRequestTimeout: true },
    }));

  const fail = (code: 'TARGET' | 'TARGET_PERMISSION' | 'TARGET_TRANSIENT' | 'TARGET_CONFLICT', text: string) =>
    new RekeyError(code, `${description}: ${text}`);

  /** Our own line for an SDK error: by error name and status only, never the SDK's message. */
  function mapError(e: unknown, action: Action): RekeyError {
    if (e instanceof RekeyError) return e;
    const err = (e ?? {}) as { name?: unknown; code?: unknown; message?: unknown; $fault?: unknown; $metadata?: { httpStatusCode?: unknown } };
    const name = typeof err.name === 'string' && ERR_NAME.test(err.name) ? err.name : 'Error';
    const status = typeof err.$metadata?.httpStatusCode === 'number' ? err.$metadata.httpStatusCode : undefined;
    const code = typeof err.code === 'string' ? err.code : undefined;
    const kms = action === 'GetSecretValue' || action === 'PutSecretValue'
      ? ` (and kms:${action === 'GetSecretValue' ? 'Decrypt' : 'GenerateDataKey'} on its KMS key if it uses a customer-managed key)`
      : '';
    switch (name) {
      case 'AccessDeniedException':
      case 'AccessDenied':
        return fail('TARGET_PERMISSION', `access denied; the credentials need secretsmanager:${action} on ${secretId}${kms}`);
      case 'DecryptionFailure':
      case 'EncryptionFailure':
        return fail('TARGET_PERMISSION', `KMS refused to ${name === 'DecryptionFailure' ? 'decrypt' : 'encrypt'} the secret (${name}); the credentials need kms:Decrypt and kms:GenerateDataKey on the secret's KMS key`);
      case 'UnrecognizedClientException':
      case 'InvalidSignatureException':
      case 'SignatureDoesNotMatch':
      case 'IncompleteSignatureException':
      case 'InvalidClientTokenId':
      case 'MissingAuthenticationTokenException':
      case 'ExpiredTokenException':
      case 'ExpiredToken':
        return fail('TARGET_PERMISSION', `AWS rejected the credentials (${name}); check the access key, secret key and session token the SDK picks up`);
      case 'CredentialsProviderError':
        return fail('TARGET', 'no AWS credentials found (environment, shared config, SSO, instance or container role); configure one for the SDK default chain');
      case 'ResourceNotFoundException':
        if (action === 'UpdateSecretVersionStage') {
          return fail('TARGET', 'a version the labels should move to no longer exists; check the secret\'s versions (aws secretsmanager list-secret-version-ids) by hand');
        }
        return action === 'GetSecretValue'
          ? fail('TARGET', `the secret has no ${CURRENT} value; put an initial value first (aws secretsmanager put-secret-value)`)
          : fail('TARGET', `secret ${secretId} not found in ${shownRegion}; create it first (rekey does not create secrets) or fix secretId/region`);
      case 'ResourceExistsException':
        return fail('TARGET_CONFLICT', 'a version with this rotation\'s request token already exists with different content; the secret changed concurrently, run the rotation again');
      case 'ThrottlingException':
      case 'TooManyRequestsException':
      case 'RequestLimitExceeded':
      case 'Throttling':
        return fail('TARGET_TRANSIENT', `AWS throttled ${action} (${name}); retry later`);
      case 'InternalServiceError':
      case 'InternalFailure':
      case 'ServiceUnavailable':
      case 'ServiceUnavailableException':
        return fail('TARGET_TRANSIENT', `AWS failed ${action} (${name}); retry later`);
      case 'TimeoutError':
      case 'AbortError':
      case 'RequestTimeout':
        return fail('TARGET_TRANSIENT', `no answer to ${action} within ${timeoutMs} ms; check that ${config.endpoint ?? 'Secrets Manager'} is reachable`);
      default:
        break;
    }
    if (typeof err.message === 'string' && /region is missing/i.test(err.message)) {
      return fail('TARGET', 'no AWS region; set region in the target or AWS_REGION');
    }
    if (code && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED'].includes(code)) {
      return fail('TARGET_TRANSIENT', `${action} failed: network error (${code}); check that ${config.endpoint ?? 'Secrets Manager'} is reachable`);
    }
    if (code === 'ENOTFOUND') return fail('TARGET', `${action} failed: cannot resolve the endpoint host (ENOTFOUND); check endpoint/region`);
    if ((status !== undefined && (status >= 500 || status === 429)) || err.$fault === 'server') {
      return fail('TARGET_TRANSIENT', `AWS answered ${action} with HTTP ${status ?? '5xx'} (${name}); retry later`);
    }
    if (status === undefined && err.$fault === undefined) {
      // Not an answer from AWS at all: a socket or TLS problem. Retry: it is usually the network.
      return fail('TARGET_TRANSIENT', `${action} failed before AWS answered (${code ?? name}); check that ${config.endpoint ?? 'Secrets Manager'} is reachable`);
    }
    return fail('TARGET', `AWS refused ${action} (${name}${status ? `, HTTP ${status}` : ''}); check secretId, region and the secret's state`);
  }

  async function call<T>(action: Action, run: (c: SecretsManagerClient, signal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await run(getClient(), AbortSignal.timeout(timeoutMs));
    } catch (e) {
      throw mapError(e, action);
    }
  }

  const describe = async (): Promise<DescribeSecretCommandOutput> => {
    const d = await call('DescribeSecret', (c, abortSignal) => c.send(new DescribeSecretCommand({ SecretId: secretId }), { abortSignal }));
    if (d.DeletedDate) throw fail('TARGET', 'the secret is scheduled for deletion; restore it (aws secretsmanager restore-secret) first');
    return d;
  };
  const stagesNow = async (): Promise<Stages> => (await describe()).VersionIdsToStages ?? {};

  const getCurrent = (): Promise<GetSecretValueCommandOutput> =>
    call('GetSecretValue', (c, abortSignal) => c.send(new GetSecretValueCommand({ SecretId: secretId, VersionStage: CURRENT }), { abortSignal }));

  /**
   * One UpdateSecretVersionStage. When giving a label back to an old version that AWS has deleted
   * meanwhile (unlabelled versions may be), just take the label off ours.
   */
  async function move(m: LabelMove, restoring = false): Promise<void> {
    const send = (x: LabelMove) =>
      getClient().send(new UpdateSecretVersionStageCommand({
        SecretId: secretId,
        VersionStage: x.label,
        ...(x.moveTo ? { MoveToVersionId: x.moveTo } : {}),
        ...(x.removeFrom ? { RemoveFromVersionId: x.removeFrom } : {}),
      }), { abortSignal: AbortSignal.timeout(timeoutMs) });
    try {
      await send(m);
    } catch (e) {
      const gone = (e as { name?: unknown } | null)?.name === 'ResourceNotFoundException';
      if (restoring && gone && m.moveTo && m.removeFrom && m.label !== CURRENT) {
        try {
          await send({ label: m.label, removeFrom: m.removeFrom });
          return;
        } catch (e2) {
          throw mapError(e2, 'UpdateSecretVersionStage');
        }
      }
      throw mapError(e, 'UpdateSecretVersionStage');
    }
  }

  function jsonObject(s: string | undefined): Record<string, unknown> {
    let v: unknown;
    try {
      v = s === undefined ? undefined : JSON.parse(s);
    } catch {
      v = undefined;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw fail('TARGET', `the current value is not a JSON object, so jsonKey ${jsonKey} cannot be merged into it; store a JSON object or drop jsonKey`);
    }
    return v as Record<string, unknown>;
  }

  /** The token inside a SecretString: the whole string, or the jsonKey member. */
  function tokenIn(s: string | undefined): string | undefined {
    if (s === undefined) return undefined;
    if (!jsonKey) return s;
    try {
      const v = (JSON.parse(s) as Record<string, unknown> | null)?.[jsonKey];
      return typeof v === 'string' ? v : undefined;
    } catch {
      return undefined;
    }
  }

  /** The current token, or undefined when there is no secret, no AWSCURRENT value or no jsonKey member. */
  async function currentToken(): Promise<string | undefined> {
    let out: GetSecretValueCommandOutput;
    try {
      out = await getClient().send(new GetSecretValueCommand({ SecretId: secretId, VersionStage: CURRENT }), { abortSignal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      if ((e as { name?: unknown } | null)?.name === 'ResourceNotFoundException') return undefined;
      throw mapError(e, 'GetSecretValue');
    }
    return tokenIn(out.SecretString);
  }

  function metaOf(snap: Snapshot): AwsMeta {
    const m = snap.meta;
    const str = (k: string) => (typeof m[k] === 'string' ? { [k]: m[k] as string } : {});
    return { ...str('versionId'), ...str('currentVersionId'), ...str('previousVersionId'), ...str('pendingVersionId') };
  }

  /** Apply label moves one at a time, re-reading the labels after each, until none is needed. */
  async function settle(next: (stages: Stages) => LabelMove | undefined, restoring = false): Promise<number> {
    let moves = 0;
    for (let i = 0; i < 6; i++) {
      const m = next(await stagesNow());
      if (!m) return moves;
      await move(m, restoring);
      moves++;
    }
    throw fail('TARGET_CONFLICT', 'the version labels keep changing; another process is rotating this secret, check it by hand');
  }

  return {
    kind: 'aws-secrets-manager',
    description,
    phase: 'stage',

    async snapshot(ctx: RotationContext): Promise<Snapshot> {
      const stages = await stagesNow();
      const current = holderOf(stages, CURRENT);
      if (!current) throw fail('TARGET', `the secret has no ${CURRENT} version; put an initial value first (aws secretsmanager put-secret-value)`);
      if (jsonKey) jsonObject((await getCurrent()).SecretString); // fail now, before any target is touched
      const previous = holderOf(stages, PREVIOUS);
      const pending = holderOf(stages, PENDING);
      // No secret part: AWS keeps every version, so undoing needs only version ids.
      return {
        meta: {
          versionId: awsVersionId(ctx.policy, ctx.version, ctx.sha256),
          currentVersionId: current,
          ...(previous ? { previousVersionId: previous } : {}),
          ...(pending ? { pendingVersionId: pending } : {}),
        },
      };
    },

    async stage(ctx: RotationContext, snap: Snapshot): Promise<void> {
      const token = ctx.token;
      if (!token) throw fail('TARGET', 'stage needs the new token, which this process does not have; run the rotation again');
      const ours = awsVersionId(ctx.policy, ctx.version, ctx.sha256);
      const meta = metaOf(snap);
      const stages = await stagesNow();
      const mine = stages[ours] ?? [];
      if (mine.includes(PENDING) || mine.includes(CURRENT)) return; // a retry: already staged
      let value = token.reveal();
      if (jsonKey) {
        const cur = await getCurrent();
        if (meta.currentVersionId && cur.VersionId !== meta.currentVersionId) {
          throw fail('TARGET_CONFLICT', `${CURRENT} moved since the snapshot; the secret changed concurrently, run the rotation again`);
        }
        value = JSON.stringify({ ...jsonObject(cur.SecretString), [jsonKey]: value });
      }
      const out: PutSecretValueCommandOutput = await call('PutSecretValue', (c, abortSignal) =>
        c.send(new PutSecretValueCommand({ SecretId: secretId, SecretString: value, VersionStages: [PENDING], ClientRequestToken: ours }), { abortSignal }));
      if (!(out.VersionStages ?? []).includes(PENDING)) {
        // AWS ignored a repeat of a version that had lost its labels (after a rollback): label it again.
        const holder = holderOf(stages, PENDING);
        await move({ label: PENDING, moveTo: ours, ...(holder && holder !== ours ? { removeFrom: holder } : {}) });
      }
      ctx.log.info({ target: description, policy: ctx.policy, versionId: ours, fingerprint: ctx.fingerprint }, `${description}: staged version ${ours} as ${PENDING}`);
    },

    async promote(ctx: RotationContext, snap: Snapshot): Promise<void> {
      const ours = awsVersionId(ctx.policy, ctx.version, ctx.sha256);
      const meta = metaOf(snap);
      await settle((stages) => {
        const m = nextPromoteMove(stages, ours, meta);
        if (m === 'missing') throw fail('TARGET', `the staged version ${ours} is gone (it has no labels); run the rotation again`);
        if (m === 'conflict') throw fail('TARGET_CONFLICT', `${CURRENT} moved since the snapshot; another process rotated the secret, run the rotation again`);
        return m;
      });
    },

    async rollback(ctx: RotationContext, snap: Snapshot): Promise<void> {
      const ours = awsVersionId(ctx.policy, ctx.version, ctx.sha256);
      const meta = metaOf(snap);
      const moves = await settle((stages) => {
        try {
          return nextRollbackMove(stages, ours, meta);
        } catch {
          throw fail('TARGET', `cannot roll back: the snapshot lacks the previous ${CURRENT} version; move ${CURRENT} back by hand`);
        }
      }, true);
      if (moves > 0) ctx.log.info({ target: description, policy: ctx.policy, versionId: ours }, `${description}: rolled back the labels of version ${ours}`);
    },

    async retire(): Promise<void> {
      // Nothing to do: AWS keeps the replaced version as AWSPREVIOUS until the next rotation.
    },

    async readBack(): Promise<string | undefined> {
      const v = await currentToken();
      return v === undefined ? undefined : sha256(v);
    },

    async readCurrentToken(): Promise<Secret | undefined> {
      const v = await currentToken();
      return v === undefined ? undefined : new Secret(v);
    },

    async close(): Promise<void> {
      client?.destroy();
      client = undefined;
    },
  };
}
