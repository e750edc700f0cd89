/**
 * Pure editing of env files (KEY=value lines, as read by dotenv, docker compose, systemd's
 * EnvironmentFile and `set -a; . file`). Every edit changes only the bytes of the one value or
 * line it is about: comments, blank lines, order, `export `, quotes, whitespace around `=`,
 * inline comments, CRLF and a missing final newline all stay as they were.
 *
 * The target reads files as latin1 (one char per byte), so every byte, valid UTF-8 or not,
 * survives the round trip unchanged.
 *
 * Parsing rules (the common subset of those readers):
 * - an assignment line is `[ws][export ws]NAME[ws]=[ws]value`; anything else (comments, blank
 *   lines, junk) is left alone;
 * - a value may be quoted with "..." (backslash escapes), '...' or `...`; a quoted value that does
 *   not close on its line continues on the next lines until its closing quote;
 * - an unquoted value ends at a `#` that starts the value or follows whitespace (an inline
 *   comment), and trailing whitespace is not part of it;
 * - when a name appears twice, the last one wins (that is what a shell and compose do), but
 *   setEnvValue refuses to guess: see findDuplicateKeys.
 */

export type EnvTextProblem = 'bad-key' | 'bad-value' | 'duplicate' | 'multiline' | 'unterminated';

/** A refusal from the editor. Its message never holds a value. */
export class EnvTextError extends Error {
  readonly problem: EnvTextProblem;
  readonly key: string;
  constructor(problem: EnvTextProblem, key: string, message: string) {
    super(message);
    this.name = 'EnvTextError';
    this.problem = problem;
    this.key = key;
  }
}

/**
 * Values rekey writes: never need quoting or escaping in any reader (no whitespace, quotes,
 * backslash, `#`, `$` expansion or shell metacharacters). Tokens ([A-Za-z0-9_.+/=-]) always fit.
 */
export const SAFE_VALUE = /^[A-Za-z0-9_.+/=:@%,^~-]*$/;
const KEY_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ASSIGNMENT = /^([ \t]*)(export[ \t]+)?([A-Za-z_][A-Za-z0-9_.-]*)([ \t]*)=/;
const BOMS = ['\uFEFF', '\xEF\xBB\xBF'];

type Quote = '' | '"' | "'" | '`';

interface Entry {
  key: string;
  exported: boolean;
  /** 1-based line number of the assignment. */
  line: number;
  /** Offset where the assignment's first line starts. */
  start: number;
  /** Offset where its last line's content ends (before the line ending). */
  contentEnd: number;
  /** Offset after its last line's line ending. */
  end: number;
  /** The raw value (inside the quotes when quoted). */
  valueStart: number;
  valueEnd: number;
  quote: Quote;
  multiline: boolean;
}

interface Scan {
  entries: Entry[];
  /** A quoted value is still open at the end of the text. */
  unterminated: boolean;
  /** The line ending of the first line that has one; '\n' when none does. */
  eol: '\n' | '\r\n';
  bomLength: number;
}

function findClose(s: string, from: number, quote: Exclude<Quote, ''>): number {
  if (quote !== '"') return s.indexOf(quote, from);
  for (let i = from; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '"') return i;
  }
  return -1;
}

function scan(text: string): Scan {
  const bomLength = BOMS.find((b) => text.startsWith(b))?.length ?? 0;
  const entries: Entry[] = [];
  let eol: '\n' | '\r\n' | undefined;
  let open: { entry: Entry; quote: Exclude<Quote, ''> } | undefined;
  let pos = bomLength;
  let line = 0;
  while (pos < text.length) {
    const nl = text.indexOf('\n', pos);
    const next = nl === -1 ? text.length : nl + 1;
    let contentEnd = nl === -1 ? text.length : nl;
    if (nl !== -1 && contentEnd > pos && text[contentEnd - 1] === '\r') contentEnd--;
    if (eol === undefined && nl !== -1) eol = contentEnd < nl ? '\r\n' : '\n';
    line++;
    const content = text.slice(pos, contentEnd);
    if (open) {
      const close = findClose(content, 0, open.quote);
      if (close !== -1) {
        open.entry.valueEnd = pos + close;
        open.entry.contentEnd = contentEnd;
        open.entry.end = next;
        open = undefined;
      }
      pos = next;
      continue;
    }
    const m = ASSIGNMENT.exec(content);
    if (m) {
      const head = m[0].length;
      let i = head;
      while (content[i] === ' ' || content[i] === '\t') i++;
      const c = content[i];
      const entry: Entry = {
        key: m[3]!,
        exported: m[2] !== undefined,
        line,
        start: pos,
        contentEnd,
        end: next,
        valueStart: pos + head,
        valueEnd: pos + head,
        quote: '',
        multiline: false,
      };
      if (c === '"' || c === "'" || c === '`') {
        entry.quote = c;
        entry.valueStart = pos + i + 1;
        const close = findClose(content, i + 1, c);
        if (close === -1) {
          entry.multiline = true;
          entry.valueEnd = text.length;
          entry.contentEnd = text.length;
          entry.end = text.length;
          open = { entry, quote: c };
        } else {
          entry.valueEnd = pos + close;
        }
      } else {
        const rest = content.slice(i);
        const comment = /(^|[ \t])#/.exec(rest);
        const value = (comment ? rest.slice(0, comment.index) : rest).replace(/[ \t\r]+$/, '');
        // An empty value keeps the whitespace after `=` on the comment's side: KEY= # c -> KEY=v # c.
        if (value !== '') {
          entry.valueStart = pos + i;
          entry.valueEnd = pos + i + value.length;
        }
      }
      entries.push(entry);
    }
    pos = next;
  }
  return { entries, unterminated: open !== undefined, eol: eol ?? '\n', bomLength };
}

function entriesOf(s: Scan, key: string): Entry[] {
  return s.entries.filter((e) => e.key === key);
}

function checkKey(key: string): void {
  if (!KEY_NAME.test(key)) throw new EnvTextError('bad-key', key, 'the variable name must look like API_TOKEN ([A-Za-z_][A-Za-z0-9_]*)');
}

function single(s: Scan, key: string): Entry | undefined {
  const found = entriesOf(s, key);
  if (found.length > 1) {
    throw new EnvTextError('duplicate', key, `${key} appears ${found.length} times (lines ${listLines(found.map((e) => e.line))})`);
  }
  return found[0];
}

/** "3", "3 and 7", "3, 7 and 9". */
export function listLines(lines: number[]): string {
  if (lines.length <= 1) return lines.join('');
  return `${lines.slice(0, -1).join(', ')} and ${lines[lines.length - 1]}`;
}

/**
 * Append a line. The new line uses the file's line ending (CRLF if the file's first line ending
 * is CRLF) and `export ` when every assignment in the file has it.
 * A file that does not end in a newline keeps not ending in one: the separator goes BEFORE the
 * new line ("A=1" -> "A=1\nKEY=v"), so the edit adds exactly one line and changes no existing
 * byte, and removeEnvKey undoes it exactly. An empty file gets "KEY=v\n".
 */
function append(text: string, s: Scan, line: string, matchExport = true): string {
  if (s.unterminated) {
    throw new EnvTextError('unterminated', '', `a quoted value is not closed before the end of the file (line ${s.entries[s.entries.length - 1]?.line ?? 1})`);
  }
  const exported = matchExport && s.entries.length > 0 && s.entries.every((e) => e.exported);
  const full = `${exported ? 'export ' : ''}${line}`;
  if (text.length === s.bomLength) return `${text}${full}${s.eol}`;
  if (text.endsWith('\n')) return `${text}${full}${s.eol}`;
  return `${text}${s.eol}${full}`;
}

/** Set KEY=value, or add it; nothing else changes. Throws EnvTextError (never showing a value). */
export function setEnvValue(text: string, key: string, value: string): string {
  checkKey(key);
  if (!SAFE_VALUE.test(value)) {
    throw new EnvTextError('bad-value', key, `the value for ${key} holds characters that would need quoting or escaping (allowed: A-Z a-z 0-9 _ . + / = : @ % , ^ ~ -)`);
  }
  const s = scan(text);
  const e = single(s, key);
  if (!e) return append(text, s, `${key}=${value}`);
  if (e.multiline) throw new EnvTextError('multiline', key, `${key} (line ${e.line}) has a quoted value that spans several lines`);
  return text.slice(0, e.valueStart) + value + text.slice(e.valueEnd);
}

function unescapeDouble(raw: string): string {
  return raw.replace(/\\([nrt"\\])/g, (_m, c: string) => ({ n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' })[c] ?? c);
}

/** The value of KEY without its quotes (the last one, if it appears twice), or undefined. */
export function getEnvValue(text: string, key: string): string | undefined {
  const found = entriesOf(scan(text), key);
  const e = found[found.length - 1];
  if (!e) return undefined;
  const raw = text.slice(e.valueStart, e.valueEnd);
  return e.quote === '"' ? unescapeDouble(raw) : raw;
}

/**
 * Remove every KEY line (a multi-line value: all its lines), each with its line ending, and
 * nothing else. When that leaves the text ending where the removed last line had no line ending,
 * the separator before it goes too, so removing an appended line restores the text exactly.
 */
export function removeEnvKey(text: string, key: string): string {
  return removeEnvKeys(text, [key]);
}

export function removeEnvKeys(text: string, keys: readonly string[]): string {
  const s = scan(text);
  const ranges = s.entries.filter((e) => keys.includes(e.key)).map((e) => [e.start, e.end] as [number, number]);
  if (ranges.length === 0) return text;
  const merged: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  const tail = merged[merged.length - 1]!;
  if (tail[1] === text.length && !text.endsWith('\n') && tail[0] > s.bomLength) {
    tail[0] -= text.slice(0, tail[0]).endsWith('\r\n') ? 2 : 1;
  }
  let out = '';
  let at = 0;
  for (const [a, b] of merged) {
    out += text.slice(at, a);
    at = b;
  }
  return out + text.slice(at);
}

/** The names among `keys` that are assigned more than once. */
export function findDuplicateKeys(text: string, keys: string[]): string[] {
  const s = scan(text);
  return [...new Set(keys)].filter((k) => entriesOf(s, k).length > 1);
}

/** 1-based line numbers where KEY is assigned. */
export function findKeyLines(text: string, key: string): number[] {
  return entriesOf(scan(text), key).map((e) => e.line);
}

/** The whole KEY assignment as written (all its lines, without the final line ending), or undefined. */
export function getEnvLine(text: string, key: string): string | undefined {
  const found = entriesOf(scan(text), key);
  const e = found[found.length - 1];
  return e ? text.slice(e.start, e.contentEnd) : undefined;
}

/**
 * Put back a KEY assignment exactly as it was written (from getEnvLine): replaces the current KEY
 * line, or appends it when KEY is missing. Used by rollback; the raw line is not validated.
 */
export function replaceEnvLine(text: string, key: string, rawLine: string): string {
  checkKey(key);
  const s = scan(text);
  const e = single(s, key);
  if (!e) return append(text, s, rawLine, false);
  return text.slice(0, e.start) + rawLine + text.slice(e.contentEnd);
}
