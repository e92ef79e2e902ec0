/* store_inbox: the SQL of the webhook inbox, kiotviet_webhook_events (db/migrations/
 * 004_webhooks.sql): reading a run's unprocessed events, the stored versions they are judged
 * against, marking them processed with their results, retention, the scheduler's look for
 * pending events, and the CLI's webhook secret. See store.h (ST_INBOX_*, ST_CTL_WEBHOOK_*). */
#include "store_int.h"

/* Oldest first, so that a burst's later versions are the ones that win. Only under the run's
 * lease (the caller holds it): no two runs read the same integration's events at once. */
const char store_t_inbox_read[] =
    "SELECT \"id\", \"body\", \"types\", (extract(epoch from \"received_at\") * 1000000)::bigint"
    " FROM @.\"kiotviet_webhook_events\" WHERE \"integration_id\" ="
    " $1::uuid AND \"processed_at\" IS NULL ORDER BY \"id\" LIMIT $2::int";

/* kiotviet_modified_at in microseconds since the epoch. */
const char store_t_inbox_versions[] =
    "SELECT \"kiotviet_id\", (extract(epoch from \"kiotviet_modified_at\") * 1000000)::bigint"
    " FROM @.\"products\" WHERE \"kiotviet_id\" = ANY($1::bigint[]) AND"
    " \"kiotviet_modified_at\" IS NOT NULL";

/* The stored stock by branch of the products of stock.update notifications: the other
 * branches' figures when a notification names one (wh_batch_stock_direct). */
const char store_t_inbox_stock[] =
    "SELECT \"product_kiotviet_id\", \"branch_kiotviet_id\", \"on_hand\"::text, \"reserved\"::text"
    " FROM @.\"kiotviet_product_stock\" WHERE \"product_kiotviet_id\" = ANY($1::bigint[])";

/* Marks only while the run still holds the lease ($3 its owner): a run taken over leaves its
 * events for the new holder. */
const char store_t_inbox_mark[] =
    "UPDATE @.\"kiotviet_webhook_events\" e SET \"processed_at\" = now(), \"result\" = j.result"
    " FROM pg_catalog.json_to_recordset($2::json) AS j(id bigint, result text)"
    " WHERE e.\"id\" = j.id AND e.\"integration_id\" = $1::uuid AND e.\"processed_at\" IS NULL"
    " AND EXISTS (SELECT 1 FROM @.\"third_party_integrations\" i WHERE i.\"id\" = $1::uuid AND"
    " i.\"sync_lease_owner\" = $3)";

/* Retention: processed events older than $2 days ([webhook] retention_days). */
const char store_t_inbox_prune[] =
    "DELETE FROM @.\"kiotviet_webhook_events\" WHERE \"integration_id\" = $1::uuid AND"
    " \"processed_at\" < now() - pg_catalog.make_interval(days => $2::int)";

/* Integrations with events waiting (after every read of the integrations). */
const char store_t_inbox_pending[] =
    "SELECT DISTINCT \"integration_id\"::text FROM @.\"kiotviet_webhook_events\""
    " WHERE \"processed_at\" IS NULL";

const char store_t_webhook_secret_set[] =
    "UPDATE @.\"third_party_integrations\" SET \"webhook_secret\" = $2, \"updated_at\" = now()"
    " WHERE \"id\" = $1::uuid";
