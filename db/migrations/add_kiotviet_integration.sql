-- =============================================================================
-- add_kiotviet_integration.sql — KiotViet → shop sync: schema for kiotviet-syncd
-- =============================================================================
--
-- What it does (only ADDS; never changes an existing shop row or shop column):
--   * products   gains 18 nullable columns: the KiotViet/jewellery fields the daemon fills
--                (kiotviet_id, serial_number, ...) and its bookkeeping (kiotviet_category_id,
--                kiotviet_master_id, kiotviet_modified_at, kiotviet_status,
--                kiotviet_integration_id), plus CHECKs on sync_status and kiotviet_status.
--   * categories gains 7 nullable columns: kiotviet_id, kiotviet_parent_id, last_synced_at,
--                sync_status, kiotviet_modified_at, kiotviet_status, kiotviet_integration_id
--                (same CHECKs).
--   kiotviet_status says what KiotViet thinks of the row: 'active', 'inactive' (stopped selling)
--   or 'deleted' (in removedIds). The daemon never deletes rows; a shop whose products table has
--   no is_active column filters on kiotviet_status = 'active' instead.
--   kiotviet_integration_id is the third_party_integrations.id that last wrote the row: several
--   integrations (one per KiotViet retailer) may sync into one shop, and a full sync marks
--   'deleted' only the products of its own integration. No foreign key: the daemon's writes
--   stay free of a per-row reference check, and the rows of a deleted integration keep its id
--   (so no other integration's full sync ever marks them deleted).
--   * UNIQUE indexes products_kiotviet_id_key / categories_kiotviet_id_key: the daemon's
--     ON CONFLICT (kiotviet_id) target. NULLs stay allowed, so the shop's own rows are unaffected.
--   * new tables third_party_integrations (credentials, tokens, sync settings, the daemon's lease and
--     cursors) and sync_logs (one row per sync run), with row level security ON and no policies, and
--     (on Supabase) all privileges revoked from anon and authenticated: the public API keys can
--     neither read the KiotViet secret nor change the integration.
--   * one row name = 'kiotviet', sync_enabled = false (fill in the credentials, then enable it).
--
-- Idempotent: every statement is IF NOT EXISTS / ON CONFLICT DO NOTHING or checks pg_catalog first,
-- so the file can be run any number of times; a re-run changes nothing. An older, partial
-- third_party_integrations table is completed (missing columns and constraints added, rows kept).
-- Works on plain PostgreSQL 15 and on Supabase (the anon/authenticated roles are optional).
-- Everything runs in ONE transaction: on any error nothing is applied.
--
-- How to run:
--   Supabase:  Dashboard → SQL Editor → New query → paste this whole file → Run.
--   psql:      psql -v ON_ERROR_STOP=1 -d "postgresql://USER@HOST:5432/DBNAME" \
--                   -f db/migrations/add_kiotviet_integration.sql
--   Then run the verification queries at the bottom of this file.
-- Run it as the role that owns products/categories (on Supabase: postgres); superuser not needed.
-- It takes a short ACCESS EXCLUSIVE lock on products and categories (adding nullable columns does
-- not rewrite them); lock_timeout makes it give up instead of stalling the shop behind a long query.
--
-- Later schema changes: db/migrations/NNN_what.sql, applied in numeric order after this file.
-- =============================================================================

BEGIN;

SET LOCAL lock_timeout = '15s';
SET LOCAL client_min_messages = warning;   -- a re-run would print a NOTICE per existing column

-- -----------------------------------------------------------------------------
-- 1. products: KiotViet fields and the daemon's bookkeeping (all nullable, no defaults, so
--    existing rows are not rewritten and read as NULL).
-- -----------------------------------------------------------------------------
ALTER TABLE public.products
    ADD COLUMN IF NOT EXISTS kiotviet_id          bigint,
    ADD COLUMN IF NOT EXISTS serial_number        text,
    ADD COLUMN IF NOT EXISTS supplier_id          text,
    ADD COLUMN IF NOT EXISTS center_stone_size_mm numeric,
    ADD COLUMN IF NOT EXISTS shape                text,
    ADD COLUMN IF NOT EXISTS dimensions           text,
    ADD COLUMN IF NOT EXISTS stone_count          integer,
    ADD COLUMN IF NOT EXISTS carat_weight_ct      numeric,
    ADD COLUMN IF NOT EXISTS gold_purity          text,
    ADD COLUMN IF NOT EXISTS product_weight_g     numeric,
    ADD COLUMN IF NOT EXISTS inventory_value      numeric,
    ADD COLUMN IF NOT EXISTS last_synced_at       timestamptz,
    ADD COLUMN IF NOT EXISTS sync_status          text,
    ADD COLUMN IF NOT EXISTS kiotviet_category_id bigint,      -- KiotViet categoryId as sent
    ADD COLUMN IF NOT EXISTS kiotviet_master_id   bigint,      -- variant group master (masterProductId)
    ADD COLUMN IF NOT EXISTS kiotviet_modified_at timestamptz, -- KiotViet modifiedDate of the stored version
    ADD COLUMN IF NOT EXISTS kiotviet_status      text,        -- active | inactive | deleted (in KiotViet)
    ADD COLUMN IF NOT EXISTS kiotviet_integration_id uuid;     -- third_party_integrations.id that wrote it

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'public.products'::regclass
                      AND conname = 'products_sync_status_check') THEN
        ALTER TABLE public.products ADD CONSTRAINT products_sync_status_check
            CHECK (sync_status IN ('pending', 'synced', 'failed', 'syncing'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'public.products'::regclass
                      AND conname = 'products_kiotviet_status_check') THEN
        ALTER TABLE public.products ADD CONSTRAINT products_kiotviet_status_check
            CHECK (kiotviet_status IN ('active', 'inactive', 'deleted'));
    END IF;
END
$$;

-- -----------------------------------------------------------------------------
-- 2. categories
-- -----------------------------------------------------------------------------
ALTER TABLE public.categories
    ADD COLUMN IF NOT EXISTS kiotviet_id        bigint,
    ADD COLUMN IF NOT EXISTS kiotviet_parent_id bigint,
    ADD COLUMN IF NOT EXISTS last_synced_at     timestamptz,
    ADD COLUMN IF NOT EXISTS sync_status        text,
    ADD COLUMN IF NOT EXISTS kiotviet_modified_at timestamptz,
    ADD COLUMN IF NOT EXISTS kiotviet_status    text,
    ADD COLUMN IF NOT EXISTS kiotviet_integration_id uuid;   -- third_party_integrations.id that wrote it

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'public.categories'::regclass
                      AND conname = 'categories_sync_status_check') THEN
        ALTER TABLE public.categories ADD CONSTRAINT categories_sync_status_check
            CHECK (sync_status IN ('pending', 'synced', 'failed', 'syncing'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = 'public.categories'::regclass
                      AND conname = 'categories_kiotviet_status_check') THEN
        ALTER TABLE public.categories ADD CONSTRAINT categories_kiotviet_status_check
            CHECK (kiotviet_status IN ('active', 'inactive', 'deleted'));
    END IF;
END
$$;

-- -----------------------------------------------------------------------------
-- 3. third_party_integrations: one row per external system (credentials + sync state).
-- -----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.third_party_integrations (
    id                    uuid        NOT NULL DEFAULT gen_random_uuid(),
    name                  text        NOT NULL,
    display_name          text,
    api_url               text,
    token_url             text,
    client_id             text,
    client_secret         text,
    retailer              text,
    access_token          text,
    refresh_token         text,
    token_expires_at      timestamptz,
    is_active             boolean     NOT NULL DEFAULT true,
    is_default            boolean     NOT NULL DEFAULT false,
    sync_enabled          boolean     NOT NULL DEFAULT false,
    last_sync_at          timestamptz,
    sync_interval_minutes integer     NOT NULL DEFAULT 60,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- the daemon's own state
    sync_lease_owner      text,                     -- daemon instance holding the sync lease
    sync_lease_expires_at timestamptz,
    products_cursor       timestamptz,              -- incremental sync: lastModifiedFrom
    categories_cursor     timestamptz,
    last_full_sync_at     timestamptz,
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    sync_requested_at     timestamptz,              -- "sync now" request (from the shop admin)
    sync_request_full     boolean     NOT NULL DEFAULT false,
    CONSTRAINT third_party_integrations_pkey PRIMARY KEY (id),
    CONSTRAINT third_party_integrations_name_key UNIQUE (name),
    CONSTRAINT third_party_integrations_sync_interval_minutes_check CHECK (sync_interval_minutes > 0)
);

-- Complete an older table that has only some of the columns (a no-op on the table just created).
-- Same definitions as above; NOT NULL columns carry a default, so existing rows get it.
ALTER TABLE public.third_party_integrations
    ADD COLUMN IF NOT EXISTS id                    uuid        NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN IF NOT EXISTS name                  text,
    ADD COLUMN IF NOT EXISTS display_name          text,
    ADD COLUMN IF NOT EXISTS api_url               text,
    ADD COLUMN IF NOT EXISTS token_url             text,
    ADD COLUMN IF NOT EXISTS client_id             text,
    ADD COLUMN IF NOT EXISTS client_secret         text,
    ADD COLUMN IF NOT EXISTS retailer              text,
    ADD COLUMN IF NOT EXISTS access_token          text,
    ADD COLUMN IF NOT EXISTS refresh_token         text,
    ADD COLUMN IF NOT EXISTS token_expires_at      timestamptz,
    ADD COLUMN IF NOT EXISTS is_active             boolean     NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS is_default            boolean     NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS sync_enabled          boolean     NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS last_sync_at          timestamptz,
    ADD COLUMN IF NOT EXISTS sync_interval_minutes integer     NOT NULL DEFAULT 60,
    ADD COLUMN IF NOT EXISTS created_at            timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at            timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS sync_lease_owner      text,
    ADD COLUMN IF NOT EXISTS sync_lease_expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS products_cursor       timestamptz,
    ADD COLUMN IF NOT EXISTS categories_cursor     timestamptz,
    ADD COLUMN IF NOT EXISTS last_full_sync_at     timestamptz,
    ADD COLUMN IF NOT EXISTS consecutive_failures  integer     NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS sync_requested_at     timestamptz,
    ADD COLUMN IF NOT EXISTS sync_request_full     boolean     NOT NULL DEFAULT false;

-- Keys, defaults and checks an older table may lack. Each is added only when absent, and the
-- NOT NULLs only when no row violates them (a re-run, or a fresh table, finds nothing to do).
DO $$
DECLARE
    tbl constant regclass := 'public.third_party_integrations'::regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = tbl AND contype = 'p') THEN
        ALTER TABLE public.third_party_integrations
            ADD CONSTRAINT third_party_integrations_pkey PRIMARY KEY (id);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef d
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                    WHERE d.adrelid = tbl AND a.attname = 'id') THEN
        ALTER TABLE public.third_party_integrations ALTER COLUMN id SET DEFAULT gen_random_uuid();
    END IF;

    -- ON CONFLICT (name) needs a unique index on exactly (name), whatever it is called.
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = tbl AND i.indisunique AND i.indnkeyatts = 1
                      AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = 'name') THEN
        ALTER TABLE public.third_party_integrations
            ADD CONSTRAINT third_party_integrations_name_key UNIQUE (name);
    END IF;

    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                WHERE attrelid = tbl AND attname = 'name' AND NOT attnotnull)
       AND NOT EXISTS (SELECT 1 FROM public.third_party_integrations WHERE name IS NULL) THEN
        ALTER TABLE public.third_party_integrations ALTER COLUMN name SET NOT NULL;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                    WHERE conrelid = tbl
                      AND conname = 'third_party_integrations_sync_interval_minutes_check') THEN
        ALTER TABLE public.third_party_integrations
            ADD CONSTRAINT third_party_integrations_sync_interval_minutes_check
            CHECK (sync_interval_minutes > 0);
    END IF;
END
$$;

-- -----------------------------------------------------------------------------
-- 4. sync_logs: one row per sync run.
-- -----------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.sync_logs (
    id                     bigint GENERATED BY DEFAULT AS IDENTITY,
    integration_id         uuid,
    sync_type              text        NOT NULL,
    status                 text        NOT NULL,
    products_synced        integer     NOT NULL DEFAULT 0,
    products_created       integer     NOT NULL DEFAULT 0,
    products_updated       integer     NOT NULL DEFAULT 0,
    products_failed        integer     NOT NULL DEFAULT 0,
    products_deactivated   integer     NOT NULL DEFAULT 0,
    categories_synced      integer     NOT NULL DEFAULT 0,
    categories_created     integer     NOT NULL DEFAULT 0,
    categories_updated     integer     NOT NULL DEFAULT 0,
    categories_failed      integer     NOT NULL DEFAULT 0,
    categories_deactivated integer     NOT NULL DEFAULT 0,
    requests_made          integer     NOT NULL DEFAULT 0,
    error_message          text,
    error_details          jsonb,
    daemon_id              text,
    started_at             timestamptz NOT NULL DEFAULT now(),
    completed_at           timestamptz,
    CONSTRAINT sync_logs_pkey PRIMARY KEY (id),
    CONSTRAINT sync_logs_integration_id_fkey FOREIGN KEY (integration_id)
        REFERENCES public.third_party_integrations (id) ON DELETE CASCADE,
    CONSTRAINT sync_logs_sync_type_check
        CHECK (sync_type IN ('full', 'incremental', 'reconcile', 'webhook')),
    CONSTRAINT sync_logs_status_check
        CHECK (status IN ('running', 'success', 'partial', 'failed', 'cancelled'))
);

-- -----------------------------------------------------------------------------
-- 5. The KiotViet integration row, disabled until the operator fills in the credentials.
-- -----------------------------------------------------------------------------
INSERT INTO public.third_party_integrations
    (name, display_name, api_url, token_url, client_id, client_secret, retailer,
     is_active, is_default, sync_enabled, sync_interval_minutes)
VALUES
    ('kiotviet', 'KiotViet', 'https://public.kiotapi.com', 'https://id.kiotviet.vn/connect/token',
     '', '', '', true, true, false, 60)
ON CONFLICT (name) DO NOTHING;

-- A row kept from an older, partial table lacks the columns added above: fill the fixed endpoint
-- values where they are still NULL (nothing else; credentials and settings are the operator's).
UPDATE public.third_party_integrations
   SET display_name = COALESCE(display_name, 'KiotViet'),
       api_url      = COALESCE(api_url, 'https://public.kiotapi.com'),
       token_url    = COALESCE(token_url, 'https://id.kiotviet.vn/connect/token')
 WHERE name = 'kiotviet'
   AND (display_name IS NULL OR api_url IS NULL OR token_url IS NULL);

-- -----------------------------------------------------------------------------
-- 6. Indexes
-- -----------------------------------------------------------------------------
-- Plain (not partial) so that ON CONFLICT (kiotviet_id) can infer them; NULLs never conflict.
CREATE UNIQUE INDEX IF NOT EXISTS products_kiotviet_id_key   ON public.products (kiotviet_id);
CREATE UNIQUE INDEX IF NOT EXISTS categories_kiotviet_id_key ON public.categories (kiotviet_id);
CREATE INDEX IF NOT EXISTS products_kiotviet_category_id_idx ON public.products (kiotviet_category_id);
CREATE INDEX IF NOT EXISTS categories_kiotviet_parent_id_idx ON public.categories (kiotviet_parent_id);
CREATE INDEX IF NOT EXISTS sync_logs_integration_id_started_at_idx
    ON public.sync_logs (integration_id, started_at DESC);
CREATE INDEX IF NOT EXISTS sync_logs_running_idx
    ON public.sync_logs (status) WHERE status = 'running';

-- -----------------------------------------------------------------------------
-- 7. Row level security: the shop's public API roles must never see the credentials.
--    RLS on with no policies = no rows for anyone but the owner (and BYPASSRLS roles such as
--    Supabase's service_role). Supabase's default privileges grant every new public table to anon
--    and authenticated, so those grants are revoked too. products/categories are left alone.
-- -----------------------------------------------------------------------------
ALTER TABLE public.third_party_integrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sync_logs ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON TABLE public.third_party_integrations, public.sync_logs FROM %I', r);
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I',
                           pg_catalog.pg_get_serial_sequence('public.sync_logs', 'id'), r);
        END IF;
    END LOOP;
END
$$;

COMMIT;

/* -----------------------------------------------------------------------------
VERIFICATION QUERIES: run each one after the migration (select it in the Supabase SQL editor and
Run, or paste it into psql). The expected result is written after "expect:" above each query,
as psql prints it: columns separated by " | ", booleans as t/f (the Supabase editor shows
true/false).

-- (a) the 18 new products columns exist.                      expect: 18
SELECT count(*) FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name = 'products'
   AND column_name IN ('kiotviet_id', 'serial_number', 'supplier_id', 'center_stone_size_mm',
                       'shape', 'dimensions', 'stone_count', 'carat_weight_ct', 'gold_purity',
                       'product_weight_g', 'inventory_value', 'last_synced_at', 'sync_status',
                       'kiotviet_category_id', 'kiotviet_master_id', 'kiotviet_modified_at',
                       'kiotviet_status', 'kiotviet_integration_id');

-- (b) the 7 new categories columns exist.                      expect: 7
SELECT count(*) FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name = 'categories'
   AND column_name IN ('kiotviet_id', 'kiotviet_parent_id', 'last_synced_at', 'sync_status',
                       'kiotviet_modified_at', 'kiotviet_status', 'kiotviet_integration_id');

-- (c) the KiotViet row exists once and is still disabled.     expect: 1 | f
SELECT count(*), bool_and(sync_enabled) FROM public.third_party_integrations
 WHERE name = 'kiotviet';

-- (d) row level security is on for both tables.                expect: 2 rows: sync_logs | t, third_party_integrations | t
SELECT c.relname, c.relrowsecurity FROM pg_catalog.pg_class c
 WHERE c.oid IN ('public.third_party_integrations'::regclass, 'public.sync_logs'::regclass)
 ORDER BY c.relname;
----------------------------------------------------------------------------- */
