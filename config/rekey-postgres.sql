-- rekey: the table the `postgres` target writes (default name rekey_tokens).
-- `rekey init-db` creates the same thing; apply this file by hand instead if you prefer:
--   psql "$DATABASE_URL" -f config/rekey-postgres.sql
-- (set search_path first, or edit the names, to put it in another schema).
--
-- rekey stores the SHA-256 (lower-case hex) of each token, never the token itself.
-- One row per hash:
--   pending   staged by a rotation in progress; not yet valid
--   current   the live token                         (at most one per name)
--   previous  the replaced token, valid until valid_until (the grace period)
-- A second rotation within the grace period drops the older previous row: only the
-- last replaced token stays valid.
--
-- An application accepts a presented token when this returns a row
-- ($1 = the policy name or the target's `name`, $2 = sha256 hex of the presented token):
--   SELECT 1 FROM "rekey_tokens"
--    WHERE "name" = $1 AND "sha256" = $2
--      AND ("status" = 'current' OR ("status" = 'previous' AND "valid_until" > now()));
--
-- Privileges the connecting role of the target needs:
--   GRANT SELECT, INSERT, UPDATE, DELETE ON rekey_tokens TO rekey;
-- (plus USAGE on the schema when it is not public). The application only needs SELECT.

CREATE TABLE IF NOT EXISTS "rekey_tokens" (
  "name" text NOT NULL,
  "sha256" text NOT NULL CHECK ("sha256" ~ '^[0-9a-f]{64}$'),
  "status" text NOT NULL CHECK ("status" IN ('pending', 'current', 'previous')),
  "valid_until" timestamptz NULL,
  "rotated_at" timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY ("name", "sha256")
);

-- At most one current and one pending row per name.
CREATE UNIQUE INDEX IF NOT EXISTS "rekey_tokens_one_current" ON "rekey_tokens" ("name") WHERE "status" = 'current';

CREATE UNIQUE INDEX IF NOT EXISTS "rekey_tokens_one_pending" ON "rekey_tokens" ("name") WHERE "status" = 'pending';
