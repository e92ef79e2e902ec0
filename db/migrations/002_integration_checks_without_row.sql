-- =============================================================================
-- 002_integration_checks_without_row.sql — third_party_integrations' checks name the column,
-- never the row
-- =============================================================================
--
-- Apply after add_kiotviet_integration.sql. Idempotent: CREATE OR REPLACE, and the trigger is
-- created only when absent, so it can be run any number of times.
--
-- Why: when a CHECK or NOT NULL constraint of a table fails, PostgreSQL's error carries
-- "DETAIL: Failing row contains (...)": every column of the row, client_secret, access_token and
-- refresh_token included. That text goes back to whoever ran the statement (the Supabase SQL
-- Editor, an admin page, a script's log) and into the server log. A row-level BEFORE trigger runs
-- before those constraints are checked: it checks the same things and raises an error that names
-- the column and the constraint only. The constraints stay (they still guard anything the trigger
-- would miss, e.g. with triggers disabled); the trigger makes sure they never have to speak.
--
-- What it does (only ADDS; never changes a row):
--   * function public.kvs_third_party_integrations_check() (SECURITY INVOKER, search_path '')
--   * trigger kvs_third_party_integrations_check BEFORE INSERT OR UPDATE on
--     public.third_party_integrations: NULL in a NOT NULL column → 23502 not_null_violation,
--     sync_interval_minutes <= 0 → 23514 check_violation (constraint
--     third_party_integrations_sync_interval_minutes_check). Message: the column and what it
--     must be; no DETAIL, no value.
--
-- How to run (as the role that owns the table; on Supabase: the SQL Editor, as postgres):
--   psql -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f db/migrations/002_integration_checks_without_row.sql
-- =============================================================================

BEGIN;

SET LOCAL lock_timeout = '15s';
SET LOCAL client_min_messages = warning;

CREATE OR REPLACE FUNCTION public.kvs_third_party_integrations_check()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
AS $$
DECLARE
    col text;
BEGIN
    -- The table's NOT NULL columns that the new row leaves NULL (catalog-driven, so a column a
    -- later migration adds is covered too). to_jsonb(NEW) turns SQL NULL into JSON null.
    SELECT a.attname INTO col
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
       AND pg_catalog.jsonb_typeof(pg_catalog.to_jsonb(NEW) -> a.attname::text) = 'null'
     ORDER BY a.attnum
     LIMIT 1;
    IF col IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'not_null_violation',
            MESSAGE = pg_catalog.format('third_party_integrations.%s must not be NULL', col),
            COLUMN = col, TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
    END IF;
    IF NEW.sync_interval_minutes <= 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'third_party_integrations.sync_interval_minutes must be greater than 0',
            CONSTRAINT = 'third_party_integrations_sync_interval_minutes_check',
            COLUMN = 'sync_interval_minutes', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION public.kvs_third_party_integrations_check() IS
    'kiotviet-syncd: checks third_party_integrations rows before their constraints do, so that '
    'an error names the column only (a constraint''s error prints the whole row, secrets included)';

-- The function is only a trigger's: nobody calls it (Supabase grants EXECUTE on new functions in
-- public to its API roles by default; that would be harmless, and is taken back all the same).
REVOKE ALL ON FUNCTION public.kvs_third_party_integrations_check() FROM PUBLIC;
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format(
                'REVOKE ALL ON FUNCTION public.kvs_third_party_integrations_check() FROM %I', r);
        END IF;
    END LOOP;

    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                    WHERE tgrelid = 'public.third_party_integrations'::regclass
                      AND tgname = 'kvs_third_party_integrations_check') THEN
        CREATE TRIGGER kvs_third_party_integrations_check
            BEFORE INSERT OR UPDATE ON public.third_party_integrations
            FOR EACH ROW EXECUTE FUNCTION public.kvs_third_party_integrations_check();
    END IF;
END
$$;

COMMIT;

-- Verification: one row, 't'.
-- SELECT tgenabled <> 'D' FROM pg_catalog.pg_trigger
--  WHERE tgrelid = 'public.third_party_integrations'::regclass
--    AND tgname = 'kvs_third_party_integrations_check';
