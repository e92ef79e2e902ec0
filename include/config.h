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
#include <stdio.h>

#include "util.h"

#define KVS_EX_CONFIG 78 /* sysexits.h EX_CONFIG */
/* The installed configuration: every mode (daemon, --once, status, sync, ...) reads it when no
 * -c is given and it exists. */
#define KVS_DEFAULT_CONFIG "/etc/kiotviet-sync/kiotviet-sync.conf"
/* The service's user and group (systemd/kiotviet-sync.sysusers, created by make install). */
#define KVS_SERVICE_USER "kiotviet-sync"
#define KVS_MAPPING_KEYS 10

typedef struct kvs_config {
    char *path;                 /* the file it came from; NULL for built-in defaults */
    /* [database] */
    char *db_url;               /* libpq conninfo/URI; may hold a password: never logged */
    bool db_url_from_env;       /* DATABASE_URL was used */
    bool db_url_from_credential; /* the credential file database-url was used */
    char *db_schema;            /* schema of the shop's tables and ours, default "public" */
    char *db_pooler;            /* "auto" | "session" | "transaction" (see db.h, db_pooler) */
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
    int webhook_retention_days; /* processed kiotviet_webhook_events older than this go */
    double max_delete_ratio;    /* a full run's reconciliation marking more than this share of
                                   the integration's live products deleted is not applied */
    /* [kiotviet] */
    char *ca_file;              /* extra CA bundle for https (NULL = system) */
    int http_connect_timeout_s;
    int http_timeout_s;
    int max_page_bytes;         /* response size cap per page */
    char *allowed_hosts;        /* hosts token_url/api_url may name (kv_url_check); NULL = none */
    int max_retries;            /* per request, for transient failures */
    int retry_base_ms;          /* first retry waits about this long (with jitter) ... */
    int retry_cap_ms;           /* ... doubling per attempt up to this; base <= cap */
    /* [webhook], [metrics]: the HTTP listeners (httpd_listen_parse form; NULL = none) */
    char *webhook_listen;       /* POST /webhooks/<name>; also /metrics, /healthz unless ... */
    char *metrics_listen;       /* ... this separate listener serves them */
    /* [log] */
    int log_level;
    /* [mapping]: alias lists per jewellery column (NULL = defaults), and the branches whose
     * stock counts in inventory_value / stock (NULL = all). */
    char *mapping[KVS_MAPPING_KEYS];
    bool mapping_append[KVS_MAPPING_KEYS]; /* "key += ...": added to the built-in list */
    int mapping_line[KVS_MAPPING_KEYS];    /* line that set it (0 = not set), for messages */
    char *branches;
    int branches_line;
    char *price_book;     /* [mapping] price_book: an id (digits) or a name; NULL = basePrice */
    char *product_types;  /* [mapping] product_types: "2", "1,2"; NULL = every type */
    /* Set when others than root and this user could change the file (see config_load);
     * the caller logs it. */
    char *warning;
} kvs_config;

/* Column names accepted as [mapping] keys, in kvs_config.mapping order. */
extern const char *const config_mapping_keys[KVS_MAPPING_KEYS];

/* Loads path (NULL = defaults only, still honouring DATABASE_URL). Returns a new config or
 * NULL with err set. A file writable by every user is refused. */
kvs_config *config_load(const char *path, kvs_err *err);
/* The same; fallback_url is the URL when neither the file nor DATABASE_URL sets one. */
kvs_config *config_load_with_url(const char *path, const char *fallback_url, kvs_err *err);
/* What every mode loads: path, else KVS_DEFAULT_CONFIG when it exists, else defaults; the URL
 * from DATABASE_URL, else [database] url, else the service's credential (config_credential_read). */
kvs_config *config_load_service(const char *path, kvs_err *err);
/* KVS_DEFAULT_CONFIG when that file exists, else NULL. */
const char *config_default_path(void);
/* The credential file holding the database URL for the configuration at config_path (NULL =
 * the default): /etc/kiotviet-sync/database-url for kiotviet-sync.conf, DIR/NAME.database-url
 * for DIR/NAME.conf (a kiotviet-sync@NAME instance). A new string; caller frees. */
char *config_credential_path(const char *config_path);
/* Reads the database URL the service gets: $CREDENTIALS_DIRECTORY/database-url under systemd,
 * else config_credential_path(config_path). 0 with *url NULL when absent or empty. */
int config_credential_read(const char *config_path, char **url, kvs_err *err);
/* Prints the key table (section, key, default, range, reload or restart, meaning; tab-separated,
 * one key a line) for --print-keys and the documentation tests. */
void config_keys_print(FILE *f);
kvs_config *config_load_text(const char *text, size_t len, const char *name, kvs_err *err);
void config_free(kvs_config *c);
/* Writes into buf a comma-separated list of no-reload keys whose values differ; returns count. */
int config_diff_noreload(const kvs_config *old, const kvs_config *nw, char *buf, size_t cap);
/* Prints every key with its effective value (secrets masked) to stdout, for --check-config. */
void config_print(const kvs_config *c);

/* Reads a one-value secret file (a systemd credential such as database-url) into *out: a new
 * string without trailing white space (caller frees), NULL when the file is absent or empty.
 * Returns 0, or a negative errno with err set (unreadable; -EPERM: writable by every user).
 * The read buffer is wiped. */
int config_secret_file_read(const char *path, char **out, kvs_err *err);

#endif
