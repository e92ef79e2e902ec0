/* `kiotviet-syncd sync NAME`: a run-now request and the wait for its run (see ctl.h; blocking
 * libpq on purpose, see ctl.c). */

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

int ctl_sync(int argc, char **argv)
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
