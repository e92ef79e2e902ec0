/* store_status: the SQL of sync_logs (a run's row, its progress and end, abandoned runs,
 * pruning) and of the status and sync subcommands' reports (see store.h). "@" is the schema. */
#include "store_int.h"

const char store_t_log_start[] =
    "INSERT INTO @.\"sync_logs\" (\"integration_id\", \"sync_type\", \"status\","
    " \"daemon_id\") VALUES ($1::uuid, $2, 'running', $3) RETURNING \"id\"::text";

/* The count columns of sync_logs set from the json object j. */
#define LOG_COUNTS_SET                                                                          \
    "\"products_synced\" = j.products_synced,"                                                  \
    " \"products_created\" = j.products_created, \"products_updated\" = j.products_updated,"    \
    " \"products_failed\" = j.products_failed, \"products_deactivated\" ="                      \
    " j.products_deactivated, \"categories_synced\" = j.categories_synced,"                     \
    " \"categories_created\" = j.categories_created, \"categories_updated\" ="                  \
    " j.categories_updated, \"categories_failed\" = j.categories_failed,"                       \
    " \"categories_deactivated\" = j.categories_deactivated, \"requests_made\" ="              \
    " j.requests_made"
#define LOG_COUNTS_RECORD                                                                       \
    "j(products_synced int, products_created int, products_updated int, products_failed int,"   \
    " products_deactivated int, categories_synced int, categories_created int,"                 \
    " categories_updated int, categories_failed int, categories_deactivated int,"               \
    " requests_made int)"

const char store_t_log_progress[] =
    "UPDATE @.\"sync_logs\" l SET " LOG_COUNTS_SET
    " FROM pg_catalog.jsonb_to_record($2::jsonb) AS " LOG_COUNTS_RECORD
    " WHERE l.\"id\" = $1::bigint";

/* Only a row still 'running': one a claimant closed as abandoned (this daemon was taken for
 * dead, e.g. a batch sent just before a kill -9 carried out by its backend afterwards) stays
 * closed, and a retried finish whose first attempt committed changes nothing. */
const char store_t_log_finish[] =
    "UPDATE @.\"sync_logs\" l SET \"status\" = $2, " LOG_COUNTS_SET ","
    " \"error_message\" = $4, \"error_details\" = $5::jsonb, \"completed_at\" = now()"
    " FROM pg_catalog.jsonb_to_record($3::jsonb) AS " LOG_COUNTS_RECORD
    " WHERE l.\"id\" = $1::bigint AND l.\"status\" = 'running'";

/* A running log whose integration's lease is no longer live, or held by another daemon. */
const char store_t_log_abandoned[] =
    "WITH up AS (UPDATE @.\"sync_logs\" l SET \"status\" = 'failed', \"completed_at\" = now(),"
    " \"error_message\" = 'abandoned: the daemon running it stopped before it finished'"
    " FROM @.\"third_party_integrations\" i WHERE l.\"integration_id\" = i.\"id\" AND"
    " l.\"status\" = 'running' AND (i.\"sync_lease_owner\" IS DISTINCT FROM l.\"daemon_id\""
    " OR NOT " STORE_LEASE_LIVE("i.") ") RETURNING 1) SELECT count(*) FROM up";

const char store_t_log_prune[] =
    "WITH d AS (DELETE FROM @.\"sync_logs\" WHERE \"status\" <> 'running' AND"
    " \"started_at\" < now() - make_interval(days => $1::int) RETURNING 1)"
    " SELECT count(*) FROM d";

/* ---- the status and sync subcommands ------------------------------------------------------ */

/* One sync_logs row, aliased l, in the order of store.h's STORE_LC_* columns. */
#define LOG_SELECT                                                                              \
    "SELECT l.\"id\"::text AS log_id, l.\"status\" AS log_status, l.\"sync_type\" AS log_type,"  \
    " (extract(epoch from l.\"started_at\") * 1000000)::bigint AS log_started,"                 \
    " (extract(epoch from l.\"completed_at\") * 1000000)::bigint AS log_completed,"             \
    " l.\"products_synced\", l.\"products_created\", l.\"products_updated\","                   \
    " l.\"products_failed\", l.\"products_deactivated\", l.\"categories_synced\","              \
    " l.\"categories_created\", l.\"categories_updated\", l.\"categories_failed\","             \
    " l.\"categories_deactivated\", l.\"requests_made\", l.\"error_message\", l.\"daemon_id\""  \
    " FROM @.\"sync_logs\" l"

/* Every kiotviet* integration with its running run, its last finished run and the product
 * count of its last good full read (the denominator of a running full read's progress). */
const char store_t_status[] =
    "SELECT i.\"id\"::text, i.\"name\", i.\"display_name\", i.\"retailer\", i.\"is_active\","
    " i.\"sync_enabled\", i.\"sync_interval_minutes\","
    " (extract(epoch from i.\"last_sync_at\") * 1000000)::bigint, i.\"consecutive_failures\","
    " CASE WHEN " STORE_TOKEN_VALID_SQL("i.") " THEN"
    " (extract(epoch from i.\"token_expires_at\") * 1000000)::bigint END,"
    " coalesce(i.\"access_token\", '') <> '' AND " STORE_TOKEN_VALID_SQL("i.") ","
    " coalesce(i.\"client_id\", '') <> '' AND coalesce(i.\"client_secret\", '') <> '' AND"
    " coalesce(i.\"retailer\", '') <> '',"
    " i.\"sync_lease_owner\", (extract(epoch from i.\"sync_lease_expires_at\") * 1000000)::bigint,"
    " " STORE_LEASE_LIVE("i.") ","
    " (extract(epoch from i.\"sync_requested_at\") * 1000000)::bigint, i.\"sync_request_full\","
    " (extract(epoch from i.\"last_full_sync_at\") * 1000000)::bigint,"
    " (extract(epoch from now()) * 1000000)::bigint, r.*, f.*, e.\"products_synced\""
    " FROM @.\"third_party_integrations\" i"
    " LEFT JOIN LATERAL (" LOG_SELECT " WHERE l.\"integration_id\" = i.\"id\" AND"
    " l.\"status\" = 'running' ORDER BY l.\"started_at\" DESC, l.\"id\" DESC LIMIT 1) r ON true"
    " LEFT JOIN LATERAL (" LOG_SELECT " WHERE l.\"integration_id\" = i.\"id\" AND"
    " l.\"status\" <> 'running' ORDER BY l.\"started_at\" DESC, l.\"id\" DESC LIMIT 1) f ON true"
    " LEFT JOIN LATERAL (SELECT l.\"products_synced\" FROM @.\"sync_logs\" l"
    " WHERE l.\"integration_id\" = i.\"id\" AND l.\"status\" IN ('success', 'partial') AND"
    " l.\"sync_type\" IN ('full', 'reconcile') ORDER BY l.\"started_at\" DESC, l.\"id\" DESC"
    " LIMIT 1) e ON true"
    " WHERE i.\"name\" LIKE 'kiotviet%' ORDER BY i.\"name\"";

/* The request still pending (NULL once served), and the newest run started after it. */
const char store_t_poll[] =
    "SELECT (extract(epoch from i.\"sync_requested_at\") * 1000000)::bigint,"
    " (extract(epoch from now()) * 1000000)::bigint, r.* FROM @.\"third_party_integrations\" i"
    " LEFT JOIN LATERAL (" LOG_SELECT " WHERE l.\"integration_id\" = i.\"id\" AND"
    " l.\"started_at\" >= $2::timestamptz AND l.\"sync_type\" IS DISTINCT FROM 'webhook'"
    " ORDER BY l.\"id\" DESC LIMIT 1) r ON true WHERE i.\"id\" = $1::uuid";

const char store_t_daemons[] =
    "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = current_database() AND"
    " application_name = $1";
