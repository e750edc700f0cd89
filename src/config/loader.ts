import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import cron from 'node-cron';
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { ZodIssue, ZodTypeAny } from 'zod';
import { z } from 'zod';
import { RekeyError } from '../util/errors.js';
import { parseDuration } from '../util/duration.js';
import { didYouMean } from './did-you-mean.js';
import { ConfigSchema, type RawConfig, type RawPolicy, type TargetConfig } from './schema.js';
import { formatProblem, type Config, type Policy, type Problem } from './types.js';

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
}

export interface ParseResult {
  config?: Config;
  problems: Problem[];
}

type PathSeg = string | number;

const DEFAULT_GRACE = '24h';

/** The config file: -c FILE, then $REKEY_CONFIG, then ./rekey.yaml, then /etc/rekey/rekey.yaml. */
export function findConfigFile(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  if (explicit) return path.resolve(cwd, explicit);
  if (env.REKEY_CONFIG) return path.resolve(cwd, env.REKEY_CONFIG);
  for (const candidate of [path.join(cwd, 'rekey.yaml'), '/etc/rekey/rekey.yaml']) {
    if (existsSync(candidate)) return candidate;
  }
  throw new RekeyError('CONFIG', 'no config file: pass -c FILE, set REKEY_CONFIG, or create ./rekey.yaml (or /etc/rekey/rekey.yaml)');
}

/** Read, parse and validate a config file. Throws one RekeyError (exit 2) listing every problem. */
export async function loadConfig(file: string, opts: LoadOptions = {}): Promise<Config> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new RekeyError('CONFIG', `cannot read config file ${file}: ${code === 'ENOENT' ? 'no such file' : code ?? 'read failed'}`);
  }
  const result = parseConfigText(text, file, opts);
  if (!result.config) {
    const lines = result.problems.map(formatProblem);
    throw new RekeyError('CONFIG', lines.length === 1 ? lines[0]! : `${file}: ${lines.length} problems`, {
      details: lines.length === 1 ? [] : lines,
    });
  }
  return result.config;
}

/** Pure: text in, typed config or the full list of problems out. */
export function parseConfigText(text: string, file: string, opts: LoadOptions = {}): ParseResult {
  const env = opts.env ?? process.env;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const problems: Problem[] = [];
  const at = (offset: number | undefined, p: PathSeg[], message: string): void => {
    const pos = lineCounter.linePos(offset ?? 0);
    problems.push({ file, line: pos.line, col: pos.col, path: formatPath(p), message });
  };

  for (const err of doc.errors) {
    at(err.pos[0], [], `invalid YAML: ${err.message.split('\n')[0]}`);
  }
  if (problems.length > 0) return { problems };

  if (doc.contents === null || (isScalar(doc.contents) && (doc.contents.value === null || doc.contents.value === ''))) {
    at(0, [], 'the config file is empty; it needs "version: 1" and a "policies" list');
    return { problems };
  }
  if (!isMap(doc.contents)) {
    at(doc.contents.range?.[0], [], `the config file must be a mapping with "version" and "policies", not a ${isSeq(doc.contents) ? 'list' : 'scalar'}`);
    return { problems };
  }

  interpolateTargets(doc, env, at);
  const interpolationFailed = new Set(problems.map((p) => p.path));

  const data: unknown = doc.toJS();
  const parsed = ConfigSchema.safeParse(data);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      if (!interpolationFailed.has(formatPath(issue.path))) reportIssue(doc, issue, at);
    }
  }
  // Semantic checks run even when the shape is wrong, so one pass lists every problem.
  semanticChecks(data as RawConfig, env, (p, msg) => at(offsetOf(doc, p), p, msg));
  if (problems.length > 0 || !parsed.success) {
    const seen = new Set<string>();
    const unique = problems.filter((p) => {
      const k = formatProblem(p);
      return seen.has(k) ? false : (seen.add(k), true);
    });
    unique.sort((a, b) => a.line - b.line || a.col - b.col);
    return { problems: unique };
  }
  return { config: resolve(parsed.data, file, env, doc, lineCounter), problems: [] };
}

function formatPath(p: PathSeg[]): string {
  let out = '';
  for (const seg of p) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : seg;
  return out;
}

/** The node at a path, or the nearest existing ancestor. */
function nodeAt(doc: Document, p: PathSeg[]): YamlNode | undefined {
  for (let n = p.length; n >= 0; n--) {
    const node = doc.getIn(p.slice(0, n), true) as YamlNode | undefined;
    if (node && typeof node === 'object' && 'range' in node) return node;
  }
  return undefined;
}

function offsetOf(doc: Document, p: PathSeg[]): number | undefined {
  return nodeAt(doc, p)?.range?.[0];
}

/** Offset of a key inside the map at path (for unknown keys). */
function keyOffset(doc: Document, p: PathSeg[], key: string): number | undefined {
  const map = doc.getIn(p, true);
  if (isMap(map)) {
    for (const pair of map.items) {
      if (isPair(pair) && isScalar(pair.key) && pair.key.value === key) return pair.key.range?.[0];
    }
  }
  return offsetOf(doc, p);
}

function reportIssue(doc: Document, issue: ZodIssue, at: (o: number | undefined, p: PathSeg[], m: string) => void): void {
  const p = issue.path;
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeys(ConfigSchema, p, doc.toJS());
    for (const key of issue.keys) {
      const hint = didYouMean(key, known);
      const where = formatPath(p) || 'top level';
      at(keyOffset(doc, p, key), [...p, key], `unknown key "${key}" in ${where}${hint ? ` (did you mean "${hint}"?)` : ''}`);
    }
    return;
  }
  if (issue.code === 'invalid_type' && issue.received === 'undefined') {
    const key = p[p.length - 1];
    const custom = issue.message !== 'Required' ? issue.message : `${String(key)} is required`;
    at(offsetOf(doc, p.slice(0, -1)), p, custom);
    return;
  }
  let message = issue.message;
  if (issue.code === 'invalid_type' && message.startsWith('Expected')) {
    message = `must be ${issue.expected}, not ${issue.received}`;
  }
  if (issue.code === 'invalid_literal' && p.length > 0 && p[p.length - 1] === 'type') {
    message = `unknown target type`;
  }
  at(offsetOf(doc, p), p, message);
}

/** The keys the schema allows at a path, for "did you mean". */
function knownKeys(schema: ZodTypeAny, p: PathSeg[], data: unknown): string[] {
  let s: ZodTypeAny | undefined = schema;
  let d: unknown = data;
  const unwrap = (t: ZodTypeAny): ZodTypeAny => {
    let cur = t;
    for (;;) {
      if (cur instanceof z.ZodOptional || cur instanceof z.ZodNullable) cur = cur.unwrap();
      else if (cur instanceof z.ZodDefault) cur = cur.removeDefault();
      else if (cur instanceof z.ZodEffects) cur = cur.innerType();
      else return cur;
    }
  };
  const pick = (t: ZodTypeAny, value: unknown): ZodTypeAny | undefined => {
    const u = unwrap(t);
    if (u instanceof z.ZodDiscriminatedUnion) {
      const disc = (value as Record<string, unknown> | undefined)?.[u.discriminator];
      return (u.optionsMap.get(disc as string) as ZodTypeAny | undefined) ?? undefined;
    }
    return u;
  };
  s = pick(s, d);
  for (const seg of p) {
    if (!s) return [];
    d = (d as Record<string | number, unknown> | undefined)?.[seg];
    if (s instanceof z.ZodObject) s = pick((s.shape as Record<string, ZodTypeAny>)[String(seg)] ?? z.never(), d);
    else if (s instanceof z.ZodArray) s = pick(s.element as ZodTypeAny, d);
    else return [];
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape as object) : [];
}

/** ${VAR} in target settings comes from the environment; $${ is a literal ${. */
function interpolateTargets(doc: Document, env: NodeJS.ProcessEnv, at: (o: number | undefined, p: PathSeg[], m: string) => void): void {
  const policies = doc.get('policies', true);
  if (!isSeq(policies)) return;
  const visit = (node: unknown, p: PathSeg[]): void => {
    if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
      const missing: string[] = [];
      const raw = node.value;
      node.value = raw.replace(/\$?\$\{([^}]*)\}/g, (m, name: string) => {
        if (m.startsWith('$$')) return m.slice(1);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
          missing.push(`\${${name}} is not a valid variable reference`);
          return m;
        }
        const v = env[name];
        if (v === undefined) {
          missing.push(`environment variable ${name} is not set (used as \${${name}})`);
          return m;
        }
        return v;
      });
      for (const msg of missing) at(node.range?.[0], p, msg);
    } else if (isMap(node)) {
      for (const pair of node.items) if (isPair(pair) && isScalar(pair.key)) visit(pair.value, [...p, String(pair.key.value)]);
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => visit(item, [...p, i]));
    }
  };
  policies.items.forEach((policy, i) => {
    if (isMap(policy)) visit(policy.get('targets', true), ['policies', i, 'targets']);
  });
}

function validTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function cronProblem(expr: string): string | undefined {
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    return `schedule "${expr}" has ${fields.length} fields; a cron expression has 5 (minute hour day month weekday) or 6 (seconds first)`;
  }
  if (!cron.validate(expr)) return `schedule "${expr}" is not a valid cron expression`;
  return undefined;
}

function semanticChecks(cfg: RawConfig, env: NodeJS.ProcessEnv, report: (p: PathSeg[], msg: string) => void): void {
  const checkScheduling = (s: { schedule?: string; every?: string; timezone?: string }, base: PathSeg[]): void => {
    if (s.schedule !== undefined && s.every !== undefined) report([...base, 'every'], 'set schedule or every, not both');
    if (s.schedule !== undefined) {
      const msg = cronProblem(s.schedule);
      if (msg) report([...base, 'schedule'], msg);
    }
    if (s.every !== undefined && (parseDuration(s.every) ?? 0) < 1000) report([...base, 'every'], 'every must be at least 1s');
    if (s.timezone !== undefined && !validTimezone(s.timezone)) {
      report([...base, 'timezone'], `timezone "${s.timezone}" is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)`);
    }
  };
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const str = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined);
  if (!isObj(cfg)) return;
  if (isObj(cfg.defaults)) checkScheduling({ schedule: str(cfg.defaults.schedule), every: str(cfg.defaults.every), timezone: str(cfg.defaults.timezone) }, ['defaults']);
  if (!Array.isArray(cfg.policies)) return;
  const seen = new Map<string, number>();
  (cfg.policies as unknown[]).forEach((polRaw, i) => {
    if (!isObj(polRaw)) return;
    const pol = polRaw as unknown as RawPolicy;
    const base: PathSeg[] = ['policies', i];
    const first = typeof pol.name === 'string' ? seen.get(pol.name) : undefined;
    if (typeof pol.name !== 'string') { /* reported by the schema */ } else if (first !== undefined) report([...base, 'name'], `duplicate policy name "${pol.name}" (first used by policies[${first}])`);
    else seen.set(pol.name, i);
    checkScheduling({ schedule: str(polRaw.schedule), every: str(polRaw.every), timezone: str(polRaw.timezone) }, base);
    const envKeys = new Map<string, number>();
    if (!Array.isArray(pol.targets)) return;
    (pol.targets as unknown[]).forEach((tRaw, j) => {
      if (!isObj(tRaw)) return;
      const t = tRaw as unknown as TargetConfig;
      const tp: PathSeg[] = [...base, 'targets', j];
      switch (t.type) {
        case 'env-file': {
          if (typeof t.path !== 'string') break;
          if (t.previousKey !== undefined && t.previousKey === t.key) report([...tp, 'previousKey'], 'previousKey must differ from key');
          for (const k of new Set([t.key, t.previousKey])) {
            if (!k) continue;
            const id = `${path.resolve(t.path)}\0${k}`;
            const prev = envKeys.get(id);
            if (prev !== undefined) report([...tp, 'key'], `${k} in ${t.path} is already written by targets[${prev}] of this policy`);
            else envKeys.set(id, j);
          }
          break;
        }
        case 'vault-kv': {
          const methods = [t.tokenEnv, t.tokenFile, t.roleId].filter((x) => x !== undefined).length;
          if (methods !== 1) report(tp, 'vault-kv needs exactly one auth method: tokenEnv, tokenFile, or roleId with secretIdEnv');
          if (t.roleId !== undefined && t.secretIdEnv === undefined) report([...tp, 'secretIdEnv'], 'roleId needs secretIdEnv (the variable that holds the AppRole secret_id)');
          if (t.secretIdEnv !== undefined && t.roleId === undefined) report([...tp, 'roleId'], 'secretIdEnv needs roleId');
          if (t.tokenEnv !== undefined && env[t.tokenEnv] === undefined) report([...tp, 'tokenEnv'], `environment variable ${t.tokenEnv} is not set`);
          if (t.secretIdEnv !== undefined && env[t.secretIdEnv] === undefined) report([...tp, 'secretIdEnv'], `environment variable ${t.secretIdEnv} is not set`);
          if (typeof t.address === 'string' && !/^https?:\/\//.test(t.address)) report([...tp, 'address'], 'address must be an http:// or https:// URL');
          break;
        }
        case 'webhook': {
          if (t.includeToken === true && typeof t.url === 'string' && !t.url.startsWith('https://')) report([...tp, 'includeToken'], 'includeToken is allowed only for an https:// URL: the token would cross the network in clear text');
          if (t.secretEnv !== undefined && env[t.secretEnv] === undefined) report([...tp, 'secretEnv'], `environment variable ${t.secretEnv} is not set`);
          break;
        }
        default:
          break;
      }
    });
  });
}

function resolve(cfg: RawConfig, file: string, env: NodeJS.ProcessEnv, doc: Document, lc: LineCounter): Config {
  const dir = path.dirname(file);
  const d = cfg.defaults ?? {};
  const stateDir = cfg.state.dir
    ? path.resolve(dir, cfg.state.dir)
    : env.REKEY_STATE_DIR
      ? path.resolve(env.REKEY_STATE_DIR)
      : path.join(dir, '.rekey');
  const policies = cfg.policies.map((p: RawPolicy, i): Policy => {
    const ownSchedule = p.schedule !== undefined || p.every !== undefined;
    const schedule = ownSchedule ? p.schedule : d.schedule;
    const every = ownSchedule ? p.every : d.every;
    const pos = lc.linePos(offsetOf(doc, ['policies', i]) ?? 0);
    const resolvedTargets = p.targets.map((t) =>
      'path' in t && typeof t.path === 'string' && (t.type === 'env-file' || t.type === 'file') ? { ...t, path: path.resolve(dir, t.path) } : t,
    );
    return {
      name: p.name,
      ...(p.description !== undefined ? { description: p.description } : {}),
      token: {
        bytes: p.token?.bytes ?? d.token?.bytes ?? 32,
        encoding: p.token?.encoding ?? d.token?.encoding ?? 'base64url',
        prefix: p.token?.prefix ?? d.token?.prefix ?? '',
      },
      ...(schedule !== undefined ? { schedule } : {}),
      ...(every !== undefined ? { everyMs: parseDuration(every)! } : {}),
      timezone: p.timezone ?? d.timezone ?? 'UTC',
      jitterMs: parseDuration(p.jitter ?? d.jitter ?? '0s')!,
      graceMs: parseDuration(p.grace ?? d.grace ?? DEFAULT_GRACE)!,
      ...((p.maxAge ?? d.maxAge) !== undefined ? { maxAgeMs: parseDuration((p.maxAge ?? d.maxAge)!)! } : {}),
      ...((p.verify ?? d.verify) !== undefined ? { verify: (p.verify ?? d.verify)! } : {}),
      hooks: { before: p.hooks?.before ?? d.hooks?.before ?? [], after: p.hooks?.after ?? d.hooks?.after ?? [] },
      targets: resolvedTargets,
      source: { file, line: pos.line, col: pos.col },
    };
  });
  return {
    file,
    dir,
    openssl: { ...(cfg.openssl.path ? { path: cfg.openssl.path.includes('/') ? path.resolve(dir, cfg.openssl.path) : cfg.openssl.path } : {}), timeoutMs: cfg.openssl.timeoutMs },
    stateDir,
    concurrency: cfg.concurrency,
    policies,
  };
}
