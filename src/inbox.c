/* The inbox run: a sync run (sync.c: claim, lease, sync_logs row, writer, end) whose input is
 * the integration's unprocessed webhook events instead of KiotViet's pages.
 *
 *   read events (ST_INBOX_READ, up to INBOX_BATCH, oldest first) -> stored versions of their
 *   products (ST_INBOX_VERSIONS) -> categories page -> relink -> products page and removals
 *   -> stock.update from the notifications' own figures where their order is certain
 *   (wh_batch_stock_direct: a first delivery, one per branch, the other branches' stored rows
 *   known; ST_INBOX_STOCK), written as a stock page with no GET; for the others
 *   -> stock.update: GET /productOnHands since a little before the oldest stock event (one GET
 *   per 100 products whose stock changed: every branch of each, which a notification naming one
 *   branch cannot give), written as a poll's stock pages (WRITER_STOCK); a product it did not
 *   list is refetched alone (GET /products/{id}, at most INBOX_REFETCH_MAX per run). When the
 *   previous inbox run's read was complete and written, this one starts where that one ended
 *   (the integration's sync_memo), less STOCK_READ_OVERLAP_S: a burst's runs then do not read
 *   one another's products again (15 s of a busy shop's sales are several pages)
 *   -> mark every event read processed with its result, and delete
 *   processed events past [webhook] retention_days (ST_INBOX_MARK, ST_INBOX_PRUNE).
 *
 * Every write goes through the run's writer (mapping_webhook.c builds its pages through
 * mapping.c): the same transactions, lease checks and retries as a poll. Events are marked only
 * after their writes reported, in the same run: a run that fails, is cancelled or dies (kill -9)
 * leaves them unprocessed, and the next inbox run applies them. The scheduler starts inbox runs
 * (scheduler_inbox_kick, and after each read of the integrations when events wait). */
#include "sync_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtime.h"
#include "mapping_webhook.h"

#define INBOX_BATCH 500       /* events one run reads; a full batch asks for another run */
#define INBOX_REFETCH_MAX 50  /* stock.update refetches per run (GET budget); the rest are
                                 marked as errors and left to the polls */
#define STOCK_OVERLAP_S 15    /* /productOnHands from this long before the oldest stock event
                                 arrived: the change happened before it, on KiotViet's clock
                                 (NTP-synchronised servers: well under a second apart) */
#define STOCK_READ_OVERLAP_S 1 /* ... or from this long before KiotViet's time at the previous
                                  complete read: a change committed at KiotViet later than its
                                  modifiedDate says (a refetch catches a longer lag) */
#define STOCK_PAGE 100
#define STOCK_PAGES_MAX 50    /* a burst of 5,000 stock changes in one run, at most */

enum ib_stage { IB_READ, IB_VERSIONS, IB_CATEGORIES, IB_RELINK, IB_PRODUCTS, IB_STOCK_DIRECT,
                IB_STOCK, IB_REFETCH, IB_MARK, IB_DONE };

struct inbox {
    enum ib_stage stage;
    wh_batch b;
    map_page products;        /* mapped at IB_CATEGORIES, written at IB_PRODUCTS */
    int results[WH_ERROR + 1]; /* events by result, once marked */
    int64_t stock_from_us;    /* the oldest stock.update event's arrival, 0 when none */
    int stock_pages;          /* /productOnHands pages read */
    kvs_idset stock_seen;     /* products those pages listed, or written from their
                                 notifications' figures (IB_STOCK_DIRECT) */
    int64_t stock_read_kv_us; /* KiotViet's "timestamp" at the first of them (0: none) */
    bool stock_incomplete;    /* a page failed, was not written, or pages were left unread */
};

typedef struct refetch {
    sync_run *run;
    int64_t id;
} refetch;

inbox *inbox_new(void)
{
    inbox *ib = kvs_xcalloc(1, sizeof *ib);
    wh_batch_init(&ib->b);
    map_page_init(&ib->products);
    return ib;
}

void inbox_free(inbox *ib)
{
    if (!ib) return;
    wh_batch_free(&ib->b);
    map_page_free(&ib->products);
    kvs_idset_free(&ib->stock_seen);
    free(ib);
}

bool inbox_more(const inbox *ib) { return ib && ib->b.nev >= INBOX_BATCH; }

void inbox_details(const sync_run *r, kvs_buf *out)
{
    const inbox *ib = r->inbox;
    REQUIRE(kvs_buf_printf(out, ",\"webhook_events\":%d", ib->b.nev) == 0);
    REQUIRE(kvs_buf_puts(out, ",\"webhook_results\":{") == 0);
    for (int i = 0; i <= WH_ERROR; i++)
        REQUIRE(kvs_buf_printf(out, "%s\"%s\":%d", i ? "," : "", wh_result_name(i),
                               ib->results[i]) == 0);
    REQUIRE(kvs_buf_puts(out, "}") == 0);
}

static bool db_failed(sync_run *r, const char *what, const db_result *res)
{
    if (res->status == DB_OK) return false;
    if (writer_db_transient(res)) r->db_down = true;
    sync_fail(r, "%s: %s", what, res->message ? res->message : "database error");
    return true;
}

static void read_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    inbox *ib = r->inbox;
    if (!db_failed(r, "could not read the webhook inbox", res)) {
        PGresult *pr = res->results[0];
        for (int i = 0; i < PQntuples(pr); i++) {
            wh_batch_add(&ib->b, strtoll(PQgetvalue(pr, i, 0), NULL, 10), PQgetvalue(pr, i, 1),
                         (size_t)PQgetlength(pr, i, 1));
            int64_t at = strtoll(PQgetvalue(pr, i, 3), NULL, 10);
            if (strstr(PQgetvalue(pr, i, 2), "stock.update") &&
                (!ib->stock_from_us || at < ib->stock_from_us))
                ib->stock_from_us = at;
        }
        rlog_info(&r->lctx, "%d webhook event(s) to apply", ib->b.nev);
        ib->stage = IB_VERSIONS;
    }
    jobs_dec(r);
}

static void versions_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    inbox *ib = r->inbox;
    if (!db_failed(r, "could not read the stored product versions", res)) {
        PGresult *pr = res->results[0];
        int n = PQntuples(pr);
        int64_t *ids = kvs_xmalloc((size_t)(n + 1) * sizeof *ids);
        int64_t *us = kvs_xmalloc((size_t)(n + 1) * sizeof *us);
        for (int i = 0; i < n; i++) {
            ids[i] = strtoll(PQgetvalue(pr, i, 0), NULL, 10);
            us[i] = strtoll(PQgetvalue(pr, i, 1), NULL, 10);
        }
        wh_batch_versions(&ib->b, ids, us, n);
        free(ids);
        free(us);
        ib->stage = IB_CATEGORIES;
    }
    jobs_dec(r);
}

/* Every event by type and result, and each product version written: its age (KiotViet's
 * ModifiedDate to now, after its write committed) in the change-to-row histogram. */
static void count_metrics(sync_run *r)
{
    inbox *ib = r->inbox;
    for (int i = 0; i < ib->b.nev; i++) {
        const wh_event *e = &ib->b.ev[i];
        const char *res = wh_result_name(wh_event_result(e));
        if (!e->types) metrics_webhook(r->env.metrics, r->name, "", res);
        for (int t = 0; t < WH__TYPES; t++)
            if (e->types & (1u << t))
                metrics_webhook(r->env.metrics, r->name, wh_type_names[t], res);
    }
    int64_t now_us = kvs_now_wall_ms() * 1000;
    for (int i = 0; i < ib->b.products.n; i++)
        if (ib->b.products.v[i].modified_us)
            metrics_change_latency(r->env.metrics,
                                   (double)(now_us - ib->b.products.v[i].modified_us) / 1e6);
}

static void mark_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    inbox *ib = r->inbox;
    if (!db_failed(r, "could not mark the webhook events processed", res)) {
        rlog_notice(&r->lctx,
                    "webhook events: %d applied, %d duplicate, %d stale, %d ignored, %d error",
                    ib->results[WH_APPLIED], ib->results[WH_DUPLICATE], ib->results[WH_STALE],
                    ib->results[WH_IGNORED], ib->results[WH_ERROR]);
        count_metrics(r);
        long pruned = PQntuples(res->results[1]) ? 0 : atol(PQcmdTuples(res->results[1]));
        if (pruned) rlog_info(&r->lctx, "deleted %ld processed webhook event(s)", pruned);
        ib->stage = IB_DONE;
    }
    jobs_dec(r);
}

/* "{1,2,3}" of a list's ids. */
static void ids_text(const wh_items *l, kvs_buf *out)
{
    REQUIRE(kvs_buf_puts(out, "{") == 0);
    for (int i = 0; i < l->n; i++)
        REQUIRE(kvs_buf_printf(out, "%s%" PRId64, i ? "," : "", l->v[i].id) == 0);
    REQUIRE(kvs_buf_puts(out, "}") == 0);
}

static void put_page(sync_run *r, enum writer_entity ent, map_page *p)
{
    if (!p->nrows) return;
    *(sync_ent_products(ent) ? &r->counts.products_synced : &r->counts.categories_synced) +=
        p->nrows;
    r->jobs++;
    writer_put_page(r->w, ent, p);
}

static void put_removed(sync_run *r, enum writer_entity ent, const wh_items *l)
{
    if (!l->n) return;
    int64_t *ids = kvs_xmalloc((size_t)l->n * sizeof *ids);
    for (int i = 0; i < l->n; i++) ids[i] = l->v[i].id;
    r->jobs++;
    writer_put_ids(r->w, WRITER_REMOVE, ent, ids, l->n);
    free(ids);
}

static void refetch_cb(int rc, kv_page *page, const char *error, void *arg)
{
    refetch *f = arg;
    sync_run *r = f->run;
    inbox *ib = r->inbox;
    if (rc == KV_OK && cJSON_IsObject(page->doc.root)) {
        cJSON *arr = cJSON_CreateArray();
        REQUIRE(arr && cJSON_AddItemReferenceToArray(arr, page->doc.root));
        map_page p;
        map_page_init(&p);
        map_products(arr, r->env.mopts, &p);
        cJSON_Delete(arr);
        if (!sync_stopping(r)) put_page(r, WRITER_PRODUCTS, &p);
        if (p.nfailed) wh_batch_fail_id(&ib->b, &ib->b.stock, f->id, "could not map the product");
        map_page_free(&p);
    } else if (rc != KV_E_CANCELLED && !(rc == KV_E_HTTP && error && strstr(error, "404"))) {
        /* A 404: the product is gone, and its product.delete says so. */
        char msg[160];
        snprintf(msg, sizeof msg, "could not refetch the product: %s", error ? error : "?");
        wh_batch_fail_id(&ib->b, &ib->b.stock, f->id, msg);
    }
    if (page) kv_page_free(page);
    free(f);
    jobs_dec(r);
}

/* Products of stock.update events /productOnHands did not list (or all of them, when there was
 * no arrival time to read from): one GET each, up to INBOX_REFETCH_MAX. */
static void stage_refetch(sync_run *r)
{
    inbox *ib = r->inbox;
    int n = 0;
    for (int i = 0; i < ib->b.stock.n; i++) {
        int64_t id = ib->b.stock.v[i].id;
        if (kvs_idset_has(&ib->stock_seen, id)) continue;
        if (wh_batch_removed(&ib->b, id)) continue; /* deleted since: nothing to refetch */
        if (n++ >= INBOX_REFETCH_MAX) {
            wh_batch_fail_id(&ib->b, &ib->b.stock, id,
                             "too many stock changes in one run: left to the next poll");
            continue;
        }
        char path[64];
        snprintf(path, sizeof path, "/products/%" PRId64, id);
        refetch *f = kvs_xcalloc(1, sizeof *f);
        f->run = r;
        f->id = id;
        r->jobs++;
        kv_get(r->kv, path, refetch_cb, f);
    }
}

static void onhands_get(sync_run *r);

static void onhands_cb(int rc, kv_page *page, const char *error, void *arg)
{
    sync_run *r = arg;
    inbox *ib = r->inbox;
    if (rc == KV_OK && page->data) {
        map_page p;
        map_page_init(&p);
        map_stock(page->data, r->env.mopts, &p);
        for (int i = 0; i < p.nrows; i++) kvs_idset_add(&ib->stock_seen, p.row[i].id);
        if (p.nfailed) ib->stock_incomplete = true;
        if (ib->stock_pages == 1) ib->stock_read_kv_us = page->timestamp_us;
        if (!sync_stopping(r)) put_page(r, WRITER_STOCK, &p);
        map_page_free(&p);
        if (cJSON_GetArraySize(page->data) >= STOCK_PAGE && !sync_stopping(r)) {
            if (ib->stock_pages < STOCK_PAGES_MAX)
                onhands_get(r);
            else
                ib->stock_incomplete = true;
        }
    } else if (rc != KV_E_CANCELLED) {
        ib->stock_incomplete = true;
        /* Not fatal: the products are refetched one by one, and the polls read stock too. */
        rlog_warn(&r->lctx, "could not read /productOnHands for the stock changes: %s",
                  error ? error : "?");
    }
    if (page) kv_page_free(page);
    jobs_dec(r);
}

static void onhands_get(sync_run *r)
{
    inbox *ib = r->inbox;
    char from[KVTIME_BUFSZ], q[256];
    int64_t from_us = ib->stock_from_us - (int64_t)STOCK_OVERLAP_S * 1000000;
    int64_t prev_us = r->memo ? r->memo->stock_read_kv_us : 0;
    if (prev_us && prev_us - (int64_t)STOCK_READ_OVERLAP_S * 1000000 > from_us)
        from_us = prev_us - (int64_t)STOCK_READ_OVERLAP_S * 1000000;
    kvtime_format_vn_local(from_us, from);
    snprintf(q, sizeof q,
             "/productOnHands?pageSize=%d&currentItem=%d&orderBy=id&orderDirection=Asc"
             "&lastModifiedFrom=%s",
             STOCK_PAGE, ib->stock_pages * STOCK_PAGE, from);
    ib->stock_pages++;
    r->jobs++;
    kv_get(r->kv, q, onhands_cb, r);
}

/* The stored stock rows of the batch's stock products: those whose notifications can be
 * applied as they are go out as one stock page (no GET). */
static void stock_rows_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    inbox *ib = r->inbox;
    if (res->status != DB_OK) {
        /* Not fatal: the /productOnHands read covers them. */
        if (res->status != DB_E_CANCELLED)
            rlog_warn(&r->lctx, "could not read the stored stock of the notified products: %s",
                      res->message ? res->message : "?");
    } else if (!sync_stopping(r)) {
        PGresult *pr = res->results[0];
        int n = PQntuples(pr);
        wh_stock_row *rows = kvs_xcalloc((size_t)n + 1, sizeof *rows);
        for (int i = 0; i < n; i++)
            rows[i] = (wh_stock_row){.product = strtoll(PQgetvalue(pr, i, 0), NULL, 10),
                                     .branch = strtoll(PQgetvalue(pr, i, 1), NULL, 10),
                                     .on_hand = PQgetvalue(pr, i, 2),
                                     .reserved = PQgetvalue(pr, i, 3)};
        map_page p;
        map_page_init(&p);
        wh_batch_stock_direct(&ib->b, r->env.mopts, rows, n, &p, &ib->stock_seen);
        for (int i = 0; i < p.nfailed; i++) /* our own records of checked numbers: unlikely */
            wh_batch_fail_id(&ib->b, &ib->b.stock, p.failure[i].id,
                             "could not map the notified stock");
        if (p.nrows) rlog_info(&r->lctx, "%d product(s) of stock notifications applied from"
                                         " their figures", p.nrows);
        put_page(r, WRITER_STOCK, &p);
        map_page_free(&p);
        free(rows);
    }
    jobs_dec(r);
}

/* A read of the run's database about the ids of l ($1 bigint[]), answered to cb. */
static void exec_ids(sync_run *r, enum store_stmt st, const wh_items *l, db_batch_cb cb)
{
    kvs_buf ids;
    kvs_buf_init(&ids);
    ids_text(l, &ids);
    const char *p[1] = {ids.data};
    r->jobs++;
    db_exec(r->db, store_sql(r->env.store, st), 1, p, cb, r);
    kvs_buf_free(&ids);
}

static void stage_stock_direct(sync_run *r)
{
    inbox *ib = r->inbox;
    if (ib->b.stock.n) exec_ids(r, ST_INBOX_STOCK, &ib->b.stock, stock_rows_cb);
}

/* The read, when a stock product was not written from its notifications' figures. */
static void stage_stock(sync_run *r)
{
    inbox *ib = r->inbox;
    bool left = false;
    for (int i = 0; i < ib->b.stock.n; i++) {
        ib->b.ev[ib->b.stock.v[i].ev].applied++;
        left = left || (!kvs_idset_has(&ib->stock_seen, ib->b.stock.v[i].id) &&
                        !wh_batch_removed(&ib->b, ib->b.stock.v[i].id));
    }
    if (left && ib->stock_from_us) onhands_get(r);
}

static void stage_mark(sync_run *r)
{
    inbox *ib = r->inbox;
    /* Every stock page has been written (or refused) by now: a complete read is where the
     * next run's read may start. */
    if (r->memo && ib->stock_read_kv_us && !ib->stock_incomplete)
        r->memo->stock_read_kv_us = ib->stock_read_kv_us;
    kvs_buf j;
    kvs_buf_init(&j);
    REQUIRE(kvs_buf_puts(&j, "[") == 0);
    for (int i = 0; i < ib->b.nev; i++) {
        const wh_event *e = &ib->b.ev[i];
        char buf[200];
        const char *text = wh_event_result_text(e, buf, sizeof buf);
        kvs_utf8_clean(buf);
        ib->results[wh_event_result(e)]++;
        REQUIRE(kvs_buf_printf(&j, "%s{\"id\":%" PRId64 ",\"result\":", i ? "," : "",
                               e->row_id) == 0);
        REQUIRE(kvs_buf_json_str(&j, text) == 0);
        REQUIRE(kvs_buf_puts(&j, "}") == 0);
    }
    REQUIRE(kvs_buf_puts(&j, "]") == 0);
    char days[16];
    snprintf(days, sizeof days, "%d", r->env.cfg->webhook_retention_days);
    const char *mp[3] = {r->row->id, j.data, r->env.daemon_id};
    const char *pp[2] = {r->row->id, days};
    db_batch *b = db_batch_new();
    db_batch_add(b, store_sql(r->env.store, ST_INBOX_MARK), 3, mp);
    db_batch_add(b, store_sql(r->env.store, ST_INBOX_PRUNE), 2, pp);
    r->jobs++;
    db_submit(r->db, b, mark_cb, r);
    kvs_buf_free(&j);
}

void inbox_written(sync_run *r, const writer_outcome *o)
{
    inbox *ib = r->inbox;
    for (int i = 0; i < o->nfailed; i++) {
        const char *msg = o->failed[i].message;
        if (o->ent == WRITER_CATEGORIES)
            wh_batch_fail_id(&ib->b, &ib->b.categories, o->failed[i].id, msg);
        if (o->ent == WRITER_PRODUCTS)
            wh_batch_fail_id(&ib->b, &ib->b.products, o->failed[i].id, msg);
        if (o->ent == WRITER_PRODUCTS || o->ent == WRITER_STOCK)
            wh_batch_fail_id(&ib->b, &ib->b.stock, o->failed[i].id, msg);
        if (o->ent == WRITER_STOCK) ib->stock_incomplete = true;
    }
}

/* Moves the inbox run on while nothing is pending; true when it is over (the caller ends the
 * run). Each stage either hands out work (jobs) and returns, or has none and falls through. */
bool inbox_next(sync_run *r)
{
    inbox *ib = r->inbox;
    while (r->jobs == 0 && !sync_stopping(r)) {
        switch (ib->stage) {
        case IB_READ: {
            const char *p[2] = {r->row->id, NULL};
            char lim[16];
            snprintf(lim, sizeof lim, "%d", INBOX_BATCH);
            p[1] = lim;
            r->jobs++;
            db_exec(r->db, store_sql(r->env.store, ST_INBOX_READ), 2, p, read_cb, r);
            break;
        }
        case IB_VERSIONS:
            if (ib->b.nev == 0) return true; /* another run took them: nothing to log */
            ib->stage = IB_CATEGORIES;
            if (ib->b.products.n) exec_ids(r, ST_INBOX_VERSIONS, &ib->b.products, versions_cb);
            break;
        case IB_CATEGORIES: {
            map_page cats;
            map_page_init(&cats);
            wh_batch_pages(&ib->b, r->env.mopts, &cats, &ib->products);
            ib->stage = IB_RELINK;
            put_page(r, WRITER_CATEGORIES, &cats);
            map_page_free(&cats);
            break;
        }
        case IB_RELINK:
            ib->stage = IB_PRODUCTS;
            sync_relink_changed(r);
            break;
        case IB_PRODUCTS:
            ib->stage = IB_STOCK_DIRECT;
            put_page(r, WRITER_PRODUCTS, &ib->products);
            put_removed(r, WRITER_PRODUCTS, &ib->b.removed[WRITER_PRODUCTS]);
            put_removed(r, WRITER_CATEGORIES, &ib->b.removed[WRITER_CATEGORIES]);
            break;
        case IB_STOCK_DIRECT:
            ib->stage = IB_STOCK;
            stage_stock_direct(r);
            break;
        case IB_STOCK:
            ib->stage = IB_REFETCH;
            stage_stock(r);
            break;
        case IB_REFETCH:
            ib->stage = IB_MARK;
            stage_refetch(r);
            break;
        case IB_MARK:
            stage_mark(r);
            break;
        case IB_DONE:
            return true;
        }
    }
    return false;
}
