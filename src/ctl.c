/* Operator subcommands: `status` and `sync NAME` (run now). See ctl.h; what both share is here,
 * `status` in ctl_status.c, `sync NAME` in ctl_sync.c.
 *
 * Blocking libpq on purpose: these are one-shot commands with no event loop to keep
 * responsive, so plain PQexecParams is the simplest correct choice (the daemon itself never
 * blocks, see db.c). Only unnamed statements and autocommit, so they work through any pooler.
 * Times travel as epoch microseconds (0 = NULL) and relative times use the database's clock,
 * the clock last_sync_at and started_at were written with. */
#include "ctl.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "config.h"
#include "db.h"
#include "kvjson.h"
#include "store.h"
#include "util.h"
#include "ctl_int.h"

/* ---- connection ----------------------------------------------------------------------------- */

/* Loads the configuration like the service does (config_load_service): -c FILE, else the
 * installed file when it exists, else defaults; DATABASE_URL, else [database] url, else the
 * service's database-url credential. Returns NULL after printing why. */
kvs_config *ctl_config(const char *cmd, const char *path)
{
    kvs_err e;
    kvs_err_clear(&e);
    kvs_config *cfg = config_load_service(path, &e);
    if (!cfg) fprintf(stderr, "kiotviet-syncd %s: configuration error: %s\n", cmd, e.msg);
    if (cfg && cfg->warning) fprintf(stderr, "kiotviet-syncd %s: warning: %s\n", cmd, cfg->warning);
    return cfg;
}

PGconn *ctl_connect(const char *cmd, const kvs_config *cfg)
{
    /* libpq waits forever for a connection by default; the conninfo may still set its own. */
    char t[16];
    snprintf(t, sizeof t, "%d", cfg->db_connect_timeout_s);
    setenv("PGCONNECT_TIMEOUT", t, 0);
    kvs_err e;
    kvs_err_clear(&e);
    db_opts o = {
        .conninfo = cfg->db_url,
        .application_name = CTL_APP_NAME,
        .statement_timeout_ms = (long)cfg->db_statement_timeout_s * 1000,
    };
    PGconn *pg = db_connect_blocking_opts(&o, &e);
    if (!pg) {
        fprintf(stderr, "kiotviet-syncd %s: %s\n", cmd, e.msg);
        if (strstr(e.msg, "password authentication failed") ||
            strstr(e.msg, "Tenant or user not found"))
            fprintf(stderr, "  (check the user and password in [database] url: with Supabase's "
                            "pooler the user is postgres.<project ref>; URL-encode special "
                            "characters. The daemon waits minutes between login attempts while "
                            "they fail, so the server does not ban this address; after fixing, "
                            "reload it. See README, Troubleshooting)\n");
        return NULL;
    }
    return pg;
}

/* The pooler line of `status`: what this host's connection goes through, as the daemon
 * (with [database] pooler = auto) finds it too. */
const char *ctl_path_name(enum db_path p)
{
    switch (p) {
    case DB_PATH_DIRECT: return "none";
    case DB_PATH_SESSION: return "session";
    case DB_PATH_TRANSACTION: return "transaction";
    default: return "unknown";
    }
}

/* Runs one statement; on error prints it and returns NULL. Caller PQclears. */
PGresult *ctl_query(const char *cmd, PGconn *pg, const char *sql, int n,
                    const char *const *params)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    char msg[600];
    snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
    msg[strcspn(msg, "\n")] = '\0';
    fprintf(stderr, "kiotviet-syncd %s: database error: %s\n", cmd, msg);
    if (strstr(msg, "does not exist"))
        fprintf(stderr, "  (has db/migrations/add_kiotviet_integration.sql been applied to this "
                        "database and [database] schema?)\n");
    PQclear(r);
    return NULL;
}

long daemons_connected(PGconn *pg)
{
    char *sql = store_sql_build("", ST_CTL_DAEMONS);
    const char *p[1] = {DAEMON_APP_NAME};
    PGresult *r = PQexecParams(pg, sql, 1, NULL, p, NULL, NULL, 0);
    free(sql);
    long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

/* Supabase API roles that can read products' sensitive columns (store_exposed_sql): their
 * result (caller PQclears), or NULL when the query failed (status goes on without it). */
PGresult *exposed_columns(PGconn *pg, const char *schema)
{
    const char *p[1] = {schema};
    PGresult *r = PQexecParams(pg, store_exposed_sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) return r;
    PQclear(r);
    return NULL;
}

/* Row level security with no policy (what the migration sets up) shows the integrations to
 * the table's owner and BYPASSRLS roles only; anyone else sees an empty table, which looks
 * like a missing migration. Returns the role the rows are hidden from, or NULL. */
char *rls_hides_rows(PGconn *pg, const char *schema_q)
{
    char *sql = store_sql_build(schema_q, ST_CTL_RLS_HIDES);
    char *rel = kvs_xmalloc(strlen(schema_q) + 32);
    sprintf(rel, "%s.\"third_party_integrations\"", schema_q);
    const char *p[1] = {rel};
    PGresult *r = PQexecParams(pg, sql, 1, NULL, p, NULL, NULL, 0);
    char *role = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                     ? kvs_strdup(PQgetvalue(r, 0, 0))
                     : NULL;
    PQclear(r);
    free(rel);
    free(sql);
    return role;
}

void rls_explain(FILE *f, const char *role)
{
    fprintf(f, "row level security hides third_party_integrations from role %s: connect as the "
               "table's owner (postgres on Supabase) or a role with BYPASSRLS, or add a policy "
               "for %s (see README, Troubleshooting)\n",
            role, role);
}

/* ---- sync_logs rows ------------------------------------------------------------------------- */

void run_log_parse(PGresult *r, int row, int c0, run_log *l)
{
    memset(l, 0, sizeof *l);
    if (PQgetisnull(r, row, c0 + STORE_LC_ID)) return;
    l->present = true;
    l->id = strtoll(PQgetvalue(r, row, c0 + STORE_LC_ID), NULL, 10);
    l->status = PQgetvalue(r, row, c0 + STORE_LC_STATUS);
    l->type = PQgetvalue(r, row, c0 + STORE_LC_TYPE);
    l->started_us = i64(r, row, c0 + STORE_LC_STARTED);
    l->completed_us = i64(r, row, c0 + STORE_LC_COMPLETED);
    for (int i = 0; i < 5; i++) {
        l->p[i] = (int)i64(r, row, c0 + STORE_LC_COUNTS + i);
        l->c[i] = (int)i64(r, row, c0 + STORE_LC_COUNTS + 5 + i);
    }
    l->requests = (int)i64(r, row, c0 + STORE_LC_REQUESTS);
    l->error = val(r, row, c0 + STORE_LC_ERROR);
    l->daemon_id = val(r, row, c0 + STORE_LC_DAEMON);
}

double run_log_seconds(const run_log *l, int64_t now_us)
{
    int64_t end = l->completed_us ? l->completed_us : now_us;
    return (double)(end - l->started_us) / 1e6;
}

/* A copy of a text from the database fit for a terminal (caller frees; NULL for NULL): control
 * characters, DEL and the C1 controls (ESC or CSI start the sequences that retitle, rewrite or
 * query a terminal) shown as \xNN; bytes that are not UTF-8 as '?'. Integration names, errors
 * and lease owners are anyone-with-write-access's text. */
char *term_text(const char *s)
{
    if (!s) return NULL;
    char *clean = kvs_strdup(s);
    kvs_utf8_clean(clean);
    kvs_buf b;
    kvs_buf_init(&b);
    for (const unsigned char *p = (const unsigned char *)clean; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            REQUIRE(kvs_buf_printf(&b, "\\x%02x", *p) == 0);
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) /* U+0080..U+009F */
            REQUIRE(kvs_buf_printf(&b, "\\u%04x", *++p) == 0);
        else
            REQUIRE(kvs_buf_append(&b, p, 1) == 0);
    }
    free(clean);
    if (!b.data) return kvs_strdup("");
    return kvs_buf_steal(&b);
}

/* The same wording as `--once` prints (main.c once_print). */
void run_log_print_line(FILE *f, const char *name, const run_log *l)
{
    fprintf(f,
            "%s: %s (%s, run %lld, %.1f s): categories %d synced (%d new, %d changed, %d failed, "
            "%d removed); products %d synced (%d new, %d changed, %d failed, %d removed); "
            "%d requests",
            name, l->status, l->type, l->id, run_log_seconds(l, l->completed_us), l->c[0], l->c[1],
            l->c[2], l->c[3], l->c[4], l->p[0], l->p[1], l->p[2], l->p[3], l->p[4], l->requests);
    if (l->error) fprintf(f, ": %s", l->error);
    fprintf(f, "\n");
}

/* ---- dispatch ------------------------------------------------------------------------------- */

bool ctl_is_command(const char *arg)
{
    return arg && (!strcmp(arg, "status") || !strcmp(arg, "sync") || !strcmp(arg, "webhooks"));
}

int ctl_main(int argc, char **argv)
{
    REQUIRE(argc >= 1 && ctl_is_command(argv[0]));
    if (!strcmp(argv[0], "webhooks")) return ctl_webhooks(argc, argv);
    return !strcmp(argv[0], "status") ? ctl_status(argc, argv) : ctl_sync(argc, argv);
}

/* ---- usage errors --------------------------------------------------------------------------- */

/* Where each option belongs, for usage errors that say where a misplaced option goes. */
static const struct {
    const char *opt, *home;
} option_homes[] = {
    {"--once", "kiotviet-syncd [-c FILE] --once [--full] [--only NAME]"},
    {"--only", "kiotviet-syncd [-c FILE] --once --only NAME (or --explain-product CODE --only NAME)"},
    {"--explain-product", "kiotviet-syncd [-c FILE] --explain-product CODE [--only NAME]"},
    {"--check-config", "kiotviet-syncd [-c FILE] --check-config [--as-service]"},
    {"--as-service", "sudo kiotviet-syncd [-c FILE] --check-config|--once|--explain-product CODE "
                     "--as-service"},
    {"--print-keys", "kiotviet-syncd --print-keys"},
    {"--allow-root", "kiotviet-syncd [-c FILE] [--once] --allow-root"},
    {"--json", "kiotviet-syncd [-c FILE] status --json"},
    {"--timeout", "kiotviet-syncd [-c FILE] sync NAME --timeout S"},
    {"--full", "kiotviet-syncd [-c FILE] --once --full, or kiotviet-syncd [-c FILE] sync NAME --full"},
    {"status", "kiotviet-syncd [-c FILE] status [--json] (the subcommand comes first, after -c)"},
    {"sync", "kiotviet-syncd [-c FILE] sync NAME [--full] [--timeout S] (the subcommand comes "
             "first, after -c)"},
    {"--url", "kiotviet-syncd [-c FILE] webhooks register NAME --url https://HOST/webhooks/NAME"},
};

int cli_usage_error(const char *cmd, const char *arg, bool missing_value)
{
    const char *who = cmd ? cmd : "";
    const char *home = NULL;
    size_t n = strcspn(arg ? arg : "", "=");
    for (size_t i = 0; arg && i < ARRAY_SIZE(option_homes); i++)
        if (strlen(option_homes[i].opt) == n && !strncmp(option_homes[i].opt, arg, n))
            home = option_homes[i].home;
    /* The argument is the operator's own text, not configuration: it is repeated. */
    if (missing_value)
        fprintf(stderr, "kiotviet-syncd%s%s: %s needs a value\n", *who ? " " : "", who, arg);
    else if (arg && *arg == '-')
        fprintf(stderr, "kiotviet-syncd%s%s: %s is not an option here\n", *who ? " " : "", who,
                arg);
    else
        fprintf(stderr, "kiotviet-syncd%s%s: unexpected argument '%s'\n", *who ? " " : "", who,
                arg ? arg : "");
    if (home && !missing_value) fprintf(stderr, "  it goes: %s\n", home);
    fprintf(stderr, "  see kiotviet-syncd --help%s%s%s\n", *who ? ", kiotviet-syncd " : "", who,
            *who ? " --help" : "");
    return EX_USAGE_CODE;
}
