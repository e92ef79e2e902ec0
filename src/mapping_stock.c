/* Jewellers' depth in mapping (issue 16): a product's stock at each branch and its serial
 * numbers, as keys of the product's row (store_depth.c writes them to migration 005's tables in
 * the page's transaction), /branches records as rows of their own, and the price book's price. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kvjson.h"
#include "kvtime.h"
#include "mapping_int.h"

static int fail(rec_err *e, const char *msg)
{
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    return -EINVAL;
}

/* An optional number of an entry as exact text: NULL when absent; -EINVAL when not a number. */
static int entry_num(const cJSON *it, const char *key, const char **out)
{
    kvs_dec d;
    int rc = kvjson_get_num_text(it, key, out);
    if (rc == -ENOENT) {
        *out = NULL;
        return 0;
    }
    return rc || dec_parse(*out, false, &d) ? -EINVAL : 0;
}

/* "inv": [{"b": branchId, "q": onHand, "r": reserved}], each branch once (the first entry of a
 * branch wins); entries without a branch or an onHand are not a figure for any branch. */
int map_branch_stock(const cJSON *rec, kvs_buf *b, bool *first, rec_err *e)
{
    const cJSON *inv = kvjson_get(rec, "inventories");
    if (!inv || cJSON_IsNull(inv)) return 0;
    if (!cJSON_IsArray(inv)) return fail(e, "field inventories: expected an array");
    kvs_idset seen = {0};
    map_put_key(b, first, product_fields[PF_BRANCH_STOCK].key);
    B(kvs_buf_puts(b, "["));
    bool f = true;
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, inv)
    {
        int64_t branch;
        const char *q, *r;
        if (!cJSON_IsObject(it)) {
            rc = fail(e, "field inventories: expected objects");
            break;
        }
        if (entry_num(it, "onHand", &q) || entry_num(it, "reserved", &r)) {
            rc = fail(e, "field inventories: bad onHand or reserved");
            break;
        }
        /* A branch id of 0 or less names no branch (fuzz_mapping: branchId 0 reached
         * kvs_idset_add, which holds positive ids only, and aborted). */
        if (kvjson_get_int64(it, "branchId", &branch) || branch <= 0 || !q ||
            !kvs_idset_add(&seen, branch))
            continue;
        B(kvs_buf_printf(b, "%s{\"b\":%" PRId64 ",\"q\":", f ? "" : ",", branch));
        map_put_number(b, q);
        if (r) {
            B(kvs_buf_puts(b, ",\"r\":"));
            map_put_number(b, r);
        }
        B(kvs_buf_puts(b, "}"));
        f = false;
    }
    B(kvs_buf_puts(b, "]"));
    kvs_idset_free(&seen);
    return rc;
}

/* One serial of a product, as stored. */
typedef struct serial {
    char sn[JEWEL_VALUE_MAX]; /* NFC, trimmed (jewel_parse_serial), as products.serial_number */
    bool in_stock;
    bool has_branch;
    int64_t branch, modified_us;
} serial;

/* Takes entry it into list (a serial listed twice is one row: in stock when any entry says
 * so, with that entry's branch). Entries without a usable serialNumber are skipped. */
static void serial_take(const cJSON *it, serial **list, int *n, int *cap)
{
    const char *sn;
    serial s = {{0}, true, false, 0, 0};
    if (!cJSON_IsObject(it) || kvjson_get_str(it, "serialNumber", &sn) ||
        jewel_parse_serial(sn, s.sn, sizeof s.sn) != JV_OK)
        return;
    int64_t status = 1;
    int rs = kvjson_get_int64(it, "status", &status);
    s.in_stock = rs == -ENOENT || (rs == 0 && status == 1); /* 1 in stock, 0 sold */
    s.has_branch = kvjson_get_int64(it, "branchId", &s.branch) == 0;
    rec_err ignored;
    if (map_rec_modified(it, &s.modified_us, &ignored)) s.modified_us = 0;
    for (int i = 0; i < *n; i++) {
        if (strcmp((*list)[i].sn, s.sn)) continue;
        if (s.in_stock && !(*list)[i].in_stock) (*list)[i] = s;
        return;
    }
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        *list = kvs_xrealloc(*list, (size_t)*cap * sizeof **list);
    }
    (*list)[(*n)++] = s;
}

/* "ser": [{"n": serial, "i": in stock, "b": branch, "m": modified}], only when KiotViet sent
 * productSerials: an empty list says the product has none in stock any more. */
static int put_serials(const cJSON *rec, kvs_buf *b, bool *first, rec_err *e)
{
    const cJSON *arr = kvjson_get(rec, "productSerials");
    if (!arr || cJSON_IsNull(arr)) return 0;
    if (!cJSON_IsArray(arr)) return fail(e, "field productSerials: expected an array");
    serial *list = NULL;
    int n = 0, cap = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) serial_take(it, &list, &n, &cap);
    map_put_key(b, first, product_fields[PF_SERIALS].key);
    B(kvs_buf_puts(b, "["));
    for (int i = 0; i < n; i++) {
        B(kvs_buf_puts(b, i ? ",{\"n\":" : "{\"n\":"));
        map_put_str(b, list[i].sn);
        B(kvs_buf_puts(b, list[i].in_stock ? ",\"i\":true" : ",\"i\":false"));
        if (list[i].has_branch) B(kvs_buf_printf(b, ",\"b\":%" PRId64, list[i].branch));
        if (list[i].modified_us) {
            char ts[KVTIME_BUFSZ];
            kvtime_format_vn(list[i].modified_us, ts);
            B(kvs_buf_puts(b, ",\"m\":"));
            map_put_str(b, ts);
        }
        B(kvs_buf_puts(b, "}"));
    }
    B(kvs_buf_puts(b, "]"));
    free(list);
    return 0;
}

int map_stock_serials(const cJSON *rec, kvs_buf *b, bool *first, rec_err *e)
{
    int rc = map_branch_stock(rec, b, first, e);
    return rc ? rc : put_serials(rec, b, first, e);
}

void map_branches(const cJSON *data, map_page *p)
{
    B(kvs_buf_puts(&p->rows, "["));
    kvs_idset handled = {0};
    const cJSON *rec;
    cJSON_ArrayForEach(rec, data)
    {
        int64_t id = 0, modified = 0;
        rec_err e = {{0}};
        p->nrecords++;
        if (!cJSON_IsObject(rec) || kvjson_get_int64(rec, "id", &id) || id <= 0) {
            map_failure_add(p, false, 0, NULL, "branch: field id missing or not an id");
            continue;
        }
        if (!kvs_idset_add(&handled, id)) continue;
        if (map_rec_modified(rec, &modified, &e)) {
            map_failure_add(p, true, id, NULL, e.msg);
            continue;
        }
        if (modified > p->max_modified_us) p->max_modified_us = modified;
        if (p->nrows) B(kvs_buf_puts(&p->rows, ","));
        size_t start = p->rows.len;
        B(kvs_buf_printf(&p->rows, "{\"kid\":%" PRId64, id));
        static const char *const keys[][2] = {
            {"branchName", "name"}, {"branchCode", "code"}, {"address", "address"}};
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
            const char *v;
            if (kvjson_get_str(rec, keys[k][0], &v)) continue; /* absent or not text: NULL */
            B(kvs_buf_printf(&p->rows, ",\"%s\":", keys[k][1]));
            map_put_str(&p->rows, v);
        }
        if (modified) {
            char ts[KVTIME_BUFSZ];
            kvtime_format_vn(modified, ts);
            B(kvs_buf_puts(&p->rows, ",\"modified\":"));
            map_put_str(&p->rows, ts);
        }
        B(kvs_buf_puts(&p->rows, "}"));
        map_row_push(p, id, modified, start);
    }
    B(kvs_buf_puts(&p->rows, "]"));
    kvs_idset_free(&handled);
}

/* ---- price book ------------------------------------------------------------------------ */

/* Whether entry it of priceBooks is the configured book's. */
static bool book_entry_matches(const cJSON *it, const map_opts *o)
{
    int64_t id;
    const char *name;
    if (o->book_id) return kvjson_get_int64(it, "priceBookId", &id) == 0 && id == o->book_id;
    return kvjson_get_str(it, "priceBookName", &name) == 0 && kvs_strcaseeq(name, o->book_name);
}

const char *map_price(const cJSON *rec, const map_opts *o, char *why, size_t whycap)
{
    kvs_dec d;
    const char *base = NULL, *book = NULL;
    char reason[200] = "";
    if (kvjson_get_num_text(rec, "basePrice", &base) || dec_parse(base, false, &d)) base = NULL;
    char label[160];
    if (o->book_id)
        snprintf(label, sizeof label, "price book %" PRId64, o->book_id);
    else
        snprintf(label, sizeof label, "price book '%s'", o->book_name ? o->book_name : "");
    if (!o->book_id && !o->book_name) {
        snprintf(reason, sizeof reason, "basePrice: no [mapping] price_book");
    } else {
        /* The run passes the database's clock; --explain-product this host's. */
        int64_t now = o->now_us ? o->now_us : kvs_now_wall_ms() * 1000;
        snprintf(reason, sizeof reason, "basePrice: the product has no entry in %s", label);
        const cJSON *arr = kvjson_get(rec, "priceBooks"), *it;
        if (!cJSON_IsArray(arr)) arr = NULL;
        cJSON_ArrayForEach(it, arr)
        {
            if (!cJSON_IsObject(it) || !book_entry_matches(it, o)) continue;
            bool active = true;
            const char *price, *start = NULL, *end = NULL;
            int64_t t;
            if (kvjson_get_bool(it, "isActive", &active) == -EINVAL) active = false;
            if (kvjson_get_str(it, "startDate", &start)) start = NULL; /* absent or null: open */
            if (kvjson_get_str(it, "endDate", &end)) end = NULL;
            if (kvjson_get_num_text(it, "price", &price) || dec_parse(price, false, &d)) {
                snprintf(reason, sizeof reason, "basePrice: the entry in %s has no price", label);
            } else if (!active) {
                snprintf(reason, sizeof reason, "basePrice: %s is not active", label);
            } else if (start && (kvtime_parse(start, &t) || now < t)) {
                snprintf(reason, sizeof reason, "basePrice: %s starts %s", label, start);
            } else if (end && (kvtime_parse(end, &t) || now > t)) {
                snprintf(reason, sizeof reason, "basePrice: %s ended %s", label, end);
            } else {
                book = price;
                snprintf(reason, sizeof reason, "%s (active, %s .. %s)", label,
                         start ? start : "no start", end ? end : "no end");
                break;
            }
        }
    }
    if (why && whycap) snprintf(why, whycap, "%s", reason);
    return book ? book : base;
}
