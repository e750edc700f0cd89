/**
 * Every target kind's bad settings are caught by validation, each with its position in the
 * file: a bad URL, a missing field, an unknown option, an unset ${VAR}.
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/loader.js';
import { formatProblem } from '../../src/config/types.js';

const F = '/srv/rekey.yaml';
const ENV = { DATABASE_URL: 'postgres://rekey@db/app', VAULT_TOKEN: 'x', HOOK_KEY: 'k', SECRET_ID: 's' };

/** One policy with one target given as YAML flow mappings (line 5 of the file). */
function check(target: string, env: NodeJS.ProcessEnv = ENV): string[] {
  const text = `version: 1\npolicies:\n  - name: p\n    targets:\n      - ${target}\n`;
  return parseConfigText(text, F, { env }).problems.map(formatProblem);
}

const VALID: Record<string, string> = {
  'env-file': '{ type: env-file, path: /tmp/a.env, key: TOKEN }',
  file: '{ type: file, path: /tmp/a.token }',
  postgres: '{ type: postgres, url: "${DATABASE_URL}" }',
  redis: '{ type: redis, key: app:token }',
  'vault-kv': '{ type: vault-kv, address: "https://vault:8200", path: app/api, tokenEnv: VAULT_TOKEN }',
  'aws-secrets-manager': '{ type: aws-secrets-manager, secretId: app/api, region: eu-west-1 }',
  exec: '{ type: exec, command: ["/usr/local/bin/push"] }',
  webhook: '{ type: webhook, url: "https://app/hooks/rekey", secretEnv: HOOK_KEY }',
};

describe('target settings are validated with positions', () => {
  for (const [kind, yaml] of Object.entries(VALID)) {
    it(`${kind}: the valid example passes; an unknown option is named with its position`, () => {
      expect(check(yaml)).toEqual([]);
      const out = check(yaml.replace(/ }$/, ', timeoutMS: 5 }'));
      expect(out).toHaveLength(1);
      expect(out[0]).toMatch(new RegExp(`^/srv/rekey\\.yaml:5:\\d+: policies\\[0\\]\\.targets\\[0\\]\\.timeoutMS: unknown key "timeoutMS"`));
      if (kind !== 'env-file' && kind !== 'file') expect(out[0]).toContain('(did you mean "timeoutMs"?)');
    });
  }

  it('missing fields are named', () => {
    expect(check('{ type: env-file, path: /tmp/a.env }')[0]).toMatch(/:5:9: policies\[0\]\.targets\[0\]\.key: key is required/);
    expect(check('{ type: vault-kv, address: "https://v:8200", tokenEnv: VAULT_TOKEN }')[0]).toMatch(/targets\[0\]\.path: path is required/);
    expect(check('{ type: aws-secrets-manager }')[0]).toMatch(/targets\[0\]\.secretId: secretId is required/);
    expect(check('{ type: exec }')[0]).toMatch(/targets\[0\]\.command: command is required/);
    expect(check('{ path: /tmp/x }')[0]).toMatch(/targets\[0\]\.type: type must be one of env-file, file, postgres, redis, vault-kv, aws-secrets-manager, exec, webhook/);
  });

  it('bad URLs are errors at the value', () => {
    expect(check('{ type: postgres, url: "mysql://db/app" }')[0]).toMatch(/:5:32: .*\.url: url must start with postgres:\/\/ or postgresql:\/\//);
    expect(check('{ type: redis, url: "http://cache:6379", key: k }')[0]).toMatch(/\.url: url must start with redis:\/\/ or rediss:\/\//);
    expect(check('{ type: vault-kv, address: "vault:8200", path: a, tokenEnv: VAULT_TOKEN }')[0]).toMatch(/\.address: address must be/);
    expect(check('{ type: webhook, url: "not a url" }')[0]).toMatch(/\.url: url must be an http:\/\/ or https:\/\/ URL/);
    expect(check('{ type: aws-secrets-manager, secretId: a, endpoint: "localhost" }')[0]).toMatch(/\.endpoint: endpoint must be a URL/);
    expect(check('{ type: aws-secrets-manager, secretId: a, region: "Frankfurt" }')[0]).toMatch(/\.region: region must look like eu-west-1/);
  });

  it('an unset ${VAR} or *Env variable is named', () => {
    expect(check('{ type: postgres, url: "${PG_URL}" }')).toEqual([`${F}:5:32: policies[0].targets[0].url: environment variable PG_URL is not set (used as \${PG_URL})`]);
    expect(check(VALID['vault-kv']!, {})[0]).toMatch(/\.tokenEnv: environment variable VAULT_TOKEN is not set/);
    expect(check(VALID.webhook!, {})[0]).toMatch(/\.secretEnv: environment variable HOOK_KEY is not set/);
    expect(check('{ type: vault-kv, address: "https://v:8200", path: a, roleId: r }')[0]).toMatch(/roleId needs secretIdEnv/);
  });

  it('wrong types are named', () => {
    expect(check('{ type: exec, command: "/usr/bin/push" }')[0]).toMatch(/\.command: must be array, not string/);
    expect(check('{ type: redis, key: k, hash: "yes" }')[0]).toMatch(/\.hash: must be boolean, not string/);
    expect(check('{ type: webhook, url: "https://a", retries: 99 }')[0]).toMatch(/\.retries: /);
  });
});
