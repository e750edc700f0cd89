/** What most commands need: the config, a probed openssl, the state store, the lock and the engine. */
import { findConfigFile, loadConfig } from '../config/loader.js';
import type { Config, Policy } from '../config/types.js';
import { LocalLockProvider } from '../coordination/local-lock.js';
import { Openssl } from '../openssl/index.js';
import { Engine } from '../rotation/engine.js';
import { StateStore } from '../state/store.js';
import type { Logger } from '../targets/contract.js';
import { didYouMean } from '../config/did-you-mean.js';
import { RekeyError } from '../util/errors.js';
import { redact } from '../util/secret.js';
import type { Io } from './command.js';

export async function readConfig(values: Record<string, unknown>, io: Io): Promise<Config> {
  const file = findConfigFile(values.config as string | undefined, io.env, io.cwd);
  return loadConfig(file, { env: io.env });
}

export function probeOpenssl(config: Config, io: Io): Promise<Openssl> {
  return Openssl.probe({ ...(config.openssl.path ? { path: config.openssl.path } : {}), timeoutMs: config.openssl.timeoutMs, env: io.env });
}

export function stateFor(config: Config): { store: StateStore; locks: LocalLockProvider } {
  const store = new StateStore(config.stateDir);
  return { store, locks: new LocalLockProvider(store.path('locks')) };
}

/** A logger for one-shot commands: warnings and errors as one line each on stderr. */
export function cliLogger(io: Io, verbose = false): Logger {
  return {
    info: (_o, msg) => {
      if (verbose) io.stderr(`${redact(msg)}\n`);
    },
    warn: (_o, msg) => io.stderr(`rekey: ${redact(msg)}\n`),
    error: () => undefined, // failures are reported in the command's summary
  };
}

export async function buildEngine(values: Record<string, unknown>, io: Io, log?: Logger): Promise<{ config: Config; engine: Engine; store: StateStore; openssl: Openssl }> {
  const config = await readConfig(values, io);
  const openssl = await probeOpenssl(config, io);
  const { store, locks } = stateFor(config);
  const engine = new Engine({ config, openssl, store, locks, log: log ?? cliLogger(io), env: io.env });
  return { config, engine, store, openssl };
}

/** Resolve policy names from the command line; an unknown name is a usage error (exit 2) with a hint. */
export function selectPolicies(config: Config, names: string[], all: boolean, command: string): Policy[] {
  if (all && names.length > 0) throw new RekeyError('USAGE', `${command}: give policy names or --all, not both`);
  if (all) return config.policies;
  if (names.length === 0) throw new RekeyError('USAGE', `${command}: name at least one policy, or pass --all; see "rekey ${command} --help"`);
  const byName = new Map(config.policies.map((p) => [p.name, p]));
  const out: Policy[] = [];
  for (const n of names) {
    const p = byName.get(n);
    if (!p) {
      const hint = didYouMean(n, [...byName.keys()]);
      throw new RekeyError('UNKNOWN_POLICY', `unknown policy "${n}" in ${config.file}${hint ? ` (did you mean "${hint}"?)` : ''}`);
    }
    if (!out.includes(p)) out.push(p);
  }
  return out;
}
