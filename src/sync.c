/* One sync run of one integration (see sync.h). */
#include "sync_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "kiotviet.h"
#include "kvtime.h"
#include "log.h"
#include "writer.h"

/* How long a run waits for the database. A page batch that cannot reach it is retried for one
 * lease period (after that the lease may be gone and the run fails); the end of a run (its
 * sync_logs row, cursors, lease) is retried for FINISH_PATIENCE lease periods, so that a run
 * that could not log is logged once the database is back. */
#define FINISH_PATIENCE 10

/* ---- small helpers ----------------------------------------------------------------------- */

const char *sync_status_name(enum sync_status st)
{
    switch (st) {
    case SYNC_SUCCESS: return "success";
    case SYNC_PARTIAL: return "partial";
    case SYNC_FAILED: return "failed";
    case SYNC_CANCELLED: return "cancelled";
    case SYNC_SKIPPED: return "skipped";
    case SYNC_NO_DB: return "no-db";
    }
    return "?";
}

/* Fails the run (first reason wins) and stops fetching; pending stores drain, then finish. */
void sync_fail(sync_run *r, const char *fmt, ...)
{
    if (!r->failing && !r->cancelled) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->res.message, sizeof r->res.message, fmt, ap);
        va_end(ap);
        log_redact(r->res.message, sizeof r->res.message);
        /* sync_logs.error_message: PostgreSQL refuses invalid UTF-8 (a KiotViet body quoted in
         * it, a cut multi-byte character), and the end of the run would go unrecorded. */
        kvs_utf8_clean(r->res.message);
        rlog_err(&r->lctx, "run failed: %s", r->res.message);
        r->fail_phase = r->phase;
    }
    r->failing = true;
    while (r->fetches) {
        fetch *f = r->fetches;
        r->fetches = f->next;
        kv_req_cancel(f->req);
        free(f);
    }
    r->pg.inflight = 0;
    /* Pages still waiting for the database are dropped: the run failed, the cursor stays, and
     * the next run reads them again. Batches already sent finish first. */
    if (r->w) writer_stop(r->w);
    if (r->jobs == 0 && r->phase < PH_FINISH) run_finish(r);
}

void counts_json(const sync_run *r, kvs_buf *b)
{
    const sync_counts *c = &r->counts;
    REQUIRE(kvs_buf_printf(
                b,
                "{\"products_synced\":%d,\"products_created\":%d,\"products_updated\":%d,"
                "\"products_failed\":%d,\"products_deactivated\":%d,\"categories_synced\":%d,"
                "\"categories_created\":%d,\"categories_updated\":%d,\"categories_failed\":%d,"
                "\"categories_deactivated\":%d,\"requests_made\":%d}",
                c->products_synced, c->products_created, c->products_updated, c->products_failed,
                c->products_deactivated, c->categories_synced, c->categories_created,
                c->categories_updated, c->categories_failed, c->categories_deactivated,
                r->kv ? kv_client_gets(r->kv) + kv_client_token_requests(r->kv) : 0) == 0);
}

/* ---- database plumbing ---------------------------------------------------------------- */

static void lease_params(sync_run *r, const char **p, char *secs)
{
    snprintf(secs, 16, "%d", r->env.cfg->lease_seconds);
    p[0] = r->row ? r->row->id : r->id;
    p[1] = r->env.daemon_id;
    p[2] = secs;
}

/* ST_RENEW's parameters: the lease's, and the backend pid of the run's connection (pid, 16
 * bytes) so that the lease names the session holding it. */
static void renew_params(sync_run *r, const char **p, char *secs, char *pid)
{
    lease_params(r, p, secs);
    snprintf(pid, 16, "%d", db_conn_backend_pid(r->db));
    p[3] = pid;
}

static void log_db_error(sync_run *r, const char *what, const db_result *res)
{
    rlog_err(&r->lctx, "%s: %s%s%s%s", what, res->message ? res->message : "error",
             res->sqlstate[0] ? " (SQLSTATE " : "", res->sqlstate, res->sqlstate[0] ? ")" : "");
}

/* ---- finishing ----------------------------------------------------------------------------- */

/* The run's end in the metrics: a skipped run did not run; a lost database is a failed run, as
 * its sync_logs row says. */
static void run_metrics(const sync_run *r, enum sync_status st)
{
    if (st == SYNC_SKIPPED) return;
    const sync_counts *c = &r->counts;
    long rows = (long)c->products_created + c->products_updated + c->products_deactivated +
                c->categories_created + c->categories_updated + c->categories_deactivated;
    metrics_run_end(r->env.metrics, r->name, st == SYNC_NO_DB ? "failed" : sync_status_name(st),
                    rows, kvs_now_wall_ms() * 1000);
}

static void handle_closed(uv_handle_t *h)
{
    sync_run *r = h->data;
    if (--r->handles_open > 0) return;
    sync_result res = r->res;
    res.counts = r->counts;
    res.full = r->full;
    snprintf(res.log_id, sizeof res.log_id, "%s", r->log_id);
    res.inbox_more = inbox_more(r->inbox) && (r->res.status == SYNC_SUCCESS ||
                                              r->res.status == SYNC_PARTIAL);
    inbox_free(r->inbox);
    sync_done_cb cb = r->cb;
    void *arg = r->cb_arg;
    run_metrics(r, res.status);
    kvs_buf_free(&r->failures);
    kvs_buf_free(&r->notes);
    for (int e = 0; e < WRITER__ENTITIES; e++) {
        kvs_idset_free(&r->seen[e]);
        free(r->removed[e]);
    }
    free(r->pg.slots);
    integ_row_free(r->row);
    free(r->id);
    free(r->name);
    free(r);
    cb(&res, arg);
}

static void run_close(sync_run *r)
{
    /* Once: a second uv_close of the lease timer would be undefined. A connection's failure
     * reports every batch in flight from one loop (db.c conn_fail), so two of the run's
     * callbacks can each reach the end of the run in the same turn. */
    if (r->phase == PH_CLOSING) return;
    r->phase = PH_CLOSING;
    if (r->kv) {
        r->counts.requests = kv_client_gets(r->kv);
        r->counts.token_requests = kv_client_token_requests(r->kv);
        kv_client_free(r->kv);
        r->kv = NULL;
    }
    writer_free(r->w); /* before the connection it borrows */
    r->w = NULL;
    if (r->db) {
        db_conn_close(r->db);
        r->db = NULL;
    }
    uv_timer_stop(&r->lease_timer);
    r->handles_open = 1;
    uv_close((uv_handle_t *)&r->lease_timer, handle_closed);
}

static void finish_submit(sync_run *r);

static void finish_retry_cb(uv_timer_t *t)
{
    sync_run *r = t->data;
    r->finish_waiting = false;
    finish_submit(r);
}

static void finish_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    if (res->status != DB_OK) {
        log_db_error(r, "could not record the end of the run", res);
        uint64_t now = kvs_now_mono_ms();
        if (!r->finish_first_ms) r->finish_first_ms = now;
        uint64_t patience = (uint64_t)r->env.cfg->lease_seconds * 1000 * FINISH_PATIENCE;
        if (writer_db_transient(res) && !r->cancelled && now - r->finish_first_ms < patience) {
            /* Runs that could not log are logged when the database is back. */
            uint64_t wait = writer_retry_delay_ms(r->env.cfg->lease_seconds, (unsigned)r->finish_attempt++);
            rlog_warn(&r->lctx, "will record the end of the run when the database is back "
                                "(retry in %llu ms)",
                      (unsigned long long)wait);
            r->finish_waiting = true;
            uv_timer_start(&r->lease_timer, finish_retry_cb, wait, 0);
            return;
        }
        /* Cancelled while an attempt was in flight (not waiting on the timer, where
         * sync_run_cancel says the same): the next claim closes the row as abandoned. */
        if (r->cancelled) rlog_warn(&r->lctx, "stopping before the end of the run could be recorded");
    } else {
        if (r->finish_attempt)
            rlog_notice(&r->lctx, "recorded the end of the run after %d retries",
                        r->finish_attempt);
        bool ok = r->res.status == SYNC_SUCCESS || r->res.status == SYNC_PARTIAL;
        if (ok && !r->db_down && res->nresults > 1 && PQntuples(res->results[1]) == 0)
            rlog_warn(&r->lctx, "the integration's lease was no longer this daemon's at the end "
                                "of the run: its last sync time and cursors were left as they "
                                "were, so the next run reads these changes again");
    }
    rlog_notice(&r->lctx,
                "run %s: categories %d synced (%d new, %d changed, %d failed, %d removed), "
                "products %d synced (%d new, %d changed, %d failed, %d removed), "
                "stock %d read (%d changed), %d requests%s%s",
                r->db_down ? "failed" : sync_status_name(r->res.status),
                r->counts.categories_synced, r->counts.categories_created,
                r->counts.categories_updated, r->counts.categories_failed,
                r->counts.categories_deactivated, r->counts.products_synced,
                r->counts.products_created, r->counts.products_updated,
                r->counts.products_failed, r->counts.products_deactivated,
                r->counts.stock_synced, r->counts.stock_updated,
                r->kv ? kv_client_gets(r->kv) + kv_client_token_requests(r->kv) : 0,
                r->res.message[0] ? ": " : "", r->res.message);
    run_close(r);
}

/* The cursor an entity may advance to: never past a row the database refused (so it is read
 * again once the shop fixes the clash), and not at all if such a row had no date. The products
 * cursor is the stock's too: /productOnHands is read after /products, so the older of the two
 * (normally the products') lets the next run miss neither; the overlap is subtracted as for
 * products. So no column of its own: a full run (no stock read) leaves the products' time, and
 * its product pages carried the stock as of then. */
static int64_t cursor_new(const sync_run *r, int e)
{
    int64_t c = r->cursor_us[e];
    if (!c || r->floor_unknown[e]) return 0;
    return r->floor_us[e] && r->floor_us[e] < c ? r->floor_us[e] : c;
}

static const char *cursor_param(const sync_run *r, int e, char buf[KVTIME_BUFSZ])
{
    int64_t c = cursor_new(r, e);
    if (c && e == WRITER_PRODUCTS && r->stock_read) {
        int64_t s = cursor_new(r, WRITER_STOCK);
        c = s && s < c ? s : s ? c : 0;
    }
    if (!c) return NULL;
    kvtime_format_utc(c, buf);
    return buf;
}

static void finish_submit(sync_run *r)
{
    static const char *const ph[] = {"claim",    "start",  "branches",  "categories",
                                     "relink",   "products", "stock",   "reconcile",
                                     "inbox",    "finish", "closing"};
    _Static_assert(ARRAY_SIZE(ph) == PH_CLOSING + 1, "a name for every phase");
    kvs_buf counts, details;
    kvs_buf_init(&counts);
    kvs_buf_init(&details);
    /* Whichever path set it (a database message cut mid-character too): PostgreSQL refuses
     * invalid UTF-8, and the end of the run would go unrecorded. */
    kvs_utf8_clean(r->res.message);
    counts_json(r, &counts);
    REQUIRE(kvs_buf_printf(&details, "{\"sync_type\":\"%s\",\"failures_total\":%d,",
                           r->inbox ? "webhook" : r->full ? "full" : "incremental",
                           r->counts.products_failed + r->counts.categories_failed) == 0);
    REQUIRE(kvs_buf_printf(&details, "\"failures\":[%s],\"attribute_notes_total\":%d,",
                           kvs_buf_cstr(&r->failures), r->counts.attribute_notes) == 0);
    REQUIRE(kvs_buf_printf(&details, "\"attribute_notes\":[%s],\"skipped_unit_products\":%d",
                           kvs_buf_cstr(&r->notes), r->counts.skipped) == 0);
    if (r->stock_read)
        REQUIRE(kvs_buf_printf(&details, ",\"stock_read\":%d,\"stock_changed\":%d",
                               r->counts.stock_synced, r->counts.stock_updated) == 0);
    if (r->deletes_held)
        REQUIRE(kvs_buf_printf(&details,
                               ",\"reconciliation_held\":{\"would_mark_deleted\":%ld,"
                               "\"live_products\":%ld,\"max_delete_ratio\":%g}",
                               r->held_would, r->held_live, r->env.cfg->max_delete_ratio) == 0);
    if (r->failing && !r->cancelled) {
        REQUIRE(kvs_buf_puts(&details, ",\"error\":") == 0);
        REQUIRE(kvs_buf_json_str(&details, r->res.message) == 0);
        REQUIRE(kvs_buf_printf(&details, ",\"phase\":\"%s\"", ph[r->fail_phase]) == 0);
        if (r->db_down) {
            REQUIRE(kvs_buf_puts(&details, ",\"database_unavailable\":true") == 0);
        } else {
            /* The scheduler doubles a failing integration's interval: say when it tries next. */
            int failures = r->row->consecutive_failures + 1;
            uint64_t next = backoff_interval_ms(
                (uint64_t)(r->row->interval_min > 0 ? r->row->interval_min : 60) * 60000,
                failures, (uint64_t)r->env.cfg->max_backoff_minutes * 60000);
            REQUIRE(kvs_buf_printf(&details,
                                   ",\"consecutive_failures\":%d,\"next_attempt_minutes\":%llu",
                                   failures, (unsigned long long)(next / 60000)) == 0);
        }
    }
    if (r->finish_attempt)
        REQUIRE(kvs_buf_printf(&details, ",\"recorded_after_retries\":%d", r->finish_attempt) ==
                0);
    if (r->inbox) inbox_details(r, &details);
    REQUIRE(kvs_buf_puts(&details, "}") == 0);
    /* No redaction of the serialised JSON: a secret such as "null" or "1234" would turn a
     * value or a count into "***" and make error_details invalid. Every text in it was
     * redacted before it was quoted (res.message in sync_fail, failures in row_failure;
     * mapping's notes and failures quote KiotViet's data, never a secret). */

    db_batch *b = db_batch_new();
    const char *st = r->db_down ? "failed" : sync_status_name(r->res.status);
    const char *lp[5] = {r->log_id, st, counts.data, r->res.message[0] ? r->res.message : NULL,
                         details.data};
    db_batch_add(b, store_sql(r->env.store, ST_LOG_FINISH), 5, lp);
    bool ok = r->res.status == SYNC_SUCCESS || r->res.status == SYNC_PARTIAL;
    if (r->inbox) {
        /* An inbox run leaves the schedule alone (last_sync_at, cursors, failures): the polls
         * stay the safety net, due as before. */
        const char *fp[2] = {r->row->id, r->env.daemon_id};
        db_batch_add(b, store_sql(r->env.store, ST_RELEASE), 2, fp);
    } else if (ok) {
        char pc[KVTIME_BUFSZ], cc[KVTIME_BUFSZ];
        const char *fp[5];
        fp[0] = r->row->id;
        fp[1] = r->env.daemon_id;
        fp[2] = cursor_param(r, WRITER_PRODUCTS, pc);
        fp[3] = cursor_param(r, WRITER_CATEGORIES, cc);
        fp[4] = r->full ? "true" : "false";
        db_batch_add(b, store_sql(r->env.store, ST_FINISH), 5, fp);
    } else if (r->res.status == SYNC_CANCELLED || r->db_down) {
        /* Not the integration's fault: no failure counted, no backoff. */
        const char *fp[2] = {r->row->id, r->env.daemon_id};
        db_batch_add(b, store_sql(r->env.store, ST_RELEASE), 2, fp);
    } else {
        const char *fp[2] = {r->row->id, r->env.daemon_id};
        db_batch_add(b, store_sql(r->env.store, ST_FAIL), 2, fp);
    }
    db_submit(r->db, b, finish_cb, r);
    kvs_buf_free(&counts);
    kvs_buf_free(&details);
}

void run_finish(sync_run *r)
{
    if (r->phase >= PH_FINISH) return;
    r->phase = PH_FINISH;
    if (r->cancelled)
        r->res.status = SYNC_CANCELLED;
    else if (r->db_down)
        r->res.status = SYNC_NO_DB; /* the scheduler retries soon, without backoff */
    else if (r->failing)
        r->res.status = SYNC_FAILED;
    else if (r->counts.products_failed || r->counts.categories_failed || r->deletes_held)
        r->res.status = SYNC_PARTIAL;
    else
        r->res.status = SYNC_SUCCESS;
    if (r->cancelled && !r->res.message[0])
        snprintf(r->res.message, sizeof r->res.message, "cancelled: the daemon is stopping");

    if (!r->log_id[0]) { /* never got as far as a log row */
        run_close(r);
        return;
    }
    uv_timer_stop(&r->lease_timer); /* from now on it only times retries of the end */
    finish_submit(r);
}

/* ---- phases -------------------------------------------------------------------------------- */

static void on_token(const char *token, int64_t expires_wall_s, void *arg);

static void token_saved_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    if (res->status != DB_OK) log_db_error(r, "could not store the new token", res);
    jobs_dec(r);
}

/* The database's clock now (seconds), from its reading at the claim plus our monotonic time
 * since: token expiry is stored and compared in the database's time, so a jump of this
 * host's clock neither keeps a dead token nor throws away a good one. */
static int64_t db_now_s(const sync_run *r)
{
    return (r->db_start_us / 1000 + (int64_t)(kvs_now_mono_ms() - r->claim_mono_ms)) / 1000;
}

static void on_token(const char *token, int64_t expires_wall_s, void *arg)
{
    sync_run *r = arg;
    char exp[32];
    int64_t ttl_s = expires_wall_s - kvs_now_wall_ms() / 1000; /* both on the host's clock */
    snprintf(exp, sizeof exp, "%" PRId64, db_now_s(r) + ttl_s);
    const char *p[5] = {r->row->id, r->env.daemon_id, token, exp, r->row->creds_hash};
    r->jobs++;
    db_exec(r->db, store_sql(r->env.store, ST_TOKEN_SAVE), 5, p, token_saved_cb, r);
}

static void lease_renew_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    if (res->status == DB_OK && PQntuples(res->results[0]) == 0 && r->phase < PH_FINISH)
        sync_fail(r, "the integration's lease was lost (taken over by another daemon)");
    else if (res->status != DB_OK && res->status != DB_E_CANCELLED)
        rlog_warn(&r->lctx, "lease renewal failed: %s", res->message ? res->message : "?");
    jobs_dec(r);
}

static void lease_timer_cb(uv_timer_t *t)
{
    sync_run *r = t->data;
    if (r->phase >= PH_FINISH) return;
    char secs[16], pid[16];
    const char *p[4];
    renew_params(r, p, secs, pid);
    r->jobs++;
    db_exec(r->db, store_sql(r->env.store, ST_RENEW), 4, p, lease_renew_cb, r);
}

static void start_fetching(sync_run *r)
{
    kvs_err e;
    kvs_err_clear(&e);
    kv_client_opts o = {
        .loop = r->env.loop,
        .http = r->env.http,
        .budget = r->budget,
        .lctx = &r->lctx,
        .metrics = r->env.metrics,
        .api_url = r->row->api_url,
        .token_url = r->row->token_url,
        .client_id = r->row->client_id,
        .client_secret = r->row->client_secret,
        .retailer = r->row->retailer,
        .allowed_hosts = r->env.cfg->allowed_hosts ? r->env.cfg->allowed_hosts : "",
        .access_token = r->row->access_token,
        /* the row's expiry is in the database's time: move it onto ours */
        .token_expires_wall_s = r->row->token_expires_us
                                    ? r->row->token_expires_us / 1000000 - db_now_s(r) +
                                          kvs_now_wall_ms() / 1000
                                    : 0,
        .token_margin_s = r->env.cfg->token_margin_s,
        .max_retries = r->env.cfg->max_retries,
        .retry_base_ms = (uint64_t)r->env.cfg->retry_base_ms,
        .retry_cap_ms = (uint64_t)r->env.cfg->retry_cap_ms,
        .on_token = on_token,
        .arg = r,
    };
    r->kv = kv_client_new(&o, &e);
    if (!r->kv) {
        sync_fail(r, "integration %s is not usable: %s", r->name, e.msg);
        return;
    }
    sync_phase_next(r);
}

static void released_cb(db_result *res, void *arg)
{
    (void)res;
    run_close(arg);
}

static void log_start_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    if (res->status != DB_OK) {
        /* Without a log row nothing may be written: give the lease back (if the database
         * lets us) and let the scheduler try again. */
        log_db_error(r, "could not write the sync_logs row", res);
        bool down = writer_db_transient(res);
        snprintf(r->res.message, sizeof r->res.message, "%s: %s",
                 down ? "database unavailable" : "could not write sync_logs",
                 res->message ? res->message : "?");
        log_redact(r->res.message, sizeof r->res.message);
        r->res.status = down ? SYNC_NO_DB : SYNC_FAILED;
        r->phase = PH_FINISH;
        const char *p[2] = {r->row->id, r->env.daemon_id};
        db_exec(r->db, store_sql(r->env.store, ST_RELEASE), 2, p, released_cb, r);
        return;
    }
    long closed = atol(PQgetvalue(res->results[0], 0, 0));
    if (closed)
        rlog_notice(&r->lctx, "closed %ld abandoned sync_logs row(s) as failed", closed);
    snprintf(r->log_id, sizeof r->log_id, "%s", PQgetvalue(res->results[1], 0, 0));
    r->lctx.run = r->log_id;
    rlog_notice(&r->lctx, "%s sync started",
                r->inbox ? "webhook" : r->full ? "full" : "incremental");
    if (r->cancelled) {
        run_finish(r);
        return;
    }
    start_fetching(r);
}

static void claim_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    if (res->status != DB_OK) {
        snprintf(r->res.message, sizeof r->res.message, "database unavailable: %s",
                 res->message ? res->message : "?");
        log_redact(r->res.message, sizeof r->res.message);
        r->res.status = SYNC_NO_DB;
        rlog_warn(&r->lctx, "cannot claim the integration: %s", r->res.message);
        r->phase = PH_FINISH;
        run_close(r);
        return;
    }
    PGresult *pr = res->results[0];
    if (PQntuples(pr) != 1) {
        /* Held by a live daemon (a dead one's lease would have been ours): say whose, and
         * until when. */
        PGresult *hr = res->results[3];
        if (PQntuples(hr) == 1 && !PQgetisnull(hr, 0, 0)) {
            r->res.held_ms = strtoll(PQgetvalue(hr, 0, 2), NULL, 10);
            if (r->res.held_ms < 1) r->res.held_ms = 1;
            snprintf(r->res.message, sizeof r->res.message,
                     "leased by another daemon (%s) until %s (%" PRId64 " s more)",
                     PQgetvalue(hr, 0, 0), PQgetvalue(hr, 0, 1), (r->res.held_ms + 999) / 1000);
        } else {
            snprintf(r->res.message, sizeof r->res.message,
                     "no longer in third_party_integrations");
        }
        r->res.status = SYNC_SKIPPED;
        rlog_info(&r->lctx, "%s", r->res.message);
        r->phase = PH_FINISH;
        run_close(r);
        return;
    }
    r->row = integ_row_parse(pr, 0);
    integ_row_hold_secrets(r->row); /* the run holds the row, and logs, until it ends */
    r->db_start_us = strtoll(PQgetvalue(res->results[1], 0, 0), NULL, 10);
    r->had_products = PQgetvalue(res->results[2], 0, 0)[0] == 't';
    r->claim_mono_ms = kvs_now_mono_ms();
    const kvs_config *cfg = r->env.cfg;
    /* Both times are the database's: a jump of this host's clock changes nothing. */
    bool reconcile_due = cfg->reconcile_hours > 0 && r->row->last_full_us &&
                         r->db_start_us - r->row->last_full_us >=
                             (int64_t)cfg->reconcile_hours * 3600 * 1000000;
    r->full = !r->inbox && (r->force_full || !r->row->products_cursor_us ||
                            !r->row->categories_cursor_us || reconcile_due);
    r->reconcile_ok = r->full;
    /* The first renewal at once: it makes the lease name this run's own session (the
     * scheduler's claim named its control connection), the one that writes the run's end, so
     * a claimant never takes the lease for dead while that session may still write. */
    uv_timer_start(&r->lease_timer, lease_timer_cb, 0, (uint64_t)cfg->lease_seconds * 1000 / 3);
    const char *p[3] = {r->row->id, r->inbox  ? "webhook"
                                    : r->full ? (reconcile_due && !r->force_full ? "reconcile" : "full")
                                              : "incremental",
                        r->env.daemon_id};
    r->phase = PH_START;
    /* Our claim took the lease from whoever held it: a 'running' row left by a daemon that died
     * (kill -9, power loss) is closed here, not only when a daemon starts. The renewal records
     * this connection's session as the holder's. */
    char secs[16], pid[16];
    const char *rp[4];
    renew_params(r, rp, secs, pid);
    db_batch *b = db_batch_new();
    db_batch_add(b, store_sql(r->env.store, ST_LOG_ABANDONED), 0, NULL);
    db_batch_add(b, store_sql(r->env.store, ST_LOG_START), 3, p);
    db_batch_add(b, store_sql(r->env.store, ST_RENEW), 4, rp);
    db_submit(r->db, b, log_start_cb, r);
}

void sync_relink_changed(sync_run *r)
{
    if (!r->counts.categories_created && !r->counts.categories_updated) return;
    if (store_categories_relink_sql(r->env.store)) {
        r->jobs++;
        writer_put_relink(r->w, WRITER_CATEGORIES);
    }
    if (store_products_relink_sql(r->env.store)) {
        r->jobs++;
        writer_put_relink(r->w, WRITER_PRODUCTS);
    }
}

void sync_phase_next(sync_run *r)
{
    if (sync_stopping(r)) {
        if (r->jobs == 0) run_finish(r);
        return;
    }
    switch (r->phase) {
    case PH_START:
        if (r->inbox) {
            r->phase = PH_INBOX;
            if (inbox_next(r)) run_finish(r);
            break;
        }
        r->phase = PH_BRANCHES;
        sync_branches_begin(r);
        break;
    case PH_BRANCHES:
        r->phase = PH_CATEGORIES;
        sync_branches_end(r);
        sync_pager_begin(r, WRITER_CATEGORIES);
        break;
    case PH_CATEGORIES:
        r->phase = PH_RELINK;
        sync_relink_changed(r);
        if (r->jobs == 0) sync_phase_next(r);
        break;
    case PH_RELINK:
        r->phase = PH_PRODUCTS;
        sync_pager_begin(r, WRITER_PRODUCTS);
        break;
    case PH_PRODUCTS:
        /* Incremental runs read the stock changed since the cursor as well: a sale changes a
         * product's stock without touching its modifiedDate, so /products would not show it.
         * A full run does not: its product pages carry every product's inventories. */
        if (!r->full) {
            r->phase = PH_STOCK;
            r->stock_read = true;
            sync_pager_begin(r, WRITER_STOCK);
            break;
        }
        /* fall through */
    case PH_STOCK:
        r->phase = PH_RECONCILE;
        /* With no synced product before this run, every one there now is one it stored:
         * nothing to mark (a first sync of 100,000 products saves ~90 ms). */
        if (r->full && r->reconcile_ok && !r->pg.unordered && r->had_products) {
            /* Every product KiotViet still has was seen: synced rows not seen are gone. */
            kvs_idset *s = &r->seen[WRITER_PRODUCTS];
            int64_t *ids = kvs_xmalloc((s->n + 1) * sizeof *ids);
            int n = 0;
            for (size_t i = 0; i < s->cap; i++)
                if (s->v[i]) ids[n++] = s->v[i];
            r->jobs++;
            writer_put_ids(r->w, WRITER_RECONCILE, WRITER_PRODUCTS, ids, n);
            free(ids);
        }
        if (r->jobs == 0) sync_phase_next(r);
        break;
    case PH_RECONCILE:
        run_finish(r);
        break;
    case PH_INBOX:
        if (inbox_next(r)) run_finish(r);
        break;
    default:
        break;
    }
}

static sync_run *run_start(const sync_env *env, const char *id, const char *name, bool force_full,
                           kv_budget *budget, sync_memo *memo, sync_done_cb cb, void *arg,
                           inbox *ib)
{
    sync_run *r = kvs_xcalloc(1, sizeof *r);
    r->inbox = ib;
    r->memo = memo;
    r->env = *env;
    r->id = kvs_strdup(id);
    r->name = kvs_strdup(name);
    r->force_full = force_full;
    r->psize = env->cfg->page_size;
    r->budget = budget;
    r->cb = cb;
    r->cb_arg = arg;
    r->lctx.integration = r->name;
    kvs_buf_init(&r->failures);
    kvs_buf_init(&r->notes);
    uv_timer_init(env->loop, &r->lease_timer);
    r->lease_timer.data = r;
    db_opts dopts = {
        .conninfo = env->cfg->db_url,
        .connect_timeout_ms = (long)env->cfg->db_connect_timeout_s * 1000,
        .statement_timeout_ms = (long)env->cfg->db_statement_timeout_s * 1000,
        .application_name = "kiotviet-syncd",
        .schema = env->cfg->db_schema,
    };
    (void)db_pooler_parse(env->cfg->db_pooler, &dopts.pooler); /* validated by config_load */
    r->db = db_conn_new(env->loop, &dopts);
    writer_opts wo = {
        .loop = env->loop,
        .store = env->store,
        .db = &dopts,
        .shared = r->db,
        .connections = env->cfg->store_connections,
        .integration = id,
        .owner = env->daemon_id,
        .lease_seconds = env->cfg->lease_seconds,
        .max_delete_ratio = env->cfg->max_delete_ratio,
        .force_deletes = env->force_deletes,
        .lctx = &r->lctx,
        .cb = written_cb,
        .arg = r,
    };
    r->w = writer_new(&wo);
    char secs[16];
    const char *p[3];
    lease_params(r, p, secs);
    r->phase = PH_CLAIM;
    db_batch *b = db_batch_new();
    db_batch_add(b, store_sql(env->store, ST_CLAIM), 3, p);
    /* The database's clock, read in the claim's transaction: cursors never come from this host's
     * clock, which may jump. */
    db_batch_add(b, store_sql(env->store, ST_DB_NOW), 0, NULL);
    db_batch_add(b, store_sql(env->store, ST_ANY_PRODUCTS), 0, NULL);
    db_batch_add(b, store_sql(env->store, ST_LEASE_HOLDER), 1, p);
    db_submit(r->db, b, claim_cb, r);
    return r;
}

sync_run *sync_run_start(const sync_env *env, const char *id, const char *name, bool force_full,
                         kv_budget *budget, sync_memo *memo, sync_done_cb cb, void *arg)
{
    return run_start(env, id, name, force_full, budget, memo, cb, arg, NULL);
}

sync_run *sync_run_start_inbox(const sync_env *env, const char *id, const char *name,
                               kv_budget *budget, sync_memo *memo, sync_done_cb cb, void *arg)
{
    return run_start(env, id, name, false, budget, memo, cb, arg, inbox_new());
}

void sync_run_cancel(sync_run *r)
{
    if (r->phase == PH_FINISH) {
        /* Recording the end: no more retries of it. If it is waiting for the database, give up
         * now; the row stays 'running' and the next claim of this integration closes it as
         * abandoned. */
        if (r->cancelled) return;
        r->cancelled = true;
        if (r->finish_waiting) {
            r->finish_waiting = false;
            rlog_warn(&r->lctx, "stopping before the end of the run could be recorded");
            run_close(r);
        }
        return;
    }
    if (r->cancelled || r->phase > PH_FINISH) return;
    r->cancelled = true;
    rlog_notice(&r->lctx, "cancelling the run");
    if (r->phase == PH_CLAIM || r->phase == PH_START) return; /* their callbacks finish */
    sync_fail(r, "cancelled");
}

void sync_run_progress(const sync_run *r, char *buf, size_t cap)
{
    const pager *pg = &r->pg;
    if (r->phase == PH_PRODUCTS || r->phase == PH_CATEGORIES || r->phase == PH_STOCK) {
        snprintf(buf, cap, "%s %d/%" PRId64, sync_entity_name(pg->ent),
                 pg->ent == WRITER_PRODUCTS ? r->counts.products_synced
                 : pg->ent == WRITER_STOCK  ? r->counts.stock_synced
                                            : r->counts.categories_synced,
                 pg->total < 0 ? (int64_t)0 : pg->total);
    } else {
        snprintf(buf, cap, "%s", r->phase <= PH_BRANCHES ? "starting" : "finishing");
    }
}
