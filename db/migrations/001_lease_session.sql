-- =============================================================================
-- 001_lease_session.sql — which database session holds an integration's sync lease
-- =============================================================================
--
-- Apply after add_kiotviet_integration.sql (the daemon refuses to start without this column and
-- says so). Idempotent: ADD COLUMN IF NOT EXISTS, so it can be run any number of times.
--
-- What it does (only ADDS; never changes a shop row):
--   * third_party_integrations gains sync_lease_backend_pid (nullable integer): the backend pid
--     of the database session of the run holding the lease (its own connection, the one that
--     renews the lease), next to sync_lease_owner. A daemon that wants the integration and finds
--     that pid gone from pg_stat_activity knows the holder died (kill -9, power loss) and takes
--     the lease over at once instead of waiting for sync_lease_expires_at. NULL when the session
--     cannot be told (behind a pooler the client's session is not a server backend): then the
--     lease expires as before.
--
-- How to run (as the role that owns the table; on Supabase: the SQL Editor, as postgres):
--   psql -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f db/migrations/001_lease_session.sql
-- =============================================================================

BEGIN;

SET LOCAL lock_timeout = '15s';
SET LOCAL client_min_messages = warning;

ALTER TABLE public.third_party_integrations
    ADD COLUMN IF NOT EXISTS sync_lease_backend_pid integer;   -- pg_backend_pid() of the lease holder's session

COMMENT ON COLUMN public.third_party_integrations.sync_lease_backend_pid IS
    'kiotviet-syncd: backend pid of the database session holding the sync lease (NULL: unknown, '
    'e.g. behind a pooler); a holder whose pid is gone from pg_stat_activity is taken over at once';

COMMIT;

-- Verification: one row, integer.
-- SELECT data_type FROM information_schema.columns
--  WHERE table_schema = 'public' AND table_name = 'third_party_integrations'
--    AND column_name = 'sync_lease_backend_pid';
