import { existsSync, mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findConfigFile, parseConfigText } from '../../src/config/loader.js';
import { formatProblem } from '../../src/config/types.js';

const F = '/etc/rekey/rekey.yaml';

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  return parseConfigText(text, F, { env }).problems.map(formatProblem);
}

const ok = (extra = '') => `version: 1
policies:
  - name: api
${extra}    targets:
      - type: env-file
        path: /tmp/x.env
        key: API_TOKEN
`;

describe('config loader', () => {
  it('accepts a minimal valid file and applies defaults', () => {
    const r = parseConfigText(ok(), F, { env: {} });
    expect(r.problems).toEqual([]);
    const p = r.config!.policies[0]!;
    expect(p.token).toEqual({ bytes: 32, encoding: 'base64url', prefix: '' });
    expect(p.graceMs).toBe(24 * 3_600_000);
    expect(p.timezone).toBe('UTC');
    expect(r.config!.stateDir).toBe('/etc/rekey/.rekey');
    expect(p.source).toEqual({ file: F, line: 3, col: 5 });
  });

  it('malformed YAML gives file:line:col', () => {
    const out = problems('version: 1\npolicies:\n  - name: [unclosed\n');
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^\/etc\/rekey\/rekey\.yaml:\d+:\d+: invalid YAML/);
  });

  it('an empty file is an error that says what it needs', () => {
    expect(problems('')).toEqual([`${F}:1:1: the config file is empty; it needs "version: 1" and a "policies" list`]);
    expect(problems('# only a comment\n')[0]).toContain('empty');
  });

  it('a file that is a YAML list is an error', () => {
    expect(problems('- name: a\n- name: b\n')).toEqual([`${F}:1:1: the config file must be a mapping with "version" and "policies", not a list`]);
  });

  it('a wrong version is an error at its position', () => {
    expect(problems(ok().replace('version: 1', 'version: 2'))).toEqual([`${F}:1:10: version: version must be 1`]);
    expect(problems(ok().replace('version: 1\n', ''))[0]).toContain('version: version must be 1');
  });

  it('an unknown key says "did you mean"', () => {
    const out = problems(ok('    gracee: 1h\n'));
    expect(out).toEqual([`${F}:4:5: policies[0].gracee: unknown key "gracee" in policies[0] (did you mean "grace"?)`]);
    const t = problems(ok().replace('key: API_TOKEN', 'key: API_TOKEN\n        previouskey: OLD'));
    expect(t[0]).toContain('unknown key "previouskey" in policies[0].targets[0] (did you mean "previousKey"?)');
    expect(problems(`${ok()}polices: []\n`)[0]).toContain('unknown key "polices" in top level (did you mean "policies"?)');
  });

  it('bytes: 8 is a configuration error that says why', () => {
    const out = problems(ok('    token: { bytes: 8 }\n'));
    expect(out).toEqual([`${F}:4:21: policies[0].token.bytes: token.bytes must be at least 16: fewer than 128 random bits can be guessed`]);
  });

  it('an unknown encoding is an error listing the valid ones', () => {
    expect(problems(ok('    token: { encoding: base32 }\n'))[0]).toContain('policies[0].token.encoding: token.encoding must be one of hex, base64, base64url');
  });

  it('wrong types are errors', () => {
    expect(problems(ok('    token: { bytes: "32" }\n'))[0]).toContain('token.bytes must be a number');
    expect(problems(ok().replace('    targets:', '    targets: nope\n    x:').replace(/\n      - type[\s\S]*/, '\n'))).toEqual(expect.arrayContaining([expect.stringContaining('policies[0].targets: must be array, not string')]));
    expect(problems(ok('    grace: 5 minutes\n'))[0]).toContain('grace must be a duration');
  });

  it('duplicate policy names are errors', () => {
    const text = `${ok()}  - name: api\n    targets:\n      - { type: file, path: /tmp/f }\n`;
    expect(problems(text)).toEqual([`${F}:8:11: policies[1].name: duplicate policy name "api" (first used by policies[0])`]);
  });

  it('invalid cron, 4 fields, schedule and every together, bad timezone', () => {
    expect(problems(ok('    schedule: "61 * * * *"\n'))[0]).toContain('schedule "61 * * * *" is not a valid cron expression');
    expect(problems(ok('    schedule: "* * * *"\n'))[0]).toContain('has 4 fields; a cron expression has 5');
    expect(problems(ok('    schedule: "0 3 * * *"\n    every: 30d\n'))[0]).toContain('policies[0].every: set schedule or every, not both');
    expect(problems(ok('    schedule: "0 3 * * *"\n    timezone: Mars/Olympus\n'))[0]).toContain('timezone "Mars/Olympus" is not an IANA time zone');
    expect(problems(ok('    schedule: "*/5 * * * * *"\n    timezone: Europe/Berlin\n'))).toEqual([]);
  });

  it('lists every problem in one pass', () => {
    const text = `version: 1
policies:
  - name: Bad Name
    token: { bytes: 8 }
    schedule: "nope"
    targets: []
  - name: ok
    targets:
      - { type: nosuch }
`;
    const out = problems(text);
    expect(out.length).toBeGreaterThanOrEqual(5);
    expect(out.join('\n')).toContain('name must match');
    expect(out.join('\n')).toContain('type must be one of env-file, file, postgres');
  });

  it('${VAR} interpolates in target settings; an unset one is named', () => {
    const text = ok().replace('/tmp/x.env', '${APP_DIR}/x.env');
    expect(parseConfigText(text, F, { env: { APP_DIR: '/srv/app' } }).config!.policies[0]!.targets[0]).toMatchObject({ path: '/srv/app/x.env' });
    expect(problems(text)).toEqual([`${F}:6:15: policies[0].targets[0].path: environment variable APP_DIR is not set (used as \${APP_DIR})`]);
    const literal = ok().replace("/tmp/x.env", () => "/tmp/$${HOME}.env");
    expect(parseConfigText(literal, F, { env: {} }).config!.policies[0]!.targets[0]).toMatchObject({ path: '/tmp/${HOME}.env' });
  });

  it('target-specific rules: vault auth, webhook includeToken over http, env-file previousKey', () => {
    const vault = ok().replace(/      - type: env-file[\s\S]*/, '      - { type: vault-kv, address: "https://v:8200", path: app }\n');
    expect(problems(vault)[0]).toContain('vault-kv needs exactly one auth method');
    const hook = ok().replace(/      - type: env-file[\s\S]*/, '      - { type: webhook, url: "http://app/hook", includeToken: true }\n');
    expect(problems(hook)[0]).toContain('includeToken is allowed only for an https:// URL');
    expect(problems(ok().replace('key: API_TOKEN', 'key: API_TOKEN\n        previousKey: API_TOKEN'))[0]).toContain('previousKey must differ from key');
  });

  it('defaults are inherited; a policy schedule overrides defaults.every', () => {
    const text = `version: 1
defaults:
  every: 30d
  grace: 1h
  token: { bytes: 48, encoding: hex, prefix: rk_ }
policies:
  - name: a
    targets: [{ type: file, path: /tmp/a }]
  - name: b
    schedule: "0 3 * * *"
    token: { encoding: base64 }
    targets: [{ type: file, path: /tmp/b }]
`;
    const { config, problems: p } = parseConfigText(text, F, { env: {} });
    expect(p).toEqual([]);
    const [a, b] = config!.policies;
    expect(a).toMatchObject({ everyMs: 30 * 86_400_000, graceMs: 3_600_000, token: { bytes: 48, encoding: 'hex', prefix: 'rk_' } });
    expect(b!.everyMs).toBeUndefined();
    expect(b).toMatchObject({ schedule: '0 3 * * *', token: { bytes: 48, encoding: 'base64', prefix: 'rk_' } });
  });

  it('relative target paths and state.dir resolve against the config file', () => {
    const text = `version: 1\nstate: { dir: ../state }\npolicies:\n  - name: a\n    targets: [{ type: file, path: out/a }]\n`;
    const { config } = parseConfigText(text, '/srv/rekey/conf/rekey.yaml', { env: {} });
    expect(config!.stateDir).toBe('/srv/rekey/state');
    expect(config!.policies[0]!.targets[0]).toMatchObject({ path: '/srv/rekey/conf/out/a' });
    const viaEnv = parseConfigText(text.replace('state: { dir: ../state }\n', ''), '/srv/rekey.yaml', { env: { REKEY_STATE_DIR: '/var/lib/rekey' } });
    expect(viaEnv.config!.stateDir).toBe('/var/lib/rekey');
  });

  it('finds the config: -c, then $REKEY_CONFIG, then ./rekey.yaml', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rekey-find-'));
    mkdirSync(path.join(dir, 'sub'));
    writeFileSync(path.join(dir, 'rekey.yaml'), '');
    expect(findConfigFile('x.yaml', { REKEY_CONFIG: '/e.yaml' }, dir)).toBe(path.join(dir, 'x.yaml'));
    expect(findConfigFile(undefined, { REKEY_CONFIG: '/e.yaml' }, dir)).toBe('/e.yaml');
    expect(findConfigFile(undefined, {}, dir)).toBe(path.join(dir, 'rekey.yaml'));
    if (!existsSync('/etc/rekey/rekey.yaml')) {
      expect(() => findConfigFile(undefined, {}, path.join(dir, 'sub'))).toThrow(/no config file: pass -c FILE, set REKEY_CONFIG/);
    }
  });

  it('the example config is valid', async () => {
    const fs = await import('node:fs');
    const file = path.resolve('config/rekey.example.yaml');
    expect(parseConfigText(fs.readFileSync(file, 'utf8'), file, { env: {} }).problems).toEqual([]);
  });
});
