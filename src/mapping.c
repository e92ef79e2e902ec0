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
#include "mapping_int.h"

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

/* Keys are our own identifiers (field_spec): nothing to escape, one append per key. */
static void put_key(kvs_buf *b, bool *first, const char *key)
{
    char k[64];
    size_t n = strlen(key), o = 0;
    REQUIRE(n + 4 <= sizeof k);
    if (!*first) k[o++] = ',';
    *first = false;
    k[o++] = '"';
    memcpy(k + o, key, n);
    o += n;
    k[o++] = '"';
    k[o++] = ':';
    B(kvs_buf_append(b, k, o));
}

void map_put_key(kvs_buf *b, bool *first, const char *key) { put_key(b, first, key); }
void map_put_number(kvs_buf *b, const char *text) { put_number(b, text); }

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

/* modifiedDate, else createdDate: the row's KiotViet modification time. A modifiedDate in
 * year 1 is KiotViet's "zero date" (.NET DateTime.MinValue, "0001-01-01T00:00:00"): never
 * modified, like a missing one. */
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
        if (i == 0 && kvtime_is_zero_date(*us)) {
            *us = 0;
            continue;
        }
        return 0;
    }
    return 0;
}

int map_rec_modified(const cJSON *rec, int64_t *us, rec_err *e) { return rec_modified(rec, us, e); }

bool map_branch_counts(const map_opts *o, int64_t branch)
{
    if (!o->branches) return true;
    for (int i = 0; i < o->nbranches; i++)
        if (o->branches[i] == branch) return true;
    return false;
}

/* Σ onHand and Σ onHand × cost over the counted branches, exact. */
int map_inventory_sums(const cJSON *rec, const map_opts *o, char stock[DEC_BUFSZ],
                       char value[DEC_BUFSZ], bool *present, rec_err *e)
{
    const cJSON *inv = kvjson_get(rec, "inventories");
    *present = false;
    if (!inv || cJSON_IsNull(inv)) return 0; /* not asked for or not sent: unknown, NULL */
    if (!cJSON_IsArray(inv)) return fail(e, "field %s: expected an array", "inventories");
    /* A list, even an empty one or one without counted branches, is a statement: 0 in stock. */
    *present = true;
    kvs_dec sum_q, sum_v;
    dec_from_int(0, &sum_q);
    dec_from_int(0, &sum_v);
    const cJSON *it;
    cJSON_ArrayForEach(it, inv)
    {
        if (!cJSON_IsObject(it)) return fail(e, "field %s: expected objects", "inventories");
        int64_t branch = 0;
        bool has_branch = kvjson_get_int64(it, "branchId", &branch) == 0;
        if (o->branches && (!has_branch || !map_branch_counts(o, branch))) continue;
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
    }
    dec_format(&sum_q, stock);
    dec_format(&sum_v, value);
    return 0;
}

/* The shop's stock column holds whole numbers: PostgreSQL rounds a fractional quantity
 * (half away from zero) when the page is stored. Say so in the run's notes. */
static void stock_round_note(map_page *p, int64_t id, const char *code, const char *stock)
{
    kvs_dec q;
    if (dec_parse(stock, false, &q) || dec_is_integer(&q)) return;
    __int128 pow = 1, c = q.coef < 0 ? -q.coef : q.coef;
    for (int i = 0; i < q.scale; i++) pow *= 10;
    long long whole = (long long)((c + pow / 2) / pow);
    char why[160];
    snprintf(why, sizeof why,
             "fractional quantity: stock_quantity is a whole-number column, stored as %s%lld",
             q.coef < 0 && whole ? "-" : "", whole);
    map_note_add(p, id, code, "stock_quantity", "onHand", stock, why);
}

/* The serial to show for a serial-controlled product: among productSerials in stock
 * (status 1, or no status) at a counted branch, the byte-wise smallest serialNumber after
 * NFC/trim, so the choice is stable while the stock does not change and does not depend on
 * the order KiotViet lists them in. Writes it into out; returns the number of in-stock
 * candidates (0 = none, out ""). */
static int pick_serial(const cJSON *rec, const map_opts *o, char out[JEWEL_VALUE_MAX])
{
    const cJSON *arr = kvjson_get(rec, "productSerials");
    const cJSON *it;
    int n = 0;
    out[0] = '\0';
    if (!cJSON_IsArray(arr)) return 0;
    cJSON_ArrayForEach(it, arr)
    {
        const char *sn;
        char norm[JEWEL_VALUE_MAX];
        int64_t status = 1, branch = 0;
        if (kvjson_get_str(it, "serialNumber", &sn)) continue;
        int rs = kvjson_get_int64(it, "status", &status);
        if (rs != -ENOENT && (rs || status != 1)) continue; /* sold, or unreadable status */
        if (o->branches && (kvjson_get_int64(it, "branchId", &branch) == 0) &&
            !map_branch_counts(o, branch))
            continue;
        if (jewel_parse_serial(sn, norm, sizeof norm) != JV_OK) continue;
        n++;
        if (!out[0] || strcmp(norm, out) < 0) memcpy(out, norm, strlen(norm) + 1);
    }
    return n;
}

/* attributes[] as jewel_attr pairs (borrowed from rec). A number attributeValue is taken as
 * its text; entries without a string name are skipped. */
size_t map_collect_attrs(const cJSON *arr, jewel_attr *attrs)
{
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        const char *an, *av = NULL;
        if (n == MAX_ATTRS) break;
        if (kvjson_get_str(it, "attributeName", &an)) continue;
        if (kvjson_get_str(it, "attributeValue", &av) && kvjson_get_num_text(it, "attributeValue", &av))
            av = NULL; /* absent, null or another type: a blank value */
        attrs[n].name = an;
        attrs[n].value = av;
        n++;
    }
    return n;
}

static bool field_numeric(int f)
{
    return f == JF_CENTER_STONE_SIZE_MM || f == JF_CARAT_WEIGHT_CT || f == JF_PRODUCT_WEIGHT_G ||
           f == JF_STONE_COUNT;
}

/* Attributes first (first understood value per column), then the product name (size and
 * purity), then KiotViet's own fields: `weight` (grams) when no attribute gave a weight, and
 * productSerials, which win over a serial attribute because they are what is in stock. */
static void resolve_jewel(const cJSON *rec, const map_opts *o, const char *name,
                          const char *weight, jcols *jc)
{
    jewel_attr attrs[MAX_ATTRS];
    size_t nattrs = map_collect_attrs(kvjson_get(rec, "attributes"), attrs);
    jewel_extract(o->jewel, attrs, nattrs, o->name_scan ? name : NULL, &jc->jr);
    for (int f = 0; f < JF_COUNT; f++) {
        const jewel_value *v = &jc->jr.f[f];
        jc->value[f] = NULL;
        jc->src[f] = JS_NONE;
        if (v->status == JV_OK) {
            jc->value[f] = v->value;
            jc->src[f] = strcmp(v->source, "name") == 0 ? JS_NAME : JS_ATTR;
        }
    }
    jc->weight = weight;
    jc->weight_usable = false;
    if (weight) {
        kvs_dec w, zero;
        dec_from_int(0, &zero);
        /* KiotViet stores 0 when the shop never entered a weight: that is "unknown". */
        jc->weight_usable = dec_parse(weight, false, &w) == 0 && dec_cmp(&w, &zero) > 0;
    }
    if (!jc->value[JF_PRODUCT_WEIGHT_G] && jc->weight_usable) {
        jc->value[JF_PRODUCT_WEIGHT_G] = weight;
        jc->src[JF_PRODUCT_WEIGHT_G] = JS_WEIGHT;
    }
    jc->nserials = pick_serial(rec, o, jc->serial);
    if (jc->nserials) {
        jc->value[JF_SERIAL_NUMBER] = jc->serial;
        jc->src[JF_SERIAL_NUMBER] = JS_SERIALS;
    }
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
        map_put_str(b, url);
    }
    B(kvs_buf_puts(b, "]"));
    return 0;
}

static void put_opt_str(kvs_buf *b, bool *first, int field, const char *v)
{
    if (!v) return;
    put_key(b, first, product_fields[field].key);
    map_put_str(b, v);
}

static void put_opt_num(kvs_buf *b, bool *first, int field, const char *v)
{
    if (!v) return;
    put_key(b, first, product_fields[field].key);
    put_number(b, v);
}

static const int jf_to_pf[JF_COUNT] = {
    [JF_CENTER_STONE_SIZE_MM] = PF_STONE_MM, [JF_SHAPE] = PF_SHAPE,
    [JF_DIMENSIONS] = PF_DIMENSIONS,         [JF_STONE_COUNT] = PF_STONE_COUNT,
    [JF_CARAT_WEIGHT_CT] = PF_CARAT,         [JF_GOLD_PURITY] = PF_PURITY,
    [JF_PRODUCT_WEIGHT_G] = PF_WEIGHT_G,     [JF_SUPPLIER_ID] = PF_SUPPLIER,
    [JF_SERIAL_NUMBER] = PF_SERIAL,
};

/* Maps one product into b (an object). Returns 0, 1 (skipped), 2 (out of scope) or -EINVAL
 * (see mapping_int.h). jc (caller-owned, may be NULL) receives the jewellery resolution, for --explain-product. */
int map_product(const cJSON *rec, const map_opts *o, map_page *p, kvs_buf *b,
                int64_t id, const char *code, rec_err *e, jcols *jc_out,
                int64_t *modified_out)
{
    const char *name, *full_name, *descr, *barcode, *price, *weight;
    int64_t cat = 0, master = 0, unit_master = 0;
    bool has_cat, has_master, has_unit_master, active = true;
    int rc;

    /* A non-base unit ("hộp" of 10 of a base "chiếc") is another view of the base product's
     * stock: only base units sync, so nothing else about it matters. */
    if (opt_int64(rec, "masterUnitId", &has_unit_master, &unit_master, e)) return -EINVAL;
    if (has_unit_master && unit_master != 0) return 1; /* 0: no master unit, a base unit */
    int64_t type;
    if (o->types && kvjson_get_int64(rec, "type", &type) == 0 &&
        (type < 1 || type > 3 || !(o->types & (1u << type))))
        return 2; /* a type [mapping] product_types leaves out */
    if ((rc = kvjson_get_str(rec, "name", &name)) != 0)
        return fail(e, "field %s: missing or not a string", "name");
    if (opt_str(rec, "fullName", &full_name, e) || opt_str(rec, "description", &descr, e) ||
        opt_str(rec, "barCode", &barcode, e) || opt_num(rec, "basePrice", &price, e) ||
        opt_num(rec, "weight", &weight, e) || opt_int64(rec, "categoryId", &has_cat, &cat, e) ||
        opt_int64(rec, "masterProductId", &has_master, &master, e))
        return -EINVAL;
    if (o->book_id || o->book_name) price = map_price(rec, o, NULL, 0);
    rc = kvjson_get_bool(rec, "isActive", &active);
    if (rc == -ENOENT)
        active = true;
    else if (rc)
        return fail(e, "field %s: expected true or false", "isActive");
    const cJSON *attrs = kvjson_get(rec, "attributes");
    if (attrs && !cJSON_IsNull(attrs) && !cJSON_IsArray(attrs))
        return fail(e, "field %s: expected an array", "attributes");

    int64_t modified = 0;
    if (rec_modified(rec, &modified, e)) return -EINVAL;

    char stock[DEC_BUFSZ], value[DEC_BUFSZ];
    bool has_inv;
    if (map_inventory_sums(rec, o, stock, value, &has_inv, e)) return -EINVAL;

    bool first = true;
    size_t start = b->len;
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
    if (put_images(b, &first, rec, e) || map_stock_serials(rec, b, &first, e)) {
        b->len = start; /* nothing half-written stays in the caller's buffer */
        if (b->data) b->data[start] = '\0';
        return -EINVAL;
    }
    if (has_inv && o->stock_integer) stock_round_note(p, id, code, stock);
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

    /* The record is good from here on: its jewellery values never fail it. */
    if (modified > p->max_modified_us) p->max_modified_us = modified;
    *modified_out = modified;
    jcols *jc = jc_out ? jc_out : kvs_xmalloc(sizeof *jc);
    resolve_jewel(rec, o, name, weight, jc);
    for (int f = 0; f < JF_COUNT; f++) {
        const jewel_value *v = &jc->jr.f[f];
        if (jc->value[f]) {
            if (field_numeric(f))
                put_opt_num(b, &first, jf_to_pf[f], jc->value[f]);
            else
                put_opt_str(b, &first, jf_to_pf[f], jc->value[f]);
        }
        if (v->rejected == JV_AMBIGUOUS || v->rejected == JV_INVALID) {
            const char *why = v->rejected == JV_AMBIGUOUS
                                  ? (jc->value[f] ? "ambiguous (value taken from elsewhere)"
                                                  : "ambiguous: stored as NULL")
                                  : (jc->value[f] ? "not understood (value taken from elsewhere)"
                                                  : "not understood: stored as NULL");
            map_note_add(p, id, code, jewel_field_name(f), v->rejected_source, v->raw, why);
        }
    }
    if (!jc_out) free(jc);
    B(kvs_buf_puts(b, "}"));
    return 0;
}

/* Maps one record into b (an object): 0, 1 (deliberately skipped) or -EINVAL with e set. */
typedef int (*map_record_fn)(const cJSON *rec, const map_opts *o, map_page *p, kvs_buf *b,
                             int64_t id, const char *code, rec_err *e, int64_t *modified_out);

/* The records of a "data" array keyed by "id": each mapped once per page by fn (a record served
 * twice is handled once), failed or skipped. */
static void map_records(const cJSON *data, const map_opts *o, map_page *p, map_record_fn fn)
{
    kvs_buf one;
    kvs_buf_init(&one);
    B(kvs_buf_puts(&p->rows, "["));
    kvs_idset handled = {0}; /* ids of this page already handled (mapped, failed or skipped) */
    const cJSON *rec;
    cJSON_ArrayForEach(rec, data)
    {
        rec_err e = {{0}};
        int64_t id = 0;
        const char *code = NULL;
        if (!cJSON_IsObject(rec)) {
            p->nrecords++;
            map_failure_add(p, false, 0, NULL, "record is not an object");
            continue;
        }
        kvjson_get_str(rec, "code", &code) == 0 ? (void)0 : (void)(code = NULL);
        int rc = kvjson_get_int64(rec, "id", &id);
        if (rc || id <= 0) {
            p->nrecords++;
            map_failure_add(p, false, 0, code,
                            rc == -ENOENT ? "field id: missing"
                                          : "field id: not a positive integer id");
            continue;
        }
        map_track_id(p, id);
        /* Served twice in one page: handled once, whatever became of the first copy. */
        if (!kvs_idset_add(&handled, id)) continue;
        kvs_buf_reset(&one);
        int64_t modified = 0;
        rc = fn(rec, o, p, &one, id, code, &e, &modified);
        if (rc < 0) {
            map_failure_add(p, true, id, code, e.msg);
        } else if (rc == 1) {
            p->nskipped++;
        } else if (rc == 2) {
            p->nskipped++;
            if (p->nout == p->out_cap) {
                p->out_cap = p->out_cap ? 2 * p->out_cap : 16;
                p->out_of_scope = kvs_xrealloc(p->out_of_scope,
                                               (size_t)p->out_cap * sizeof *p->out_of_scope);
            }
            p->out_of_scope[p->nout++] = id;
        } else {
            if (p->nrows) B(kvs_buf_puts(&p->rows, ","));
            size_t start = p->rows.len;
            B(kvs_buf_append(&p->rows, one.data, one.len));
            map_row_push(p, id, modified, start);
        }
    }
    B(kvs_buf_puts(&p->rows, "]"));
    kvs_buf_free(&one);
    kvs_idset_free(&handled);
}

static int map_product_record(const cJSON *rec, const map_opts *o, map_page *p, kvs_buf *b,
                              int64_t id, const char *code, rec_err *e, int64_t *modified_out)
{
    return map_product(rec, o, p, b, id, code, e, NULL, modified_out);
}

void map_products(const cJSON *data, const map_opts *o, map_page *p)
{
    map_records(data, o, p, map_product_record);
}

/* One stock record (see map_stock): the sums as map_product computes them, the value only when
 * every counted branch states its cost, and each branch's own figures. */
static int map_stock_record(const cJSON *rec, const map_opts *o, map_page *p, kvs_buf *b,
                            int64_t id, const char *code, rec_err *e, int64_t *modified_out)
{
    int64_t modified = 0;
    char stock[DEC_BUFSZ], value[DEC_BUFSZ];
    bool has_inv, costed = true, first = true;
    if (rec_modified(rec, &modified, e) ||
        map_inventory_sums(rec, o, stock, value, &has_inv, e))
        return -EINVAL;
    if (!has_inv) return 1;
    B(kvs_buf_puts(b, "{"));
    put_key(b, &first, stock_fields[SF_KID].key);
    B(kvs_buf_printf(b, "%" PRId64, id));
    put_key(b, &first, stock_fields[SF_STOCK].key);
    put_number(b, stock);
    if (map_branch_stock(rec, b, &first, e)) return -EINVAL;
    const cJSON *it;
    cJSON_ArrayForEach(it, kvjson_get(rec, "inventories"))
    {
        int64_t branch = 0;
        const char *q, *c;
        bool has_branch = kvjson_get_int64(it, "branchId", &branch) == 0;
        if (kvjson_get_num_text(it, "onHand", &q)) continue; /* no figure (sums checked it) */
        if ((!o->branches || (has_branch && map_branch_counts(o, branch))) &&
            kvjson_get_num_text(it, "cost", &c))
            costed = false;
    }
    if (costed) {
        put_key(b, &first, stock_fields[SF_INV_VALUE].key);
        put_number(b, value);
    }
    if (modified) {
        char ts[KVTIME_BUFSZ];
        kvtime_format_vn(modified, ts);
        put_key(b, &first, stock_fields[SF_MODIFIED].key);
        map_put_str(b, ts);
    }
    B(kvs_buf_puts(b, "}"));
    if (o->stock_integer) stock_round_note(p, id, code, stock);
    if (modified > p->max_modified_us) p->max_modified_us = modified;
    *modified_out = modified;
    return 0;
}

void map_stock(const cJSON *data, const map_opts *o, map_page *p)
{
    map_records(data, o, p, map_stock_record);
}

/* Flat mode is what we ask for; hierarchical answers (children arrays) are walked too. */
static void map_category_list(const cJSON *data, map_page *p, kvs_idset *mapped, int64_t parent,
                              bool has_parent)
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
            map_failure_add(p, false, 0, NULL, "record is not an object");
            continue;
        }
        int rc = kvjson_get_int64(rec, "categoryId", &id);
        if (rc || id <= 0) {
            p->nrecords++;
            map_failure_add(p, false, 0, NULL,
                            rc == -ENOENT ? "field categoryId: missing"
                                          : "field categoryId: not an id");
            continue;
        }
        map_track_id(p, id);
        int64_t modified = 0;
        if (kvjson_get_str(rec, "categoryName", &name)) {
            map_failure_add(p, true, id, NULL, "field categoryName: missing or not a string");
            continue;
        }
        if (opt_int64(rec, "parentId", &has_pid, &pid, &e) || rec_modified(rec, &modified, &e)) {
            map_failure_add(p, true, id, NULL, e.msg);
            continue;
        }
        if (!has_pid && has_parent) {
            has_pid = true;
            pid = parent;
        }
        if (has_pid && pid == 0) has_pid = false; /* some clients send 0 for roots */
        if (modified > p->max_modified_us) p->max_modified_us = modified;
        if (kvs_idset_add(mapped, id)) { /* the first mapped copy of an id wins */
            bool first = true;
            if (p->nrows) B(kvs_buf_puts(&p->rows, ","));
            size_t start = p->rows.len;
            B(kvs_buf_puts(&p->rows, "{"));
            put_key(&p->rows, &first, category_fields[CF_KID].key);
            B(kvs_buf_printf(&p->rows, "%" PRId64, id));
            put_key(&p->rows, &first, category_fields[CF_NAME].key);
            map_put_str(&p->rows, name);
            if (has_pid) {
                put_key(&p->rows, &first, category_fields[CF_PARENT_KID].key);
                B(kvs_buf_printf(&p->rows, "%" PRId64, pid));
            }
            if (modified) {
                char ts[KVTIME_BUFSZ];
                kvtime_format_vn(modified, ts);
                put_key(&p->rows, &first, category_fields[CF_MODIFIED].key);
                map_put_str(&p->rows, ts);
            }
            put_key(&p->rows, &first, category_fields[CF_STATUS].key);
            map_put_str(&p->rows, "active");
            B(kvs_buf_puts(&p->rows, "}"));
            map_row_push(p, id, modified, start);
        }
        const cJSON *children = kvjson_get(rec, "children");
        if (cJSON_IsArray(children)) map_category_list(children, p, mapped, id, true);
    }
}

void map_categories(const cJSON *data, map_page *p)
{
    kvs_idset mapped = {0}; /* ids of p's rows */
    for (int i = 0; i < p->nrows; i++) kvs_idset_add(&mapped, p->row[i].id);
    B(kvs_buf_puts(&p->rows, "["));
    map_category_list(data, p, &mapped, 0, false);
    B(kvs_buf_puts(&p->rows, "]"));
    kvs_idset_free(&mapped);
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
