-- =============================================================================
-- 005_branches_stock_serials.sql — KiotViet branches, stock by branch, every serial (issue 16)
-- =============================================================================
--
-- Apply after add_kiotviet_integration.sql and the earlier numbered migrations (the daemon
-- refuses to start without these tables, exit status 78, and names this file). Idempotent: run
-- it any number of times; a re-run changes nothing (and keeps grants and policies you added).
--
-- What it does (only ADDS: three tables of the daemon's and one column of its integrations;
-- never touches a shop table):
--   * kiotviet_branches: one row per KiotViet branch (store), from GET /branches. A branch
--     KiotViet lists in removedIds (made inactive) keeps its row with is_active = false.
--   * kiotviet_product_stock: one row per (product, branch): on_hand and reserved, from the
--     product pages' inventories and GET /productOnHands. The purchase cost is NOT stored here
--     (products.inventory_value holds the product's total, see optional_hide_sensitive_columns).
--   * kiotviet_product_serials: one row per (product, serial number): the certificate / IMEI
--     numbers of serial-tracked pieces (productSerials), in_stock from KiotViet's status (1 in
--     stock, 0 sold) and the branch holding the piece. A serial that is sold, or disappears from
--     its product's list, keeps its row with in_stock = false: nothing is ever deleted.
--   Rows are keyed by KiotViet ids (global across retailers), like products.kiotviet_id, and
--   link to products / kiotviet_branches by those ids, not by foreign keys: the shop's products
--   table is the shop's (its id may be uuid or bigint), and a page's writes stay free of
--   per-row reference checks. kiotviet_integration_id is the third_party_integrations.id that
--   last wrote the row (several KiotViet shops may sync into one database).
--   The daemon writes each row only when a value changed (updated_at / last_synced_at say when).
--   * third_party_integrations.branches_read_at: when the daemon last read GET /branches
--     completely for the integration (an incremental run reads it again an hour later; a full
--     run always does).
--   * Row level security ON with no policy, and (on Supabase) nothing granted to anon or
--     authenticated: availability by store may be something a shop publishes, but that is its
--     choice; README "Publishing stock by store" gives the opt-in SQL.
--
-- How to run (as the role that owns products; on Supabase: the SQL Editor, as postgres):
--   psql -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f db/migrations/005_branches_stock_serials.sql
-- =============================================================================

BEGIN;

SET LOCAL lock_timeout = '15s';
SET LOCAL client_min_messages = warning;

-- Which of the three tables this run creates: only those get their privileges revoked, so that
-- a re-run never takes back a grant the shop made on purpose (README, opt-in read policies).
CREATE TEMP TABLE kvs_005_new ON COMMIT DROP AS
SELECT t AS name FROM unnest(ARRAY['kiotviet_branches', 'kiotviet_product_stock',
                                   'kiotviet_product_serials']) AS t
 WHERE pg_catalog.to_regclass('public.' || t) IS NULL;

ALTER TABLE public.third_party_integrations
    ADD COLUMN IF NOT EXISTS branches_read_at timestamptz;   -- last complete read of /branches

CREATE TABLE IF NOT EXISTS public.kiotviet_branches (
    kiotviet_id             bigint      NOT NULL,   -- branch id (branchId in inventories)
    name                    text,                   -- branchName
    code                    text,                   -- branchCode
    address                 text,
    is_active               boolean     NOT NULL DEFAULT true,  -- false: in /branches removedIds
    kiotviet_integration_id uuid,                   -- third_party_integrations.id that wrote it
    kiotviet_modified_at    timestamptz,            -- modifiedDate (else createdDate)
    last_synced_at          timestamptz NOT NULL DEFAULT now(),  -- last change written
    CONSTRAINT kiotviet_branches_pkey PRIMARY KEY (kiotviet_id)
);

CREATE TABLE IF NOT EXISTS public.kiotviet_product_stock (
    product_kiotviet_id     bigint      NOT NULL,   -- products.kiotviet_id
    branch_kiotviet_id      bigint      NOT NULL,   -- kiotviet_branches.kiotviet_id
    on_hand                 numeric     NOT NULL DEFAULT 0,  -- can be fractional (weight units)
    reserved                numeric     NOT NULL DEFAULT 0,  -- on customer orders
    kiotviet_integration_id uuid,
    updated_at              timestamptz NOT NULL DEFAULT now(),  -- last change written
    CONSTRAINT kiotviet_product_stock_pkey PRIMARY KEY (product_kiotviet_id, branch_kiotviet_id)
);
CREATE INDEX IF NOT EXISTS kiotviet_product_stock_branch_idx
    ON public.kiotviet_product_stock (branch_kiotviet_id);

CREATE TABLE IF NOT EXISTS public.kiotviet_product_serials (
    product_kiotviet_id     bigint      NOT NULL,   -- products.kiotviet_id
    serial_number           text        NOT NULL,   -- certificate / IMEI number (serialNumber)
    in_stock                boolean     NOT NULL,   -- status 1: true; sold or no longer listed: false
    branch_kiotviet_id      bigint,                 -- the branch holding (or that sold) the piece
    kiotviet_modified_at    timestamptz,            -- modifiedDate (else createdDate)
    kiotviet_integration_id uuid,
    updated_at              timestamptz NOT NULL DEFAULT now(),  -- last change written
    CONSTRAINT kiotviet_product_serials_pkey PRIMARY KEY (product_kiotviet_id, serial_number)
);
CREATE INDEX IF NOT EXISTS kiotviet_product_serials_serial_idx
    ON public.kiotviet_product_serials (serial_number);   -- "whose certificate is this?"

COMMENT ON TABLE public.kiotviet_branches IS
    'kiotviet-syncd: KiotViet branches (GET /branches); is_active false = made inactive';
COMMENT ON TABLE public.kiotviet_product_stock IS
    'kiotviet-syncd: stock of each product at each KiotViet branch (no cost)';
COMMENT ON TABLE public.kiotviet_product_serials IS
    'kiotviet-syncd: serial / certificate numbers of serial-tracked products; never deleted, '
    'in_stock false once sold or no longer listed';

ALTER TABLE public.kiotviet_branches ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.kiotviet_product_stock ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.kiotviet_product_serials ENABLE ROW LEVEL SECURITY;

-- Supabase's default privileges grant every new public table to anon and authenticated: take
-- that back on the tables created just now (a re-run leaves existing grants alone).
DO $$
DECLARE
    r text;
    t text;
BEGIN
    FOR t IN SELECT name FROM kvs_005_new LOOP
        FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
                EXECUTE format('REVOKE ALL ON TABLE public.%I FROM %I', t, r);
            END IF;
        END LOOP;
    END LOOP;
END
$$;

COMMIT;

-- Verification: three rows, each with row level security on (t).
--   SELECT relname, relrowsecurity FROM pg_catalog.pg_class
--    WHERE relnamespace = 'public'::regnamespace
--      AND relname IN ('kiotviet_branches', 'kiotviet_product_stock', 'kiotviet_product_serials')
--    ORDER BY 1;
