import { describe, expect, it } from 'vitest';
import {
  EnvTextError,
  findDuplicateKeys,
  findKeyLines,
  getEnvLine,
  getEnvValue,
  listLines,
  removeEnvKey,
  removeEnvKeys,
  replaceEnvLine,
  setEnvValue,
} from '../../src/targets/env-text.js';

const T = 'tok_AbC-12_x.y+z/w=';

describe('setEnvValue', () => {
  it('replaces only the value and keeps comments, blank lines and order', () => {
    const before = '# app settings\n\nDB_HOST=db.internal\n# the token\nAPI_TOKEN=old\n\nLOG_LEVEL=info\n';
    expect(setEnvValue(before, 'API_TOKEN', T)).toBe(`# app settings\n\nDB_HOST=db.internal\n# the token\nAPI_TOKEN=${T}\n\nLOG_LEVEL=info\n`);
  });

  it('keeps `export `', () => {
    expect(setEnvValue('export A=1\nexport API_TOKEN=old\n', 'API_TOKEN', 'new')).toBe('export A=1\nexport API_TOKEN=new\n');
    expect(setEnvValue('  export\tAPI_TOKEN=old\n', 'API_TOKEN', 'new')).toBe('  export\tAPI_TOKEN=new\n');
  });

  it('keeps the quote style', () => {
    expect(setEnvValue('API_TOKEN="x"\n', 'API_TOKEN', 'new')).toBe('API_TOKEN="new"\n');
    expect(setEnvValue("API_TOKEN='x'\n", 'API_TOKEN', 'new')).toBe("API_TOKEN='new'\n");
    expect(setEnvValue('API_TOKEN=`x`\n', 'API_TOKEN', 'new')).toBe('API_TOKEN=`new`\n');
    expect(setEnvValue('API_TOKEN=""\n', 'API_TOKEN', 'new')).toBe('API_TOKEN="new"\n');
    expect(setEnvValue('API_TOKEN="a\\"b" # c\n', 'API_TOKEN', 'new')).toBe('API_TOKEN="new" # c\n');
  });

  it('keeps a trailing inline comment and the whitespace around `=`', () => {
    expect(setEnvValue('API_TOKEN=old # rotated by rekey\n', 'API_TOKEN', 'new')).toBe('API_TOKEN=new # rotated by rekey\n');
    expect(setEnvValue('API_TOKEN = old\n', 'API_TOKEN', 'new')).toBe('API_TOKEN = new\n');
    expect(setEnvValue('API_TOKEN=  old  \t# c  \n', 'API_TOKEN', 'new')).toBe('API_TOKEN=  new  \t# c  \n');
    expect(setEnvValue('API_TOKEN= # empty for now\n', 'API_TOKEN', 'new')).toBe('API_TOKEN=new # empty for now\n');
    expect(setEnvValue('API_TOKEN=\n', 'API_TOKEN', 'new')).toBe('API_TOKEN=new\n');
    // A # inside a word is part of the value, not a comment.
    expect(setEnvValue('API_TOKEN=ab#cd # c\n', 'API_TOKEN', 'new')).toBe('API_TOKEN=new # c\n');
  });

  it('keeps CRLF line endings, and an added line uses CRLF too', () => {
    expect(setEnvValue('A=1\r\nAPI_TOKEN=old\r\nB=2\r\n', 'API_TOKEN', 'new')).toBe('A=1\r\nAPI_TOKEN=new\r\nB=2\r\n');
    expect(setEnvValue('A=1\r\nB=2\r\n', 'API_TOKEN', 'new')).toBe('A=1\r\nB=2\r\nAPI_TOKEN=new\r\n');
    expect(setEnvValue('A=1\r\nB=2', 'API_TOKEN', 'new')).toBe('A=1\r\nB=2\r\nAPI_TOKEN=new');
    expect(setEnvValue('API_TOKEN=old # c\r\n', 'API_TOKEN', 'new')).toBe('API_TOKEN=new # c\r\n');
  });

  it('appends at the end; a file without a final newline keeps not having one', () => {
    expect(setEnvValue('A=1\n', 'API_TOKEN', 'new')).toBe('A=1\nAPI_TOKEN=new\n');
    // Choice: the separator goes before the new line, and no final newline is added.
    expect(setEnvValue('A=1', 'API_TOKEN', 'new')).toBe('A=1\nAPI_TOKEN=new');
    expect(setEnvValue('# only a comment', 'API_TOKEN', 'new')).toBe('# only a comment\nAPI_TOKEN=new');
    expect(setEnvValue('A=1\n\n', 'API_TOKEN', 'new')).toBe('A=1\n\nAPI_TOKEN=new\n');
  });

  it('replacing the value on a last line without newline keeps it without newline', () => {
    expect(setEnvValue('A=1\nAPI_TOKEN=old', 'API_TOKEN', 'new')).toBe('A=1\nAPI_TOKEN=new');
  });

  it('an empty file gets KEY=value and a newline', () => {
    expect(setEnvValue('', 'API_TOKEN', 'new')).toBe('API_TOKEN=new\n');
  });

  it('adds `export ` to a new line when every assignment in the file has it', () => {
    expect(setEnvValue('# sourced by the unit\nexport A=1\nexport B=2\n', 'API_TOKEN', 'new')).toBe('# sourced by the unit\nexport A=1\nexport B=2\nexport API_TOKEN=new\n');
    expect(setEnvValue('export A=1\nB=2\n', 'API_TOKEN', 'new')).toBe('export A=1\nB=2\nAPI_TOKEN=new\n');
  });

  it('keeps a UTF-8 byte order mark and still finds the first line', () => {
    expect(setEnvValue('\uFEFFAPI_TOKEN=old\n', 'API_TOKEN', 'new')).toBe('\uFEFFAPI_TOKEN=new\n');
    expect(setEnvValue('\xEF\xBB\xBFAPI_TOKEN=old\n', 'API_TOKEN', 'new')).toBe('\xEF\xBB\xBFAPI_TOKEN=new\n');
  });

  it('does not match a longer name, a prefix, a commented-out line or a line inside a multi-line value', () => {
    const before = '#API_TOKEN=commented\nAPI_TOKEN_OLD=a\nMY_API_TOKEN=b\nCERT="-----BEGIN\nAPI_TOKEN=inside\n-----END"\n';
    expect(setEnvValue(before, 'API_TOKEN', 'new')).toBe(`${before}API_TOKEN=new\n`);
  });

  it('edits a key that follows a multi-line value', () => {
    const before = 'CERT="line1\nline2"\nAPI_TOKEN=old\n';
    expect(setEnvValue(before, 'API_TOKEN', 'new')).toBe('CERT="line1\nline2"\nAPI_TOKEN=new\n');
  });

  it('refuses a value with a newline, a quote or #, and says nothing of the value', () => {
    for (const bad of ['a\nb', 'a"b', "a'b", 'a`b', 'a#b', 'a b', 'a$b', 'a\\b', 'a\rb']) {
      let err: unknown;
      try {
        setEnvValue('A=1\n', 'API_TOKEN', bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EnvTextError);
      expect((err as EnvTextError).problem).toBe('bad-value');
      expect((err as Error).message).not.toContain(bad);
    }
  });

  it('accepts every token alphabet', () => {
    const v = 'rk_live.AZaz09-_+/==';
    expect(setEnvValue('', 'K', v)).toBe(`K=${v}\n`);
  });

  it('refuses a bad name', () => {
    expect(() => setEnvValue('', 'BAD-NAME', 'x')).toThrow(EnvTextError);
    expect(() => setEnvValue('', '1X', 'x')).toThrow(EnvTextError);
  });

  it('refuses to guess between duplicates, with or without export', () => {
    expect(() => setEnvValue('API_TOKEN=a\nB=1\nexport API_TOKEN=b\n', 'API_TOKEN', 'new')).toThrow(/appears 2 times \(lines 1 and 3\)/);
  });

  it('refuses to rewrite a multi-line value and to append after an unclosed quote', () => {
    expect(() => setEnvValue('API_TOKEN="a\nb"\n', 'API_TOKEN', 'new')).toThrow(expect.objectContaining({ problem: 'multiline' }));
    expect(() => setEnvValue('A="open\n', 'API_TOKEN', 'new')).toThrow(expect.objectContaining({ problem: 'unterminated' }));
  });

  it('is idempotent', () => {
    const once = setEnvValue('A=1', 'API_TOKEN', 'new');
    expect(setEnvValue(once, 'API_TOKEN', 'new')).toBe(once);
  });
});

describe('getEnvValue', () => {
  it('returns the value without quotes, comments or surrounding whitespace', () => {
    expect(getEnvValue('API_TOKEN=abc\n', 'API_TOKEN')).toBe('abc');
    expect(getEnvValue('export API_TOKEN = abc  # c\n', 'API_TOKEN')).toBe('abc');
    expect(getEnvValue('API_TOKEN="abc" # c\n', 'API_TOKEN')).toBe('abc');
    expect(getEnvValue("API_TOKEN='a b#c'\n", 'API_TOKEN')).toBe('a b#c');
    expect(getEnvValue('API_TOKEN="a\\"b\\\\c"\n', 'API_TOKEN')).toBe('a"b\\c');
    expect(getEnvValue('API_TOKEN=abc\r\n', 'API_TOKEN')).toBe('abc');
    expect(getEnvValue('API_TOKEN=abc', 'API_TOKEN')).toBe('abc');
    expect(getEnvValue('API_TOKEN=\n', 'API_TOKEN')).toBe('');
    expect(getEnvValue('API_TOKEN= # c\n', 'API_TOKEN')).toBe('');
    expect(getEnvValue('A=1\n', 'API_TOKEN')).toBeUndefined();
    expect(getEnvValue('X="a\nb"\n', 'X')).toBe('a\nb');
  });

  it('returns the last one when a key appears twice', () => {
    expect(getEnvValue('K=a\nK=b\n', 'K')).toBe('b');
  });
});

describe('removeEnvKey', () => {
  it('removes the line and its line ending, nothing else', () => {
    expect(removeEnvKey('# c\nA=1\nPREV=old # x\n\nB=2\n', 'PREV')).toBe('# c\nA=1\n\nB=2\n');
    expect(removeEnvKey('A=1\r\nPREV=old\r\nB=2\r\n', 'PREV')).toBe('A=1\r\nB=2\r\n');
    expect(removeEnvKey('export PREV="x"\nA=1\n', 'PREV')).toBe('A=1\n');
    expect(removeEnvKey('A=1\n', 'PREV')).toBe('A=1\n');
    expect(removeEnvKey('PREV=x\n', 'PREV')).toBe('');
    expect(removeEnvKey('PREV=x', 'PREV')).toBe('');
  });

  it('removes every line of a multi-line value', () => {
    expect(removeEnvKey('A=1\nP="x\ny"\nB=2\n', 'P')).toBe('A=1\nB=2\n');
  });

  it('undoes an append exactly, also without a final newline and with CRLF', () => {
    for (const before of ['', 'A=1\n', 'A=1', 'A=1\r\nB=2', 'A=1\r\nB=2\r\n', '# c\n\n', '\uFEFF']) {
      expect(removeEnvKey(setEnvValue(before, 'K', 'v'), 'K')).toBe(before);
    }
  });

  it('removes all duplicates and removeEnvKeys removes several names', () => {
    expect(removeEnvKey('A=1\nK=1\nK=2', 'K')).toBe('A=1');
    expect(removeEnvKeys('K=1\nA=1\nP=2\n', ['K', 'P'])).toBe('A=1\n');
  });
});

describe('findDuplicateKeys / findKeyLines', () => {
  it('finds names assigned twice, with or without export', () => {
    const text = '# c\nA=1\nAPI_TOKEN=a\nB=2\n\n# again\nexport API_TOKEN=b\n';
    expect(findDuplicateKeys(text, ['API_TOKEN', 'A', 'MISSING'])).toEqual(['API_TOKEN']);
    expect(findKeyLines(text, 'API_TOKEN')).toEqual([3, 7]);
    expect(findDuplicateKeys('#API_TOKEN=a\nAPI_TOKEN=b\n', ['API_TOKEN'])).toEqual([]);
  });

  it('lists lines in words', () => {
    expect(listLines([3])).toBe('3');
    expect(listLines([3, 7])).toBe('3 and 7');
    expect(listLines([3, 7, 9])).toBe('3, 7 and 9');
  });
});

describe('getEnvLine / replaceEnvLine', () => {
  it('puts a line back exactly as written', () => {
    const line = getEnvLine('A=1\n  export K = "weird $value" # c\nB=2\n', 'K')!;
    expect(line).toBe('  export K = "weird $value" # c');
    expect(replaceEnvLine('A=1\nK=new\nB=2\n', 'K', line)).toBe('A=1\n  export K = "weird $value" # c\nB=2\n');
    expect(replaceEnvLine('A=1\r\n', 'K', line)).toBe('A=1\r\n  export K = "weird $value" # c\r\n');
    expect(getEnvLine('A=1\n', 'K')).toBeUndefined();
  });
});
