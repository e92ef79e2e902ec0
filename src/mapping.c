/* Mapping KiotViet records to row JSON for store.c's upserts (see mapping.h). */
#include "mapping.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "decimal.h"
#include "kvjson.h"
#include "kvtime.h"

#define B(call) REQUIRE((call) == 0) /* buffer growth failure is fatal (OOM) */

void map_page_init(map_page *p)
{
    memset(p, 0, sizeof *p);
    kvs_buf_init(&p->rows);
    kvs_buf_init(&p->failures);
    kvs_buf_init(&p->notes);
    p->ascending = true;
}

void map_page_free(map_page *p)
{
    kvs_buf_free(&p->rows);
    kvs_buf_free(&p->failures);
    kvs_buf_free(&p->notes);
    free(p->ids);
    free(p->row_start);
    free(p->row_len);
    memset(p, 0, sizeof *p);
}

/* Strict JSON number grammar: what Postgres' jsonb accepts. cJSON is laxer ("01", "1."). */
static bool json_number_ok(const char *s)
{
    const char *p = s;
    if (*p == '-') p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9') p++;
    else
        return false;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) return false;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return false;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == '\0';
}

/* Emits a number as exact text: canonical decimal when it fits, else the original token
 * (Postgres numeric takes 1e308 exactly). */
static void put_number(kvs_buf *b, const char *text)
{
    kvs_dec d;
    char out[DEC_BUFSZ];
    if (dec_parse(text, false, &d) == 0) {
        dec_format(&d, out);
        B(kvs_buf_puts(b, out));
    } else {
        B(kvs_buf_puts(b, text));
    }
}

static void put_str(kvs_buf *b, const char *s)
{
    char *clean = kvs_utf8_sanitize(s);
    B(kvs_buf_json_str(b, clean ? clean : s));
    free(clean);
}

static void put_key(kvs_buf *b, bool *first, const char *key)
{
    B(kvs_buf_puts(b, *first ? "" : ","));
    *first = false;
    B(kvs_buf_json_str(b, key));
    B(kvs_buf_puts(b, ":"));
}

/* Per-record mapping error: the message goes into the page's failures. */
typedef struct rec_err {
    char msg[256];
} rec_err;

static int fail(rec_err *e, const char *fmt, const char *what)
{
    snprintf(e->msg, sizeof e->msg, fmt, what);
    return -EINVAL;
}

/* Optional string field: absent -> NULL; wrong type -> error. */
static int opt_str(const cJSON *rec, const char *key, const char **out, rec_err *e)
{
    int rc = kvjson_get_str(rec, key, out);
    if (rc == -ENOENT) {
        *out = NULL;
        return 0;
    }
    if (rc) return fail(e, "field %s: expected a string", key);
    return 0;
}

/* Optional number field as exact text. */
static int opt_num(const cJSON *rec, const char *key, const char **out, rec_err *e)
{
    int rc = kvjson_get_num_text(rec, key, out);
    if (rc == -ENOENT) {
        *out = NULL;
        return 0;
    }
    if (rc || !json_number_ok(*out)) return fail(e, "field %s: expected a number", key);
    return 0;
}

static int opt_int64(const cJSON *rec, const char *key, bool *present, int64_t *out, rec_err *e)
{
    int rc = kvjson_get_int64(rec, key, out);
    *present = rc == 0;
    if (rc == -ENOENT) return 0;
    if (rc) return fail(e, "field %s: expected an integer id", key);
    return 0;
}

/* modifiedDate, else createdDate: the row's KiotViet modification time. */
static int rec_modified(const cJSON *rec, int64_t *us, rec_err *e)
{
    const char *s;
    *us = 0;
    static const char *const keys[] = {"modifiedDate", "createdDate"};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        int rc = kvjson_get_str(rec, keys[i], &s);
        if (rc == -ENOENT) continue;
        if (rc) return fail(e, "field %s: expected a date string", keys[i]);
        if (kvtime_parse(s, us)) return fail(e, "field %s: not a date", keys[i]);
        return 0;
    }
    return 0;
}

static void note_add(map_page *p, const char *code, const char *column, const char *attribute,
                     const char *value, const char *why)
{
    kvs_buf *b = &p->notes;
    if (b->len) B(kvs_buf_puts(b, ","));
    B(kvs_buf_puts(b, "{\"code\":"));
    put_str(b, code ? code : "");
    B(kvs_buf_puts(b, ",\"column\":"));
    put_str(b, column);
    B(kvs_buf_puts(b, ",\"attribute\":"));
    put_str(b, attribute ? attribute : "");
    B(kvs_buf_puts(b, ",\"value\":"));
    put_str(b, value ? value : "");
    B(kvs_buf_puts(b, ",\"problem\":"));
    put_str(b, why);
    B(kvs_buf_puts(b, "}"));
    p->nnotes++;
}

static void failure_add(map_page *p, bool has_id, int64_t id, const char *code, const char *msg)
{
    kvs_buf *b = &p->failures;
    if (b->len) B(kvs_buf_puts(b, ","));
    if (has_id)
        B(kvs_buf_printf(b, "{\"id\":%" PRId64 ",\"code\":", id));
    else
        B(kvs_buf_puts(b, "{\"id\":null,\"code\":"));
    if (code)
        put_str(b, code);
    else
        B(kvs_buf_puts(b, "null"));
    B(kvs_buf_puts(b, ",\"error\":"));
    put_str(b, msg);
    B(kvs_buf_puts(b, "}"));
    p->nfailed++;
}

/* Tracks the served order of ids, for the pager's gap detection. */
static void track_id(map_page *p, int64_t id)
{
    if (p->nrecords == 0) p->first_id = id;
    else if (id <= p->last_id) p->ascending = false;
    p->last_id = id;
    p->nrecords++;
}

static bool id_seen(const map_page *p, int64_t id)
{
    for (int i = 0; i < p->nrows; i++)
        if (p->ids[i] == id) return true;
    return false;
}

static bool branch_counts(const map_opts *o, int64_t branch)
{
    if (!o->branches) return true;
    for (int i = 0; i < o->nbranches; i++)
        if (o->branches[i] == branch) return true;
    return false;
}

/* Σ onHand and Σ onHand × cost over the counted branches, exact. */
static int inventory_sums(const cJSON *rec, const map_opts *o, char stock[DEC_BUFSZ],
                          char value[DEC_BUFSZ], bool *present, rec_err *e)
{
    const cJSON *inv = kvjson_get(rec, "inventories");
    *present = false;
    if (!inv || cJSON_IsNull(inv)) return 0;
    if (!cJSON_IsArray(inv)) return fail(e, "field %s: expected an array", "inventories");
    kvs_dec sum_q, sum_v;
    dec_from_int(0, &sum_q);
    dec_from_int(0, &sum_v);
    const cJSON *it;
    cJSON_ArrayForEach(it, inv)
    {
        if (!cJSON_IsObject(it)) return fail(e, "field %s: expected objects", "inventories");
        int64_t branch = 0;
        bool has_branch = kvjson_get_int64(it, "branchId", &branch) == 0;
        if (o->branches && (!has_branch || !branch_counts(o, branch))) continue;
        const char *qt = NULL, *ct = NULL;
        kvs_dec q, c, qc;
        int rq = kvjson_get_num_text(it, "onHand", &qt);
        if (rq == -ENOENT) continue; /* no stock figure for this branch */
        if (rq || dec_parse(qt, false, &q)) return fail(e, "field %s: bad onHand", "inventories");
        int rc = kvjson_get_num_text(it, "cost", &ct);
        if (rc == -ENOENT)
            dec_from_int(0, &c);
        else if (rc || dec_parse(ct, false, &c))
            return fail(e, "field %s: bad cost", "inventories");
        if (dec_add(&sum_q, &q, &sum_q) || dec_mul(&q, &c, &qc) || dec_add(&sum_v, &qc, &sum_v))
            return fail(e, "field %s: value out of range", "inventories");
        *present = true;
    }
    if (*present) {
        dec_format(&sum_q, stock);
        dec_format(&sum_v, value);
    }
    return 0;
}

/* The serial to show: for a serial-controlled product, the smallest in-stock serial number
 * (status 1), so the choice is stable while stock does not change. */
static const char *pick_serial(const cJSON *rec)
{
    const cJSON *arr = kvjson_get(rec, "productSerials");
    const char *best = NULL;
    const cJSON *it;
    if (!cJSON_IsArray(arr)) return NULL;
    cJSON_ArrayForEach(it, arr)
    {
        const char *sn;
        int64_t status = 1;
        if (kvjson_get_str(it, "serialNumber", &sn) || !*sn) continue;
        if (kvjson_get_int64(it, "status", &status) == 0 && status != 1) continue;
        if (!best || strcmp(sn, best) < 0) best = sn;
    }
    return best;
}

/* images: strings, or {"Image": "..."} objects (the doc's list form). */
static int put_images(kvs_buf *b, bool *first, const cJSON *rec, rec_err *e)
{
    const cJSON *imgs = kvjson_get(rec, "images");
    if (!imgs || cJSON_IsNull(imgs)) return 0;
    if (!cJSON_IsArray(imgs)) return fail(e, "field %s: expected an array", "images");
    put_key(b, first, product_fields[PF_IMAGES].key);
    B(kvs_buf_puts(b, "["));
    bool f = true;
    const cJSON *it;
    cJSON_ArrayForEach(it, imgs)
    {
        const char *url = NULL;
        if (cJSON_IsString(it))
            url = it->valuestring;
        else if (cJSON_IsObject(it))
            kvjson_get_str(it, "image", &url) == 0 ? (void)0 : (void)(url = NULL);
        if (!url || !*url) continue;
        B(kvs_buf_puts(b, f ? "" : ","));
        f = false;
        put_str(b, url);
    }
    B(kvs_buf_puts(b, "]"));
    return 0;
}

static void put_opt_str(kvs_buf *b, bool *first, int field, const char *v)
{
    if (!v) return;
    put_key(b, first, product_fields[field].key);
    put_str(b, v);
}

static void put_opt_num(kvs_buf *b, bool *first, int field, const char *v)
{
    if (!v) return;
    put_key(b, first, product_fields[field].key);
    put_number(b, v);
}

#define MAX_ATTRS 256

/* Maps one product into b (an object). Returns 0, 1 (deliberately skipped) or -EINVAL. */
static int map_product(const cJSON *rec, const map_opts *o, map_page *p, kvs_buf *b,
                       int64_t id, const char *code, rec_err *e)
{
    const char *name, *full_name, *descr, *barcode, *price, *weight;
    int64_t cat = 0, master = 0, unit_master = 0;
    bool has_cat, has_master, has_unit_master, active = true;
    int rc;

    if ((rc = kvjson_get_str(rec, "name", &name)) != 0)
        return fail(e, "field %s: missing or not a string", "name");
    if (opt_str(rec, "fullName", &full_name, e) || opt_str(rec, "description", &descr, e) ||
        opt_str(rec, "barCode", &barcode, e) || opt_num(rec, "basePrice", &price, e) ||
        opt_num(rec, "weight", &weight, e) || opt_int64(rec, "categoryId", &has_cat, &cat, e) ||
        opt_int64(rec, "masterProductId", &has_master, &master, e) ||
        opt_int64(rec, "masterUnitId", &has_unit_master, &unit_master, e))
        return -EINVAL;
    rc = kvjson_get_bool(rec, "isActive", &active);
    if (rc == -ENOENT)
        active = true;
    else if (rc)
        return fail(e, "field %s: expected true or false", "isActive");
    /* A non-base unit ("hộp" of 10) is another view of the same stock: only base units sync. */
    if (has_unit_master) return 1;

    int64_t modified = 0;
    if (rec_modified(rec, &modified, e)) return -EINVAL;
    if (modified > p->max_modified_us) p->max_modified_us = modified;

    char stock[DEC_BUFSZ], value[DEC_BUFSZ];
    bool has_inv;
    if (inventory_sums(rec, o, stock, value, &has_inv, e)) return -EINVAL;

    /* Jewellery attributes. */
    jewel_attr attrs[MAX_ATTRS];
    size_t nattrs = 0;
    const cJSON *arr = kvjson_get(rec, "attributes"), *it;
    if (arr && !cJSON_IsNull(arr) && !cJSON_IsArray(arr))
        return fail(e, "field %s: expected an array", "attributes");
    cJSON_ArrayForEach(it, arr)
    {
        const char *an, *av;
        if (nattrs == MAX_ATTRS) break;
        if (kvjson_get_str(it, "attributeName", &an) || kvjson_get_str(it, "attributeValue", &av))
            continue;
        attrs[nattrs].name = an;
        attrs[nattrs].value = av;
        nattrs++;
    }
    jewel_result *jr = kvs_xmalloc(sizeof *jr);
    jewel_extract(o->jewel, attrs, nattrs, o->name_scan ? name : NULL, jr);

    bool first = true;
    B(kvs_buf_puts(b, "{"));
    put_key(b, &first, product_fields[PF_KID].key);
    B(kvs_buf_printf(b, "%" PRId64, id));
    put_opt_str(b, &first, PF_CODE, code);
    put_opt_str(b, &first, PF_NAME, name);
    put_opt_str(b, &first, PF_FULL_NAME, full_name);
    put_opt_str(b, &first, PF_DESCRIPTION, descr);
    put_opt_num(b, &first, PF_PRICE, price);
    if (has_cat) {
        put_key(b, &first, product_fields[PF_CAT_KID].key);
        B(kvs_buf_printf(b, "%" PRId64, cat));
    }
    put_key(b, &first, product_fields[PF_ACTIVE].key);
    B(kvs_buf_puts(b, active ? "true" : "false"));
    if (put_images(b, &first, rec, e)) {
        free(jr);
        return -EINVAL;
    }
    if (has_inv) {
        put_opt_num(b, &first, PF_STOCK, stock);
        put_opt_num(b, &first, PF_INV_VALUE, value);
    }
    put_opt_str(b, &first, PF_BARCODE, barcode);
    if (has_master) {
        put_key(b, &first, product_fields[PF_MASTER_KID].key);
        B(kvs_buf_printf(b, "%" PRId64, master));
    }
    if (modified) {
        char ts[KVTIME_BUFSZ];
        kvtime_format_vn(modified, ts);
        put_opt_str(b, &first, PF_MODIFIED, ts);
    }
    put_opt_str(b, &first, PF_STATUS, active ? "active" : "inactive");

    static const int jf_to_pf[JF_COUNT] = {
        [JF_CENTER_STONE_SIZE_MM] = PF_STONE_MM, [JF_SHAPE] = PF_SHAPE,
        [JF_DIMENSIONS] = PF_DIMENSIONS,         [JF_STONE_COUNT] = PF_STONE_COUNT,
        [JF_CARAT_WEIGHT_CT] = PF_CARAT,         [JF_GOLD_PURITY] = PF_PURITY,
        [JF_PRODUCT_WEIGHT_G] = PF_WEIGHT_G,     [JF_SUPPLIER_ID] = PF_SUPPLIER,
        [JF_SERIAL_NUMBER] = PF_SERIAL,
    };
    const char *serial = pick_serial(rec);
    for (int f = 0; f < JF_COUNT; f++) {
        const jewel_value *v = &jr->f[f];
        int pf = jf_to_pf[f];
        bool numeric = pf == PF_STONE_MM || pf == PF_CARAT || pf == PF_WEIGHT_G ||
                       pf == PF_STONE_COUNT;
        if (f == JF_SERIAL_NUMBER && serial) {
            put_opt_str(b, &first, pf, serial);
        } else if (v->status == JV_OK) {
            if (numeric)
                put_opt_num(b, &first, pf, v->value);
            else
                put_opt_str(b, &first, pf, v->value);
        } else if (f == JF_PRODUCT_WEIGHT_G && weight) {
            /* KiotViet's own weight field is in grams. */
            put_opt_num(b, &first, pf, weight);
        }
        if (v->rejected == JV_AMBIGUOUS || v->rejected == JV_INVALID) {
            const char *why = v->rejected == JV_AMBIGUOUS
                                  ? (v->status == JV_OK ? "ambiguous (value taken from elsewhere)"
                                                        : "ambiguous: stored as NULL")
                                  : (v->status == JV_OK ? "not understood (value taken from elsewhere)"
                                                        : "not understood: stored as NULL");
            note_add(p, code, jewel_field_name(f), v->rejected_source, v->raw, why);
        }
    }
    free(jr);
    B(kvs_buf_puts(b, "}"));
    return 0;
}

/* Records row nrows: its id and its span in rows (from start to the current end). */
static void ids_push(map_page *p, int64_t id, size_t start)
{
    size_t n = (size_t)p->nrows + 1;
    p->ids = kvs_xrealloc(p->ids, n * sizeof *p->ids);
    p->row_start = kvs_xrealloc(p->row_start, n * sizeof *p->row_start);
    p->row_len = kvs_xrealloc(p->row_len, n * sizeof *p->row_len);
    p->ids[p->nrows] = id;
    p->row_start[p->nrows] = start;
    p->row_len[p->nrows] = p->rows.len - start;
    p->nrows++;
}

void map_products(const cJSON *data, const map_opts *o, map_page *p)
{
    kvs_buf one;
    kvs_buf_init(&one);
    B(kvs_buf_puts(&p->rows, "["));
    const cJSON *rec;
    cJSON_ArrayForEach(rec, data)
    {
        rec_err e = {{0}};
        int64_t id = 0;
        const char *code = NULL;
        if (!cJSON_IsObject(rec)) {
            p->nrecords++;
            failure_add(p, false, 0, NULL, "record is not an object");
            continue;
        }
        kvjson_get_str(rec, "code", &code) == 0 ? (void)0 : (void)(code = NULL);
        int rc = kvjson_get_int64(rec, "id", &id);
        if (rc) {
            p->nrecords++;
            failure_add(p, false, 0, code,
                        rc == -ENOENT ? "field id: missing" : "field id: not an integer id");
            continue;
        }
        track_id(p, id);
        if (id_seen(p, id)) continue; /* served twice in one page: store it once */
        kvs_buf_reset(&one);
        rc = map_product(rec, o, p, &one, id, code, &e);
        if (rc < 0) {
            failure_add(p, true, id, code, e.msg);
        } else if (rc == 1) {
            p->nskipped++;
        } else {
            if (p->nrows) B(kvs_buf_puts(&p->rows, ","));
            size_t start = p->rows.len;
            B(kvs_buf_append(&p->rows, one.data, one.len));
            ids_push(p, id, start);
        }
    }
    B(kvs_buf_puts(&p->rows, "]"));
    kvs_buf_free(&one);
}

/* Flat mode is what we ask for; hierarchical answers (children arrays) are walked too. */
static void map_category_list(const cJSON *data, map_page *p, int64_t parent, bool has_parent)
{
    const cJSON *rec;
    cJSON_ArrayForEach(rec, data)
    {
        rec_err e = {{0}};
        int64_t id = 0, pid = 0;
        const char *name;
        bool has_pid = false;
        if (!cJSON_IsObject(rec)) {
            p->nrecords++;
            failure_add(p, false, 0, NULL, "record is not an object");
            continue;
        }
        int rc = kvjson_get_int64(rec, "categoryId", &id);
        if (rc) {
            p->nrecords++;
            failure_add(p, false, 0, NULL,
                        rc == -ENOENT ? "field categoryId: missing" : "field categoryId: not an id");
            continue;
        }
        track_id(p, id);
        int64_t modified = 0;
        if (kvjson_get_str(rec, "categoryName", &name)) {
            failure_add(p, true, id, NULL, "field categoryName: missing or not a string");
            continue;
        }
        if (opt_int64(rec, "parentId", &has_pid, &pid, &e) || rec_modified(rec, &modified, &e)) {
            failure_add(p, true, id, NULL, e.msg);
            continue;
        }
        if (!has_pid && has_parent) {
            has_pid = true;
            pid = parent;
        }
        if (has_pid && pid == 0) has_pid = false; /* some clients send 0 for roots */
        if (modified > p->max_modified_us) p->max_modified_us = modified;
        if (!id_seen(p, id)) {
            bool first = true;
            if (p->nrows) B(kvs_buf_puts(&p->rows, ","));
            size_t start = p->rows.len;
            B(kvs_buf_puts(&p->rows, "{"));
            put_key(&p->rows, &first, category_fields[CF_KID].key);
            B(kvs_buf_printf(&p->rows, "%" PRId64, id));
            put_key(&p->rows, &first, category_fields[CF_NAME].key);
            put_str(&p->rows, name);
            if (has_pid) {
                put_key(&p->rows, &first, category_fields[CF_PARENT_KID].key);
                B(kvs_buf_printf(&p->rows, "%" PRId64, pid));
            }
            if (modified) {
                char ts[KVTIME_BUFSZ];
                kvtime_format_vn(modified, ts);
                put_key(&p->rows, &first, category_fields[CF_MODIFIED].key);
                put_str(&p->rows, ts);
            }
            put_key(&p->rows, &first, category_fields[CF_STATUS].key);
            put_str(&p->rows, "active");
            B(kvs_buf_puts(&p->rows, "}"));
            ids_push(p, id, start);
        }
        const cJSON *children = kvjson_get(rec, "children");
        if (cJSON_IsArray(children)) map_category_list(children, p, id, true);
    }
}

void map_categories(const cJSON *data, map_page *p)
{
    B(kvs_buf_puts(&p->rows, "["));
    map_category_list(data, p, 0, false);
    B(kvs_buf_puts(&p->rows, "]"));
}

int64_t *map_removed_ids(const cJSON *arr, int *n, int *nbad)
{
    *n = 0;
    *nbad = 0;
    if (!cJSON_IsArray(arr)) return NULL;
    int cap = cJSON_GetArraySize(arr);
    int64_t *ids = kvs_xmalloc((size_t)(cap ? cap : 1) * sizeof *ids);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        int64_t id;
        if (kvjson_int64(it, &id) == 0)
            ids[(*n)++] = id;
        else
            (*nbad)++;
    }
    return ids;
}

void map_explain_product(const cJSON *rec, const map_opts *o, kvs_buf *out)
{
    map_page p;
    map_page_init(&p);
    kvs_buf row;
    kvs_buf_init(&row);
    rec_err e = {{0}};
    int64_t id = 0;
    const char *code = NULL;
    kvjson_get_str(rec, "code", &code) == 0 ? (void)0 : (void)(code = NULL);
    if (kvjson_get_int64(rec, "id", &id)) {
        B(kvs_buf_puts(out, "product has no usable id: it would fail mapping\n"));
        goto done;
    }
    int rc = map_product(rec, o, &p, &row, id, code, &e);
    B(kvs_buf_printf(out, "KiotViet product %" PRId64 " (%s)\n", id, code ? code : "no code"));
    if (rc < 0) {
        B(kvs_buf_printf(out, "  FAILS mapping: %s\n", e.msg));
        goto done;
    }
    if (rc == 1) {
        B(kvs_buf_puts(out, "  skipped: a non-base unit (masterUnitId set); only base units sync\n"));
        goto done;
    }
    /* Attributes, each with the column its name maps to. */
    const cJSON *arr = kvjson_get(rec, "attributes"), *it;
    B(kvs_buf_puts(out, "  attributes:\n"));
    cJSON_ArrayForEach(it, arr)
    {
        const char *an = NULL, *av = NULL;
        kvjson_get_str(it, "attributeName", &an) == 0 ? (void)0 : (void)(an = NULL);
        kvjson_get_str(it, "attributeValue", &av) == 0 ? (void)0 : (void)(av = NULL);
        int f = an ? jewel_map_lookup(o->jewel, an) : -1;
        if (f < 0) {
            B(kvs_buf_printf(out, "    %-28s = %-20s -> (no column: name matches no alias)\n",
                             an ? an : "?", av ? av : ""));
            continue;
        }
        char val[JEWEL_VALUE_MAX];
        enum jewel_status st = jewel_field_parser(f)(av, val, sizeof val);
        B(kvs_buf_printf(out, "    %-28s = %-20s -> %s: %s%s%s\n", an, av ? av : "",
                         jewel_field_name(f), jewel_status_name(st), st == JV_OK ? " " : "",
                         st == JV_OK ? val : ""));
    }
    B(kvs_buf_puts(out, "  row written (column key = value):\n    "));
    B(kvs_buf_append(out, row.data, row.len));
    B(kvs_buf_puts(out, "\n"));
    if (p.notes.len) {
        B(kvs_buf_puts(out, "  notes: ["));
        B(kvs_buf_append(out, p.notes.data, p.notes.len));
        B(kvs_buf_puts(out, "]\n"));
    }
done:
    kvs_buf_free(&row);
    map_page_free(&p);
}

int map_opts_from_config(const kvs_config *cfg, map_opts *o, kvs_err *err)
{
    memset(o, 0, sizeof *o);
    jewel_map *m = jewel_map_new_defaults();
    o->name_scan = true;
    for (int i = 0; i < KVS_MAPPING_KEYS; i++) {
        const char *v = cfg->mapping[i];
        if (!v) continue;
        if (!strcmp(config_mapping_keys[i], "name_scan")) {
            if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"))
                o->name_scan = true;
            else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no"))
                o->name_scan = false;
            else {
                kvs_err_set(err, -EINVAL, "%s: [mapping] name_scan: '%s' is not true or false",
                            cfg->path ? cfg->path : "config", v);
                goto fail;
            }
            continue;
        }
        int f = jewel_field_from_name(config_mapping_keys[i]);
        kvs_err e;
        kvs_err_clear(&e);
        if (f < 0 || jewel_map_set_aliases(m, f, v, &e)) {
            kvs_err_set(err, -EINVAL, "%s: [mapping] %s: %s", cfg->path ? cfg->path : "config",
                        config_mapping_keys[i], e.msg[0] ? e.msg : "unknown column");
            goto fail;
        }
    }
    if (cfg->branches) {
        int64_t *b = NULL;
        int n = 0;
        const char *p = cfg->branches;
        while (*p) {
            while (*p == ' ' || *p == ',') p++;
            if (!*p) break;
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p) break;
            b = kvs_xrealloc(b, (size_t)(n + 1) * sizeof *b);
            b[n++] = v;
            p = end;
        }
        o->branches = b;
        o->nbranches = n;
    }
    o->jewel = m;
    return 0;
fail:
    jewel_map_free(m);
    return -EINVAL;
}

void map_opts_free(map_opts *o)
{
    jewel_map_free((jewel_map *)o->jewel);
    free((void *)o->branches);
    memset(o, 0, sizeof *o);
}
