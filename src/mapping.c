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
    free(p->row);
    free(p->note);
    free(p->failure);
    memset(p, 0, sizeof *p);
}

/* Rebuilds the page's rows text and row records from the rows marked in keep. */
static void rows_keep(map_page *p, const bool *keep)
{
    kvs_buf rows;
    kvs_buf_init(&rows);
    B(kvs_buf_reserve(&rows, p->rows.len));
    B(kvs_buf_puts(&rows, "["));
    int k = 0;
    for (int i = 0; i < p->nrows; i++) {
        if (!keep[i]) continue;
        map_row r = p->row[i];
        if (k) B(kvs_buf_puts(&rows, ","));
        size_t start = rows.len;
        B(kvs_buf_append(&rows, p->rows.data + r.start, r.len));
        r.start = start;
        p->row[k++] = r;
    }
    B(kvs_buf_puts(&rows, "]"));
    kvs_buf_free(&p->rows);
    p->rows = rows;
    p->nrows = k;
}

/* Keeps the notes about rows still in the page (ids in keep_ids). */
static void notes_keep(map_page *p, const kvs_idset *keep_ids)
{
    kvs_buf notes;
    kvs_buf_init(&notes);
    int k = 0;
    for (int i = 0; i < p->nnotes; i++) {
        map_item it = p->note[i];
        if (!kvs_idset_has(keep_ids, it.id)) continue;
        if (notes.len) B(kvs_buf_puts(&notes, ","));
        size_t start = notes.len;
        B(kvs_buf_append(&notes, p->notes.data + it.start, it.len));
        it.start = start;
        p->note[k++] = it;
    }
    kvs_buf_free(&p->notes);
    p->notes = notes;
    p->nnotes = k;
}

int map_page_keep_unseen(map_page *p, kvs_idset *seen)
{
    if (p->nrows == 0) return 0;
    bool *keep = kvs_xcalloc((size_t)p->nrows, sizeof *keep);
    int fresh = 0;
    for (int i = 0; i < p->nrows; i++)
        if ((keep[i] = kvs_idset_add(seen, p->row[i].id))) fresh++;
    if (fresh < p->nrows) {
        kvs_idset kept = {0};
        for (int i = 0; i < p->nrows; i++)
            if (keep[i]) kvs_idset_add(&kept, p->row[i].id);
        rows_keep(p, keep);
        notes_keep(p, &kept); /* notes of rows stored earlier in the run were counted then */
        kvs_idset_free(&kept);
    }
    free(keep);
    return fresh;
}

bool map_page_failed_without_id(const map_page *p)
{
    for (int i = 0; i < p->nfailed; i++)
        if (!p->failure[i].id) return true;
    return false;
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

static void note_add(map_page *p, int64_t id, const char *code, const char *column,
                     const char *attribute, const char *value, const char *why)
{
    kvs_buf *b = &p->notes;
    if (p->nnotes == p->notes_cap) { /* doubling: a page can hold thousands of notes */
        p->notes_cap = p->notes_cap ? p->notes_cap * 2 : 16;
        p->note = kvs_xrealloc(p->note, (size_t)p->notes_cap * sizeof *p->note);
    }
    if (b->len) B(kvs_buf_puts(b, ","));
    map_item *it = &p->note[p->nnotes];
    it->id = id;
    it->start = b->len;
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
    it->len = b->len - it->start;
    p->nnotes++;
}

static void failure_add(map_page *p, bool has_id, int64_t id, const char *code, const char *msg)
{
    kvs_buf *b = &p->failures;
    if (p->nfailed == p->failures_cap) {
        p->failures_cap = p->failures_cap ? p->failures_cap * 2 : 16;
        p->failure = kvs_xrealloc(p->failure, (size_t)p->failures_cap * sizeof *p->failure);
    }
    if (b->len) B(kvs_buf_puts(b, ","));
    map_item *it = &p->failure[p->nfailed];
    it->id = has_id ? id : 0;
    it->start = b->len;
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
    it->len = b->len - it->start;
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
    note_add(p, id, code, "stock_quantity", "onHand", stock, why);
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
            !branch_counts(o, branch))
            continue;
        if (jewel_parse_serial(sn, norm, sizeof norm) != JV_OK) continue;
        n++;
        if (!out[0] || strcmp(norm, out) < 0) memcpy(out, norm, strlen(norm) + 1);
    }
    return n;
}

/* Where a jewellery column's value came from. */
enum jsrc { JS_NONE, JS_ATTR, JS_NAME, JS_WEIGHT, JS_SERIALS };

/* The jewellery columns of one product, as written. */
typedef struct jcols {
    jewel_result jr;                  /* attributes + name scan */
    const char *value[JF_COUNT];      /* NULL = column NULL; borrowed from jr / serial / rec */
    enum jsrc src[JF_COUNT];
    char serial[JEWEL_VALUE_MAX];     /* chosen productSerials entry */
    int nserials;                     /* in-stock candidates */
    const char *weight;               /* KiotViet weight text, NULL if absent */
    bool weight_usable;               /* weight > 0 */
} jcols;

#define MAX_ATTRS 256

/* attributes[] as jewel_attr pairs (borrowed from rec). A number attributeValue is taken as
 * its text; entries without a string name are skipped. */
static size_t collect_attrs(const cJSON *arr, jewel_attr *attrs)
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
    size_t nattrs = collect_attrs(kvjson_get(rec, "attributes"), attrs);
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

static const int jf_to_pf[JF_COUNT] = {
    [JF_CENTER_STONE_SIZE_MM] = PF_STONE_MM, [JF_SHAPE] = PF_SHAPE,
    [JF_DIMENSIONS] = PF_DIMENSIONS,         [JF_STONE_COUNT] = PF_STONE_COUNT,
    [JF_CARAT_WEIGHT_CT] = PF_CARAT,         [JF_GOLD_PURITY] = PF_PURITY,
    [JF_PRODUCT_WEIGHT_G] = PF_WEIGHT_G,     [JF_SUPPLIER_ID] = PF_SUPPLIER,
    [JF_SERIAL_NUMBER] = PF_SERIAL,
};

/* Maps one product into b (an object). Returns 0, 1 (deliberately skipped) or -EINVAL.
 * jc (caller-owned, may be NULL) receives the jewellery resolution, for --explain-product. */
static int map_product(const cJSON *rec, const map_opts *o, map_page *p, kvs_buf *b,
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
    if ((rc = kvjson_get_str(rec, "name", &name)) != 0)
        return fail(e, "field %s: missing or not a string", "name");
    if (opt_str(rec, "fullName", &full_name, e) || opt_str(rec, "description", &descr, e) ||
        opt_str(rec, "barCode", &barcode, e) || opt_num(rec, "basePrice", &price, e) ||
        opt_num(rec, "weight", &weight, e) || opt_int64(rec, "categoryId", &has_cat, &cat, e) ||
        opt_int64(rec, "masterProductId", &has_master, &master, e))
        return -EINVAL;
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
    if (inventory_sums(rec, o, stock, value, &has_inv, e)) return -EINVAL;

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
    if (put_images(b, &first, rec, e)) {
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
            note_add(p, id, code, jewel_field_name(f), v->rejected_source, v->raw, why);
        }
    }
    if (!jc_out) free(jc);
    B(kvs_buf_puts(b, "}"));
    return 0;
}

/* Records row nrows: its id, modification time and span in rows (from start to the end). */
static void row_push(map_page *p, int64_t id, int64_t modified_us, size_t start)
{
    if (p->nrows == p->rows_cap) { /* doubling keeps a large page linear */
        p->rows_cap = p->rows_cap ? p->rows_cap * 2 : 128;
        p->row = kvs_xrealloc(p->row, (size_t)p->rows_cap * sizeof *p->row);
    }
    p->row[p->nrows] = (map_row){.id = id, .modified_us = modified_us, .start = start,
                                 .len = p->rows.len - start};
    p->nrows++;
}

void map_products(const cJSON *data, const map_opts *o, map_page *p)
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
            failure_add(p, false, 0, NULL, "record is not an object");
            continue;
        }
        kvjson_get_str(rec, "code", &code) == 0 ? (void)0 : (void)(code = NULL);
        int rc = kvjson_get_int64(rec, "id", &id);
        if (rc || id <= 0) {
            p->nrecords++;
            failure_add(p, false, 0, code,
                        rc == -ENOENT ? "field id: missing" : "field id: not a positive integer id");
            continue;
        }
        track_id(p, id);
        /* Served twice in one page: handled once, whatever became of the first copy. */
        if (!kvs_idset_add(&handled, id)) continue;
        kvs_buf_reset(&one);
        int64_t modified = 0;
        rc = map_product(rec, o, p, &one, id, code, &e, NULL, &modified);
        if (rc < 0) {
            failure_add(p, true, id, code, e.msg);
        } else if (rc == 1) {
            p->nskipped++;
        } else {
            if (p->nrows) B(kvs_buf_puts(&p->rows, ","));
            size_t start = p->rows.len;
            B(kvs_buf_append(&p->rows, one.data, one.len));
            row_push(p, id, modified, start);
        }
    }
    B(kvs_buf_puts(&p->rows, "]"));
    kvs_buf_free(&one);
    kvs_idset_free(&handled);
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
            failure_add(p, false, 0, NULL, "record is not an object");
            continue;
        }
        int rc = kvjson_get_int64(rec, "categoryId", &id);
        if (rc || id <= 0) {
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
        if (kvs_idset_add(mapped, id)) { /* the first mapped copy of an id wins */
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
            row_push(p, id, modified, start);
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

/* ---- --explain-product ----------------------------------------------------------------- */

/* A string for people: sanitised UTF-8 in JSON quotes (control characters escaped). */
static void ex_str(kvs_buf *out, const char *s)
{
    if (!s) {
        B(kvs_buf_puts(out, "(absent)"));
        return;
    }
    put_str(out, s);
}

/* One KiotViet field: "  key               = value -> what". value NULL = absent. */
static void ex_field(kvs_buf *out, const char *key, const char *value, bool quote, const char *what)
{
    B(kvs_buf_printf(out, "  %-16s = ", key));
    if (!value)
        B(kvs_buf_puts(out, "(absent)"));
    else if (quote)
        ex_str(out, value);
    else
        B(kvs_buf_puts(out, value));
    if (what) B(kvs_buf_printf(out, "  -> %s", what));
    B(kvs_buf_puts(out, "\n"));
}

/* The alias of field f that attribute name `an` matched (original spelling), or NULL. */
static const char *ex_matched_alias(const jewel_map *m, int f, const char *an)
{
    char *key = jewel_key_normalize(an);
    const char *hit = NULL;
    for (size_t i = 0; key && !hit && i < jewel_map_alias_count(m, f); i++) {
        char *ak = jewel_key_normalize(jewel_map_alias(m, f, i));
        if (ak && !strcmp(ak, key)) hit = jewel_map_alias(m, f, i);
        free(ak);
    }
    free(key);
    return hit;
}

static void ex_aliases(kvs_buf *out, const jewel_map *m, int f)
{
    size_t n = jewel_map_alias_count(m, f);
    if (!n) {
        B(kvs_buf_puts(out, "(none: this column is never read from attributes)"));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (i) B(kvs_buf_puts(out, ", "));
        B(kvs_buf_puts(out, jewel_map_alias(m, f, i)));
    }
}

static const char *ex_num_field(const cJSON *rec, const char *key)
{
    const char *t = NULL;
    return kvjson_get_num_text(rec, key, &t) == 0 ? t : NULL;
}

static const char *ex_str_field(const cJSON *rec, const char *key)
{
    const char *t = NULL;
    return kvjson_get_str(rec, key, &t) == 0 ? t : NULL;
}

static void ex_inventories(kvs_buf *out, const cJSON *rec, const map_opts *o)
{
    const cJSON *inv = kvjson_get(rec, "inventories"), *it;
    if (!cJSON_IsArray(inv)) {
        B(kvs_buf_puts(out, "  inventories      = (absent)  -> stock and inventory_value stay NULL\n"));
        return;
    }
    B(kvs_buf_printf(out, "  inventories      = %d branch(es)%s\n", cJSON_GetArraySize(inv),
                     o->branches ? " ([mapping] branches limits which count)" : ""));
    cJSON_ArrayForEach(it, inv)
    {
        int64_t branch = 0;
        bool has_branch = kvjson_get_int64(it, "branchId", &branch) == 0;
        const char *bn = ex_str_field(it, "branchName");
        const char *q = ex_num_field(it, "onHand"), *c = ex_num_field(it, "cost");
        bool counted = !o->branches || (has_branch && branch_counts(o, branch));
        char bid[32] = "?";
        if (has_branch) snprintf(bid, sizeof bid, "%" PRId64, branch);
        B(kvs_buf_printf(out, "      branch %s", bid));
        if (bn) {
            B(kvs_buf_puts(out, " "));
            ex_str(out, bn);
        }
        B(kvs_buf_printf(out, ": onHand %s x cost %s  %s\n", q ? q : "(absent)", c ? c : "(absent, 0)",
                         !counted ? "not counted (branch not in [mapping] branches)"
                         : q      ? "counted"
                                  : "no stock figure"));
    }
    char stock[DEC_BUFSZ], value[DEC_BUFSZ];
    bool present;
    rec_err e = {{0}};
    if (inventory_sums(rec, o, stock, value, &present, &e) == 0 && present)
        B(kvs_buf_printf(out, "      -> stock_quantity = %s, inventory_value = %s (sum of onHand x cost)\n",
                         stock, value));
}

static void ex_serials(kvs_buf *out, const cJSON *rec, const map_opts *o, const jcols *jc)
{
    const cJSON *arr = kvjson_get(rec, "productSerials"), *it;
    if (!cJSON_IsArray(arr)) {
        B(kvs_buf_puts(out, "  productSerials   = (absent)\n"));
        return;
    }
    B(kvs_buf_printf(out, "  productSerials   = %d serial(s), %d in stock at a counted branch\n",
                     cJSON_GetArraySize(arr), jc->nserials));
    cJSON_ArrayForEach(it, arr)
    {
        const char *sn = ex_str_field(it, "serialNumber");
        int64_t status = 1, branch = 0;
        int rs = kvjson_get_int64(it, "status", &status);
        bool has_branch = kvjson_get_int64(it, "branchId", &branch) == 0;
        char norm[JEWEL_VALUE_MAX] = "";
        if (sn && jewel_parse_serial(sn, norm, sizeof norm) != JV_OK) norm[0] = '\0';
        B(kvs_buf_puts(out, "      "));
        ex_str(out, sn);
        B(kvs_buf_printf(out, " status %s", rs == -ENOENT ? "(absent)" : rs ? "(unreadable)"
                                            : status == 1 ? "1 (in stock)"
                                                          : "0 (sold)"));
        if (has_branch) B(kvs_buf_printf(out, " branch %" PRId64, branch));
        if (norm[0] && jc->nserials && !strcmp(norm, jc->serial))
            B(kvs_buf_puts(out, "  <- chosen: the smallest in-stock serial"));
        else if (o->branches && has_branch && !branch_counts(o, branch))
            B(kvs_buf_puts(out, "  (branch not counted)"));
        B(kvs_buf_puts(out, "\n"));
    }
}

static void ex_attributes(kvs_buf *out, const cJSON *rec, const map_opts *o, const jcols *jc)
{
    jewel_attr attrs[MAX_ATTRS];
    size_t n = collect_attrs(kvjson_get(rec, "attributes"), attrs);
    bool used[JF_COUNT] = {false}, noted[JF_COUNT] = {false};
    B(kvs_buf_printf(out, "Attributes (%zu; per column the first understood value wins):\n", n));
    if (!n) B(kvs_buf_puts(out, "  (none)\n"));
    for (size_t i = 0; i < n; i++) {
        char val[JEWEL_VALUE_MAX];
        B(kvs_buf_puts(out, "  "));
        ex_str(out, attrs[i].name);
        B(kvs_buf_puts(out, " = "));
        ex_str(out, attrs[i].value ? attrs[i].value : "");
        B(kvs_buf_puts(out, "\n      -> "));
        int f = jewel_map_lookup(o->jewel, attrs[i].name);
        if (f < 0) {
            char *key = jewel_key_normalize(attrs[i].name);
            B(kvs_buf_puts(out, "no column: no alias matches its key "));
            ex_str(out, key ? key : "(invalid UTF-8)");
            B(kvs_buf_puts(out, "\n"));
            free(key);
            continue;
        }
        const char *alias = ex_matched_alias(o->jewel, f, attrs[i].name);
        B(kvs_buf_printf(out, "%s (alias ", jewel_field_name(f)));
        ex_str(out, alias ? alias : "?");
        enum jewel_status st = jewel_field_parser(f)(attrs[i].value, val, sizeof val);
        B(kvs_buf_printf(out, "): %s", jewel_status_name(st)));
        if (st == JV_OK) {
            B(kvs_buf_printf(out, " %s", val));
            if (used[f])
                B(kvs_buf_puts(out, " [ignored: an earlier attribute gave this column]"));
            else if (jc->src[f] == JS_SERIALS)
                B(kvs_buf_puts(out, " [not used: productSerials give the serial]"));
            else
                B(kvs_buf_puts(out, " [used]"));
            used[f] = true;
        } else if (st == JV_EMPTY) {
            B(kvs_buf_puts(out, " (blank or placeholder: ignored)"));
        } else {
            B(kvs_buf_puts(out, st == JV_AMBIGUOUS ? " (understood but undecidable: not guessed)"
                                                   : " (not understood)"));
            if (!used[f] && !noted[f]) B(kvs_buf_puts(out, " [noted in sync_logs]"));
            noted[f] = true;
        }
        B(kvs_buf_puts(out, "\n"));
    }
}

static void ex_columns(kvs_buf *out, const map_opts *o, const jcols *jc, const char *name)
{
    jewel_name_hits hits;
    unsigned found = o->name_scan ? jewel_scan_name(name, &hits) : 0;
    if (!o->name_scan)
        B(kvs_buf_puts(out, "Name scan: off ([mapping] name_scan = false)\n"));
    else
        B(kvs_buf_printf(out, "Name scan: stone size %s, purity %s\n",
                         found & (1u << JF_CENTER_STONE_SIZE_MM) ? hits.size_mm : "-",
                         found & (1u << JF_GOLD_PURITY) ? hits.purity : "-"));
    B(kvs_buf_puts(out, "Jewellery columns:\n"));
    for (int f = 0; f < JF_COUNT; f++) {
        const jewel_value *v = &jc->jr.f[f];
        B(kvs_buf_printf(out, "  %-20s = %-12s ", jewel_field_name(f),
                         jc->value[f] ? jc->value[f] : "NULL"));
        switch (jc->src[f]) {
        case JS_ATTR:
            B(kvs_buf_puts(out, "from attribute "));
            ex_str(out, v->source);
            break;
        case JS_NAME: B(kvs_buf_puts(out, "from the product name")); break;
        case JS_WEIGHT: B(kvs_buf_puts(out, "from KiotViet weight (grams)")); break;
        case JS_SERIALS: B(kvs_buf_puts(out, "from productSerials")); break;
        case JS_NONE:
            if (v->status == JV_ABSENT) {
                B(kvs_buf_puts(out, "no attribute named: "));
                ex_aliases(out, o->jewel, f);
            } else if (v->status == JV_EMPTY) {
                B(kvs_buf_puts(out, "attribute "));
                ex_str(out, v->source);
                B(kvs_buf_puts(out, " is blank"));
            } else {
                B(kvs_buf_puts(out, "attribute "));
                ex_str(out, v->source);
                B(kvs_buf_printf(out, " %s", v->status == JV_AMBIGUOUS ? "is ambiguous" : "not understood"));
            }
            if (f == JF_PRODUCT_WEIGHT_G && jc->weight && !jc->weight_usable)
                B(kvs_buf_printf(out, "; KiotViet weight %s is not positive", jc->weight));
            break;
        }
        if (jc->src[f] != JS_NONE && v->rejected != JV_ABSENT && jc->src[f] != JS_ATTR) {
            B(kvs_buf_puts(out, " (attribute "));
            ex_str(out, v->rejected_source);
            B(kvs_buf_puts(out, " = "));
            ex_str(out, v->raw);
            B(kvs_buf_printf(out, " %s)", v->rejected == JV_AMBIGUOUS ? "ambiguous" : "not understood"));
        }
        B(kvs_buf_puts(out, "\n"));
    }
}

void map_explain_product(const cJSON *rec, const map_opts *o, kvs_buf *out)
{
    map_page p;
    map_page_init(&p);
    kvs_buf row;
    kvs_buf_init(&row);
    jcols *jc = kvs_xcalloc(1, sizeof *jc);
    rec_err e = {{0}};
    int64_t id = 0;
    const char *code = NULL;
    if (!cJSON_IsObject(rec)) {
        B(kvs_buf_puts(out, "not a product object: it would fail mapping\n"));
        goto done;
    }
    kvjson_get_str(rec, "code", &code) == 0 ? (void)0 : (void)(code = NULL);
    if (kvjson_get_int64(rec, "id", &id) || id <= 0) {
        B(kvs_buf_puts(out, "product has no usable id: it would fail mapping (field id)\n"));
        goto done;
    }
    int64_t modified = 0;
    int rc = map_product(rec, o, &p, &row, id, code, &e, jc, &modified);
    B(kvs_buf_printf(out, "KiotViet product %" PRId64 ", code ", id));
    ex_str(out, code);
    B(kvs_buf_puts(out, "\n"));
    if (rc < 0) {
        B(kvs_buf_printf(out, "RESULT: fails mapping, not synced (counted in products_failed): %s\n",
                         e.msg));
        goto done;
    }
    if (rc == 1) {
        B(kvs_buf_printf(out, "RESULT: skipped: a unit conversion of product %s (masterUnitId); only "
                              "base units sync, this is another view of the same stock\n",
                         ex_num_field(rec, "masterUnitId")));
        goto done;
    }

    const char *name = ex_str_field(rec, "name");
    bool active = true;
    if (kvjson_get_bool(rec, "isActive", &active)) active = true;
    int64_t master = 0;
    bool has_master = kvjson_get_int64(rec, "masterProductId", &master) == 0;
    bool variants = false;
    if (kvjson_get_bool(rec, "hasVariants", &variants)) variants = false;
    const cJSON *imgs = kvjson_get(rec, "images");
    char buf[160];

    B(kvs_buf_puts(out, "KiotViet fields:\n"));
    ex_field(out, "id", ex_num_field(rec, "id"), false, "kiotviet_id");
    ex_field(out, "code", code, true, "sku (or code / product_code, whichever the shop has)");
    ex_field(out, "name", name, true, "name");
    ex_field(out, "fullName", ex_str_field(rec, "fullName"), true, "full_name (if the shop has it)");
    ex_field(out, "description", ex_str_field(rec, "description") ? "(text)" : NULL, false,
             "description (if the shop has it)");
    ex_field(out, "barCode", ex_str_field(rec, "barCode"), true, "barcode (if the shop has it)");
    ex_field(out, "basePrice", ex_num_field(rec, "basePrice"), false, "price (exact)");
    ex_field(out, "categoryId", ex_num_field(rec, "categoryId"), false,
             "kiotviet_category_id; category_id = the shop's category with that kiotviet_id");
    snprintf(buf, sizeof buf, "is_active = %s, kiotviet_status = %s", active ? "true" : "false",
             active ? "active" : "inactive");
    ex_field(out, "isActive", active ? "true" : "false", false, buf);
    snprintf(buf, sizeof buf, "%d", cJSON_IsArray(imgs) ? cJSON_GetArraySize(imgs) : 0);
    ex_field(out, "images", cJSON_IsArray(imgs) ? buf : NULL, false, "images (URLs)");
    ex_field(out, "hasVariants", variants ? "true" : "false", false,
             variants ? (has_master ? "a variant: its own product row"
                                    : "the master of a variant group: its own product row, "
                                      "kiotviet_master_id NULL")
                      : NULL);
    ex_field(out, "masterProductId", ex_num_field(rec, "masterProductId"), false,
             has_master ? "kiotviet_master_id (the variants of one master share it)" : NULL);
    ex_field(out, "masterUnitId", NULL, false, "a base unit: synced");
    ex_field(out, "modifiedDate", ex_str_field(rec, "modifiedDate"), false,
             "kiotviet_modified_at (else createdDate)");
    const char *wt = ex_num_field(rec, "weight");
    ex_field(out, "weight", wt, false,
             !wt                                ? "product_weight_g fallback (grams): absent"
             : !jc->weight_usable               ? "not used: not positive (KiotViet's 0 = not entered)"
             : jc->src[JF_PRODUCT_WEIGHT_G] == JS_WEIGHT ? "product_weight_g (grams): used, no attribute gave a weight"
                                                : "not used: an attribute gave product_weight_g");
    ex_inventories(out, rec, o);
    ex_serials(out, rec, o, jc);
    ex_attributes(out, rec, o, jc);
    ex_columns(out, o, jc, name);
    B(kvs_buf_printf(out, "Notes for sync_logs.error_details.attribute_notes: %d\n", p.nnotes));
    if (p.notes.len) {
        B(kvs_buf_puts(out, "  ["));
        B(kvs_buf_append(out, p.notes.data, p.notes.len));
        B(kvs_buf_puts(out, "]\n"));
    }
    B(kvs_buf_puts(out, "Row handed to the database (keys: see mapping.h product_fields):\n  "));
    B(kvs_buf_append(out, row.data, row.len));
    B(kvs_buf_puts(out, "\nRESULT: synced as one product row\n"));
done:
    free(jc);
    kvs_buf_free(&row);
    map_page_free(&p);
}

/* "file:line: [mapping] key" of a [mapping] key, for messages. */
static void mapping_where(const kvs_config *cfg, const char *key, int line, char *buf, size_t cap)
{
    const char *file = cfg->path ? cfg->path : "config";
    if (line)
        snprintf(buf, cap, "%s:%d: [mapping] %s", file, line, key);
    else
        snprintf(buf, cap, "%s: [mapping] %s", file, key);
}

int map_opts_from_config(const kvs_config *cfg, map_opts *o, kvs_err *err)
{
    memset(o, 0, sizeof *o);
    jewel_map *m = jewel_map_new_defaults();
    o->name_scan = true;
    char at[512];
    for (int i = 0; i < KVS_MAPPING_KEYS; i++) {
        const char *v = cfg->mapping[i];
        if (!v) continue;
        mapping_where(cfg, config_mapping_keys[i], cfg->mapping_line[i], at, sizeof at);
        if (!strcmp(config_mapping_keys[i], "name_scan")) {
            if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"))
                o->name_scan = true;
            else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no"))
                o->name_scan = false;
            else {
                kvs_err_set(err, -EINVAL, "%s: not true or false", at);
                goto fail;
            }
            continue;
        }
        int f = jewel_field_from_name(config_mapping_keys[i]);
        kvs_err e;
        kvs_err_clear(&e);
        int rc = f < 0                       ? -EINVAL
                 : cfg->mapping_append[i] ? jewel_map_add_aliases(m, f, v, &e)
                                          : jewel_map_set_aliases(m, f, v, &e);
        if (rc) {
            kvs_err_set(err, -EINVAL, "%s: %s", at, e.msg[0] ? e.msg : "unknown column");
            goto fail;
        }
    }
    if (cfg->branches) {
        int64_t *b = NULL;
        int n = 0;
        const char *p = cfg->branches;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ',') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || errno || v <= 0 || (*end && *end != ',' && *end != ' ' && *end != '\t')) {
                mapping_where(cfg, "branches", cfg->branches_line, at, sizeof at);
                kvs_err_set(err, -EINVAL, "%s: not a list of branch ids", at);
                free(b);
                goto fail;
            }
            b = kvs_xrealloc(b, (size_t)(n + 1) * sizeof *b);
            b[n++] = v;
            p = end;
        }
        /* An empty list would count no branch at all: leave it NULL (= all). */
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
