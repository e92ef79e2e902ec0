-- =============================================================================
-- shop_base.sql — a minimal Supabase-style shop schema for the demo and the tests.
--
-- NEVER needed on a real shop: a real shop already has its own categories and products tables
-- (kiotviet-syncd only ADDS to them, see db/migrations/add_kiotviet_integration.sql).
-- This file stands in for such a shop on a throwaway database. Idempotent (IF NOT EXISTS).
--
-- featured and seo_title are shop-only columns: the daemon must never write them.
-- =============================================================================

CREATE TABLE IF NOT EXISTS public.categories (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text        NOT NULL,
    slug        text,
    parent_id   uuid        REFERENCES public.categories (id),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.products (
    id             uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text          NOT NULL,
    sku            text          UNIQUE,
    full_name      text,
    description    text,
    price          numeric(18,2),
    category_id    uuid          REFERENCES public.categories (id),
    images         text[],
    is_active      boolean       NOT NULL DEFAULT true,
    stock_quantity numeric,
    created_at     timestamptz   NOT NULL DEFAULT now(),
    updated_at     timestamptz   NOT NULL DEFAULT now(),
    -- shop-only columns (never touched by the sync)
    featured       boolean       NOT NULL DEFAULT false,
    seo_title      text
);

CREATE INDEX IF NOT EXISTS products_category_id_idx ON public.products (category_id);
CREATE INDEX IF NOT EXISTS categories_parent_id_idx ON public.categories (parent_id);
