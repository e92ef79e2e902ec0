-- kiotviet-sync migration 006: sync_logs rows of webhook runs. Idempotent: safe to run any number
-- of times; apply after add_kiotviet_integration.sql and 004 (README: "Upgrading").
--
-- The daemon applies stored webhook notifications (004's kiotviet_webhook_events) in short
-- "inbox runs"; each writes one sync_logs row with sync_type 'webhook' (a burst of notifications
-- is one run, one row), so operators see them in `kiotviet-syncd status` and in the table. This
-- widens the sync_type check to allow it; nothing else changes.
ALTER TABLE public.sync_logs DROP CONSTRAINT IF EXISTS sync_logs_sync_type_check;
ALTER TABLE public.sync_logs ADD CONSTRAINT sync_logs_sync_type_check
    CHECK (sync_type IN ('full', 'incremental', 'reconcile', 'webhook'));
