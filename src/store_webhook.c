/* store_webhook: the SQL of the webhook listener (see store.h, ST_WEBHOOK_*): the integration a
 * notification is for, the inbox insert (migration 004_webhooks.sql) and the health check.
 * Templates: "@" is the schema. */
#include "store_int.h"

/* Only integrations the daemon syncs take webhooks: a disabled one is "unknown". */
const char store_t_webhook_find[] =
    "SELECT \"id\"::text, coalesce(\"webhook_secret\", '') FROM @.\"third_party_integrations\""
    " WHERE \"name\" = $1 AND \"name\" LIKE 'kiotviet%' AND \"is_active\" AND \"sync_enabled\"";

/* A redelivery (same event id) is no new row: KiotViet is answered 200 either way. */
const char store_t_webhook_store[] =
    "INSERT INTO @.\"kiotviet_webhook_events\" (\"integration_id\", \"event_id\", \"attempt\","
    " \"types\", \"body\") VALUES ($1::uuid, $2, $3::int, $4, $5)"
    " ON CONFLICT (\"integration_id\", \"event_id\") DO NOTHING RETURNING \"id\"";

const char store_t_webhook_check[] =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
    "   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    "   WHERE n.nspname = $1 AND c.relname = 'kiotviet_webhook_events'),"
    " EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a"
    "   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
    "   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    "   WHERE n.nspname = $1 AND c.relname = 'third_party_integrations'"
    "     AND a.attname = 'webhook_secret' AND NOT a.attisdropped)";

const char store_t_health[] = "SELECT 1";
