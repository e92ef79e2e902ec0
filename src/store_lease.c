/* store_lease: the SQL of the integrations, their claims and leases, tokens and run-now
 * requests, and the parse of an integration row (see store.h). Templates: "@" is the schema. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define INTEG_COLS                                                                              \
    "\"id\"::text, \"name\", \"api_url\", \"token_url\", \"client_id\", \"client_secret\","     \
    " \"retailer\", CASE WHEN " STORE_TOKEN_VALID_SQL("") " THEN \"access_token\" END,"           \
    " CASE WHEN " STORE_TOKEN_VALID_SQL("") " THEN"                                          \
    " (extract(epoch from \"token_expires_at\") * 1000000)::bigint END, \"is_active\","          \
    " \"sync_enabled\", (extract(epoch from \"last_sync_at\") * 1000000)::bigint,"              \
    " \"sync_interval_minutes\", \"sync_lease_owner\", " STORE_LEASE_LIVE("") ","              \
    " (extract(epoch from \"products_cursor\") * 1000000)::bigint,"                             \
    " (extract(epoch from \"categories_cursor\") * 1000000)::bigint,"                           \
    " (extract(epoch from \"last_full_sync_at\") * 1000000)::bigint, \"consecutive_failures\","  \
    " (extract(epoch from \"sync_requested_at\") * 1000000)::bigint, \"sync_request_full\","    \
    " " STORE_CREDS_HASH_SQL("")

#define LIST_SQL                                                                                \
    "SELECT " INTEG_COLS " FROM @.\"third_party_integrations\""                                 \
    " WHERE \"name\" LIKE 'kiotviet%' ORDER BY \"name\""

/* The row is locked FOR UPDATE before any claim: that waits for the writes of a run whose
 * lease this may take over (they hold it FOR KEY SHARE, see store.c put_lease_cte). */
#define LOCK_ROW "lk AS (SELECT 1 FROM @.\"third_party_integrations\" WHERE \"id\" = $1::uuid FOR UPDATE)"

const char store_t_list[] = LIST_SQL;

/* The integration list with the database's now() as its last column: how long ago each
 * last_sync_at was is measured on the database's clock, the one that wrote it, never against
 * this host's wall clock (which an administrator or NTP may jump). */
const char store_t_list_now[] =
    "SELECT l.*, (extract(epoch from now()) * 1000000)::bigint FROM (" LIST_SQL ") l ORDER BY 2";

const char store_t_claim[] =
    "WITH " LOCK_ROW " UPDATE @.\"third_party_integrations\" SET \"sync_lease_owner\" = $2,"
    " \"sync_lease_expires_at\" = now() + make_interval(secs => $3::int),"
    " \"sync_lease_backend_pid\" = CASE WHEN \"sync_lease_owner\" = $2 THEN"
    " \"sync_lease_backend_pid\" END"
    " WHERE EXISTS (SELECT 1 FROM lk) AND \"id\" = $1::uuid AND " STORE_LEASE_FREE_FOR("$2")
    " RETURNING " INTEG_COLS;

/* The scheduler's claim: takes the lease only if the integration is still enabled, free (or
 * ours, or expired) AND nobody synced it since the last_sync_at we saw ($4, epoch us), unless
 * a run-now request is newer than its last sync. Without the last condition a daemon holding
 * a stale view (another daemon ran it a moment ago and released the lease) would run it again.
 * The outer SELECT sees the row as it was before the UPDATE: when the claim fails it says why
 * (someone synced it since: the newer last_sync_at, and the database's now() to tell how long
 * ago that was; leased: how long the lease still runs).
 * A lease whose holder's database session is gone (STORE_LEASE_HOLDER_GONE) is free: its
 * daemon died. The lease records our control connection's backend pid ($5, when the server
 * agrees it is one of its backends) until the run's first renewal records its own.
 * The run's own claim (ST_CLAIM) then succeeds because the lease is already ours. */
const char store_t_claim_due[] =
    "WITH " LOCK_ROW ","
    " c AS (UPDATE @.\"third_party_integrations\" SET \"sync_lease_owner\" = $2,"
    " \"sync_lease_expires_at\" = now() + make_interval(secs => $3::int),"
    " \"sync_lease_backend_pid\" = CASE WHEN pg_catalog.pg_backend_pid() = $5::int THEN $5::int END"
    " WHERE EXISTS (SELECT 1 FROM lk) AND \"id\" = $1::uuid AND \"is_active\" AND \"sync_enabled\""
    " AND " STORE_LEASE_FREE_FOR("$2")
    " AND (coalesce((extract(epoch from \"last_sync_at\") * 1000000)::bigint, 0) <= $4::bigint"
    "      OR (\"sync_requested_at\" IS NOT NULL AND (\"last_sync_at\" IS NULL"
    "          OR \"last_sync_at\" < \"sync_requested_at\")))"
    " RETURNING 1)"
    " SELECT (SELECT count(*) FROM c)::int,"
    " coalesce((extract(epoch from \"last_sync_at\") * 1000000)::bigint, 0),"
    " CASE WHEN \"sync_lease_owner\" IS DISTINCT FROM $2 AND \"sync_lease_expires_at\" > now()"
    "      AND NOT " STORE_LEASE_HOLDER_GONE
    "      THEN ceil(extract(epoch from \"sync_lease_expires_at\" - now()) * 1000)::bigint"
    "      ELSE 0 END,"
    " coalesce(\"is_active\" AND \"sync_enabled\", false),"
    " (extract(epoch from now()) * 1000000)::bigint"
    " FROM @.\"third_party_integrations\" WHERE \"id\" = $1::uuid";

const char store_t_renew[] =
    "UPDATE @.\"third_party_integrations\" SET \"sync_lease_expires_at\" = now() +"
    " make_interval(secs => $3::int), \"sync_lease_backend_pid\" = CASE WHEN"
    " pg_catalog.pg_backend_pid() = $4::int THEN $4::int END"
    " WHERE \"id\" = $1::uuid AND \"sync_lease_owner\" = $2 RETURNING 1";

const char store_t_lease_holder[] =
    "SELECT \"sync_lease_owner\", to_char(\"sync_lease_expires_at\" AT TIME ZONE 'UTC',"
    " 'YYYY-MM-DD HH24:MI:SS \"UTC\"'), greatest(ceil(extract(epoch from"
    " \"sync_lease_expires_at\" - now()) * 1000), 0)::bigint, " STORE_LEASE_HOLDER_GONE
    " FROM @.\"third_party_integrations\" WHERE \"id\" = $1::uuid";

#define LEASE_CLEAR                                                                             \
    " \"sync_lease_owner\" = NULL, \"sync_lease_expires_at\" = NULL,"                          \
    " \"sync_lease_backend_pid\" = NULL WHERE \"id\" = $1::uuid AND \"sync_lease_owner\" = $2"

const char store_t_release[] = "UPDATE @.\"third_party_integrations\" SET" LEASE_CLEAR;

/* Saved only while the row still holds the credentials the token was issued for ($5, read
 * with the row): a token is never tied to credentials changed meanwhile. */
const char store_t_token_save[] =
    "UPDATE @.\"third_party_integrations\" SET \"access_token\" = $3,"
    " \"token_expires_at\" = to_timestamp($4::double precision),"
    " \"token_credentials_hash\" = $5, \"updated_at\" = now()"
    " WHERE \"id\" = $1::uuid AND \"sync_lease_owner\" = $2 AND"
    " " STORE_CREDS_HASH_SQL("") " = $5";

/* No row when the lease is no longer ours: the run's end is then not the integration's. */
const char store_t_finish[] =
    "UPDATE @.\"third_party_integrations\" SET \"last_sync_at\" = now(),"
    " \"products_cursor\" = coalesce($3::timestamptz, \"products_cursor\"),"
    " \"categories_cursor\" = coalesce($4::timestamptz, \"categories_cursor\"),"
    " \"last_full_sync_at\" = CASE WHEN $5::boolean THEN now() ELSE"
    " \"last_full_sync_at\" END, \"consecutive_failures\" = 0," LEASE_CLEAR " RETURNING 1";

const char store_t_fail[] =
    "UPDATE @.\"third_party_integrations\" SET \"last_sync_at\" = now(),"
    " \"consecutive_failures\" = \"consecutive_failures\" + 1," LEASE_CLEAR;

const char store_t_request_clear[] =
    "UPDATE @.\"third_party_integrations\" SET \"sync_requested_at\" = NULL,"
    " \"sync_request_full\" = false WHERE \"id\" = $1::uuid AND"
    " (extract(epoch from \"sync_requested_at\") * 1000000)::bigint <= $2::bigint";

const char store_t_find[] =
    "SELECT \"id\"::text, \"is_active\", \"sync_enabled\" FROM @.\"third_party_integrations\""
    " WHERE \"name\" = $1";

const char store_t_names[] =
    "SELECT coalesce(string_agg(\"name\", ', ' ORDER BY \"name\"), '')"
    " FROM @.\"third_party_integrations\" WHERE \"name\" LIKE 'kiotviet%'";

/* The run-now request. A pending full request stays full. The daemon clears both columns
 * after the run that served the request (ST_REQUEST_CLEAR). */
const char store_t_request[] =
    "UPDATE @.\"third_party_integrations\" SET \"sync_requested_at\" = now(),"
    " \"sync_request_full\" = \"sync_request_full\" OR $2::boolean WHERE \"id\" = $1::uuid"
    " RETURNING \"sync_requested_at\"::text";

const char store_t_notify[] = "SELECT pg_catalog.pg_notify('" STORE_NOTIFY_CHANNEL "', $1)";
const char store_t_listen[] = "LISTEN " STORE_NOTIFY_CHANNEL;
const char store_t_db_now[] = "SELECT (extract(epoch from pg_catalog.now()) * 1000000)::bigint";

/* Row level security with no policy (what the migration sets up) shows the integrations to
 * the table's owner and BYPASSRLS roles only; anyone else sees an empty table. $1: the
 * integrations' relation, schema-qualified -> the role the rows are hidden from, or no row. */
const char store_t_rls_hides[] =
    "SELECT current_user::text FROM pg_catalog.pg_class c, pg_catalog.pg_roles r"
    " WHERE c.oid = pg_catalog.to_regclass($1) AND r.rolname = current_user AND"
    " c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls OR"
    " (pg_catalog.pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity))";

/* ---- integration rows ------------------------------------------------------------------- */

static char *dup_or_null(PGresult *r, int i, int j)
{
    return PQgetisnull(r, i, j) ? NULL : kvs_strdup(PQgetvalue(r, i, j));
}

static int64_t i64_or_zero(PGresult *r, int i, int j)
{
    return PQgetisnull(r, i, j) ? 0 : strtoll(PQgetvalue(r, i, j), NULL, 10);
}

static bool bool_of(PGresult *r, int i, int j)
{
    return !PQgetisnull(r, i, j) && PQgetvalue(r, i, j)[0] == 't';
}
integ_row *integ_row_parse(PGresult *r, int i)
{
    integ_row *x = kvs_xcalloc(1, sizeof *x);
    x->id = dup_or_null(r, i, 0);
    x->name = dup_or_null(r, i, 1);
    x->api_url = dup_or_null(r, i, 2);
    x->token_url = dup_or_null(r, i, 3);
    x->client_id = dup_or_null(r, i, 4);
    x->client_secret = dup_or_null(r, i, 5);
    x->retailer = dup_or_null(r, i, 6);
    x->access_token = dup_or_null(r, i, 7);
    x->token_expires_us = i64_or_zero(r, i, 8);
    x->is_active = bool_of(r, i, 9);
    x->sync_enabled = bool_of(r, i, 10);
    x->last_sync_us = i64_or_zero(r, i, 11);
    x->interval_min = (int)i64_or_zero(r, i, 12);
    x->lease_owner = dup_or_null(r, i, 13);
    x->lease_live = bool_of(r, i, 14);
    x->products_cursor_us = i64_or_zero(r, i, 15);
    x->categories_cursor_us = i64_or_zero(r, i, 16);
    x->last_full_us = i64_or_zero(r, i, 17);
    x->consecutive_failures = (int)i64_or_zero(r, i, 18);
    x->requested_us = i64_or_zero(r, i, 19);
    x->request_full = bool_of(r, i, 20);
    x->creds_hash = dup_or_null(r, i, 21);
    return x;
}

void integ_row_hold_secrets(integ_row *x)
{
    if (x->secrets_held) return;
    x->secrets_held = true;
    if (x->client_secret) log_secret_add(x->client_secret);
    if (x->access_token) log_secret_add(x->access_token);
}

/* Frees a secret of the row, wiped; unregistered when the row's holder registered it (an
 * unregistered row must not take away another holder's registration of the same text). */
static void row_secret_free(char **slot, bool held)
{
    if (held) {
        log_secret_hold(slot, NULL);
        return;
    }
    if (*slot) explicit_bzero(*slot, strlen(*slot));
    free(*slot);
    *slot = NULL;
}

void integ_row_free(integ_row *x)
{
    if (!x) return;
    free(x->id);
    free(x->name);
    free(x->api_url);
    free(x->token_url);
    free(x->client_id);
    row_secret_free(&x->client_secret, x->secrets_held);
    free(x->retailer);
    row_secret_free(&x->access_token, x->secrets_held);
    free(x->lease_owner);
    free(x->creds_hash);
    free(x);
}
