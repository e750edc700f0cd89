/**
 * A strict local stand-in for AWS Secrets Manager (JSON 1.1 protocol), following
 * /work/shared/reference/secret-stores.md: POST / with application/x-amz-json-1.1 and
 * X-Amz-Target secretsmanager.<Op>, a verified SigV4 signature, errors as HTTP 400
 * {"__type", "message"}. Implements CreateSecret, GetSecretValue, PutSecretValue,
 * UpdateSecretVersionStage and DescribeSecret with AWS's label rules: a label sits on at most one
 * version; moving a label that is attached elsewhere requires RemoveFromVersionId = its holder;
 * AWSCURRENT cannot be removed, only moved, and AWSPREVIOUS follows it by itself; a
 * ClientRequestToken becomes the VersionId and is an idempotency key (same data: same version;
 * different data: ResourceExistsException). Knobs: injected failures, denied actions, slowness.
 */
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type AwsOperation = 'CreateSecret' | 'GetSecretValue' | 'PutSecretValue' | 'UpdateSecretVersionStage' | 'DescribeSecret';
const OPERATIONS: readonly string[] = ['CreateSecret', 'GetSecretValue', 'PutSecretValue', 'UpdateSecretVersionStage', 'DescribeSecret'];

export type AwsFailure = 'AccessDenied' | 'Throttling' | 'InternalServiceError' | 'ServiceUnavailable';

export interface AwsDoubleOptions {
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
}

export interface StoredSecretVersion {
  versionId: string;
  secretString: string;
  stages: string[];
  createdDate: number;
}

interface StoredSecret {
  name: string;
  arn: string;
  createdDate: number;
  lastChangedDate: number;
  /** Insertion order = creation order. */
  versions: Map<string, StoredSecretVersion>;
}

export interface AwsRecordedRequest {
  operation: string;
  body: Record<string, unknown>;
  status: number;
  errorType?: string;
}

export interface AwsSecretsManagerDouble {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  readonly requests: AwsRecordedRequest[];
  requestCount(operation?: AwsOperation): number;
  /** The next n requests (of `operation`, if given) fail this way. */
  failNext(n: number, kind: AwsFailure, operation?: AwsOperation): void;
  /** Every request fails this way until cleared (undefined). */
  failAll(kind: AwsFailure | undefined): void;
  /** AccessDeniedException for these actions (e.g. "PutSecretValue"); deny([]) clears. */
  deny(operations: AwsOperation[]): void;
  /** Answer the next `count` (default all) matching requests after ms; the request is still processed. */
  slow(ms: number, opts?: { count?: number; operation?: AwsOperation }): void;
  /** Test setup without HTTP. Returns the ARN and the first version's id (when a value is given). */
  createSecret(name: string, value?: string): { arn: string; versionId?: string };
  /** Seed a value as AWS would on PutSecretValue (default stages: AWSCURRENT). Returns the VersionId. */
  putValue(name: string, value: string, stages?: string[]): string;
  /** The AWSCURRENT value, or undefined. */
  currentValue(name: string): string | undefined;
  /** Labels of every version, including deprecated (unlabelled) ones: versionId -> stages. */
  stages(name: string): Record<string, string[]>;
  version(name: string, versionId: string): StoredSecretVersion | undefined;
  close(): Promise<void>;
}

class AwsError {
  constructor(readonly type: string, readonly message: string, readonly status = 400) {}
}

const sha256hex = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const hmac = (key: string | Buffer, s: string) => createHmac('sha256', key).update(s).digest();
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;

export async function startAwsSecretsManagerDouble(opts: AwsDoubleOptions = {}): Promise<AwsSecretsManagerDouble> {
  const region = opts.region ?? 'eu-west-1';
  const accessKeyId = opts.accessKeyId ?? `AKIAREKEY${randomBytes(6).toString('hex').toUpperCase()}`;
  const secretAccessKey = opts.secretAccessKey ?? randomBytes(30).toString('base64');
  const account = '123456789012';

  const secrets = new Map<string, StoredSecret>();
  const requests: AwsRecordedRequest[] = [];
  const failures: Array<{ remaining: number; kind: AwsFailure; operation?: string }> = [];
  let failAllKind: AwsFailure | undefined;
  let denied = new Set<string>();
  let slowness: { ms: number; remaining: number; operation?: string } | undefined;
  const timers = new Set<NodeJS.Timeout>();

  const nowSec = () => Math.floor(Date.now() / 1000);

  function find(id: unknown): StoredSecret {
    if (typeof id !== 'string' || id === '') throw new AwsError('ValidationException', "1 validation error detected: Value null at 'secretId' failed to satisfy constraint: Member must not be null");
    for (const s of secrets.values()) if (s.name === id || s.arn === id) return s;
    throw new AwsError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
  }

  const holder = (s: StoredSecret, label: string) => [...s.versions.values()].find((v) => v.stages.includes(label));

  /** Attach `label` to `to`, taking it off whichever version had it; AWSCURRENT drags AWSPREVIOUS along. */
  function attach(s: StoredSecret, label: string, to: StoredSecretVersion): void {
    const from = holder(s, label);
    if (from === to) return;
    if (from) from.stages = from.stages.filter((l) => l !== label);
    to.stages.push(label);
    if (label === 'AWSCURRENT' && from) {
      const prev = holder(s, 'AWSPREVIOUS');
      if (prev) prev.stages = prev.stages.filter((l) => l !== 'AWSPREVIOUS');
      from.stages.push('AWSPREVIOUS');
    }
    s.lastChangedDate = nowSec();
  }

  function newVersion(s: StoredSecret, versionId: string, value: string, stages: string[]): StoredSecretVersion {
    const v: StoredSecretVersion = { versionId, secretString: value, stages: [], createdDate: nowSec() };
    s.versions.set(versionId, v);
    for (const l of stages) attach(s, l, v);
    s.lastChangedDate = nowSec();
    return v;
  }

  function createSecret(name: string, value?: string, token?: string): { s: StoredSecret; v?: StoredSecretVersion } {
    if (!NAME.test(name)) throw new AwsError('ValidationException', 'Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!');
    if ([...secrets.values()].some((x) => x.name === name)) throw new AwsError('ResourceExistsException', `The operation failed because the secret ${name} already exists.`);
    const s: StoredSecret = {
      name,
      arn: `arn:aws:secretsmanager:${region}:${account}:secret:${name}-${randomBytes(3).toString('hex')}`,
      createdDate: nowSec(),
      lastChangedDate: nowSec(),
      versions: new Map(),
    };
    secrets.set(s.arn, s);
    const v = value === undefined ? undefined : newVersion(s, token ?? randomUUID(), value, ['AWSCURRENT']);
    return { s, ...(v ? { v } : {}) };
  }

  function requestToken(b: Record<string, unknown>): string {
    const t = b.ClientRequestToken;
    if (t === undefined) return randomUUID();
    if (typeof t !== 'string' || t.length < 32 || t.length > 64) {
      throw new AwsError('ValidationException', "1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length between 32 and 64");
    }
    return t;
  }

  function secretString(b: Record<string, unknown>): string {
    if (b.SecretBinary !== undefined && b.SecretString !== undefined) throw new AwsError('InvalidParameterException', 'You can\'t specify both a binary secret value and a string secret value in the same secret.');
    if (b.SecretBinary !== undefined) throw new AwsError('InvalidRequestException', 'This double stores SecretString values only.');
    if (b.SecretString === undefined) throw new AwsError('InvalidRequestException', 'You must provide either SecretString or SecretBinary.');
    if (typeof b.SecretString !== 'string') throw new AwsError('SerializationException', 'SecretString must be a string');
    if (Buffer.byteLength(b.SecretString) > 65536) throw new AwsError('ValidationException', "1 validation error detected: Value at 'secretString' failed to satisfy constraint: Member must have length less than or equal to 65536");
    return b.SecretString;
  }

  function versionStages(b: Record<string, unknown>, dflt: string[]): string[] {
    const st = b.VersionStages;
    if (st === undefined) return dflt;
    if (!Array.isArray(st) || st.length < 1 || st.length > 20 || !st.every((x) => typeof x === 'string' && x.length >= 1 && x.length <= 256)) {
      throw new AwsError('ValidationException', "1 validation error detected: Value at 'versionStages' failed to satisfy constraint: Member must have length between 1 and 20");
    }
    return [...new Set(st as string[])];
  }

  const operations: Record<string, (b: Record<string, unknown>) => Record<string, unknown>> = {
    CreateSecret(b) {
      if (typeof b.Name !== 'string') throw new AwsError('ValidationException', "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null");
      const value = b.SecretString === undefined && b.SecretBinary === undefined ? undefined : secretString(b);
      const { s, v } = createSecret(b.Name, value, value === undefined ? undefined : requestToken(b));
      return { ARN: s.arn, Name: s.name, ...(v ? { VersionId: v.versionId } : {}) };
    },

    DescribeSecret(b) {
      const s = find(b.SecretId);
      const labelled = [...s.versions.values()].filter((v) => v.stages.length > 0);
      return {
        ARN: s.arn,
        Name: s.name,
        CreatedDate: s.createdDate,
        LastChangedDate: s.lastChangedDate,
        RotationEnabled: false,
        // AWS lists only versions that have a label; unlabelled ones are deprecated.
        ...(labelled.length ? { VersionIdsToStages: Object.fromEntries(labelled.map((v) => [v.versionId, [...v.stages]])) } : {}),
      };
    },

    GetSecretValue(b) {
      const s = find(b.SecretId);
      const vid = b.VersionId;
      const stage = b.VersionStage;
      if (vid !== undefined && (typeof vid !== 'string' || vid.length < 32 || vid.length > 64)) {
        throw new AwsError('ValidationException', "1 validation error detected: Value at 'versionId' failed to satisfy constraint: Member must have length between 32 and 64");
      }
      if (stage !== undefined && (typeof stage !== 'string' || stage === '')) throw new AwsError('ValidationException', "Value at 'versionStage' failed to satisfy constraint");
      let v: StoredSecretVersion | undefined;
      if (typeof vid === 'string') {
        v = s.versions.get(vid);
        if (!v || (typeof stage === 'string' && !v.stages.includes(stage))) {
          throw new AwsError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for VersionId: ${vid}`);
        }
      } else {
        const label = typeof stage === 'string' ? stage : 'AWSCURRENT';
        v = holder(s, label);
        if (!v) throw new AwsError('ResourceNotFoundException', `Secrets Manager can't find the specified secret value for staging label: ${label}`);
      }
      return { ARN: s.arn, Name: s.name, VersionId: v.versionId, SecretString: v.secretString, VersionStages: [...v.stages], CreatedDate: v.createdDate };
    },

    PutSecretValue(b) {
      const s = find(b.SecretId);
      const token = requestToken(b);
      const value = secretString(b);
      const stages = versionStages(b, ['AWSCURRENT']);
      const existing = s.versions.get(token);
      if (existing) {
        // Idempotency: the same request again is ignored (labels untouched); other data is an error.
        if (existing.secretString !== value) throw new AwsError('ResourceExistsException', 'A resource with the ID you requested already exists.');
        return { ARN: s.arn, Name: s.name, VersionId: existing.versionId, VersionStages: [...existing.stages] };
      }
      const v = newVersion(s, token, value, stages);
      return { ARN: s.arn, Name: s.name, VersionId: v.versionId, VersionStages: [...v.stages] };
    },

    UpdateSecretVersionStage(b) {
      const s = find(b.SecretId);
      const label = b.VersionStage;
      if (typeof label !== 'string' || label === '' || label.length > 256) {
        throw new AwsError('ValidationException', "1 validation error detected: Value null at 'versionStage' failed to satisfy constraint: Member must not be null");
      }
      const moveTo = b.MoveToVersionId;
      const removeFrom = b.RemoveFromVersionId;
      for (const [n, x] of [['moveToVersionId', moveTo], ['removeFromVersionId', removeFrom]] as const) {
        if (x !== undefined && (typeof x !== 'string' || x.length < 32 || x.length > 64)) {
          throw new AwsError('ValidationException', `1 validation error detected: Value at '${n}' failed to satisfy constraint: Member must have length between 32 and 64`);
        }
      }
      const current = holder(s, label);
      if (typeof moveTo === 'string') {
        const target = s.versions.get(moveTo);
        if (!target) throw new AwsError('ResourceNotFoundException', `Secrets Manager can't find the specified secret version: ${moveTo}`);
        if (current && current !== target && removeFrom !== current.versionId) {
          throw new AwsError('InvalidParameterException',
            `The parameter RemoveFromVersionId can't be empty. Staging label ${label} is currently attached to version ${current.versionId}, so you must explicitly reference that version in RemoveFromVersionId.`);
        }
        if (!current && removeFrom !== undefined) {
          throw new AwsError('InvalidParameterException', `Staging label ${label} is not attached to version ${String(removeFrom)}.`);
        }
        if (current === target && removeFrom !== undefined && removeFrom !== target.versionId) {
          throw new AwsError('InvalidParameterException', `Staging label ${label} is not attached to version ${String(removeFrom)}.`);
        }
        attach(s, label, target);
        return { ARN: s.arn, Name: s.name };
      }
      if (typeof removeFrom !== 'string') throw new AwsError('InvalidParameterException', 'You must specify MoveToVersionId, RemoveFromVersionId, or both.');
      if (label === 'AWSCURRENT') {
        throw new AwsError('InvalidParameterException', 'You can only move staging label AWSCURRENT to a different secret version. It can\u2019t be completely removed.');
      }
      const from = s.versions.get(removeFrom);
      if (!from) throw new AwsError('ResourceNotFoundException', `Secrets Manager can't find the specified secret version: ${removeFrom}`);
      if (current !== from) throw new AwsError('InvalidParameterException', `Staging label ${label} is not attached to version ${removeFrom}.`);
      from.stages = from.stages.filter((l) => l !== label);
      s.lastChangedDate = nowSec();
      return { ARN: s.arn, Name: s.name };
    },
  };

  /** SigV4: the header's shape, the scope (this region, this service), a known key, and the signature. */
  function checkSignature(req: http.IncomingMessage, body: Buffer): void {
    const auth = req.headers.authorization;
    if (typeof auth !== 'string' || auth === '') throw new AwsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
    if (!auth.startsWith('AWS4-HMAC-SHA256 ')) throw new AwsError('IncompleteSignatureException', 'Authorization header requires AWS4-HMAC-SHA256 signing.');
    const m = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) throw new AwsError('IncompleteSignatureException', 'Authorization header requires \'Credential\', \'Signature\' and \'SignedHeaders\' parameters.');
    const [, akid, date, scopeRegion, service, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string, string];
    const amzDate = req.headers['x-amz-date'];
    if (typeof amzDate !== 'string' || !/^\d{8}T\d{6}Z$/.test(amzDate)) throw new AwsError('IncompleteSignatureException', 'Authorization header requires existence of either a \'X-Amz-Date\' or a \'Date\' header.');
    if (akid !== accessKeyId) throw new AwsError('UnrecognizedClientException', 'The security token included in the request is invalid.');
    if (service !== 'secretsmanager') throw new AwsError('InvalidSignatureException', `Credential should be scoped to correct service: 'secretsmanager'.`);
    if (scopeRegion !== region) throw new AwsError('InvalidSignatureException', `Credential should be scoped to a valid region.`);
    if (date !== amzDate.slice(0, 8)) throw new AwsError('InvalidSignatureException', 'Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.');
    const t = Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8), +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15));
    if (Math.abs(Date.now() - t) > 15 * 60_000) throw new AwsError('InvalidSignatureException', 'Signature expired.');
    const names = signedHeaders.split(';');
    if (!names.includes('host') || !names.includes('x-amz-date')) throw new AwsError('InvalidSignatureException', 'The request signature must sign the host and x-amz-date headers.');
    const canonicalHeaders = names.map((n) => {
      const v = req.headers[n];
      const value = Array.isArray(v) ? v.join(',') : (v ?? '');
      return `${n}:${value.trim().replace(/\s+/g, ' ')}\n`;
    }).join('');
    const payloadHash = typeof req.headers['x-amz-content-sha256'] === 'string' ? req.headers['x-amz-content-sha256'] : sha256hex(body);
    const u = new URL(req.url ?? '/', 'http://x');
    const canonical = ['POST', u.pathname || '/', '', canonicalHeaders, signedHeaders, payloadHash].join('\n');
    const scope = `${date}/${scopeRegion}/${service}/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonical)].join('\n');
    const key = hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), scopeRegion), service), 'aws4_request');
    const expected = createHmac('sha256', key).update(toSign).digest('hex');
    if (expected !== signature) {
      throw new AwsError('InvalidSignatureException', 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.');
    }
  }

  function injected(kind: AwsFailure, op: string, body: Record<string, unknown>): AwsError {
    switch (kind) {
      case 'AccessDenied':
        return accessDenied(op, body);
      case 'Throttling':
        return new AwsError('ThrottlingException', 'Rate exceeded');
      case 'InternalServiceError':
        return new AwsError('InternalServiceError', 'An error occurred on the server side.', 500);
      case 'ServiceUnavailable':
        return new AwsError('ServiceUnavailable', 'Service is unavailable.', 503);
    }
  }

  function accessDenied(op: string, body: Record<string, unknown>): AwsError {
    const res = typeof body.SecretId === 'string' ? body.SecretId : '*';
    return new AwsError('AccessDeniedException',
      `User: arn:aws:iam::${account}:user/rekey-test is not authorized to perform: secretsmanager:${op} on resource: ${res} because no identity-based policy allows the secretsmanager:${op} action`);
  }

  function handleRequest(req: http.IncomingMessage, raw: Buffer, rec: AwsRecordedRequest): { status: number; body: Record<string, unknown> } {
    if (req.method !== 'POST' || new URL(req.url ?? '/', 'http://x').pathname !== '/') throw new AwsError('UnknownOperationException', '', 404);
    const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (ct !== 'application/x-amz-json-1.1') throw new AwsError('UnknownOperationException', 'Content-Type must be application/x-amz-json-1.1');
    const target = String(req.headers['x-amz-target'] ?? '');
    const op = target.startsWith('secretsmanager.') ? target.slice('secretsmanager.'.length) : '';
    rec.operation = op || target;
    if (!OPERATIONS.includes(op)) throw new AwsError('UnknownOperationException', '');
    checkSignature(req, raw);
    let body: unknown;
    try {
      body = raw.length === 0 ? {} : JSON.parse(raw.toString('utf8'));
    } catch {
      throw new AwsError('SerializationException', 'Start of structure or map found where not expected.');
    }
    if (!isObject(body)) throw new AwsError('SerializationException', 'Start of structure or map found where not expected.');
    rec.body = body;
    const kind = takeFailure(op);
    if (kind) throw injected(kind, op, body);
    if (denied.has(op)) throw accessDenied(op, body);
    return { status: 200, body: operations[op]!(body) };
  }

  function takeFailure(op: string): AwsFailure | undefined {
    if (failAllKind) return failAllKind;
    const f = failures.find((x) => x.remaining > 0 && (!x.operation || x.operation === op));
    if (!f) return undefined;
    f.remaining--;
    return f.kind;
  }

  function delayFor(op: string): number {
    if (!slowness || slowness.remaining <= 0 || (slowness.operation && slowness.operation !== op)) return 0;
    slowness.remaining--;
    return slowness.ms;
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const rec: AwsRecordedRequest = { operation: '', body: {}, status: 0 };
      requests.push(rec);
      const target = String(req.headers['x-amz-target'] ?? '');
      const respond = () => {
        let status: number;
        let out: Record<string, unknown>;
        try {
          ({ status, body: out } = handleRequest(req, raw, rec));
        } catch (e) {
          if (!(e instanceof AwsError)) throw e;
          status = e.status;
          rec.errorType = e.type;
          out = { __type: e.type, message: e.message };
        }
        rec.status = status;
        if (res.destroyed) return; // the client gave up; the work above still happened
        const text = JSON.stringify(out);
        res.writeHead(status, {
          'Content-Type': 'application/x-amz-json-1.1',
          'Content-Length': Buffer.byteLength(text),
          'x-amzn-RequestId': randomUUID(),
        }).end(text);
      };
      const ms = delayFor(target.replace(/^secretsmanager\./, ''));
      if (ms > 0) {
        const t = setTimeout(() => {
          timers.delete(t);
          respond();
        }, ms);
        timers.add(t);
      } else {
        respond();
      }
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const byName = (name: string) => {
    const s = [...secrets.values()].find((x) => x.name === name || x.arn === name);
    if (!s) throw new Error(`double: no secret ${name}`);
    return s;
  };

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    accessKeyId,
    secretAccessKey,
    requests,
    requestCount(operation) {
      return requests.filter((r) => !operation || r.operation === operation).length;
    },
    failNext(n, kind, operation) {
      failures.push({ remaining: n, kind, ...(operation ? { operation } : {}) });
    },
    failAll(kind) {
      failAllKind = kind;
    },
    deny(ops) {
      denied = new Set(ops);
    },
    slow(ms, o) {
      slowness = { ms, remaining: o?.count ?? Infinity, ...(o?.operation ? { operation: o.operation } : {}) };
    },
    createSecret(name, value) {
      const { s, v } = createSecret(name, value);
      return { arn: s.arn, ...(v ? { versionId: v.versionId } : {}) };
    },
    putValue(name, value, stages) {
      return newVersion(byName(name), randomUUID(), value, stages ?? ['AWSCURRENT']).versionId;
    },
    currentValue(name) {
      return holder(byName(name), 'AWSCURRENT')?.secretString;
    },
    stages(name) {
      return Object.fromEntries([...byName(name).versions.values()].map((v) => [v.versionId, [...v.stages].sort()]));
    },
    version(name, versionId) {
      const v = byName(name).versions.get(versionId);
      return v ? { ...v, stages: [...v.stages] } : undefined;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
