/* Webhook notifications into the writer's inputs (see mapping_webhook.h). */
#include "mapping_webhook.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "decimal.h"
#include "kvtime.h"
#include "util.h"

const char *const wh_type_names[WH__TYPES] = {
    [WH_PRODUCT_UPDATE] = "product.update",   [WH_PRODUCT_DELETE] = "product.delete",
    [WH_STOCK_UPDATE] = "stock.update",       [WH_CATEGORY_UPDATE] = "category.update",
    [WH_CATEGORY_DELETE] = "category.delete",
};

/* The spellings of a removal list seen in documentation and clients. */
static const char *const remove_keys[] = {"RemoveId", "RemoveIds", "removedIds", "removedId",
                                          NULL};

const char *wh_result_name(enum wh_result r)
{
    switch (r) {
    case WH_IGNORED: return "ignored";
    case WH_DUPLICATE: return "duplicate";
    case WH_STALE: return "stale";
    case WH_APPLIED: return "applied";
    case WH_ERROR: return "error";
    }
    return "?";
}

int wh_type_of_action(const char *action)
{
    if (!action) return -1;
    /* "<entity>.<method>" then, optionally, ".<retailerId>" */
    const char *dot = strchr(action, '.');
    if (!dot) return -1;
    const char *end = strchr(dot + 1, '.');
    size_t len = end ? (size_t)(end - action) : strlen(action);
    for (int t = 0; t < WH__TYPES; t++)
        if (strlen(wh_type_names[t]) == len && strncasecmp(action, wh_type_names[t], len) == 0)
            return t;
    return -1;
}

void wh_batch_init(wh_batch *b) { memset(b, 0, sizeof *b); }

void wh_batch_free(wh_batch *b)
{
    for (int i = 0; i < b->nev; i++) {
        if (b->ev[i].parsed) kvjson_doc_free(&b->ev[i].doc);
        free(b->ev[i].body);
    }
    free(b->ev);
    free(b->products.v);
    free(b->categories.v);
    free(b->removed[0].v);
    free(b->removed[1].v);
    free(b->stock.v);
    free(b->stock_recs.v);
    cJSON_Delete(b->owned); /* references only: the docs' items are untouched */
    memset(b, 0, sizeof *b);
}

static void items_push(wh_items *l, wh_item it)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = kvs_xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = it;
}

static int items_find(const wh_items *l, int64_t id)
{
    for (int i = 0; i < l->n; i++)
        if (l->v[i].id == id) return i;
    return -1;
}

static void ev_error(wh_event *e, const char *msg, const char *detail)
{
    if (!e->error[0]) snprintf(e->error, sizeof e->error, "%s%s", msg, detail ? detail : "");
}

/* A superseded record: older than the kept one is stale, the same version a duplicate. */
static void ev_dropped(wh_batch *b, const wh_item *lost, int64_t kept_us)
{
    wh_event *e = &b->ev[lost->ev];
    if (lost->modified_us && kept_us && lost->modified_us < kept_us)
        e->stale++;
    else
        e->duplicate++;
}

/* Keeps one record per id: the newest, a tie going to the later event (added later). */
static void items_coalesce(wh_batch *b, wh_items *l, wh_item it)
{
    int i = items_find(l, it.id);
    if (i < 0) {
        items_push(l, it);
    } else if (it.modified_us >= l->v[i].modified_us || !it.modified_us) {
        ev_dropped(b, &l->v[i], it.modified_us);
        l->v[i] = it;
    } else {
        ev_dropped(b, &it, l->v[i].modified_us);
    }
}

/* ModifiedDate, else CreatedDate (KiotViet's zero date counts as none). */
static int64_t rec_version(const cJSON *rec)
{
    static const char *const keys[] = {"ModifiedDate", "CreatedDate"};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const char *s;
        int64_t us;
        if (kvjson_get_str(rec, keys[i], &s) || kvtime_parse(s, &us)) continue;
        if (kvtime_is_zero_date(us)) continue;
        return us;
    }
    return 0;
}

/* Ids of a removal: [1, 2], [{"RemoveId": [1, 2]}], {"RemoveId": [1, 2]} or [{"Id": 1}]. */
static void add_ids(wh_batch *b, wh_items *l, int ev, const cJSON *data, int depth)
{
    if (cJSON_IsObject(data) && depth < 2) {
        const cJSON *arr = kvjson_get_any(data, remove_keys);
        int64_t id;
        if (arr)
            add_ids(b, l, ev, arr, depth + 1);
        else if (kvjson_get_int64(data, "Id", &id) == 0 && id > 0 && items_find(l, id) < 0)
            items_push(l, (wh_item){.id = id, .ev = ev});
        return;
    }
    if (!cJSON_IsArray(data)) return;
    const cJSON *it;
    cJSON_ArrayForEach(it, data)
    {
        int64_t id;
        if (cJSON_IsObject(it) && depth < 2) {
            add_ids(b, l, ev, it, depth + 1);
        } else if (kvjson_int64(it, &id) == 0 && id > 0) {
            if (items_find(l, id) < 0) items_push(l, (wh_item){.id = id, .ev = ev});
        } else {
            ev_error(&b->ev[ev], "a removal lists something that is not an id", NULL);
        }
    }
}

/* A category.update record in the shape map_categories reads (categoryId, categoryName,
 * parentId, modifiedDate, createdDate), by reference to the record's own items. */
static const cJSON *category_adapt(wh_batch *b, const cJSON *rec)
{
    static const char *const keys[][2] = {{"Id", "categoryId"},
                                          {"Name", "categoryName"},
                                          {"ParentId", "parentId"},
                                          {"ModifiedDate", "modifiedDate"},
                                          {"CreatedDate", "createdDate"}};
    if (!b->owned) b->owned = cJSON_CreateArray();
    cJSON *o = cJSON_CreateObject();
    REQUIRE(b->owned && o);
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const cJSON *v = kvjson_get(rec, keys[i][0]);
        if (!v) v = kvjson_get(rec, keys[i][1]); /* the REST spelling, if a body uses it */
        if (v) REQUIRE(cJSON_AddItemReferenceToObject(o, keys[i][1], (cJSON *)v));
    }
    REQUIRE(cJSON_AddItemToArray(b->owned, o));
    return o;
}

static void add_notification(wh_batch *b, int ev, const cJSON *n)
{
    wh_event *e = &b->ev[ev];
    const char *action = NULL;
    if (!cJSON_IsObject(n) || kvjson_get_str(n, "Action", &action)) {
        ev_error(e, "a notification without an Action", NULL);
        return;
    }
    int t = wh_type_of_action(action);
    if (t < 0) return; /* a type we do not handle: ignored */
    e->types |= 1u << t;
    const cJSON *data = kvjson_get(n, "Data");
    if (t == WH_PRODUCT_DELETE || t == WH_CATEGORY_DELETE) {
        int before = b->removed[t == WH_PRODUCT_DELETE].n;
        add_ids(b, &b->removed[t == WH_PRODUCT_DELETE], ev, data, 0);
        /* Removals are idempotent: a repeated one still counts as applied. */
        e->applied += b->removed[t == WH_PRODUCT_DELETE].n - before;
        if (!cJSON_IsArray(data) && !cJSON_IsObject(data))
            ev_error(e, "a removal without Data", NULL);
        else if (!e->applied && !e->error[0])
            e->duplicate++; /* ids another event of the batch removes too */
        return;
    }
    if (!cJSON_IsArray(data)) {
        ev_error(e, "Data is not a list in ", wh_type_names[t]);
        return;
    }
    const cJSON *rec;
    cJSON_ArrayForEach(rec, data)
    {
        int64_t id = 0;
        const char *idkey = t == WH_STOCK_UPDATE ? "ProductId" : "Id";
        if (!cJSON_IsObject(rec) || kvjson_get_int64(rec, idkey, &id) || id <= 0) {
            ev_error(e, "a record without a valid id in ", wh_type_names[t]);
            continue;
        }
        if (t == WH_STOCK_UPDATE) {
            items_push(&b->stock_recs, (wh_item){.rec = rec, .id = id, .ev = ev});
            if (items_find(&b->stock, id) < 0)
                items_push(&b->stock, (wh_item){.rec = rec, .id = id, .ev = ev});
            else
                e->duplicate++;
            continue;
        }
        if (t == WH_CATEGORY_UPDATE) {
            bool deleted = false;
            if (kvjson_get_bool(rec, "IsDeleted", &deleted) == 0 && deleted) {
                if (items_find(&b->removed[0], id) < 0)
                    items_push(&b->removed[0], (wh_item){.id = id, .ev = ev});
                e->applied++;
                continue;
            }
            items_coalesce(b, &b->categories, (wh_item){.rec = category_adapt(b, rec), .id = id,
                                                       .modified_us = rec_version(rec), .ev = ev});
            continue;
        }
        items_coalesce(b, &b->products,
                       (wh_item){.rec = rec, .id = id, .modified_us = rec_version(rec), .ev = ev});
    }
}

int wh_batch_add(wh_batch *b, int64_t row_id, const char *body, size_t len)
{
    if (b->nev == b->ev_cap) {
        b->ev_cap = b->ev_cap ? b->ev_cap * 2 : 16;
        b->ev = kvs_xrealloc(b->ev, (size_t)b->ev_cap * sizeof *b->ev);
    }
    int i = b->nev++;
    wh_event *e = &b->ev[i];
    memset(e, 0, sizeof *e);
    e->row_id = row_id;
    e->body = kvs_xmalloc(len + 1);
    memcpy(e->body, body, len);
    e->body[len] = '\0';
    kvs_err err;
    kvs_err_clear(&err);
    if (kvjson_parse(e->body, len, &e->doc, &err)) {
        ev_error(e, "invalid JSON: ", err.msg);
        return i;
    }
    e->parsed = true;
    int64_t attempt = 1;
    if (kvjson_get_int64(e->doc.root, "Attempt", &attempt) == 0 && attempt > 1)
        e->attempt = attempt > 1000 ? 1000 : (int)attempt;
    else
        e->attempt = 1;
    const cJSON *ns = kvjson_get(e->doc.root, "Notifications");
    if (!cJSON_IsArray(ns)) {
        ev_error(e, "no Notifications list", NULL);
        return i;
    }
    const cJSON *n;
    cJSON_ArrayForEach(n, ns) add_notification(b, i, n);
    return i;
}

void wh_batch_versions(wh_batch *b, const int64_t *ids, const int64_t *modified_us, int n)
{
    for (int k = 0; k < n; k++) {
        int i = items_find(&b->products, ids[k]);
        if (i < 0 || !modified_us[k]) continue;
        wh_item *it = &b->products.v[i];
        if (it->modified_us && it->modified_us > modified_us[k]) continue;
        if (!it->modified_us) continue; /* an undated record cannot be judged older */
        ev_dropped(b, it, modified_us[k]);
        b->products.v[i] = b->products.v[--b->products.n];
    }
}

/* An array referencing the records of l (cJSON_Delete frees the array, not the records). */
static cJSON *items_array(const wh_items *l)
{
    cJSON *arr = cJSON_CreateArray();
    REQUIRE(arr);
    for (int i = 0; i < l->n; i++)
        REQUIRE(cJSON_AddItemReferenceToArray(arr, (cJSON *)l->v[i].rec));
    return arr;
}

/* Records the page could not map: their events' errors. */
static void page_failures(wh_batch *b, const wh_items *l, const map_page *p)
{
    for (int i = 0; i < p->nfailed; i++) {
        const map_item *f = &p->failure[i];
        char msg[200];
        snprintf(msg, sizeof msg, "could not map record %lld: %.*s", (long long)f->id,
                 (int)(f->len > 120 ? 120 : f->len), p->failures.data + f->start);
        wh_batch_fail_id(b, l, f->id, msg);
    }
}

void wh_batch_pages(wh_batch *b, const map_opts *o, map_page *categories, map_page *products)
{
    const wh_items *lists[2] = {&b->categories, &b->products};
    map_page *pages[2] = {categories, products};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < lists[k]->n; i++) b->ev[lists[k]->v[i].ev].applied++;
        if (!lists[k]->n) continue;
        cJSON *arr = items_array(lists[k]);
        if (k == 0)
            map_categories(arr, pages[k]);
        else
            map_products(arr, o, pages[k]);
        cJSON_Delete(arr);
        page_failures(b, lists[k], pages[k]);
    }
}

/* A number's text fit to stand in a JSON record: what dec_parse reads (the database's numeric
 * text can also be NaN or Infinity). */
static bool number_ok(const char *s)
{
    kvs_dec d;
    return s && *s && dec_parse(s, false, &d) == 0;
}

/* The record of product id for wh_batch_stock_direct, appended to out; false when the product
 * does not qualify. recs/nrecs: its stock records in the batch; rows/nrows: its stored rows. */
static bool stock_direct_record(const wh_batch *b, int64_t id, const wh_item *const *recs,
                                int nrecs, const wh_stock_row *const *rows, int nrows,
                                kvs_buf *out)
{
    if (!nrows || !nrecs || wh_batch_removed(b, id) || items_find(&b->products, id) >= 0)
        return false;
    /* The records' branches and figures (heap: a body may hold thousands of records). */
    int64_t *branch = kvs_xmalloc((size_t)nrecs * sizeof *branch);
    const char **q = kvs_xmalloc((size_t)nrecs * sizeof *q);
    const char **r = kvs_xmalloc((size_t)nrecs * sizeof *r);
    bool ok = true;
    for (int i = 0; i < nrecs && ok; i++) {
        const cJSON *rec = recs[i]->rec;
        ok = b->ev[recs[i]->ev].attempt == 1 &&
             kvjson_get_int64(rec, "BranchId", &branch[i]) == 0 && branch[i] > 0 &&
             kvjson_get_num_text(rec, "OnHand", &q[i]) == 0 && number_ok(q[i]);
        if (ok && kvjson_get_num_text(rec, "Reserved", &r[i])) r[i] = NULL;
        if (ok && r[i] && !number_ok(r[i])) ok = false;
        for (int k = 0; k < i && ok; k++) ok = branch[k] != branch[i];
        bool known = false;
        for (int k = 0; k < nrows && ok; k++) known = known || rows[k]->branch == branch[i];
        ok = ok && known;
    }
    kvs_buf one;
    kvs_buf_init(&one);
    REQUIRE(kvs_buf_printf(&one, "{\"id\":%lld,\"inventories\":[", (long long)id) == 0);
    for (int k = 0; k < nrows && ok; k++) {
        const char *oq = rows[k]->on_hand, *orr = rows[k]->reserved;
        for (int i = 0; i < nrecs; i++)
            if (branch[i] == rows[k]->branch) {
                oq = q[i];
                if (r[i]) orr = r[i];
            }
        ok = number_ok(oq) && number_ok(orr);
        REQUIRE(kvs_buf_printf(&one, "%s{\"branchId\":%lld,\"onHand\":%s,\"reserved\":%s}",
                               k ? "," : "", (long long)rows[k]->branch, oq, orr) == 0);
    }
    REQUIRE(kvs_buf_puts(&one, "]}") == 0);
    if (ok) REQUIRE(kvs_buf_append(out, one.data, one.len) == 0);
    kvs_buf_free(&one);
    free(branch);
    free(q);
    free(r);
    return ok;
}

void wh_batch_stock_direct(const wh_batch *b, const map_opts *o, const wh_stock_row *stored,
                           int nstored, map_page *page, kvs_idset *done)
{
    kvs_buf text;
    kvs_buf_init(&text);
    REQUIRE(kvs_buf_puts(&text, "[") == 0);
    int n = 0;
    const wh_item **recs = kvs_xmalloc((size_t)(b->stock_recs.n + 1) * sizeof *recs);
    const wh_stock_row **rows = kvs_xmalloc((size_t)(nstored + 1) * sizeof *rows);
    for (int p = 0; p < b->stock.n; p++) {
        int64_t id = b->stock.v[p].id;
        int nrecs = 0, nrows = 0;
        for (int i = 0; i < b->stock_recs.n; i++)
            if (b->stock_recs.v[i].id == id) recs[nrecs++] = &b->stock_recs.v[i];
        for (int k = 0; k < nstored; k++)
            if (stored[k].product == id) rows[nrows++] = &stored[k];
        size_t mark = text.len;
        if (n) REQUIRE(kvs_buf_puts(&text, ",") == 0);
        if (stock_direct_record(b, id, recs, nrecs, rows, nrows, &text)) {
            n++;
            kvs_idset_add(done, id);
        } else {
            text.len = mark; /* not this one: back to before its comma */
            text.data[mark] = '\0';
        }
    }
    free(recs);
    free(rows);
    REQUIRE(kvs_buf_puts(&text, "]") == 0);
    if (n) {
        kvjson_doc doc;
        kvs_err err;
        kvs_err_clear(&err);
        /* Our own text of checked numbers: it parses. */
        REQUIRE(kvjson_parse(text.data, text.len, &doc, &err) == 0);
        map_stock(doc.root, o, page);
        kvjson_doc_free(&doc);
    }
    kvs_buf_free(&text);
}

bool wh_batch_removed(const wh_batch *b, int64_t id)
{
    return items_find(&b->removed[1], id) >= 0;
}

void wh_batch_fail_id(wh_batch *b, const wh_items *list, int64_t id, const char *msg)
{
    int i = items_find(list, id);
    if (i >= 0) ev_error(&b->ev[list->v[i].ev], msg, NULL);
}

enum wh_result wh_event_result(const wh_event *e)
{
    if (e->error[0]) return WH_ERROR;
    if (e->applied) return WH_APPLIED;
    if (e->stale) return WH_STALE;
    if (e->duplicate) return WH_DUPLICATE;
    return WH_IGNORED;
}

const char *wh_event_result_text(const wh_event *e, char *buf, size_t cap)
{
    enum wh_result r = wh_event_result(e);
    if (r != WH_ERROR) return wh_result_name(r);
    snprintf(buf, cap, "error: %s", e->error);
    return buf;
}
