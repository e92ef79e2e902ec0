/* store: every SQL statement the daemon and its CLI send, and the discovery of the shop's
 * tables. One room per subject: store.c (discovery: the shop's columns chosen for the mapped
 * fields), store_gen.c (the catalogue's page upserts, removals, reconciliation, relinks, stock
 * updates, generated from that choice; store_cat.h their shared types), store_depth.c
 * (migration 005's branches, stock by branch, serials), store_lease.c (integrations, claims,
 * leases, tokens, run-now requests, integ_row), store_status.c (sync_logs, the status and sync
 * subcommands' reports), store_webhook.c (the webhook inbox), store_sql.c (the statement table
 * and the one schema substitution; identifiers are quoted by db_quote_ident). Callers hold no
 * SQL text; they pick a statement and send it through db.c (the daemon) or blocking libpq
 * (ctl*.c, explain.c). All values are parameters.
 * Ownership: a store owns every statement text it hands out (store_sql and the store_*_sql
 * getters return borrowed pointers, valid until store_free); store_sql_build's result and
 * integ_row_parse's row are the caller's to free.
 *
 * The shop's `products` and `categories` are not ours: at start the daemon reads their columns
 * from pg_catalog (store_discover_sql), decides which logical fields land in which column
 * (sku or code, images as text[] / jsonb / text, is_active present or not, ...), checks that
 * every NOT NULL column without a default is one it fills, and generates the page upserts once.
 * Every page write carries the run's lease check, so a run whose lease was taken over writes
 * nothing (writer.c sends them; sync.c sends the integration-level statements). The lease
 * predicates (free to claim, live) are written once (src/store_int.h). Left outside: db.c's
 * own session set-up (search_path, the pooler probe), which belongs to the wire. */
#ifndef KVS_STORE_H
#define KVS_STORE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "mapping.h"
#include "util.h"

typedef struct store store;

/* SQL that lists the columns of the shop's and our tables in `schema` ($1). */
extern const char store_discover_sql[];
/* SQL ($1 schema) -> one row (role, columns) per Supabase API role (anon, authenticated) that
 * can read columns of products the daemon fills but a shop should not publish:
 * inventory_value (on hand x cost: the cost price), supplier_id, serial_number; columns is a
 * comma-separated list. No row: none readable (or no such roles). See
 * db/migrations/optional_hide_sensitive_columns.sql. */
extern const char store_exposed_sql[];
#define STORE_EXPOSED_HINT                                                                      \
    "the shop's public API keys can read the cost price and more: see README, Supabase, "      \
    "db/migrations/optional_hide_sensitive_columns.sql"

/* Builds the store from the discovery result. Returns NULL with err naming the problem (a
 * missing table, a missing migration column, a NOT NULL column the daemon cannot fill). Each
 * column the daemon would fill but the shop lacks is listed in *warnings (caller frees). */
store *store_new(const char *schema, PGresult *discovery, char **warnings, kvs_err *err);
void store_free(store *s);
/* A one-line account of the mapping, e.g. "products: code->sku, images->images(text[]) ...". */
const char *store_describe(const store *s);
/* The schema as quoted in this store's statements (borrowed from s). */
const char *store_schema_quoted(const store *s);
bool store_products_have_is_active(const store *s);
/* The webhook inbox kiotviet_webhook_events exists (db/migrations/004_webhooks.sql applied). */
bool store_has_inbox(const store *s);
/* The column stock lands in holds whole numbers (smallint, integer, bigint). */
bool store_products_stock_integer(const store *s);

/* SQL condition: the lease holder's database session is known (sync_lease_backend_pid, see
 * db/migrations/001_lease_session.sql) and gone from pg_stat_activity: the holder died (kill -9,
 * power loss) and its lease may be taken over before it expires. Unknown (NULL: behind a
 * pooler, or between a claim and the run's first renewal) means alive until the lease expires.
 * The column is unqualified: third_party_integrations must be the only table with it in scope. */
#define STORE_LEASE_HOLDER_GONE                                                                 \
    "(\"sync_lease_backend_pid\" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"                    \
    " pg_catalog.pg_stat_activity a WHERE a.\"pid\" = \"sync_lease_backend_pid\"))"

/* One integration as read from third_party_integrations. All strings owned. */
typedef struct integ_row {
    char *id;               /* uuid text */
    char *name;
    char *api_url, *token_url, *client_id, *client_secret, *retailer;
    char *access_token;     /* secret */
    int64_t token_expires_us;   /* 0 = none */
    bool is_active, sync_enabled;
    int64_t last_sync_us;       /* 0 = never */
    int interval_min;
    char *lease_owner;
    bool lease_live;            /* leased by someone and not expired */
    int64_t products_cursor_us, categories_cursor_us, last_full_us; /* 0 = none */
    int consecutive_failures;
    int64_t requested_us;       /* sync_requested_at, 0 = none */
    bool request_full;
    char *creds_hash;           /* STORE_CREDS_HASH_SQL of the row as read */
    bool secrets_held;          /* integ_row_hold_secrets was called */
} integ_row;

/* The credentials a token is issued for, as one SQL expression over the row (t: "" or an
 * alias with its dot): the hex SHA-256 of [token_url, client_id, client_secret, retailer]. A
 * stored token counts only while third_party_integrations.token_credentials_hash equals it:
 * changing any of the four drops the token (issue 17). */
#define STORE_CREDS_HASH_SQL(t)                                                                 \
    "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.jsonb_build_array("   \
    t "\"token_url\", " t "\"client_id\", " t "\"client_secret\", " t "\"retailer\")::text,"    \
    " 'UTF8')), 'hex')"
#define STORE_TOKEN_VALID_SQL(t)                                                                \
    "coalesce(" t "\"token_credentials_hash\" = " STORE_CREDS_HASH_SQL(t) ", false)"

/* Frees r and its strings (secrets wiped first; unregistered if r held them). */
void integ_row_free(integ_row *r);
/* Parses row i of a result of ST_LIST / ST_LIST_NOW / ST_CLAIM; returns a new row, caller frees.
 * Parsing registers nothing with the log redactor: a holder that keeps the row while it logs
 * (a run, --explain-product) calls integ_row_hold_secrets, and integ_row_free unregisters. */
integ_row *integ_row_parse(PGresult *res, int i);
/* Registers r's client_secret and access_token with the log redactor (log_secret_add) for as
 * long as r lives; once per row. */
void integ_row_hold_secrets(integ_row *r);

/* Integration-level statements, schema-qualified for this store. Parameters in order:
 * ST_LIST            -> integrations named kiotviet or kiotviet*, columns for integ_row_parse
 * ST_CLAIM           $1 id, $2 owner, $3 lease seconds -> the claimed row, or no row (free,
 *                    expired, ours, or its holder's session gone: STORE_LEASE_HOLDER_GONE)
 * ST_RENEW           $1 id, $2 owner, $3 lease seconds, $4 the client's idea of its backend
 *                    pid (db_conn_backend_pid; recorded only when the server agrees, so never
 *                    a pooler's) -> one row while the lease is held
 * ST_LEASE_HOLDER    $1 id -> owner, expiry (UTC text), ms left, holder's session gone
 * ST_RELEASE         $1 id, $2 owner
 * ST_LOG_START       $1 integration id, $2 sync_type, $3 daemon id -> sync_logs.id
 * ST_LOG_PROGRESS    $1 log id, $2 counts (json object with the sync_logs count columns)
 * ST_LOG_FINISH      $1 log id, $2 status, $3 counts json, $4 error_message, $5 error_details
 * ST_LOG_ABANDONED   closes 'running' logs whose integration lease is gone -> count
 * ST_TOKEN_SAVE      $1 id, $2 owner, $3 access token, $4 expiry (epoch seconds), $5 the
 *                    row's creds_hash (nothing saved when the credentials changed since)
 * ST_FINISH          $1 id, $2 owner, $3 products cursor or NULL (keep), $4 categories cursor
 *                    or NULL, $5 full run (bool): success; resets failures, releases the lease
 * ST_FAIL            $1 id, $2 owner: failure count + 1, releases the lease
 * ST_LOG_PRUNE       $1 days -> count deleted
 * ST_REQUEST_CLEAR   $1 id, $2 requested_at seen (epoch us text): clears a run-now request
 * ST_ANY_PRODUCTS    -> true when any product row has a kiotviet_id (else a full run's
 *                    reconciliation has nothing to mark: every such row is one it wrote)
 * ST_BRANCHES_SINCE  $1 id, $2 minutes -> (the newest kiotviet_branches.kiotviet_modified_at
 *                    the integration stored (epoch us, NULL: none): the branches' cursor,
 *                    whether its branches_read_at is $2 minutes old or NULL)
 * ST_BRANCHES_READ   $1 id, $2 lease owner: branches_read_at = now()
 * The scheduler's:
 * ST_LIST_NOW        ST_LIST with the database's now() (epoch us) as a last column
 * ST_CLAIM_DUE       $1 id, $2 owner, $3 lease seconds, $4 last_sync_at seen (epoch us), $5 our
 *                    backend pid -> (claimed 0/1, last_sync_at us, ms the other's lease runs,
 *                    enabled, now us): claims only a due, enabled, free integration
 * ST_LISTEN          listens on STORE_NOTIFY_CHANNEL
 * ST_DB_NOW          -> the database's now() (epoch us): a run's clock, read with its claim
 * The CLI's (ctl.c; blocking, unnamed):
 * ST_CTL_STATUS      -> one row per kiotviet* integration, columns STORE_IC_* below
 * ST_CTL_DAEMONS     $1 application_name -> how many sessions of daemons are connected
 * ST_CTL_FIND        $1 name -> id, is_active, sync_enabled
 * ST_CTL_NAMES       -> the kiotviet* names, comma-separated
 * ST_CTL_REQUEST     $1 id, $2 full (bool): the run-now request -> sync_requested_at text
 * ST_CTL_NOTIFY      $1 payload: tells a listening daemon
 * ST_CTL_POLL        $1 id, $2 requested at -> (request pending us, now us, STORE_LC_* of the
 *                    newest run started since, or NULLs)
 * ST_CTL_RLS_HIDES   $1 the integrations' relation, schema-qualified -> the role row level
 *                    security hides its rows from, or no row
 * The webhook listener's (store_webhook.c; migration 004):
 * ST_WEBHOOK_FIND    $1 name -> id, webhook_secret ('' when none) of an active, sync-enabled
 *                    kiotviet* integration, or no row
 * ST_WEBHOOK_STORE   $1 integration id, $2 event id, $3 attempt, $4 types, $5 body -> the new
 *                    inbox row's id, or no row when that event id is stored already
 * ST_WEBHOOK_CHECK   $1 schema name -> (inbox table exists, webhook_secret column exists)
 * ST_HEALTH          -> one row: the database answers
 * The webhook inbox's (src/store_inbox.c; kiotviet_webhook_events, see store_has_inbox):
 * ST_INBOX_READ      $1 id, $2 limit -> (id, body, types, received_at us) of its unprocessed
 *                    events, oldest first
 * ST_INBOX_VERSIONS  $1 bigint[] product kiotviet ids -> (kiotviet_id, kiotviet_modified_at us)
 * ST_INBOX_STOCK     $1 bigint[] product kiotviet ids -> their kiotviet_product_stock rows
 *                    (product, branch, on_hand text, reserved text)
 * ST_INBOX_MARK      $1 id, $2 json [{"id","result"}], $3 lease owner: marks them processed
 * ST_INBOX_PRUNE     $1 id, $2 days: deletes processed events older than that -> count
 * ST_INBOX_PENDING   -> integration ids with unprocessed events
 * ST_CTL_WEBHOOK_SECRET $1 id, $2 secret: sets third_party_integrations.webhook_secret */
enum store_stmt {
    ST_LIST,
    ST_CLAIM,
    ST_RENEW,
    ST_LEASE_HOLDER,
    ST_RELEASE,
    ST_LOG_START,
    ST_LOG_PROGRESS,
    ST_LOG_FINISH,
    ST_LOG_ABANDONED,
    ST_TOKEN_SAVE,
    ST_FINISH,
    ST_FAIL,
    ST_LOG_PRUNE,
    ST_REQUEST_CLEAR,
    ST_ANY_PRODUCTS,
    ST_BRANCHES_SINCE,
    ST_BRANCHES_READ,
    ST_LIST_NOW,
    ST_CLAIM_DUE,
    ST_LISTEN,
    ST_DB_NOW,
    ST_CTL_STATUS,
    ST_CTL_DAEMONS,
    ST_CTL_FIND,
    ST_CTL_NAMES,
    ST_CTL_REQUEST,
    ST_CTL_NOTIFY,
    ST_CTL_POLL,
    ST_CTL_RLS_HIDES,
    ST_WEBHOOK_FIND,
    ST_WEBHOOK_STORE,
    ST_WEBHOOK_CHECK,
    ST_HEALTH,
    ST_INBOX_READ,
    ST_INBOX_VERSIONS,
    ST_INBOX_STOCK,
    ST_INBOX_MARK,
    ST_INBOX_PRUNE,
    ST_INBOX_PENDING,
    ST_CTL_WEBHOOK_SECRET,
    ST__COUNT
};
/* The statement for this store's schema: built with the store (store_new), borrowed from it,
 * valid as long as s (a run keeps its generation's store alive until it ends). */
const char *store_sql(const store *s, enum store_stmt which);
/* The statement for a schema quoted by db_quote_ident, without a store (the CLI): a new string,
 * caller frees. */
char *store_sql_build(const char *schema_q, enum store_stmt which);
/* What the operator runs to enable integration '%s' (printed, never sent). */
#define STORE_ENABLE_HINT                                                                       \
    "UPDATE third_party_integrations SET is_active = true, sync_enabled = true WHERE name = '%s'"

/* The channel `kiotviet-syncd sync NAME` notifies after writing a run-now request: a listening
 * daemon re-reads the integrations at once instead of at its next poll. */
#define STORE_NOTIFY_CHANNEL "kiotviet_sync"

/* Columns of one sync_logs row in ST_CTL_STATUS and ST_CTL_POLL (LC_COUNTS: the ten counts of
 * sync_logs, products then categories: synced, created, updated, failed, deactivated). */
enum { STORE_LC_ID, STORE_LC_STATUS, STORE_LC_TYPE, STORE_LC_STARTED, STORE_LC_COMPLETED,
       STORE_LC_COUNTS, STORE_LC_REQUESTS = STORE_LC_COUNTS + 10, STORE_LC_ERROR,
       STORE_LC_DAEMON, STORE_LC__COUNT };
/* Columns of ST_CTL_STATUS: the integration, then its running run, its last finished run
 * (STORE_LC_* each) and the product count of its last good full read. */
enum { STORE_IC_ID, STORE_IC_NAME, STORE_IC_DISPLAY, STORE_IC_RETAILER, STORE_IC_ACTIVE,
       STORE_IC_ENABLED, STORE_IC_INTERVAL, STORE_IC_LAST_SYNC, STORE_IC_FAILURES,
       STORE_IC_TOKEN_EXP, STORE_IC_HAS_TOKEN, STORE_IC_CREDS_OK, STORE_IC_LEASE_OWNER,
       STORE_IC_LEASE_EXP, STORE_IC_LEASE_LIVE, STORE_IC_REQUESTED, STORE_IC_REQUEST_FULL,
       STORE_IC_LAST_FULL, STORE_IC_NOW, STORE_IC_RUNNING,
       STORE_IC_LAST = STORE_IC_RUNNING + STORE_LC__COUNT,
       STORE_IC_ESTIMATE = STORE_IC_LAST + STORE_LC__COUNT, STORE_IC__COUNT };

/* Page upserts for the discovered schema. Parameters: $1 rows json, $2 integration id,
 * $3 lease owner, $4 lease seconds. Result: one row (lease_ok, inserted, updated). */
const char *store_products_upsert_sql(const store *s);
const char *store_categories_upsert_sql(const store *s);
/* The same upserts without the prefilter that skips unchanged rows before the INSERT: cheaper
 * (~6% of the server's CPU per page) when the rows are new, as in a first sync; for a row that
 * exists ON CONFLICT ... WHERE still writes only a change, but locks the row to compare it. */
const char *store_products_insert_sql(const store *s);
const char *store_categories_insert_sql(const store *s);
/* $1 bigint[] text ("{1,2}"), $2..$4 as above -> (lease_ok, n) */
const char *store_products_remove_sql(const store *s);
const char *store_categories_remove_sql(const store *s);
/* Reconciliation: mark this integration's synced rows NOT in $1 (bigint[]) deleted, if they
 * are at most $5 (a share, float text; NULL = no limit) of its live (not deleted) rows.
 * -> (lease_ok, n, others, would, live): others 1 when another integration has run, so rows
 * without an owner were left alone (without the owner column: nothing was reconciled); would
 * how many rows it marks or (n = 0, would > $5 x live) would have marked. */
const char *store_products_reconcile_sql(const store *s);
/* Re-links categories' parents and products' categories from the kiotviet_* ids. $2..$4 as
 * above. NULL when the shop has no such column. */
const char *store_categories_relink_sql(const store *s);
const char *store_products_relink_sql(const store *s);
/* Migration 005's branches (the run's /branches phase): the page upsert and the removal of
 * removedIds (is_active false), parameters as the products' ones. A products page upsert also
 * writes the page's kiotviet_product_stock and kiotviet_product_serials rows. */
const char *store_branches_upsert_sql(const store *s);
const char *store_branches_remove_sql(const store *s);
/* WRITER_STOCK's page ($1 map_stock rows, $2..$4 as above): writes the named products'
 * kiotviet_product_stock rows (as a products page does), then sets their stock column and
 * inventory_value, each only where it changes, and marks them synced; never inserts a product,
 * never touches other columns (kiotviet_modified_at is the product's, not its stock's). A row
 * without inv_value (/productOnHands sends no cost) keeps the stored value per unit: value x
 * new stock / old stock, 0 at no stock, NULL (unknown) when there was no stock to take it from.
 * Products the shop does not hold are left alone. -> (lease_ok, 0, products updated). */
const char *store_stock_update_sql(const store *s);

#endif
