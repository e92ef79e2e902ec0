/* --explain-product: how one product record would be mapped, for people (see mapping.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvjson.h"
#include "mapping_int.h"

/* A string for people: sanitised UTF-8 in JSON quotes (control characters escaped). */
static void ex_str(kvs_buf *out, const char *s)
{
    if (!s) {
        B(kvs_buf_puts(out, "(absent)"));
        return;
    }
    map_put_str(out, s);
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
        bool counted = !o->branches || (has_branch && map_branch_counts(o, branch));
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
    if (map_inventory_sums(rec, o, stock, value, &present, &e) == 0 && present)
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
        else if (o->branches && has_branch && !map_branch_counts(o, branch))
            B(kvs_buf_puts(out, "  (branch not counted)"));
        B(kvs_buf_puts(out, "\n"));
    }
}

static void ex_attributes(kvs_buf *out, const cJSON *rec, const map_opts *o, const jcols *jc)
{
    jewel_attr attrs[MAX_ATTRS];
    size_t n = map_collect_attrs(kvjson_get(rec, "attributes"), attrs);
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
    if (rc == 2) {
        B(kvs_buf_printf(out, "RESULT: out of scope: its type %s is not in [mapping] "
                              "product_types; its row, if any, is marked deleted "
                              "(kiotviet_status 'deleted', is_active false)\n",
                         ex_num_field(rec, "type")));
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
    char why[240];
    const char *price = map_price(rec, o, why, sizeof why);
    if (o->book_id || o->book_name) {
        ex_field(out, "basePrice", ex_num_field(rec, "basePrice"), false, NULL);
        B(kvs_buf_printf(out, "  %-16s = %s  -> price, from %s\n", "(price chosen)",
                         price ? price : "(none)", why));
    } else {
        ex_field(out, "basePrice", ex_num_field(rec, "basePrice"), false, "price (exact)");
    }
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
