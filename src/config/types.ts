import type { TokenEncoding } from '../token/encoding.js';
import type { HookConfig, TargetConfig, VerifyConfig } from './schema.js';

/** Where a policy (or a problem) sits in the config file. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

/** A policy with defaults merged and durations parsed: what the engine and the scheduler use. */
export interface Policy {
  name: string;
  description?: string;
  token: { bytes: number; encoding: TokenEncoding; prefix: string };
  schedule?: string;
  /** Milliseconds between rotations for `every`. */
  everyMs?: number;
  timezone: string;
  jitterMs: number;
  graceMs: number;
  maxAgeMs?: number;
  verify?: VerifyConfig;
  hooks: { before: HookConfig[]; after: HookConfig[] };
  targets: TargetConfig[];
  source: SourcePos;
}

export interface Config {
  file: string;
  dir: string;
  openssl: { path?: string; timeoutMs: number };
  stateDir: string;
  concurrency: number;
  policies: Policy[];
}

/** One thing wrong with a config file, with its position. Validation returns these as values. */
export interface Problem {
  file: string;
  line: number;
  col: number;
  /** Key path such as policies[0].token.bytes, when it helps. */
  path: string;
  message: string;
}

export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}
