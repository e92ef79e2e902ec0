-- kiotviet-sync migration 004: KiotViet webhooks. Idempotent: safe to run any number of times;
-- apply after add_kiotviet_integration.sql, 002 and 003 (README: "Upgrading"). The daemon needs
-- it only when [webhook] listen is set, and then refuses to start without it.
--
-- 1. webhook_secret: the secret KiotViet signs each notification with (X-Hub-Signature: the hex
--    HMAC-SHA256 of the raw body keyed with the secret's UTF-8 bytes). `kiotviet-syncd webhooks
--    register` fills it in; NULL or empty: the integration accepts no webhook. Covered by the
--    table's row level security like client_secret.
ALTER TABLE public.third_party_integrations
    ADD COLUMN IF NOT EXISTS webhook_secret text;

-- 2. The inbox: every verified notification is stored here BEFORE the daemon answers KiotViet,
--    then applied from here (processed_at, result), so a crash after the answer loses nothing.
--    A redelivery with the same envelope Id is one row (ON CONFLICT DO NOTHING). event_id is
--    the envelope's "Id", or the hex SHA-256 of the body when it has none; types are the
--    notifications' Action types without the retailer suffix, comma-separated.
CREATE TABLE IF NOT EXISTS public.kiotviet_webhook_events (
    id             bigserial   PRIMARY KEY,
    integration_id uuid        NOT NULL
                   REFERENCES public.third_party_integrations (id) ON DELETE CASCADE,
    event_id       text        NOT NULL,
    attempt        integer     NOT NULL DEFAULT 1,
    types          text        NOT NULL,
    body           text        NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    processed_at   timestamptz,            -- NULL: not applied yet
    result         text,                   -- applied | duplicate | stale | ignored | error: <msg>
    CONSTRAINT kiotviet_webhook_events_integration_event_key UNIQUE (integration_id, event_id)
);

CREATE INDEX IF NOT EXISTS kiotviet_webhook_events_pending_idx
    ON public.kiotviet_webhook_events (integration_id) WHERE processed_at IS NULL;

-- 3. Row level security, as for the integrations: the bodies are the shop's catalogue and stock
--    as KiotViet sent them, not for the public API roles.
ALTER TABLE public.kiotviet_webhook_events ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON TABLE public.kiotviet_webhook_events FROM %I', r);
            EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I',
                           pg_catalog.pg_get_serial_sequence('public.kiotviet_webhook_events', 'id'),
                           r);
        END IF;
    END LOOP;
END
$$;

-- Verification (expected: webhook_secret | text; the table with RLS on):
--   SELECT column_name, data_type FROM information_schema.columns
--    WHERE table_schema = 'public' AND table_name = 'third_party_integrations'
--      AND column_name = 'webhook_secret';
--   SELECT relname, relrowsecurity FROM pg_class WHERE relname = 'kiotviet_webhook_events';
