/* `kiotviet-syncd status [--json]`: integrations, their last runs and the daemons (see ctl.h;
 * blocking libpq on purpose, see ctl.c). */

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

int ctl_status(int argc, char **argv)
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
