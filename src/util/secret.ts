import { inspect } from 'node:util';

const REDACTED = '[redacted]';
const registry = new Set<string>();

/**
 * A token in memory. It prints as [redacted] everywhere (toString, toJSON, util.inspect,
 * template strings); only reveal() gives the value, at the lines that write it to a target.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
    if (value.length >= 8) registry.add(value);
  }

  reveal(): string {
    return this.#value;
  }

  get length(): number {
    return this.#value.length;
  }

  equals(other: Secret): boolean {
    return this.#value === other.#value;
  }

  /** Drop it from the redaction registry once it is no longer in memory anywhere. */
  forget(): void {
    registry.delete(this.#value);
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/** Register a value seen elsewhere (a credential, a previous token) so redact() hides it. */
export function registerSecret(value: string): void {
  if (value.length >= 8) registry.add(value);
}

/** Replace every registered secret (and the given extra ones) in text with [redacted]. */
export function redact(text: string, extra: readonly string[] = []): string {
  let out = text;
  for (const s of [...registry, ...extra]) {
    if (s.length >= 8 && out.includes(s)) out = out.split(s).join(REDACTED);
  }
  return out;
}

export function registeredSecretCount(): number {
  return registry.size;
}
