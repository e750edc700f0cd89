import { registerSecret } from './secret.js';

/**
 * Register the password of a connection URL for redaction, taken from the raw text: it may be
 * unencoded (and so unparsable), and must be hidden even then. Returns it ('' if none).
 */
export function registerUrlPassword(url: string): string {
  const afterScheme = url.replace(/^[a-z]+:\/\//i, '');
  const at = afterScheme.lastIndexOf('@');
  const rawUserinfo = at >= 0 ? afterScheme.slice(0, at) : '';
  const rawPassword = rawUserinfo.includes(':') ? rawUserinfo.slice(rawUserinfo.indexOf(':') + 1) : '';
  if (rawPassword) registerSecret(rawPassword);
  return rawPassword;
}

/** A URL without userinfo, query or fragment: those may carry credentials. */
export function safeUrl(u: string): string {
  try {
    const url = new URL(u);
    return `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  } catch {
    return '(invalid url)';
  }
}
