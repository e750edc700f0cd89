/** /healthz: healthy while the scheduler runs and the last openssl probe passed. */
export interface HealthStatus {
  ok: boolean;
  scheduler: 'running' | 'stopped';
  openssl: 'ok' | 'failed' | 'unknown';
  /** One line: why openssl is failing (never a secret: probe errors hold no token). */
  opensslError?: string;
  /** ISO time of the last probe. */
  opensslCheckedAt?: string;
}

export class Health {
  #scheduler = false;
  #openssl: 'ok' | 'failed' | 'unknown' = 'unknown';
  #error: string | undefined;
  #checkedAt: string | undefined;

  setScheduler(running: boolean): void {
    this.#scheduler = running;
  }

  setOpenssl(ok: boolean, at: Date, error?: string): void {
    this.#openssl = ok ? 'ok' : 'failed';
    this.#error = ok ? undefined : error;
    this.#checkedAt = at.toISOString();
  }

  status(): HealthStatus {
    return {
      ok: this.#scheduler && this.#openssl === 'ok',
      scheduler: this.#scheduler ? 'running' : 'stopped',
      openssl: this.#openssl,
      ...(this.#error ? { opensslError: this.#error } : {}),
      ...(this.#checkedAt ? { opensslCheckedAt: this.#checkedAt } : {}),
    };
  }
}
