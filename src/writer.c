/* The page writer (see writer.h): one state machine per piece of work.
 *
 *   put -> send (least busy connection) -> result
 *     ok            -> report (lease_lost when the lease check found no lease)
 *     transient     -> wait (backoff timer, on the waiting list) -> send again, for a lease
 *                      period; then report db_down
 *     row error     -> a page of several rows: split into one child per row, report when the
 *                      last child is done; one row: report it failed
 *     other error   -> report error
 *
 * A job is owned by the writer from put to report: job_report calls the callback and frees it. */
#include "writer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"

typedef struct wjob wjob;

struct wjob {
    writer *w;
    enum writer_kind kind;
    enum writer_entity ent;
    char *rows;             /* JSON array text (a page, a row) or bigint[] literal; owned */
    int nrows;
    map_row *row;           /* a page's row records (nrows; owned), NULL otherwise */
    wjob *parent;           /* a row of a split page, NULL otherwise */
    int row_index;          /* its index in parent->row */
    int children;           /* a split page: rows not yet done */
    writer_outcome out;     /* accumulated outcome (a split page: over its rows) */
    writer_failure *failed; /* out.failed, owned */
    char error[512];
    int attempt;
    int conn;               /* index into w->conn of the connection it was sent on */
    uint64_t first_fail_ms; /* monotonic time of the first lost connection, 0 = none */
    uv_timer_t *timer;      /* retry timer, NULL unless waiting */
    wjob *wnext, *wprev;    /* the writer's list of jobs waiting on their timer */
};

struct writer {
    writer_opts o;
    char *integration, *owner;
    char secs[16], ratio[32];
    db_conn *conn[WRITER_MAX_CONNECTIONS];
    bool owned[WRITER_MAX_CONNECTIONS];
    int nconn;
    int on_conn[WRITER_MAX_CONNECTIONS]; /* jobs in flight per connection */
    bool expect_new[WRITER__ENTITIES]; /* the last page of the entity was all new rows */
    bool stopped;
    int pending;            /* pieces of work handed in and not reported */
    wjob *waiting;
};

static void job_send(wjob *j);

bool writer_db_transient(const db_result *res)
{
    if (res->status == DB_E_CONN || res->status == DB_E_TIMEOUT) return true;
    if (res->status != DB_E_SQL) return false;
    const char *st = res->sqlstate;
    return !strncmp(st, "08", 2) || !strcmp(st, "57P01") || !strcmp(st, "57P02") ||
           !strcmp(st, "57P03") || !strcmp(st, "40001") || !strcmp(st, "40P01") ||
           !strcmp(st, "53300");
}

uint64_t writer_retry_delay_ms(int lease_seconds, unsigned attempt)
{
    uint64_t cap = (uint64_t)lease_seconds * 1000 / 4;
    if (cap < 1000) cap = 1000;
    if (cap > 30000) cap = 30000;
    return backoff_delay_ms(attempt, 500, cap, (uint32_t)(kvs_now_mono_ms() * 2654435761u));
}

static const char *ent_name(enum writer_entity e)
{
    return e == WRITER_PRODUCTS   ? "products"
           : e == WRITER_BRANCHES ? "branches"
           : e == WRITER_STOCK    ? "stock"
                                  : "categories";
}

/* ---- life of a job ---------------------------------------------------------------------- */

static wjob *job_new(writer *w, enum writer_kind kind, enum writer_entity ent, char *rows, int n)
{
    wjob *j = kvs_xcalloc(1, sizeof *j);
    j->w = w;
    j->kind = kind;
    j->ent = ent;
    j->rows = rows;
    j->nrows = n;
    j->out.kind = kind;
    j->out.ent = ent;
    j->out.rows = n;
    return j;
}

static void job_free(wjob *j)
{
    free(j->rows);
    free(j->row);
    free(j->failed);
    free(j);
}

static void child_done(wjob *c);

/* Reports a job (a row of a split page: into its page) and frees it. */
static void job_report(wjob *j)
{
    if (j->parent) {
        child_done(j);
        return;
    }
    writer *w = j->w;
    j->out.failed = j->failed;
    if (j->error[0]) j->out.error = j->error;
    w->pending--;
    w->o.cb(&j->out, w->o.arg);
    job_free(j);
}

/* A row of a split page is done: its outcome joins the page's. */
static void child_done(wjob *c)
{
    wjob *p = c->parent;
    writer_outcome *po = &p->out, *co = &c->out;
    po->inserted += co->inserted;
    po->updated += co->updated;
    po->unchanged += co->unchanged;
    po->unsent += co->unsent;
    po->lease_lost |= co->lease_lost;
    po->db_down |= co->db_down;
    if (co->nfailed) {
        p->failed = kvs_xrealloc(p->failed, (size_t)(po->nfailed + 1) * sizeof *p->failed);
        p->failed[po->nfailed++] = c->failed[0];
    }
    if (c->error[0] && !p->error[0]) memcpy(p->error, c->error, sizeof p->error);
    job_free(c);
    if (--p->children == 0) job_report(p);
}

static void job_timer_closed(uv_handle_t *h) { free(h); }

static void waiting_unlink(wjob *j)
{
    writer *w = j->w;
    if (j->wprev)
        j->wprev->wnext = j->wnext;
    else
        w->waiting = j->wnext;
    if (j->wnext) j->wnext->wprev = j->wprev;
    j->wnext = j->wprev = NULL;
}

static void job_retry_cb(uv_timer_t *t)
{
    wjob *j = t->data;
    uv_close((uv_handle_t *)t, job_timer_closed);
    j->timer = NULL;
    waiting_unlink(j);
    job_send(j);
}

/* Gives the job up: none of its rows were stored. */
static void job_give_up(wjob *j)
{
    if (j->kind == WRITER_PAGE) j->out.unsent = j->nrows;
    job_report(j);
}

void writer_stop(writer *w)
{
    w->stopped = true;
    while (w->waiting) {
        wjob *j = w->waiting;
        waiting_unlink(j);
        uv_timer_stop(j->timer);
        uv_close((uv_handle_t *)j->timer, job_timer_closed);
        j->timer = NULL;
        job_give_up(j);
    }
}

int writer_pending(const writer *w) { return w->pending; }

/* ---- results ---------------------------------------------------------------------------- */

/* Splits a page that failed on one row's data into one job per row. The rows are cut out of
 * the page's text by their records, never re-encoded, so every number keeps its exact text. */
static void job_split(wjob *j)
{
    writer *w = j->w;
    j->children = j->nrows;
    for (int i = 0; i < j->nrows; i++) {
        const map_row *r = &j->row[i];
        char *text = kvs_xmalloc(r->len + 3);
        text[0] = '[';
        memcpy(text + 1, j->rows + r->start, r->len);
        memcpy(text + 1 + r->len, "]", 2);
        wjob *k = job_new(w, WRITER_PAGE, j->ent, text, 1);
        k->parent = j;
        k->row_index = i;
        job_send(k);
    }
}

/* The row a one-row job holds. */
static const map_row *job_row(const wjob *j)
{
    return j->parent ? &j->parent->row[j->row_index] : &j->row[0];
}

static void job_ok(wjob *j, PGresult *pr)
{
    writer *w = j->w;
    bool lease_ok = PQntuples(pr) == 1 && atoi(PQgetvalue(pr, 0, 0)) > 0;
    if (!lease_ok) {
        j->out.lease_lost = true;
        if (j->kind == WRITER_PAGE) j->out.unsent = j->nrows;
        return;
    }
    int a = atoi(PQgetvalue(pr, 0, 1));
    int b = PQnfields(pr) > 2 ? atoi(PQgetvalue(pr, 0, 2)) : 0;
    switch (j->kind) {
    case WRITER_PAGE:
        /* A page whose rows were all new predicts more of them (a first sync): the next pages
         * skip the prefilter until one finds a row that exists. */
        if (!j->parent) w->expect_new[j->ent] = a == j->nrows;
        j->out.inserted = a;
        j->out.updated = b;
        j->out.unchanged = j->nrows - a - b;
        break;
    case WRITER_REMOVE:
        j->out.marked = a;
        break;
    case WRITER_RECONCILE:
        j->out.marked = a;
        j->out.others = b != 0;
        j->out.would_mark = PQnfields(pr) > 4 ? atol(PQgetvalue(pr, 0, 3)) : 0;
        j->out.live = PQnfields(pr) > 4 ? atol(PQgetvalue(pr, 0, 4)) : 0;
        break;
    case WRITER_RELINK:
        break;
    }
}

/* Waits and sends again, or (after a lease period) gives up as db_down. */
static void job_transient(wjob *j, const db_result *res)
{
    writer *w = j->w;
    uint64_t now = kvs_now_mono_ms();
    if (!j->first_fail_ms) j->first_fail_ms = now;
    uint64_t patience = (uint64_t)w->o.lease_seconds * 1000;
    if (now - j->first_fail_ms < patience) {
        uint64_t wait = writer_retry_delay_ms(w->o.lease_seconds, (unsigned)j->attempt++);
        rlog_warn(w->o.lctx, "database connection lost (%s); retrying the batch in %llu ms",
                  res->message ? res->message : "?", (unsigned long long)wait);
        j->timer = kvs_xmalloc(sizeof *j->timer);
        uv_timer_init(w->o.loop, j->timer);
        j->timer->data = j;
        uv_timer_start(j->timer, job_retry_cb, wait, 0);
        j->wnext = w->waiting;
        if (w->waiting) w->waiting->wprev = j;
        w->waiting = j;
        return;
    }
    j->out.db_down = true;
    snprintf(j->error, sizeof j->error, "database unavailable for %llu s while storing %s: %s",
             (unsigned long long)((now - j->first_fail_ms) / 1000), ent_name(j->ent),
             res->message ? res->message : "connection lost");
    log_redact(j->error, sizeof j->error);
    job_give_up(j);
}

static void job_cb(db_result *res, void *arg)
{
    wjob *j = arg;
    writer *w = j->w;
    w->on_conn[j->conn]--;
    if (res->status == DB_OK) {
        job_ok(j, res->results[0]);
        job_report(j);
        return;
    }
    if (writer_db_transient(res) && !w->stopped) {
        /* The batch was one transaction: all or nothing of it is stored (all, when only the
         * answer was lost), and storing it again is harmless. Send it again in a new one (db
         * reconnects on the next submit) for up to one lease period. */
        job_transient(j, res);
        return;
    }
    /* Data and constraint errors (classes 22, 23) belong to one row: find it. A cardinality
     * violation (21000: one id twice in a statement) is resolved by storing rows one by one. */
    bool row_error = res->status == DB_E_SQL &&
                     (!strncmp(res->sqlstate, "22", 2) || !strncmp(res->sqlstate, "23", 2) ||
                      !strncmp(res->sqlstate, "21", 2));
    if (row_error && j->kind == WRITER_PAGE && j->nrows > 1) {
        rlog_info(w->o.lctx, "a page failed on one row (%s); storing its rows one by one",
                  res->message ? res->message : "?");
        job_split(j);
        return;
    }
    if (row_error && j->kind == WRITER_PAGE) {
        const map_row *r = job_row(j);
        j->failed = kvs_xcalloc(1, sizeof *j->failed);
        writer_failure *f = j->failed;
        f->id = r->id;
        f->modified_us = r->modified_us;
        snprintf(f->message, sizeof f->message, "%s%s%s",
                 res->message ? res->message : "database error", res->detail ? ": " : "",
                 res->detail ? res->detail : "");
        log_redact(f->message, sizeof f->message);
        rlog_warn(w->o.lctx, "%s %" PRId64 " not stored: %s",
                  j->ent == WRITER_PRODUCTS || j->ent == WRITER_STOCK ? "product"
                  : j->ent == WRITER_BRANCHES                         ? "branch"
                                                                      : "category",
                  f->id, f->message);
        j->out.nfailed = 1;
        job_report(j);
        return;
    }
    rlog_err(w->o.lctx, "storing a page failed: %s%s%s%s", res->message ? res->message : "error",
             res->sqlstate[0] ? " (SQLSTATE " : "", res->sqlstate, res->sqlstate[0] ? ")" : "");
    snprintf(j->error, sizeof j->error, "database error while storing %s: %s%s%s",
             ent_name(j->ent), res->message ? res->message : "unknown",
             res->sqlstate[0] ? " SQLSTATE " : "", res->sqlstate);
    log_redact(j->error, sizeof j->error);
    job_give_up(j);
}

static const char *job_sql(const writer *w, const wjob *j)
{
    const store *s = w->o.store;
    bool prod = j->ent == WRITER_PRODUCTS;
    if (j->ent == WRITER_BRANCHES) /* few rows: no prefilter, no insert-only variant */
        return j->kind == WRITER_PAGE ? store_branches_upsert_sql(s) : store_branches_remove_sql(s);
    switch (j->kind) {
    case WRITER_PAGE:
        if (j->ent == WRITER_STOCK) return store_stock_update_sql(s);
        if (!j->parent && w->expect_new[j->ent])
            return prod ? store_products_insert_sql(s) : store_categories_insert_sql(s);
        return prod ? store_products_upsert_sql(s) : store_categories_upsert_sql(s);
    case WRITER_REMOVE:
        return prod ? store_products_remove_sql(s) : store_categories_remove_sql(s);
    case WRITER_RECONCILE:
        return store_products_reconcile_sql(s);
    case WRITER_RELINK:
        return prod ? store_products_relink_sql(s) : store_categories_relink_sql(s);
    }
    return NULL;
}

static void job_send(wjob *j)
{
    writer *w = j->w;
    /* Pages go to the least busy connection (the first on a tie, so a small run opens no
     * other); everything else stays on the first connection, in order. */
    j->conn = 0;
    if (j->kind == WRITER_PAGE)
        for (int i = 1; i < w->nconn; i++)
            if (w->on_conn[i] < w->on_conn[j->conn]) j->conn = i;
    w->on_conn[j->conn]++;
    const char *p[5] = {j->rows, w->integration, w->owner, w->secs,
                        w->o.force_deletes ? NULL : w->ratio};
    db_batch *b = db_batch_new();
    db_batch_add(b, job_sql(w, j), j->kind == WRITER_RECONCILE ? 5 : 4, p);
    db_submit(w->conn[j->conn], b, job_cb, j);
}

/* ---- interface -------------------------------------------------------------------------- */

writer *writer_new(const writer_opts *o)
{
    writer *w = kvs_xcalloc(1, sizeof *w);
    w->o = *o;
    w->integration = kvs_strdup(o->integration);
    w->owner = kvs_strdup(o->owner);
    w->o.integration = w->integration;
    w->o.owner = w->owner;
    snprintf(w->secs, sizeof w->secs, "%d", o->lease_seconds);
    /* A reconciliation's guard: the share of live products it may mark (none: forced). */
    snprintf(w->ratio, sizeof w->ratio, "%.17g", o->max_delete_ratio);
    w->nconn = o->connections;
    if (w->nconn < 1) w->nconn = 1;
    if (w->nconn > WRITER_MAX_CONNECTIONS) w->nconn = WRITER_MAX_CONNECTIONS;
    for (int i = 0; i < w->nconn; i++) {
        w->owned[i] = i > 0 || !o->shared;
        w->conn[i] = w->owned[i] ? db_conn_new(o->loop, o->db) : o->shared;
    }
    return w;
}

void writer_free(writer *w)
{
    if (!w) return;
    writer_stop(w);
    for (int i = 0; i < w->nconn; i++)
        if (w->owned[i]) db_conn_close(w->conn[i]);
    free(w->integration);
    free(w->owner);
    free(w);
}

void writer_put_page(writer *w, enum writer_entity ent, map_page *p)
{
    REQUIRE(p->nrows > 0);
    wjob *j = job_new(w, WRITER_PAGE, ent, kvs_buf_steal(&p->rows), p->nrows);
    j->row = p->row;
    p->row = NULL;
    p->nrows = p->rows_cap = 0;
    w->pending++;
    job_send(j);
}

/* "{1,2,3}" from ids. A full run's reconciliation sends every id it saw (100,000 of them):
 * digits are written by hand, not through printf. */
static char *array_literal(const int64_t *ids, int n)
{
    kvs_buf b;
    kvs_buf_init(&b);
    REQUIRE(kvs_buf_reserve(&b, (size_t)n * 21 + 3) == 0);
    b.data[b.len++] = '{';
    for (int i = 0; i < n; i++) {
        char tmp[24];
        int k = sizeof tmp;
        uint64_t v = ids[i] < 0 ? -(uint64_t)ids[i] : (uint64_t)ids[i];
        do tmp[--k] = (char)('0' + v % 10); while ((v /= 10) != 0);
        if (ids[i] < 0) tmp[--k] = '-';
        if (i) b.data[b.len++] = ',';
        memcpy(b.data + b.len, tmp + k, sizeof tmp - (size_t)k);
        b.len += sizeof tmp - (size_t)k;
    }
    b.data[b.len++] = '}';
    b.data[b.len] = '\0';
    return kvs_buf_steal(&b);
}

void writer_put_ids(writer *w, enum writer_kind kind, enum writer_entity ent, const int64_t *ids,
                    int n)
{
    REQUIRE(kind == WRITER_REMOVE || kind == WRITER_RECONCILE);
    w->pending++;
    job_send(job_new(w, kind, ent, array_literal(ids, n), n));
}

void writer_put_relink(writer *w, enum writer_entity ent)
{
    w->pending++;
    job_send(job_new(w, WRITER_RELINK, ent, kvs_strdup("{}"), 0));
}
