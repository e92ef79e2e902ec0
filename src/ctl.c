/* Operator subcommands: `status` and `sync NAME` (run now). See ctl.h.
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

#define EX_USAGE_CODE 64
#define CTL_APP_NAME "kiotviet-syncd ctl"
#define DAEMON_APP_NAME "kiotviet-syncd control" /* the scheduler's control connection */
#define SYNC_POLL_MS 300
#define SYNC_DEFAULT_TIMEOUT_S 900

/* ---- small helpers -------------------------------------------------------------------------- */

static const char *val(PGresult *r, int row, int col) /* NULL for SQL NULL; borrowed from r */
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int64_t i64(PGresult *r, int row, int col)
{
    const char *v = val(r, row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

static bool boolv(PGresult *r, int row, int col)
{
    const char *v = val(r, row, col);
    return v && v[0] == 't';
}

/* "2024-05-01T03:00:03.250000Z" (UTC), for --json. */
static void fmt_iso(int64_t us, char *buf, size_t cap)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char s[32];
    strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%06dZ", s, (int)(us % 1000000));
}

/* "2024-05-01 10:00:03 +0700" in the local time zone, for people. */
static void fmt_local(int64_t us, char *buf, size_t cap)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S %z", &tm);
}

/* A duration for people: "42 s", "12 min", "3 h 05 min", "2 d 4 h". */
static void fmt_span(int64_t us, char *buf, size_t cap)
{
    int64_t s = (us < 0 ? -us : us) / 1000000;
    if (s < 120)
        snprintf(buf, cap, "%" PRId64 " s", s);
    else if (s < 3600)
        snprintf(buf, cap, "%" PRId64 " min", s / 60);
    else if (s < 86400 * 2)
        snprintf(buf, cap, "%" PRId64 " h %02" PRId64 " min", s / 3600, s / 60 % 60);
    else
        snprintf(buf, cap, "%" PRId64 " d %" PRId64 " h", s / 86400, s / 3600 % 24);
}

/* "2024-05-01 10:00:03 +0700 (in 48 min)" or "(12 min ago)". */
static void fmt_when(int64_t us, int64_t now_us, char *buf, size_t cap)
{
    char at[40], span[40];
    fmt_local(us, at, sizeof at);
    fmt_span(us - now_us, span, sizeof span);
    snprintf(buf, cap, "%s (%s%s%s)", at, us >= now_us ? "in " : "", span,
             us >= now_us ? "" : " ago");
}

static void json_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static void json_time(cJSON *o, const char *k, int64_t us)
{
    char b[40];
    if (!us) {
        cJSON_AddNullToObject(o, k);
        return;
    }
    fmt_iso(us, b, sizeof b);
    cJSON_AddStringToObject(o, k, b);
}

/* ---- connection ----------------------------------------------------------------------------- */

/* Loads the configuration like the service does (config_load_service): -c FILE, else the
 * installed file when it exists, else defaults; DATABASE_URL, else [database] url, else the
 * service's database-url credential. Returns NULL after printing why. */
static kvs_config *ctl_config(const char *cmd, const char *path)
{
    kvs_err e;
    kvs_err_clear(&e);
    kvs_config *cfg = config_load_service(path, &e);
    if (!cfg) fprintf(stderr, "kiotviet-syncd %s: configuration error: %s\n", cmd, e.msg);
    if (cfg && cfg->warning) fprintf(stderr, "kiotviet-syncd %s: warning: %s\n", cmd, cfg->warning);
    return cfg;
}

static PGconn *ctl_connect(const char *cmd, const kvs_config *cfg)
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
static const char *ctl_path_name(enum db_path p)
{
    switch (p) {
    case DB_PATH_DIRECT: return "none";
    case DB_PATH_SESSION: return "session";
    case DB_PATH_TRANSACTION: return "transaction";
    default: return "unknown";
    }
}

/* Runs one statement; on error prints it and returns NULL. Caller PQclears. */
static PGresult *ctl_query(const char *cmd, PGconn *pg, const char *sql, int n,
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

static long daemons_connected(PGconn *pg)
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
static PGresult *exposed_columns(PGconn *pg, const char *schema)
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
static char *rls_hides_rows(PGconn *pg, const char *schema_q)
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

static void rls_explain(FILE *f, const char *role)
{
    fprintf(f, "row level security hides third_party_integrations from role %s: connect as the "
               "table's owner (postgres on Supabase) or a role with BYPASSRLS, or add a policy "
               "for %s (see README, Troubleshooting)\n",
            role, role);
}

/* ---- sync_logs rows ------------------------------------------------------------------------- */

typedef struct run_log {
    bool present;
    long long id;
    const char *status, *type;   /* borrowed from the PGresult */
    int64_t started_us, completed_us;
    int p[5], c[5];              /* synced, created, updated, failed, deactivated */
    int requests;
    const char *error, *daemon_id; /* borrowed, NULL = none */
} run_log;

static void run_log_parse(PGresult *r, int row, int c0, run_log *l)
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

static double run_log_seconds(const run_log *l, int64_t now_us)
{
    int64_t end = l->completed_us ? l->completed_us : now_us;
    return (double)(end - l->started_us) / 1e6;
}

/* A copy of a text from the database fit for a terminal (caller frees; NULL for NULL): control
 * characters, DEL and the C1 controls (ESC or CSI start the sequences that retitle, rewrite or
 * query a terminal) shown as \xNN; bytes that are not UTF-8 as '?'. Integration names, errors
 * and lease owners are anyone-with-write-access's text. */
static char *term_text(const char *s)
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

/* The same wording as `--once` prints (scheduler.c print_once_result). */
static void run_log_print_line(FILE *f, const char *name, const run_log *l)
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

static cJSON *run_log_json(const run_log *l, int64_t now_us)
{
    static const char *const keys[5] = {"synced", "created", "updated", "failed", "deactivated"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)l->id);
    cJSON_AddStringToObject(o, "status", l->status);
    cJSON_AddStringToObject(o, "sync_type", l->type);
    json_time(o, "started_at", l->started_us);
    json_time(o, "completed_at", l->completed_us);
    cJSON_AddNumberToObject(o, "duration_s", (double)(int64_t)(run_log_seconds(l, now_us) * 10) / 10);
    cJSON *p = cJSON_AddObjectToObject(o, "products");
    cJSON *c = cJSON_AddObjectToObject(o, "categories");
    for (int i = 0; i < 5; i++) {
        cJSON_AddNumberToObject(p, keys[i], l->p[i]);
        cJSON_AddNumberToObject(c, keys[i], l->c[i]);
    }
    cJSON_AddNumberToObject(o, "requests", l->requests);
    json_str(o, "error_message", l->error);
    json_str(o, "daemon_id", l->daemon_id);
    return o;
}

/* ---- status --------------------------------------------------------------------------------- */

typedef struct integ_status {
    const char *id, *name, *display_name, *retailer, *lease_owner; /* borrowed from the result */
    bool is_active, sync_enabled, has_token, creds_ok, lease_live, request_full;
    int interval_min, failures;
    int64_t last_sync_us, token_exp_us, lease_exp_us, requested_us, last_full_us, now_us;
    run_log running, last;
    long estimate;           /* products of the last good full read, -1 = none */
    /* derived */
    const char *state;       /* disabled | running | backing_off | idle */
    bool progress;           /* running shows the running row's counts */
    bool abandoned;          /* a 'running' row no live lease stands behind */
    const char *next_reason; /* disabled | after_current_run | requested | first_run | scheduled |
                                backoff | due */
    int64_t next_us;         /* 0 = none */
    uint64_t interval_ms;    /* effective interval, after backoff */
} integ_status;

/* The scheduler's rule (scheduler.c integ_arm): a run-now request runs at once; a never-synced
 * integration at once; otherwise last_sync_at + interval, the interval doubled per consecutive
 * failure up to max_backoff_minutes. The daemon adds up to 3 s of jitter and notices changes
 * within poll_interval. */
static void integ_status_derive(integ_status *s, const kvs_config *cfg)
{
    bool enabled = s->is_active && s->sync_enabled;
    s->progress = s->running.present && s->lease_live &&
                  kvs_streq(s->lease_owner, s->running.daemon_id);
    s->abandoned = s->running.present && !s->progress;
    s->state = s->lease_live ? "running" : !enabled ? "disabled" : s->failures > 0 ? "backing_off"
                                                                                  : "idle";
    int interval_min = s->interval_min > 0 ? s->interval_min : 60;
    s->interval_ms = backoff_interval_ms((uint64_t)interval_min * 60000, s->failures,
                                         (uint64_t)cfg->max_backoff_minutes * 60000);
    s->next_us = 0;
    if (!enabled) {
        s->next_reason = "disabled";
    } else if (s->lease_live) {
        s->next_reason = "after_current_run";
    } else if (s->requested_us) {
        s->next_reason = "requested";
        s->next_us = s->now_us;
    } else if (!s->last_sync_us) {
        s->next_reason = "first_run";
        s->next_us = s->now_us;
    } else {
        s->next_us = s->last_sync_us + (int64_t)s->interval_ms * 1000;
        s->next_reason = s->next_us <= s->now_us ? "due" : s->failures > 0 ? "backoff" : "scheduled";
    }
}

static void integ_status_parse(PGresult *r, int row, integ_status *s)
{
    memset(s, 0, sizeof *s);
    s->id = val(r, row, STORE_IC_ID);
    s->name = val(r, row, STORE_IC_NAME);
    s->display_name = val(r, row, STORE_IC_DISPLAY);
    s->retailer = val(r, row, STORE_IC_RETAILER);
    s->is_active = boolv(r, row, STORE_IC_ACTIVE);
    s->sync_enabled = boolv(r, row, STORE_IC_ENABLED);
    s->interval_min = (int)i64(r, row, STORE_IC_INTERVAL);
    s->last_sync_us = i64(r, row, STORE_IC_LAST_SYNC);
    s->failures = (int)i64(r, row, STORE_IC_FAILURES);
    s->token_exp_us = i64(r, row, STORE_IC_TOKEN_EXP);
    s->has_token = boolv(r, row, STORE_IC_HAS_TOKEN);
    s->creds_ok = boolv(r, row, STORE_IC_CREDS_OK);
    s->lease_owner = val(r, row, STORE_IC_LEASE_OWNER);
    s->lease_exp_us = i64(r, row, STORE_IC_LEASE_EXP);
    s->lease_live = boolv(r, row, STORE_IC_LEASE_LIVE);
    s->requested_us = i64(r, row, STORE_IC_REQUESTED);
    s->request_full = boolv(r, row, STORE_IC_REQUEST_FULL);
    s->last_full_us = i64(r, row, STORE_IC_LAST_FULL);
    s->now_us = i64(r, row, STORE_IC_NOW);
    run_log_parse(r, row, STORE_IC_RUNNING, &s->running);
    run_log_parse(r, row, STORE_IC_LAST, &s->last);
    s->estimate = val(r, row, STORE_IC_ESTIMATE) ? (long)i64(r, row, STORE_IC_ESTIMATE) : -1;
}

static cJSON *integ_status_json(const integ_status *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "id", s->id);
    json_str(o, "display_name", s->display_name);
    json_str(o, "retailer", s->retailer);
    cJSON_AddStringToObject(o, "state", s->state);
    cJSON_AddBoolToObject(o, "is_active", s->is_active);
    cJSON_AddBoolToObject(o, "sync_enabled", s->sync_enabled);
    cJSON_AddBoolToObject(o, "credentials_complete", s->creds_ok);
    cJSON_AddNumberToObject(o, "interval_minutes", s->interval_min);
    cJSON_AddNumberToObject(o, "effective_interval_minutes", (double)(s->interval_ms / 60000));
    cJSON_AddNumberToObject(o, "consecutive_failures", s->failures);
    json_time(o, "last_sync_at", s->last_sync_us);
    json_time(o, "last_full_sync_at", s->last_full_us);
    cJSON *next = cJSON_AddObjectToObject(o, "next_run");
    json_time(next, "at", s->next_us);
    cJSON_AddStringToObject(next, "reason", s->next_reason);
    if (s->requested_us) {
        cJSON *rq = cJSON_AddObjectToObject(o, "request");
        json_time(rq, "requested_at", s->requested_us);
        cJSON_AddBoolToObject(rq, "full", s->request_full);
    } else {
        cJSON_AddNullToObject(o, "request");
    }
    if (s->progress) {
        cJSON *run = run_log_json(&s->running, s->now_us);
        if (s->estimate >= 0 && strcmp(s->running.type, "incremental"))
            cJSON_AddNumberToObject(run, "products_expected", (double)s->estimate);
        cJSON_AddItemToObject(o, "running", run);
    } else {
        cJSON_AddNullToObject(o, "running");
    }
    if (s->abandoned)
        cJSON_AddNumberToObject(o, "abandoned_run_id", (double)s->running.id);
    if (s->last.present)
        cJSON_AddItemToObject(o, "last_run", run_log_json(&s->last, s->now_us));
    else
        cJSON_AddNullToObject(o, "last_run");
    cJSON *tok = cJSON_AddObjectToObject(o, "token"); /* never the token itself */
    cJSON_AddBoolToObject(tok, "present", s->has_token);
    json_time(tok, "expires_at", s->token_exp_us);
    cJSON_AddBoolToObject(tok, "expired", s->has_token && s->token_exp_us <= s->now_us);
    if (s->lease_owner) {
        cJSON *ls = cJSON_AddObjectToObject(o, "lease");
        cJSON_AddStringToObject(ls, "owner", s->lease_owner);
        json_time(ls, "expires_at", s->lease_exp_us);
        cJSON_AddBoolToObject(ls, "live", s->lease_live);
    } else {
        cJSON_AddNullToObject(o, "lease");
    }
    return o;
}

static void print_counts(const char *what, const int *n)
{
    printf("%s %d synced (%d new, %d changed, %d failed, %d removed)", what, n[0], n[1], n[2],
           n[3], n[4]);
}

static void integ_status_print_clean(const integ_status *s, const kvs_config *cfg);

/* Prints s with every text that came from the database made fit for a terminal. */
static void integ_status_print(const integ_status *s, const kvs_config *cfg)
{
    integ_status t = *s;
    char *texts[] = {
        (char *)(t.name = term_text(s->name)), (char *)(t.retailer = term_text(s->retailer)),
        (char *)(t.lease_owner = term_text(s->lease_owner)),
        (char *)(t.last.error = term_text(s->last.error)),
        (char *)(t.running.error = term_text(s->running.error)),
    };
    integ_status_print_clean(&t, cfg);
    for (size_t i = 0; i < ARRAY_SIZE(texts); i++) free(texts[i]);
}

static void integ_status_print_clean(const integ_status *s, const kvs_config *cfg)
{
    char a[96], b[96];
    printf("%s", s->name);
    if (s->retailer && *s->retailer) printf("  (retailer %s)", s->retailer);
    printf("\n");

    /* state */
    printf("  state      ");
    if (!strcmp(s->state, "running")) {
        if (s->progress) {
            const run_log *r = &s->running;
            double secs = run_log_seconds(r, s->now_us);
            fmt_local(r->started_us, a, sizeof a);
            printf("running %s sync, run %lld since %s (%.0f s)\n", r->type, r->id, a, secs);
            printf("             products %d", r->p[0]);
            if (s->estimate > 0 && strcmp(r->type, "incremental"))
                printf(" of ~%ld (%ld%%)", s->estimate,
                       (long)r->p[0] * 100 / (s->estimate > 0 ? s->estimate : 1));
            printf(", categories %d, %d requests", r->c[0], r->requests);
            if (secs >= 1) printf(", %.0f products/s", r->p[0] / secs);
            printf("\n");
        } else {
            printf("starting a run (lease taken, no sync_logs row yet)\n");
        }
    } else if (!strcmp(s->state, "disabled")) {
        printf("disabled (%s): the daemon does not sync it\n",
               !s->is_active ? "is_active = false" : "sync_enabled = false");
    } else if (!strcmp(s->state, "backing_off")) {
        printf("backing off after %d failed run%s in a row (interval %d min stretched to %" PRIu64
               " min)\n",
               s->failures, s->failures == 1 ? "" : "s", s->interval_min > 0 ? s->interval_min : 60,
               s->interval_ms / 60000);
    } else {
        printf("idle%s\n", s->last_sync_us ? "" : ", never synced");
    }
    if (!s->creds_ok)
        printf("  warning    credentials incomplete: set client_id, client_secret and retailer\n");
    if (s->abandoned)
        printf("  note       run %lld is still marked 'running' but no daemon holds the lease: "
               "it was abandoned and is closed as failed when a daemon starts\n",
               s->running.id);

    /* last run */
    if (s->last.present) {
        const run_log *l = &s->last;
        fmt_when(l->started_us, s->now_us, a, sizeof a);
        printf("  last run   %s, %s, run %lld, %s, took %.1f s\n", l->status, l->type, l->id, a,
               run_log_seconds(l, s->now_us));
        printf("             ");
        print_counts("categories", l->c);
        printf("\n             ");
        print_counts("products", l->p);
        printf(", %d requests\n", l->requests);
        if (l->error) printf("  error      %s\n", l->error);
    } else {
        printf("  last run   none\n");
    }

    /* next run */
    printf("  next run   ");
    const char *r = s->next_reason;
    int every = s->interval_min > 0 ? s->interval_min : 60;
    if (!strcmp(r, "disabled")) {
        printf("none (disabled)\n");
    } else if (!strcmp(r, "after_current_run")) {
        printf("%d min after the current run ends\n", (int)(s->interval_ms / 60000));
    } else if (!strcmp(r, "requested")) {
        fmt_local(s->requested_us, a, sizeof a);
        printf("now: %s run requested at %s (a daemon picks it up within %d s)\n",
               s->request_full ? "full" : "incremental", a, cfg->poll_interval_s);
    } else if (!strcmp(r, "first_run")) {
        printf("now: first run (a daemon picks it up within %d s)\n", cfg->poll_interval_s);
    } else if (!strcmp(r, "due")) {
        fmt_when(s->next_us, s->now_us, a, sizeof a);
        printf("due since %s; a running daemon starts it within %d s\n", a, cfg->poll_interval_s);
    } else {
        fmt_when(s->next_us, s->now_us, a, sizeof a);
        printf("%s, every %d min%s\n", a, every,
               s->failures > 0 ? " (longer while failing)" : "");
    }

    /* token, lease */
    if (!s->has_token) {
        printf("  token      none yet (fetched at the next run)\n");
    } else if (s->token_exp_us) {
        fmt_when(s->token_exp_us, s->now_us, a, sizeof a);
        printf("  token      %s %s\n", s->token_exp_us > s->now_us ? "valid until" : "expired",
               a);
    } else {
        printf("  token      present, expiry unknown\n");
    }
    if (s->lease_owner && s->lease_live) {
        fmt_when(s->lease_exp_us, s->now_us, b, sizeof b);
        printf("  lease      held by %s until %s\n", s->lease_owner, b);
    } else if (s->lease_owner) {
        printf("  lease      free (the lease of %s expired, or its session is gone)\n",
               s->lease_owner);
    } else {
        printf("  lease      free\n");
    }
}

static int ctl_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool json = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'j': json = true; break;
        case 'h':
            printf("Usage: kiotviet-syncd status [-c FILE] [--json]\n"
                   "Shows every KiotViet integration: state, last run, next run, token expiry,\n"
                   "lease. Reads the database only. Without -c: " KVS_DEFAULT_CONFIG
                   " if it exists.\n");
            return 0;
        default: return cli_usage_error("status", argv[optind - 1], c == ':');
        }
    }
    if (optind < argc) return cli_usage_error("status", argv[optind], false);
    int rc = 1;
    PGconn *pg = NULL;
    PGresult *res = NULL, *exposed = NULL;
    char *sql = NULL, *schema_q = NULL;
    cJSON *root = NULL;
    kvs_config *cfg = ctl_config("status", path);
    if (!cfg) return KVS_EX_CONFIG;
    pg = ctl_connect("status", cfg);
    if (!pg) goto cleanup;
    schema_q = db_quote_ident(cfg->db_schema);
    sql = store_sql_build(schema_q, ST_CTL_STATUS);
    res = ctl_query("status", pg, sql, 0, NULL);
    if (!res) goto cleanup;
    REQUIRE(PQnfields(res) == STORE_IC__COUNT);
    long daemons = daemons_connected(pg);
    exposed = exposed_columns(pg, cfg->db_schema);
    enum db_path via = db_path_probe_blocking(pg, cfg->db_url);
    int n = PQntuples(res);
    integ_status *st = kvs_xcalloc((size_t)n + 1, sizeof *st);
    for (int i = 0; i < n; i++) {
        integ_status_parse(res, i, &st[i]);
        integ_status_derive(&st[i], cfg);
    }
    if (json) {
        root = cJSON_CreateObject();
        char now[40];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        fmt_iso(n ? st[0].now_us : (int64_t)ts.tv_sec * 1000000, now, sizeof now);
        cJSON_AddStringToObject(root, "now", now);
        cJSON_AddStringToObject(root, "database", PQdb(pg));
        cJSON_AddStringToObject(root, "schema", cfg->db_schema);
        cJSON_AddStringToObject(root, "pooler", ctl_path_name(via));
        cJSON_AddStringToObject(root, "pooler_setting", cfg->db_pooler);
        if (daemons >= 0)
            cJSON_AddNumberToObject(root, "daemons_connected", (double)daemons);
        else
            cJSON_AddNullToObject(root, "daemons_connected");
        char *hidden = n == 0 ? rls_hides_rows(pg, schema_q) : NULL;
        json_str(root, "hidden_by_row_level_security_from", hidden);
        free(hidden);
        cJSON *ex = cJSON_AddArrayToObject(root, "exposed_columns");
        for (int i = 0; exposed && i < PQntuples(exposed); i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", PQgetvalue(exposed, i, 0));
            cJSON_AddStringToObject(o, "columns", PQgetvalue(exposed, i, 1));
            cJSON_AddItemToArray(ex, o);
        }
        cJSON *arr = cJSON_AddArrayToObject(root, "integrations");
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(arr, integ_status_json(&st[i]));
        char *text = cJSON_Print(root);
        REQUIRE(text);
        printf("%s\n", text);
        free(text);
    } else {
        const char *host = PQhost(pg);
        printf("database %s on %s:%s, ", PQdb(pg), host && *host == '/' ? "(socket)" : host,
               PQport(pg));
        if (daemons >= 0)
            printf("%ld kiotviet-syncd daemon%s connected\n", daemons, daemons == 1 ? "" : "s");
        else
            printf("daemons unknown (pg_stat_activity not readable)\n");
        for (int i = 0; exposed && i < PQntuples(exposed); i++)
            printf("warning: role %s can read products.%s: %s\n", PQgetvalue(exposed, i, 0),
                   PQgetvalue(exposed, i, 1), STORE_EXPOSED_HINT);
        if (via == DB_PATH_TRANSACTION || via == DB_PATH_SESSION)
            printf("pooler: %s mode ([database] pooler = %s): %s\n", ctl_path_name(via),
                   cfg->db_pooler,
                   !strcmp(cfg->db_pooler, "session")
                       ? (via == DB_PATH_SESSION ? "prepared statements, session settings, LISTEN"
                                                  : "WRONG for a transaction pooler: the daemon "
                                                    "switches to transaction mode at the first "
                                                    "clash; set pooler = auto or transaction")
                       : "the daemon uses unnamed statements and per-transaction settings, and "
                         "polls instead of LISTEN");
        else if (via == DB_PATH_DIRECT)
            printf("pooler: none (direct connection)\n");
        char *hidden = n == 0 ? rls_hides_rows(pg, schema_q) : NULL;
        if (hidden) {
            printf("\n");
            rls_explain(stdout, hidden);
            free(hidden);
        } else if (n == 0) {
            printf("\nno KiotViet integration (a third_party_integrations row named kiotviet or "
                   "kiotviet-*): apply the migration, which creates one\n");
        }
        for (int i = 0; i < n; i++) {
            printf("\n");
            integ_status_print(&st[i], cfg);
        }
    }
    fflush(stdout);
    free(st);
    rc = 0;

cleanup:
    cJSON_Delete(root);
    PQclear(res);
    PQclear(exposed);
    PQfinish(pg);
    free(sql);
    free(schema_q);
    config_free(cfg);
    return rc;
}

/* ---- sync NAME ------------------------------------------------------------------------------ */

/* `sync NAME` waits for the daemon by polling the table: a one-shot CLI path with no event
 * loop, so sleeping here blocks nothing (see the top of this file). */
static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Explains why NAME cannot be synced; returns the exit code. */
static int sync_unknown(PGconn *pg, const char *schema_q, const char *name)
{
    char *sql = store_sql_build(schema_q, ST_CTL_NAMES);
    PGresult *r = ctl_query("sync", pg, sql, 0, NULL);
    free(sql);
    const char *names = r && PQntuples(r) ? PQgetvalue(r, 0, 0) : "";
    if (strncmp(name, "kiotviet", 8))
        fprintf(stderr, "kiotviet-syncd sync: '%s' is not a KiotViet integration: the daemon syncs "
                        "the third_party_integrations rows named kiotviet or kiotviet-*",
                name);
    else
        fprintf(stderr, "kiotviet-syncd sync: no integration named '%s' in third_party_integrations",
                name);
    char *shown = term_text(names);
    fprintf(stderr, " (KiotViet integrations: %s)\n", *shown ? shown : "none");
    free(shown);
    PQclear(r);
    char *hidden = rls_hides_rows(pg, schema_q);
    if (hidden) {
        fprintf(stderr, "kiotviet-syncd sync: ");
        rls_explain(stderr, hidden);
        free(hidden);
    }
    return CTL_EX_FAILED;
}

static int ctl_sync(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"full", no_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool full = false;
    double timeout_s = SYNC_DEFAULT_TIMEOUT_S;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'f': full = true; break;
        case 't': {
            char *end;
            timeout_s = strtod(optarg, &end);
            if (*end || end == optarg || !(timeout_s > 0)) {
                fprintf(stderr, "kiotviet-syncd sync: --timeout wants seconds > 0, not '%s'\n",
                        optarg);
                return EX_USAGE_CODE;
            }
            break;
        }
        case 'h':
            printf("Usage: kiotviet-syncd sync NAME [--full] [-c FILE] [--timeout S]\n"
                   "Asks the running daemon(s), through the database, to sync integration NAME\n"
                   "now (--full: read everything), waits for the run and prints its result.\n"
                   "Exit: 0 success or partial, 1 failed, 2 no result within --timeout (default "
                   "%d s; the request stays queued).\n",
                   SYNC_DEFAULT_TIMEOUT_S);
            return 0;
        default: return cli_usage_error("sync", argv[optind - 1], c == ':');
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "kiotviet-syncd sync: %s\nUsage: kiotviet-syncd sync NAME [--full] [-c "
                        "FILE] [--timeout S]\n",
                optind >= argc ? "which integration? (see kiotviet-syncd status)"
                               : "only one integration name");
        return EX_USAGE_CODE;
    }
    const char *name = argv[optind];
    int rc = CTL_EX_FAILED;
    PGconn *pg = NULL;
    PGresult *res = NULL;
    char *schema_q = NULL, *sql_poll = NULL, *id = NULL, *req_at = NULL;
    kvs_config *cfg = ctl_config("sync", path);
    if (!cfg) return KVS_EX_CONFIG;
    bool tty = isatty(STDERR_FILENO);
    pg = ctl_connect("sync", cfg);
    if (!pg) goto cleanup;
    schema_q = db_quote_ident(cfg->db_schema);

    /* 1. Which integration; the daemon only runs enabled KiotViet rows. */
    char *sql = store_sql_build(schema_q, ST_CTL_FIND);
    const char *p1[1] = {name};
    res = ctl_query("sync", pg, sql, 1, p1);
    free(sql);
    if (!res) goto cleanup;
    if (PQntuples(res) != 1 || strncmp(name, "kiotviet", 8)) {
        rc = sync_unknown(pg, schema_q, name);
        goto cleanup;
    }
    id = kvs_strdup(PQgetvalue(res, 0, 0));
    if (!boolv(res, 0, 1) || !boolv(res, 0, 2)) {
        fprintf(stderr,
                "kiotviet-syncd sync: %s is not enabled (%s): no daemon runs it, and neither "
                "does --once. Enable it first: " STORE_ENABLE_HINT "; then run this command again\n",
                name, !boolv(res, 0, 1) ? "is_active = false" : "sync_enabled = false", name);
        goto cleanup;
    }
    PQclear(res);
    res = NULL;

    /* 2. The request, and a NOTIFY for daemons that listen. */
    sql = store_sql_build(schema_q, ST_CTL_REQUEST);
    const char *p2[2] = {id, full ? "true" : "false"};
    res = ctl_query("sync", pg, sql, 2, p2);
    free(sql);
    if (!res || PQntuples(res) != 1) goto cleanup;
    req_at = kvs_strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;
    sql = store_sql_build(schema_q, ST_CTL_NOTIFY);
    PQclear(ctl_query("sync", pg, sql, 1, p1));
    free(sql);
    long daemons = daemons_connected(pg);
    fprintf(stderr, "%s: %s sync requested; waiting up to %.0f s for a daemon to run it\n", name,
            full ? "full" : "incremental", timeout_s);
    if (daemons == 0)
        fprintf(stderr, "%s: warning: no kiotviet-syncd daemon is connected to this database right "
                        "now (through a pooler this may not be visible); the request waits in "
                        "the table until one runs it. Without a daemon: kiotviet-syncd --once "
                        "--only %s%s\n",
                name, name, full ? " --full" : "");

    /* 3. Wait until the request is served (the daemon clears it after the run that served it)
     *    and report the newest run started after it. */
    sql_poll = store_sql_build(schema_q, ST_CTL_POLL);
    const char *p3[2] = {id, req_at};
    uint64_t t0 = kvs_now_mono_ms(), deadline = t0 + (uint64_t)(timeout_s * 1000);
    long long seen_run = 0;
    bool progress_shown = false;
    for (;;) {
        res = ctl_query("sync", pg, sql_poll, 2, p3);
        if (!res) goto cleanup;
        if (PQntuples(res) != 1) {
            fprintf(stderr, "kiotviet-syncd sync: integration %s was deleted while waiting\n", name);
            goto cleanup;
        }
        bool pending = !PQgetisnull(res, 0, 0);
        int64_t now_us = i64(res, 0, 1);
        run_log l;
        run_log_parse(res, 0, 2, &l);
        bool finished = l.present && strcmp(l.status, "running") != 0;
        if (!pending && finished) {
            if (progress_shown) fprintf(stderr, "\r\033[K");
            char *err = term_text(l.error);
            l.error = err;
            run_log_print_line(stdout, name, &l);
            free(err);
            fflush(stdout);
            rc = !strcmp(l.status, "success") || !strcmp(l.status, "partial") ? CTL_EX_OK
                                                                               : CTL_EX_FAILED;
            goto cleanup;
        }
        if (!pending && !l.present) {
            if (progress_shown) fprintf(stderr, "\r\033[K");
            fprintf(stderr, "%s: the request was served but no sync_logs row was written after "
                            "it; see the daemon's log (journalctl -u kiotviet-sync)\n",
                    name);
            goto cleanup;
        }
        uint64_t now = kvs_now_mono_ms();
        if (l.present && l.id != seen_run && !tty) {
            fprintf(stderr, "%s: run %lld started (%s)\n", name, l.id, l.type);
            seen_run = l.id;
        }
        if (tty) {
            if (l.present)
                fprintf(stderr, "\r\033[K%s: %s sync running (run %lld, %.0f s): products %d, "
                                "categories %d, %d requests",
                        name, l.type, l.id, run_log_seconds(&l, now_us), l.p[0], l.c[0],
                        l.requests);
            else
                fprintf(stderr, "\r\033[K%s: waiting for a daemon to start the run (%" PRIu64
                                " s; daemons look every %d s)",
                        name, (now - t0) / 1000, cfg->poll_interval_s);
            progress_shown = true;
        }
        PQclear(res);
        res = NULL;
        if (now >= deadline) {
            if (progress_shown) fprintf(stderr, "\r\033[K");
            fprintf(stderr, "%s: no result within %.0f s; the request stays queued and a daemon "
                            "runs it when it can (see kiotviet-syncd status)\n",
                    name, timeout_s);
            rc = CTL_EX_TIMEOUT;
            goto cleanup;
        }
        sleep_ms(SYNC_POLL_MS);
    }

cleanup:
    PQclear(res);
    PQfinish(pg);
    free(schema_q);
    free(sql_poll);
    free(id);
    free(req_at);
    config_free(cfg);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

bool ctl_is_command(const char *arg)
{
    return arg && (!strcmp(arg, "status") || !strcmp(arg, "sync"));
}

int ctl_main(int argc, char **argv)
{
    REQUIRE(argc >= 1 && ctl_is_command(argv[0]));
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
