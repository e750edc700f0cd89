/** Shared by the rotation tests: a policy dir with env-file + file(token) + file(sha256) targets, and readers. */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PolicyState } from '../../src/state/store.js';

export const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/rotation');
export const VERIFY_OK = join(FIXTURES, 'verify-ok');
export const VERIFY_FAIL = join(FIXTURES, 'verify-fail');
export const CAPTURE = join(FIXTURES, 'capture.mjs');

export const sha256 = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

export interface PolicyFiles {
  dir: string;
  configFile: string;
  stateDir: string;
  env: string;
  token: string;
  hash: string;
}

export type RawPolicyObject = Record<string, unknown>;

/** The three targets every rotation test uses; extra policy settings are merged in. */
export function threeTargets(p: Pick<PolicyFiles, 'env' | 'token' | 'hash'>): RawPolicyObject[] {
  return [
    { type: 'env-file', path: p.env, key: 'API_TOKEN', previousKey: 'API_TOKEN_PREVIOUS' },
    { type: 'file', path: p.token, content: 'token' },
    { type: 'file', path: p.hash, content: 'sha256' },
  ];
}

/** Write a config (JSON is YAML) with one or more policies; returns the file. */
export async function writeConfig(file: string, stateDir: string, policies: RawPolicyObject[]): Promise<string> {
  await fsp.writeFile(file, `${JSON.stringify({ version: 1, state: { dir: stateDir }, policies }, null, 2)}\n`);
  return file;
}

/** A policy dir: config, state dir, and the target paths (files not created). */
export async function policyDir(dir: string, policy: RawPolicyObject = {}, name = 'api'): Promise<PolicyFiles> {
  const p: PolicyFiles = {
    dir,
    configFile: join(dir, 'rekey.yaml'),
    stateDir: join(dir, 'state'),
    env: join(dir, 'app.env'),
    token: join(dir, 'api.token'),
    hash: join(dir, 'api.sha256'),
  };
  await writeConfig(p.configFile, p.stateDir, [{ name, grace: '1h', targets: threeTargets(p), ...policy }]);
  return p;
}

/** KEY's value in env-file text (last wins; no quotes are used by these tests). */
export function envValue(text: string, key: string): string | undefined {
  let v: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m && m[1] === key) v = m[2];
  }
  return v;
}

export async function readText(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** The bytes and permission bits of each file (undefined when missing). */
export async function fileShots(files: string[]): Promise<Array<{ file: string; bytes?: string; mode?: number }>> {
  return Promise.all(
    files.map(async (file) => {
      try {
        const [bytes, st] = await Promise.all([fsp.readFile(file), fsp.stat(file)]);
        return { file, bytes: bytes.toString('base64'), mode: st.mode & 0o7777 };
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOENT') return { file };
        throw e;
      }
    }),
  );
}

export async function readState(stateDir: string, policy = 'api'): Promise<PolicyState | undefined> {
  const t = await readText(join(stateDir, 'policies', `${policy}.json`));
  return t === undefined ? undefined : (JSON.parse(t) as PolicyState);
}

export async function listDir(dir: string): Promise<string[]> {
  return fsp.readdir(dir).catch(() => [] as string[]);
}

export interface AuditLine {
  event: string;
  policy: string;
  version?: number;
  fingerprint?: string;
  reason?: string;
  [k: string]: unknown;
}

/** Every line of the audit log, parsed; throws on a line that is not JSON or a missing final newline. */
export async function readAudit(stateDir: string): Promise<AuditLine[]> {
  const text = (await readText(join(stateDir, 'audit.log'))) ?? '';
  if (text === '') return [];
  if (!text.endsWith('\n')) throw new Error('audit log does not end with a newline (torn last line)');
  return text
    .slice(0, -1)
    .split('\n')
    .map((l, i) => {
      try {
        return JSON.parse(l) as AuditLine;
      } catch {
        throw new Error(`audit log line ${i + 1} is not JSON`);
      }
    });
}
