import { RekeyError, describeForeign } from '../util/errors.js';
import { redact } from '../util/secret.js';

/**
 * The only code that turns an error into text for a human. One line (plus the listed details
 * of a config error), no stack trace, and every registered secret redacted.
 */
export function renderError(e: unknown): string {
  if (e instanceof RekeyError) {
    const lines = [`rekey: ${e.message}`, ...e.details.map((d) => `  ${d}`)];
    return redact(lines.join('\n'));
  }
  return redact(`rekey: internal error (${describeForeign(e)}); please report it`);
}
