import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    const st = await stat(file);
    if (!st.isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The first executable `name` in the PATH string. Relative and empty entries (the current
 * directory) are skipped: a token generator must not pick up ./openssl.
 */
export async function findOnPath(name: string, pathVar: string | undefined): Promise<string | undefined> {
  for (const dir of (pathVar ?? '').split(delimiter)) {
    if (dir === '' || !isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/** An explicitly configured binary, made absolute, if it is an executable file. */
export async function checkExplicit(file: string): Promise<string | undefined> {
  const abs = resolve(file);
  return (await isExecutableFile(abs)) ? abs : undefined;
}
