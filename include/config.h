/* Configuration: an INI file (see config/kiotviet-sync.conf), declared once in a key table.
 *
 * config_load parses into a NEW object and validates it completely; on any error it returns
 * -EINVAL with "file:line: [section] key: why" in err and the caller keeps whatever config it
 * had (reload keeps the old one). DATABASE_URL in the environment overrides [database] url.
 * Keys marked no-reload in the table only take effect at start; config_diff_noreload names
 * the ones a reload tried to change. */
#ifndef KVS_CONFIG_H
#define KVS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define KVS_EX_CONFIG 78 /* sysexits.h EX_CONFIG */
#define KVS_MAPPING_KEYS 10

typedef struct kvs_config {
    char *path;                 /* the file it came from; NULL for built-in defaults */
    /* [database] */
    char *db_url;               /* libpq conninfo/URI; may hold a password: never logged */
    bool db_url_from_env;       /* DATABASE_URL was used */
    char *db_schema;            /* schema of the shop's tables and ours, default "public" */
    int db_connect_timeout_s;
    int db_statement_timeout_s;
    /* [sync] */
    int max_concurrent_runs;    /* runs in flight across all integrations */
    int page_size;              /* KiotViet pageSize, 1..100 */
    int pages_in_flight;        /* concurrent page requests per run */
    int store_connections;      /* database connections a run writes pages through */
    int overlap_minutes;        /* incremental window reaches back this far before the cursor */
    int lease_seconds;          /* integration lease; renewed every third of it */
    int hourly_get_budget;      /* per integration, below KiotViet's 5000/h */
    int reconcile_hours;        /* full reconciliation period; 0 = never */
    int token_margin_s;         /* refresh tokens this long before they expire */
    int poll_interval_s;        /* re-read integrations this often */
    int grace_period_s;         /* on SIGTERM, in-flight runs get this long */
    int log_retention_days;     /* sync_logs older than this are deleted; 0 = keep */
    int max_backoff_minutes;    /* cap for a failing integration's growing interval */
    /* [kiotviet] */
    char *ca_file;              /* extra CA bundle for https (NULL = system) */
    int http_connect_timeout_s;
    int http_timeout_s;
    int max_page_bytes;         /* response size cap per page */
    int max_retries;            /* per request, for transient failures */
    int retry_base_ms;          /* first retry waits about this long (with jitter) ... */
    int retry_cap_ms;           /* ... doubling per attempt up to this; base <= cap */
    /* [log] */
    int log_level;
    /* [mapping]: alias lists per jewellery column (NULL = defaults), and the branches whose
     * stock counts in inventory_value / stock (NULL = all). */
    char *mapping[KVS_MAPPING_KEYS];
    char *branches;
} kvs_config;

/* Column names accepted as [mapping] keys, in kvs_config.mapping order. */
extern const char *const config_mapping_keys[KVS_MAPPING_KEYS];

/* Loads path (NULL = defaults only, still honouring DATABASE_URL). Returns a new config or
 * NULL with err set. */
kvs_config *config_load(const char *path, kvs_err *err);
/* The same from INI text in memory (len bytes; name is used in messages; the result's path is
 * NULL). For tests and the fuzz target. */
kvs_config *config_load_text(const char *text, size_t len, const char *name, kvs_err *err);
void config_free(kvs_config *c);
/* Writes into buf a comma-separated list of no-reload keys whose values differ; returns count. */
int config_diff_noreload(const kvs_config *old, const kvs_config *nw, char *buf, size_t cap);
/* Prints every key with its effective value (secrets masked) to stdout, for --check-config. */
void config_print(const kvs_config *c);

/* Reads a one-value secret file (a systemd credential such as database-url): a new string
 * without trailing white space (caller frees), or NULL when the file is absent or empty. The
 * read buffer is wiped. */
char *config_secret_file_read(const char *path);

#endif
