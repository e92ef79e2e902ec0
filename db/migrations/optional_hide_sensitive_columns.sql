-- =============================================================================
-- optional_hide_sensitive_columns.sql — OPT-IN: keep the cost price, the supplier and serial
-- numbers of products away from Supabase's public API keys
-- =============================================================================
--
-- NOT applied by default (no NNN_ number: the "for f in db/migrations/[0-9]*.sql" loop, the
-- tests and `make install`'s instructions skip it). Read the trade-off first (README, Supabase).
--
-- Why: add_kiotviet_integration.sql adds products.inventory_value (on hand x purchase cost, i.e.
-- the cost price), products.supplier_id and products.serial_number. A shop on Supabase usually
-- has a public read policy on products, and Supabase grants SELECT on every table to the roles
-- behind its public keys (anon, authenticated): so anyone with the shop's anon key can read
-- them. kiotviet-syncd warns at start and `kiotviet-syncd status` shows it while that is so.
--
-- What it does, for each of anon and authenticated that exists:
--   REVOKE SELECT ON products (the table-wide privilege, which covers every column), then
--   GRANT SELECT (every other column) ON products: the three columns become unreadable.
-- Row level security and its policies are untouched; INSERT/UPDATE/DELETE privileges too.
--
-- The trade-off:
--   * A storefront query that selects `*` or one of these columns from products (including
--     supabase-js `.select()` without a column list, which is `select=*`) then fails with
--     "permission denied for table products": list the columns it needs instead.
--   * Columns added to products LATER are not readable by these roles until granted
--     (`GRANT SELECT (new_column) ON public.products TO anon, authenticated;`), or until this
--     file is run again (it grants every column but the three).
--   * To undo: GRANT SELECT ON public.products TO anon, authenticated;
--
-- Idempotent: running it again re-applies the same grants.
-- How to run (as the table's owner; on Supabase: the SQL Editor, as postgres):
--   psql -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f db/migrations/optional_hide_sensitive_columns.sql
-- =============================================================================

BEGIN;

SET LOCAL lock_timeout = '15s';

DO $hide$
DECLARE
    r    text;
    cols text;
BEGIN
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
      FROM pg_catalog.pg_attribute
     WHERE attrelid = 'public.products'::regclass AND attnum > 0 AND NOT attisdropped
       AND attname NOT IN ('inventory_value', 'supplier_id', 'serial_number');
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE SELECT ON public.products FROM %I', r);
            EXECUTE format('REVOKE SELECT (inventory_value, supplier_id, serial_number)'
                           ' ON public.products FROM %I', r);
            EXECUTE format('GRANT SELECT (%s) ON public.products TO %I', cols, r);
        END IF;
    END LOOP;
END
$hide$;

COMMIT;

-- Verification: no row (as the owner):
-- SELECT r.rolname, a.attname FROM pg_roles r, pg_attribute a
--  WHERE r.rolname IN ('anon', 'authenticated') AND a.attrelid = 'public.products'::regclass
--    AND a.attname IN ('inventory_value', 'supplier_id', 'serial_number')
--    AND has_column_privilege(r.oid, a.attrelid, a.attnum, 'SELECT');
