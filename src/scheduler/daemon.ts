/**
 * The daemon's lifecycle around the scheduler: one daemon per state directory (the `.daemon`
 * lock), recovery of unfinished rotations at start, SIGHUP reloads that never stop the daemon,
 * graceful shutdown, periodic openssl probes for /healthz, and the --listen endpoint.
 * Signals are wired by the CLI command (src/cli/daemon.ts); tests call reload()/shutdown().
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import { loadConfig, parseConfigText } from '../config/loader.js';
import { formatProblem, type Config } from '../config/types.js';
import type { LockHandle } from '../coordination/lock.js';
import { LocalLockProvider } from '../coordination/local-lock.js';
import { Health } from '../observability/health.js';
import { formatListen, startHttpServer, type HttpServer, type ListenAddress } from '../observability/http.js';
import { DaemonMetrics } from '../observability/metrics.js';
import { Openssl } from '../openssl/index.js';
import { Engine } from '../rotation/engine.js';
import { StateStore } from '../state/store.js';
import type { Logger } from '../targets/contract.js';
import { formatDuration } from '../util/duration.js';
import { RekeyError, describeForeign, isRekeyError } from '../util/errors.js';
import { redact } from '../util/secret.js';
import { systemClock, type Clock } from './clock.js';
import { nodeCronTrigger, type CronTrigger } from './cron-trigger.js';
import { DAEMON_LOCK } from './daemon-lock.js';
import { Scheduler, stableJson, type RotationRunner, type SchedulerOptions, type StopResult } from './scheduler.js';

export { DAEMON_LOCK } from './daemon-lock.js';

export interface RunnerContext {
  config: Config;
  openssl: Openssl;
  store: StateStore;
  locks: LocalLockProvider;
  log: Logger;
  env: NodeJS.ProcessEnv;
}

export interface DaemonOptions {
  configFile: string;
  env: NodeJS.ProcessEnv;
  log: Logger;
  listen?: ListenAddress;
  /** How long in-flight rotations may run after SIGTERM. Default 30s. */
  shutdownTimeoutMs?: number;
  /** How often openssl is re-probed for /healthz. Default 1h. */
  probeIntervalMs?: number;
  clock?: Clock;
  /** Default: node-cron. null: no cron trigger (the timer alone). */
  cron?: CronTrigger | null;
  probe?: (config: Config) => Promise<Openssl>;
  makeRunner?: (ctx: RunnerContext) => RotationRunner;
  scheduler?: SchedulerOptions;
}

function oneLine(e: unknown): string {
  return redact((isRekeyError(e) ? e.message : describeForeign(e)).split('\n')[0] ?? '');
}

const defaultProbe = (config: Config, env: NodeJS.ProcessEnv): Promise<Openssl> =>
  Openssl.probe({ ...(config.openssl.path ? { path: config.openssl.path } : {}), timeoutMs: config.openssl.timeoutMs, env });

const defaultRunner = (c: RunnerContext): RotationRunner =>
  new Engine({ config: c.config, openssl: c.openssl, store: c.store, locks: c.locks, log: c.log, env: c.env });

export class DaemonRuntime {
  readonly health = new Health();
  readonly #o: DaemonOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  #config: Config | undefined;
  #openssl: Openssl | undefined;
  #store: StateStore | undefined;
  #locks: LocalLockProvider | undefined;
  #daemonLock: LockHandle | undefined;
  #scheduler: Scheduler | undefined;
  #metrics: DaemonMetrics | undefined;
  #server: HttpServer | undefined;
  #probeTimer: unknown;
  #lastProbeAt = 0;
  #probing = false;
  #reloadChain: Promise<boolean> = Promise.resolve(true);
  #stopping: Promise<StopResult> | undefined;
  #resolveStopped!: (r: StopResult) => void;
  /** Resolves once shutdown() has finished. */
  readonly stopped: Promise<StopResult>;

  constructor(opts: DaemonOptions) {
    this.#o = opts;
    this.#log = opts.log;
    this.#clock = opts.clock ?? systemClock;
    this.stopped = new Promise((r) => {
      this.#resolveStopped = r;
    });
  }

  get config(): Config | undefined {
    return this.#config;
  }

  get scheduler(): Scheduler | undefined {
    return this.#scheduler;
  }

  get metrics(): DaemonMetrics | undefined {
    return this.#metrics;
  }

  /** Where the metrics endpoint really listens (port 0 resolved), when --listen was given. */
  get address(): ListenAddress | undefined {
    return this.#server?.address;
  }

  #probe(config: Config): Promise<Openssl> {
    return this.#o.probe ? this.#o.probe(config) : defaultProbe(config, this.#o.env);
  }

  #makeRunner(config: Config, openssl: Openssl): RotationRunner {
    const ctx: RunnerContext = { config, openssl, store: this.#store!, locks: this.#locks!, log: this.#log, env: this.#o.env };
    return (this.#o.makeRunner ?? defaultRunner)(ctx);
  }

  /**
   * Load the config, probe openssl, take the daemon lock, recover unfinished rotations, start
   * the listener and the scheduler (which rotates whatever is overdue). Throws a RekeyError
   * (config 2, environment 3, DAEMON_RUNNING 3) without leaving anything behind.
   */
  async start(): Promise<void> {
    const config = await loadConfig(this.#o.configFile, { env: this.#o.env });
    const openssl = await this.#probe(config);
    this.#lastProbeAt = this.#clock.now().getTime();
    this.health.setOpenssl(true, this.#clock.now());
    const store = new StateStore(config.stateDir);
    await store.init();
    const locks = new LocalLockProvider(store.path('locks'));
    this.#store = store;
    this.#locks = locks;
    this.#daemonLock = await this.#lockDaemon(locks, config.stateDir);
    try {
      this.#config = config;
      this.#openssl = openssl;
      const runner = this.#makeRunner(config, openssl);
      const unfinished = await this.#journaled(store, config);
      if (runner.recover && unfinished.length > 0) {
        const outcomes = await runner.recover(unfinished, { waitMs: 0, purpose: 'daemon' });
        const recovered = outcomes.filter((o) => o.result === 'recovered').length;
        if (recovered > 0) this.#log.warn({ recovered }, `recovered ${recovered} unfinished rotation(s) left by a previous process`);
      }
      const scheduler = new Scheduler({
        runner,
        store,
        log: this.#log,
        clock: this.#clock,
        cron: this.#o.cron === undefined ? nodeCronTrigger(this.#log) : this.#o.cron,
        observer: {
          outcome: (o, action) => this.#metrics?.recordOutcome(o, action),
          opensslFailure: () => this.#reprobeSoon(),
        },
        ...(this.#o.scheduler ? { options: this.#o.scheduler } : {}),
      });
      this.#scheduler = scheduler;
      const metrics = new DaemonMetrics({ views: () => scheduler.snapshot() });
      metrics.setOpensslUp(true);
      this.#metrics = metrics;
      if (this.#o.listen) {
        this.#server = await startHttpServer(this.#o.listen, { metrics: () => metrics.render(), health: () => this.health.status() });
        this.#log.info({ listen: formatListen(this.#server.address) }, `serving /metrics and /healthz on http://${formatListen(this.#server.address)}`);
      }
      await scheduler.start(config.policies);
      this.health.setScheduler(true);
      metrics.setSchedulerUp(true);
      this.#armProbe();
      this.#log.info(
        { config: config.file, stateDir: config.stateDir, policies: config.policies.length, openssl: openssl.info?.version ?? null },
        `rekey daemon started (pid ${process.pid}): ${config.policies.length} policies from ${config.file}, state in ${config.stateDir}`,
      );
    } catch (e) {
      await this.#scheduler?.stop(0).catch(() => undefined);
      await this.#server?.close().catch(() => undefined);
      await this.#daemonLock?.release().catch(() => undefined);
      throw e;
    }
  }

  /** Policies with a journal entry: rotations a crashed process left unfinished (cheaper than locking all). */
  async #journaled(store: StateStore, config: Config): Promise<Config['policies']> {
    let files: string[];
    try {
      files = await fsp.readdir(store.path('journal'));
    } catch {
      return config.policies; // cannot tell: let the engine look at every policy
    }
    const names = new Set(files.filter((f) => !f.startsWith('.') && f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length)));
    return config.policies.filter((p) => names.has(p.name));
  }

  async #lockDaemon(locks: LocalLockProvider, stateDir: string): Promise<LockHandle> {
    try {
      return await locks.acquire(DAEMON_LOCK, {
        waitMs: 0,
        purpose: 'daemon',
        onTakeover: (prev) => this.#log.warn({ stalePid: prev.pid }, `took over the daemon lock left by dead process ${prev.pid}`),
      });
    } catch (e) {
      if (!isRekeyError(e) || e.code !== 'LOCKED') throw e;
      const owner = await locks.owner(DAEMON_LOCK).catch(() => undefined);
      const who = owner ? ` (pid ${owner.pid}${owner.hostname !== os.hostname() ? ` on ${owner.hostname}` : ''}, since ${owner.acquiredAt})` : '';
      throw new RekeyError(
        'DAEMON_RUNNING',
        `another rekey daemon${who} is already running on state directory ${stateDir}; stop it first (systemctl stop rekey), or give this one its own state.dir`,
      );
    }
  }

  /** SIGHUP: re-read and validate; apply when valid, otherwise log every problem and keep running. */
  reload(): Promise<boolean> {
    this.#reloadChain = this.#reloadChain.then(
      () => this.#reloadOnce(),
      () => this.#reloadOnce(),
    );
    return this.#reloadChain;
  }

  async #reloadOnce(): Promise<boolean> {
    const scheduler = this.#scheduler;
    const current = this.#config;
    if (this.#stopping || !scheduler || !current || !scheduler.isRunning) return false;
    const file = this.#o.configFile;
    const fail = (msg: string, fields: Record<string, unknown> = {}): false => {
      this.#log.error({ file, ...fields }, `config reload failed: ${msg}; keeping the running config`);
      this.#metrics?.recordReload(false);
      return false;
    };
    this.#log.info({ file }, `reloading ${file}`);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'read failed';
      return fail(`cannot read ${file} (${code === 'ENOENT' ? 'no such file' : code})`);
    }
    const { config, problems } = parseConfigText(text, file, { env: this.#o.env });
    if (!config) {
      for (const p of problems) this.#log.error({ file: p.file, line: p.line, col: p.col, path: p.path }, formatProblem(p));
      return fail(`${problems.length} problem${problems.length === 1 ? '' : 's'} in ${file}`, { problems: problems.length });
    }
    if (config.stateDir !== current.stateDir) {
      return fail(`state.dir changed from ${current.stateDir} to ${config.stateDir}; restart the daemon to use another state directory`);
    }
    let openssl = this.#openssl!;
    if (stableJson(config.openssl) !== stableJson(current.openssl)) {
      try {
        openssl = await this.#probe(config);
      } catch (e) {
        return fail(`the new openssl settings do not work (${oneLine(e)})`);
      }
    }
    if (this.#stopping || !scheduler.isRunning) return false;
    const summary = await scheduler.reload(config.policies, this.#makeRunner(config, openssl));
    this.#config = config;
    this.#openssl = openssl;
    this.#metrics?.recordReload(true);
    const list = (label: string, names: string[]): string => (names.length ? `; ${label}: ${names.join(', ')}` : '');
    this.#log.info(
      { file, added: summary.added, removed: summary.removed, changed: summary.changed, unchanged: summary.unchanged.length },
      `config reloaded: ${config.policies.length} policies${list('added', summary.added)}${list('removed', summary.removed)}${list('changed', summary.changed)}`,
    );
    return true;
  }

  /**
   * SIGTERM/SIGINT: stop taking work, let rotations in flight finish for up to the shutdown
   * timeout, close the listener, release the daemon lock. A second call ends the wait at once.
   */
  shutdown(reason = 'shutdown requested'): Promise<StopResult> {
    if (this.#stopping) {
      this.#log.warn({}, `${reason} again: not waiting for rotations in flight`);
      this.#scheduler?.forceStop();
      return this.#stopping;
    }
    this.#stopping = (async () => {
      const timeoutMs = this.#o.shutdownTimeoutMs ?? 30_000;
      const busy = this.#scheduler?.snapshot().filter((v) => v.running).map((v) => v.policy) ?? [];
      this.#log.info(
        { reason, inFlight: busy },
        `${reason}: stopping${busy.length ? `; waiting up to ${formatDuration(timeoutMs)} for ${busy.length} rotation(s) in flight` : ''}`,
      );
      this.health.setScheduler(false);
      this.#metrics?.setSchedulerUp(false);
      if (this.#probeTimer !== undefined) this.#clock.clearTimeout(this.#probeTimer);
      this.#probeTimer = undefined;
      const result = (await this.#scheduler?.stop(timeoutMs)) ?? { drained: true, inFlight: [] };
      if (!result.drained) {
        this.#log.warn(
          { inFlight: result.inFlight },
          `shutdown: ${result.inFlight.length} rotation(s) still in flight (${result.inFlight.join(', ')}); exiting anyway: the next command or daemon start finishes or rolls them back from the journal`,
        );
      }
      await this.#server?.close().catch(() => undefined);
      await this.#daemonLock?.release().catch(() => undefined);
      this.#log.info({ drained: result.drained }, 'rekey daemon stopped');
      this.#resolveStopped(result);
      return result;
    })();
    return this.#stopping;
  }

  #armProbe(): void {
    if (this.#stopping) return;
    const every = this.#o.probeIntervalMs ?? 3_600_000;
    this.#probeTimer = this.#clock.setTimeout(() => {
      void this.#runProbe().finally(() => this.#armProbe());
    }, every);
  }

  /** After an openssl failure in a rotation: probe again, at most once a minute. */
  #reprobeSoon(): void {
    if (this.#clock.now().getTime() - this.#lastProbeAt < 60_000) return;
    void this.#runProbe();
  }

  async #runProbe(): Promise<void> {
    if (this.#probing || this.#stopping || !this.#config) return;
    this.#probing = true;
    const was = this.health.status().openssl;
    try {
      await this.#probe(this.#config);
      this.health.setOpenssl(true, this.#clock.now());
      this.#metrics?.setOpensslUp(true);
      if (was === 'failed') this.#log.info({}, 'openssl probe passes again');
    } catch (e) {
      const msg = oneLine(e);
      this.health.setOpenssl(false, this.#clock.now(), msg);
      this.#metrics?.setOpensslUp(false);
      this.#log.error({ healthy: false }, `openssl probe failed: ${msg}; /healthz reports 503 until it passes`);
    } finally {
      this.#lastProbeAt = this.#clock.now().getTime();
      this.#probing = false;
    }
  }
}
