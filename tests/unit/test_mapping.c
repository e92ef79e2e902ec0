/* Unit tests for mapping.c: KiotViet records (as kvjson documents) to row JSON.
 *
 * Table-driven: each case maps one "data" array and checks the page counters, then parses the
 * produced rows back (kvjson, so number texts stay exact) and compares fields one by one; the
 * failures and attribute notes are parsed back too. Expected values are written out by hand
 * from the KiotViet fact sheet and the documented rules, never computed by the code under
 * test. Further tests: categories (flat, hierarchical), removedIds, options from the config,
 * and the --explain-product account. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "jewel.h"
#include "kvjson.h"
#include "jsonfx.h"
#include "kvtime.h"
#include "mapping.h"

#define OK(call) assert_int_equal((call), 0)
#define MAXF 24

/* One expected field of a row. want: "-" = key absent, "s:<text>" string (byte-exact),
 * "n:<text>" number with exactly this token text, "b:true"/"b:false", "j:<json>" the item
 * printed unformatted by cJSON. */
typedef struct fexp {
    const char *key;
    const char *want;
} fexp;

typedef struct pcase {
    const char *name;
    const char *data; /* JSON array of product records */
    int nrows, nfailed, nskipped, nnotes, nrecords;
    int row;          /* row whose fields are checked (-1: none) */
    fexp f[MAXF];
    const char *failure;  /* substring of the first failure's "error", or NULL */
    const char *note;     /* "column|attribute|value" of the first note, or NULL */
    const int64_t *branches;
    int nbranches;
    bool no_name_scan;
} pcase;

static const int64_t branch_61201[] = {61201};

/* Common tail of a plain record. */
#define REC(id, extra) "{\"id\":" #id ",\"code\":\"SP" #id "\",\"name\":\"Nhẫn\"" extra "}"

static const pcase product_cases[] = {
    /* ---- ids ---- */
    {"missing id", "[{\"code\":\"SP1\",\"name\":\"x\"}]", 0, 1, 0, 0, 1, -1, {{0}},
     "field id: missing", NULL, NULL, 0, false},
    {"id null", "[{\"id\":null,\"code\":\"SP1\",\"name\":\"x\"}]", 0, 1, 0, 0, 1, -1, {{0}},
     "field id: missing", NULL, NULL, 0, false},
    {"id as string digits", "[{\"id\":\"30000001\",\"code\":\"SP1\",\"name\":\"x\"}]", 1, 0, 0, 0, 1, 0,
     {{"kid", "n:30000001"}, {"code", "s:SP1"}}, NULL, NULL, NULL, 0, false},
    {"id beyond 2^53 stays exact", "[" REC(9007199254740993, "") "]", 1, 0, 0, 0, 1, 0,
     {{"kid", "n:9007199254740993"}}, NULL, NULL, NULL, 0, false},
    {"id as text that is not a number", "[{\"id\":\"abc\",\"name\":\"x\"}]", 0, 1, 0, 0, 1, -1, {{0}},
     "field id: not a positive integer id", NULL, NULL, 0, false},
    {"id fractional", "[{\"id\":12.5,\"name\":\"x\"}]", 0, 1, 0, 0, 1, -1, {{0}},
     "not a positive integer id", NULL, NULL, 0, false},
    {"id zero", "[{\"id\":0,\"name\":\"x\"}]", 0, 1, 0, 0, 1, -1, {{0}},
     "not a positive integer id", NULL, NULL, 0, false},
    {"record not an object", "[17, " REC(5, "") "]", 1, 1, 0, 0, 2, 0, {{"kid", "n:5"}},
     "record is not an object", NULL, NULL, 0, false},

    /* ---- wrong types fail the record, others on the page still map ---- */
    {"basePrice abc", "[" REC(1, ",\"basePrice\":\"abc\"") "," REC(2, ",\"basePrice\":\"12.50\"") "]",
     1, 1, 0, 0, 2, 0, {{"kid", "n:2"}, {"price", "n:12.5"}},
     "field basePrice: expected a number", NULL, NULL, 0, false},
    {"isActive maybe", "[" REC(1, ",\"isActive\":\"maybe\"") "]", 0, 1, 0, 0, 1, -1, {{0}},
     "field isActive: expected true or false", NULL, NULL, 0, false},
    {"isActive false", "[" REC(1, ",\"isActive\":false") "]", 1, 0, 0, 0, 1, 0,
     {{"active", "b:false"}, {"status", "s:inactive"}}, NULL, NULL, NULL, 0, false},
    {"isActive absent = active", "[" REC(1, "") "]", 1, 0, 0, 0, 1, 0,
     {{"active", "b:true"}, {"status", "s:active"}}, NULL, NULL, NULL, 0, false},
    {"name missing", "[{\"id\":1}]", 0, 1, 0, 0, 1, -1, {{0}}, "field name", NULL, NULL, 0, false},
    {"name a number", "[{\"id\":1,\"name\":5}]", 0, 1, 0, 0, 1, -1, {{0}}, "field name", NULL, NULL, 0,
     false},
    {"categoryId text", "[" REC(1, ",\"categoryId\":\"x\"") "]", 0, 1, 0, 0, 1, -1, {{0}},
     "field categoryId", NULL, NULL, 0, false},
    {"attributes not an array", "[" REC(1, ",\"attributes\":{}") "]", 0, 1, 0, 0, 1, -1, {{0}},
     "field attributes: expected an array", NULL, NULL, 0, false},
    {"inventories not an array", "[" REC(1, ",\"inventories\":5") "]", 0, 1, 0, 0, 1, -1, {{0}},
     "field inventories", NULL, NULL, 0, false},
    {"onHand text", "[" REC(1, ",\"inventories\":[{\"branchId\":1,\"onHand\":\"many\"}]") "]", 0, 1, 0,
     0, 1, -1, {{0}}, "bad onHand", NULL, NULL, 0, false},
    {"modifiedDate not a date", "[" REC(1, ",\"modifiedDate\":\"yesterday\"") "]", 0, 1, 0, 0, 1, -1,
     {{0}}, "field modifiedDate: not a date", NULL, NULL, 0, false},
    {"images an object", "[" REC(1, ",\"images\":{\"a\":1}") "]", 0, 1, 0, 0, 1, -1, {{0}},
     "field images: expected an array", NULL, NULL, 0, false},

    /* ---- images ---- */
    {"images as strings",
     "[" REC(1, ",\"images\":[\"https://cdn/a.jpg\",\"https://cdn/b.jpg\"]") "]", 1, 0, 0, 0, 1, 0,
     {{"images", "j:[\"https://cdn/a.jpg\",\"https://cdn/b.jpg\"]"}}, NULL, NULL, NULL, 0, false},
    {"images as Image objects, blanks and other types dropped",
     "[" REC(1, ",\"images\":[{\"Image\":\"https://cdn/a.jpg\"},\"\",7,{\"image\":\"https://cdn/b.jpg\"},"
                "{\"Image\":null}]") "]",
     1, 0, 0, 0, 1, 0, {{"images", "j:[\"https://cdn/a.jpg\",\"https://cdn/b.jpg\"]"}}, NULL, NULL,
     NULL, 0, false},
    {"images empty", "[" REC(1, ",\"images\":[]") "]", 1, 0, 0, 0, 1, 0, {{"images", "j:[]"}}, NULL,
     NULL, NULL, 0, false},

    /* ---- null and absent fields: keys left out (NULL in the recordset) ---- */
    {"null fields",
     "[{\"id\":1,\"code\":null,\"name\":\"x\",\"fullName\":null,\"description\":null,\"barCode\":null,"
     "\"basePrice\":null,\"categoryId\":null,\"images\":null,\"inventories\":null,\"attributes\":null,"
     "\"masterProductId\":null,\"masterUnitId\":null,\"weight\":null,\"modifiedDate\":null,"
     "\"isActive\":null,\"productSerials\":null}]",
     1, 0, 0, 0, 1, 0,
     {{"kid", "n:1"}, {"code", "-"}, {"name", "s:x"}, {"full_name", "-"}, {"description", "-"},
      {"barcode", "-"}, {"price", "-"}, {"cat_kid", "-"}, {"images", "-"}, {"stock", "-"},
      {"inv_value", "-"}, {"master_kid", "-"}, {"weight_g", "-"}, {"modified", "-"},
      {"active", "b:true"}, {"serial", "-"}},
     NULL, NULL, NULL, 0, false},
    {"createdDate when never modified", "[" REC(1, ",\"createdDate\":\"2025-06-03T08:12:40.1\"") "]",
     1, 0, 0, 0, 1, 0, {{"modified", "s:2025-06-03T08:12:40.1+07:00"}}, NULL, NULL, NULL, 0, false},

    /* ---- inventories ---- */
    {"no inventories: stock unknown", "[" REC(1, "") "]", 1, 0, 0, 0, 1, 0,
     {{"stock", "-"}, {"inv_value", "-"}}, NULL, NULL, NULL, 0, false},
    {"empty inventories: nothing in stock", "[" REC(1, ",\"inventories\":[]") "]", 1, 0, 0, 0, 1, 0,
     {{"stock", "n:0"}, {"inv_value", "n:0"}}, NULL, NULL, NULL, 0, false},
    {"fractional onHand, exact product",
     "[" REC(1, ",\"inventories\":[{\"branchId\":61201,\"onHand\":1.5,\"cost\":7380000}]") "]", 1, 0, 0,
     0, 1, 0, {{"stock", "n:1.5"}, {"inv_value", "n:11070000"}}, NULL, NULL, NULL, 0, false},
    {"sum over branches, missing cost counts 0, onhand any case",
     "[" REC(1, ",\"inventories\":[{\"branchId\":61201,\"onHand\":2,\"cost\":0.35},"
                "{\"branchId\":61202,\"onhand\":3},{\"branchId\":61203,\"cost\":5}]") "]",
     1, 0, 0, 0, 1, 0, {{"stock", "n:5"}, {"inv_value", "n:0.7"}}, NULL, NULL, NULL, 0, false},
    {"branch filter",
     "[" REC(1, ",\"inventories\":[{\"branchId\":61201,\"onHand\":2,\"cost\":1000000},"
                "{\"branchId\":61202,\"onHand\":5,\"cost\":1000000},{\"onHand\":9,\"cost\":1}]") "]",
     1, 0, 0, 0, 1, 0, {{"stock", "n:2"}, {"inv_value", "n:2000000"}}, NULL, NULL, branch_61201, 1,
     false},
    {"branch filter, no counted branch: 0",
     "[" REC(1, ",\"inventories\":[{\"branchId\":61202,\"onHand\":5,\"cost\":3}]") "]", 1, 0, 0, 0, 1,
     0, {{"stock", "n:0"}, {"inv_value", "n:0"}}, NULL, NULL, branch_61201, 1, false},

    /* ---- exact numbers and text ---- */
    {"0.35 stays 0.35", "[" REC(1, ",\"basePrice\":0.35,\"weight\":0.35") "]", 1, 0, 0, 0, 1, 0,
     {{"price", "n:0.35"}, {"weight_g", "n:0.35"}}, NULL, NULL, NULL, 0, false},
    {"price trailing zeros and exponent", "[" REC(1, ",\"basePrice\":1.50e3") "]", 1, 0, 0, 0, 1, 0,
     {{"price", "n:1500"}}, NULL, NULL, NULL, 0, false},
    {"Vietnamese text byte-exact (NFC and NFD kept as sent)",
     "[{\"id\":1,\"code\":\"NH-000001\",\"name\":\"Nhẫn kim cương Moissanite 💍\","
     "\"fullName\":\"Nha\xcc\x82\xcc\x83n – \\\"đặc biệt\\\"\",\"description\":\"<p>Bảo hành</p>\\n12 tháng\"}]",
     1, 0, 0, 0, 1, 0,
     {{"name", "s:Nhẫn kim cương Moissanite 💍"},
      {"full_name", "s:Nha\xcc\x82\xcc\x83n – \"đặc biệt\""},
      {"description", "s:<p>Bảo hành</p>\n12 tháng"}},
     NULL, NULL, NULL, 0, false},
    {"\\u0000 becomes U+FFFD", "[{\"id\":1,\"name\":\"A\\u0000B\",\"code\":\"\\u0000\"}]", 1, 0, 0, 0, 1,
     0, {{"name", "s:A\xef\xbf\xbd" "B"}, {"code", "s:\xef\xbf\xbd"}}, NULL, NULL, NULL, 0, false},
    {"invalid UTF-8 sanitized",
     "[{\"id\":1,\"name\":\"A\xff" "B\",\"description\":\"x\xc3(\",\"code\":\"\xe2\x82\"}]", 1, 0, 0, 0, 1,
     0,
     {{"name", "s:A\xef\xbf\xbd" "B"}, {"description", "s:x\xef\xbf\xbd("}, {"code", "s:\xef\xbf\xbd"}},
     NULL, NULL, NULL, 0, false},

    /* ---- duplicates, units, variants ---- */
    {"duplicate ids in one page stored once",
     "[" REC(7, ",\"basePrice\":1") "," REC(8, "") "," REC(7, ",\"basePrice\":2") "]", 2, 0, 0, 0, 3, 0,
     {{"kid", "n:7"}, {"price", "n:1"}}, NULL, NULL, NULL, 0, false},
    {"duplicate of a failed record is not retried",
     "[" REC(7, ",\"basePrice\":\"x\"") "," REC(7, ",\"basePrice\":2") "]", 0, 1, 0, 0, 2, -1, {{0}},
     "basePrice", NULL, NULL, 0, false},
    {"masterUnitId: a unit conversion is skipped and counted",
     "[" REC(1, ",\"basePrice\":100") "," REC(2, ",\"masterUnitId\":1,\"conversionValue\":10") "]", 1, 0, 1,
     0, 2, 0, {{"kid", "n:1"}}, NULL, NULL, NULL, 0, false},
    {"masterUnitId wins over bad fields",
     "[" REC(2, ",\"masterUnitId\":1,\"basePrice\":\"abc\",\"isActive\":\"maybe\"") "]", 0, 0, 1, 0, 1,
     -1, {{0}}, NULL, NULL, NULL, 0, false},
    {"masterUnitId not an id fails", "[" REC(2, ",\"masterUnitId\":\"one\"") "]", 0, 1, 0, 0, 1, -1,
     {{0}}, "field masterUnitId", NULL, NULL, 0, false},
    {"variant: own row with master id",
     "[" REC(30000100, ",\"hasVariants\":true") "," REC(30000101, ",\"hasVariants\":true,"
                                                      "\"masterProductId\":30000100") "]",
     2, 0, 0, 0, 2, 1, {{"kid", "n:30000101"}, {"master_kid", "n:30000100"}}, NULL, NULL, NULL, 0,
     false},
    {"variant master: no master id", "[" REC(30000100, ",\"hasVariants\":true") "]", 1, 0, 0, 0, 1, 0,
     {{"master_kid", "-"}}, NULL, NULL, NULL, 0, false},

    /* ---- jewellery ---- */
    {"all jewellery columns from attributes (NFD, case, spacing, English)",
     "[{\"id\":1,\"code\":\"NH1\",\"name\":\"Nhẫn\",\"weight\":9,\"attributes\":["
     "{\"attributeName\":\"KÍCH THƯỚC ĐÁ CHỦ\",\"attributeValue\":\"6,3 ly\"},"
     "{\"attributeName\":\" hi\xcc\x80nh  da\xcc\xa3ng \",\"attributeValue\":\"tro\xcc\x80n\"},"
     "{\"attributeName\":\"Kích cỡ\",\"attributeValue\":\"16 x 12  mm\"},"
     "{\"attributeName\":\"SỐ VIÊN\",\"attributeValue\":\"03 viên\"},"
     "{\"attributeName\":\"carat\",\"attributeValue\":\"0,5 ct\"},"
     "{\"attributeName\":\"Tuổi vàng\",\"attributeValue\":\"Vàng trắng 14K\"},"
     "{\"attributeName\":\"TRỌNG LƯỢNG\",\"attributeValue\":\"1 chỉ 2 phân\"},"
     "{\"attributeName\":\"NCC\",\"attributeValue\":\" Bảo Tín \"},"
     "{\"attributeName\":\"MÃ KIỂM ĐỊNH\",\"attributeValue\":\"GIA 2141438167\"},"
     "{\"attributeName\":\"MÀU SẮC\",\"attributeValue\":\"Đỏ\"}]}]",
     1, 0, 0, 0, 1, 0,
     {{"stone_mm", "n:6.3"}, {"shape", "s:Round"}, {"dimensions", "s:16 x 12 mm"},
      {"stone_count", "n:3"}, {"carat", "n:0.5"}, {"purity", "s:14K"}, {"weight_g", "n:4.5"},
      {"supplier", "s:Bảo Tín"}, {"serial", "s:GIA 2141438167"}},
     NULL, NULL, NULL, 0, false},
    {"unparsed values: NULL and a note with the product code",
     "[{\"id\":1,\"code\":\"NH-9\",\"name\":\"Nhẫn\",\"attributes\":["
     "{\"attributeName\":\"TUỔI VÀNG\",\"attributeValue\":\"??\"},"
     "{\"attributeName\":\"TRỌNG LƯỢNG\",\"attributeValue\":\"5.2\"},"
     "{\"attributeName\":\"HÌNH DẠNG\",\"attributeValue\":\"-\"},"
     "{\"attributeName\":\"SỐ VIÊN\",\"attributeValue\":\"99999999999\"}]}]",
     1, 0, 0, 3, 1, 0, {{"purity", "-"}, {"weight_g", "-"}, {"shape", "-"}, {"stone_count", "-"}},
     NULL, "gold_purity|TUỔI VÀNG|??", NULL, 0, false},
    {"name scan fills size and purity",
     "[{\"id\":1,\"name\":\"Nhẫn kim cương Moissanite 6.3ly vàng trắng 14K\"}]", 1, 0, 0, 0, 1, 0,
     {{"stone_mm", "n:6.3"}, {"purity", "s:14K"}}, NULL, NULL, NULL, 0, false},
    {"name scan off", "[{\"id\":1,\"name\":\"Nhẫn kim cương Moissanite 6.3ly vàng trắng 14K\"}]", 1, 0,
     0, 0, 1, 0, {{"stone_mm", "-"}, {"purity", "-"}}, NULL, NULL, NULL, 0, true},
    {"attribute wins over the name; rejected attribute noted when the name supplies it",
     "[{\"id\":1,\"code\":\"C1\",\"name\":\"Nhẫn 6.3ly vàng 18K\",\"attributes\":["
     "{\"attributeName\":\"SIZE ĐÁ\",\"attributeValue\":\"5ly\"},"
     "{\"attributeName\":\"LOẠI VÀNG\",\"attributeValue\":\"vàng\"}]}]",
     1, 0, 0, 1, 1, 0, {{"stone_mm", "n:5"}, {"purity", "s:18K"}}, NULL,
     "gold_purity|LOẠI VÀNG|vàng", NULL, 0, false},
    {"KiotViet weight is grams when no attribute gives a weight", "[" REC(1, ",\"weight\":3.75") "]", 1,
     0, 0, 0, 1, 0, {{"weight_g", "n:3.75"}}, NULL, NULL, NULL, 0, false},
    {"KiotViet weight 0 means not entered", "[" REC(1, ",\"weight\":0") "]", 1, 0, 0, 0, 1, 0,
     {{"weight_g", "-"}}, NULL, NULL, NULL, 0, false},
    {"weight attribute wins over KiotViet weight",
     "[" REC(1, ",\"weight\":9,\"attributes\":[{\"attributeName\":\"Weight\",\"attributeValue\":\"1 lượng\"}]")
     "]", 1, 0, 0, 0, 1, 0, {{"weight_g", "n:37.5"}}, NULL, NULL, NULL, 0, false},
    {"ambiguous weight attribute: KiotViet weight used, note kept",
     "[" REC(1, ",\"weight\":2.1,\"attributes\":[{\"attributeName\":\"TRỌNG LƯỢNG\",\"attributeValue\":\"5.2\"}]")
     "]", 1, 0, 0, 1, 1, 0, {{"weight_g", "n:2.1"}}, NULL, "product_weight_g|TRỌNG LƯỢNG|5.2", NULL, 0,
     false},
    {"number attributeValue read as text",
     "[" REC(1, ",\"attributes\":[{\"attributeName\":\"TUỔI VÀNG\",\"attributeValue\":750},"
                "{\"attributeName\":\"SỐ VIÊN\",\"attributeValue\":null}]") "]",
     1, 0, 0, 0, 1, 0, {{"purity", "s:18K"}, {"stone_count", "-"}}, NULL, NULL, NULL, 0, false},
    {"serial: smallest in-stock productSerial wins over the attribute",
     "[" REC(1, ",\"attributes\":[{\"attributeName\":\"SỐ SERI\",\"attributeValue\":\"ATTR-1\"}],"
                "\"productSerials\":[{\"serialNumber\":\"SR300\",\"status\":1,\"branchId\":61201},"
                "{\"serialNumber\":\"SR100\",\"status\":0,\"branchId\":61201},"
                "{\"serialNumber\":\" SR200 \",\"status\":1,\"branchId\":61202},"
                "{\"serialNumber\":\"SR050\",\"status\":\"x\"}]") "]",
     1, 0, 0, 0, 1, 0, {{"serial", "s:SR200"}}, NULL, NULL, NULL, 0, false},
    {"serial: branch filter applies to serials",
     "[" REC(1, ",\"productSerials\":[{\"serialNumber\":\"SR300\",\"status\":1,\"branchId\":61201},"
                "{\"serialNumber\":\"SR200\",\"status\":1,\"branchId\":61202}]") "]",
     1, 0, 0, 0, 1, 0, {{"serial", "s:SR300"}}, NULL, NULL, branch_61201, 1, false},
    {"serial: all sold, the attribute is used",
     "[" REC(1, ",\"attributes\":[{\"attributeName\":\"Serial\",\"attributeValue\":\"KD-000123\"}],"
                "\"productSerials\":[{\"serialNumber\":\"SR1\",\"status\":0}]") "]",
     1, 0, 0, 0, 1, 0, {{"serial", "s:KD-000123"}}, NULL, NULL, NULL, 0, false},
};

/* ---- helpers ------------------------------------------------------------------------------ */

/* Parses "[" + body + "]" (failures and notes are kept without brackets). */
static void parse_list(const kvs_buf *body, kvjson_doc *doc)
{
    kvs_buf b;
    kvs_buf_init(&b);
    OK(kvs_buf_puts(&b, "["));
    OK(kvs_buf_append(&b, body->data ? body->data : "", body->len));
    OK(kvs_buf_puts(&b, "]"));
    parse_text(kvs_buf_cstr(&b), doc);
    kvs_buf_free(&b);
}

static void check_field(const char *cname, const cJSON *row, const fexp *f)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(row, f->key);
    const char *w = f->want;
    if (!strcmp(w, "-")) {
        if (it) fail_msg("%s: key %s should be absent", cname, f->key);
        return;
    }
    if (!it) fail_msg("%s: key %s missing (want %s)", cname, f->key, w);
    if (!strncmp(w, "s:", 2)) {
        if (!cJSON_IsString(it) || strcmp(it->valuestring, w + 2))
            fail_msg("%s: %s = %s, want string '%s'", cname, f->key,
                     cJSON_IsString(it) ? it->valuestring : "(not a string)", w + 2);
    } else if (!strncmp(w, "n:", 2)) {
        if (!cJSON_IsNumber(it) || !it->valuestring || strcmp(it->valuestring, w + 2))
            fail_msg("%s: %s = %s, want number %s", cname, f->key,
                     cJSON_IsNumber(it) && it->valuestring ? it->valuestring : "(not a number)", w + 2);
    } else if (!strncmp(w, "b:", 2)) {
        if (!cJSON_IsBool(it) || cJSON_IsTrue(it) != !strcmp(w + 2, "true"))
            fail_msg("%s: %s is not %s", cname, f->key, w + 2);
    } else if (!strncmp(w, "j:", 2)) {
        char *p = cJSON_PrintUnformatted(it);
        if (strcmp(p, w + 2)) fail_msg("%s: %s = %s, want %s", cname, f->key, p, w + 2);
        free(p);
    } else {
        fail_msg("bad expectation %s", w);
    }
}

/* The n expected fields of row i of rows. */
static void check_row(const char *cname, const cJSON *rows, int i, const fexp *f, size_t n)
{
    const cJSON *row = cJSON_GetArrayItem(rows, i);
    if (!row) fail_msg("%s: no row %d", cname, i);
    for (size_t k = 0; k < n; k++) check_field(cname, row, &f[k]);
}

/* Failure i of the page says want (a substring of its "error"). */
static void check_failure(const map_page *p, int i, const char *want)
{
    kvjson_doc fl;
    const char *err = "";
    parse_list(&p->failures, &fl);
    OK(kvjson_get_str(cJSON_GetArrayItem(fl.root, i), "error", &err));
    if (!strstr(err, want)) fail_msg("failure %d '%s' lacks '%s'", i, err, want);
    kvjson_doc_free(&fl);
}

/* Every row is valid JSON, its span in rows parses alone, and its kid is ids[i]. */
static void check_rows_consistent(const char *cname, const map_page *p, const cJSON *rows)
{
    assert_true(cJSON_IsArray(rows));
    if (cJSON_GetArraySize(rows) != p->nrows)
        fail_msg("%s: %d rows in JSON, nrows %d", cname, cJSON_GetArraySize(rows), p->nrows);
    for (int i = 0; i < p->nrows; i++) {
        kvs_buf one;
        kvs_buf_init(&one);
        OK(kvs_buf_append(&one, p->rows.data + p->row[i].start, p->row[i].len));
        kvjson_doc d;
        parse_text(kvs_buf_cstr(&one), &d);
        int64_t kid = 0;
        OK(kvjson_get_int64(d.root, "kid", &kid));
        assert_true(kid == p->row[i].id);
        const cJSON *r = cJSON_GetArrayItem(rows, i);
        OK(kvjson_get_int64(r, "kid", &kid));
        assert_true(kid == p->row[i].id);
        kvjson_doc_free(&d);
        kvs_buf_free(&one);
    }
}

static void run_product_case(const pcase *c, jewel_map *jm)
{
    map_opts o = {.jewel = jm, .branches = c->branches, .nbranches = c->nbranches,
                  .name_scan = !c->no_name_scan};
    kvjson_doc in, rows;
    map_page p;
    map_page_init(&p);
    parse_text(c->data, &in);
    map_products(in.root, &o, &p);
    kvjson_doc_free(&in); /* the page must not borrow from the input */

    if (p.nrows != c->nrows || p.nfailed != c->nfailed || p.nskipped != c->nskipped ||
        p.nnotes != c->nnotes || p.nrecords != c->nrecords)
        fail_msg("%s: rows %d failed %d skipped %d notes %d records %d; want %d %d %d %d %d\n"
                 "rows: %s\nfailures: %s\nnotes: %s",
                 c->name, p.nrows, p.nfailed, p.nskipped, p.nnotes, p.nrecords, c->nrows, c->nfailed,
                 c->nskipped, c->nnotes, c->nrecords, kvs_buf_cstr(&p.rows), kvs_buf_cstr(&p.failures),
                 kvs_buf_cstr(&p.notes));
    parse_text(kvs_buf_cstr(&p.rows), &rows);
    check_rows_consistent(c->name, &p, rows.root);
    if (c->row >= 0) {
        const cJSON *row = cJSON_GetArrayItem(rows.root, c->row);
        assert_non_null(row);
        for (int i = 0; i < MAXF && c->f[i].key; i++) check_field(c->name, row, &c->f[i]);
    }
    kvjson_doc_free(&rows);

    kvjson_doc fl;
    parse_list(&p.failures, &fl);
    assert_int_equal(cJSON_GetArraySize(fl.root), p.nfailed);
    if (c->failure) {
        const char *err = NULL;
        OK(kvjson_get_str(cJSON_GetArrayItem(fl.root, 0), "error", &err));
        if (!strstr(err, c->failure)) fail_msg("%s: failure '%s' lacks '%s'", c->name, err, c->failure);
    }
    kvjson_doc_free(&fl);

    kvjson_doc nl;
    parse_list(&p.notes, &nl);
    assert_int_equal(cJSON_GetArraySize(nl.root), p.nnotes);
    for (int i = 0; i < p.nnotes; i++) { /* note ids name the row of each note */
        bool known = false;
        for (int k = 0; k < p.nrows; k++) known = known || p.row[k].id == p.note[i].id;
        assert_true(known);
    }
    if (c->note) { /* one of the notes is column|attribute|value, with the product's code */
        bool found = false;
        const cJSON *n0;
        cJSON_ArrayForEach(n0, nl.root)
        {
            const char *col = "", *attr = "", *val = "", *prob = "", *code = NULL;
            OK(kvjson_get_str(n0, "column", &col));
            OK(kvjson_get_str(n0, "attribute", &attr));
            OK(kvjson_get_str(n0, "value", &val));
            OK(kvjson_get_str(n0, "problem", &prob));
            OK(kvjson_get_str(n0, "code", &code));
            char got[512];
            snprintf(got, sizeof got, "%s|%s|%s", col, attr, val);
            if (strcmp(got, c->note)) continue;
            found = true;
            assert_true(code[0] != '\0');
            assert_true(strstr(prob, "NULL") || strstr(prob, "elsewhere"));
        }
        if (!found) fail_msg("%s: no note %s in %s", c->name, c->note, kvs_buf_cstr(&p.notes));
    }
    kvjson_doc_free(&nl);
    map_page_free(&p);
}

static void test_product_table(void **state)
{
    (void)state;
    jewel_map *jm = jewel_map_new_defaults();
    for (size_t i = 0; i < ARRAY_SIZE(product_cases); i++) run_product_case(&product_cases[i], jm);
    jewel_map_free(jm);
    print_message("    %zu product mapping cases\n", ARRAY_SIZE(product_cases));
}

/* Failure entries carry id and code exactly as sent. */
static void test_failure_details(void **state)
{
    (void)state;
    jewel_map *jm = jewel_map_new_defaults();
    map_opts o = {.jewel = jm, .name_scan = true};
    kvjson_doc in, fl;
    map_page p;
    map_page_init(&p);
    parse_text("[{\"id\":9007199254740993,\"code\":\"Mã-1\",\"name\":\"x\",\"basePrice\":\"abc\"},"
               "{\"code\":\"NO-ID\",\"name\":\"y\"}]",
               &in);
    map_products(in.root, &o, &p);
    kvjson_doc_free(&in);
    parse_list(&p.failures, &fl);
    const cJSON *f0 = cJSON_GetArrayItem(fl.root, 0), *f1 = cJSON_GetArrayItem(fl.root, 1);
    int64_t id;
    const char *code;
    OK(kvjson_get_int64(f0, "id", &id));
    assert_true(id == INT64_C(9007199254740993));
    OK(kvjson_get_str(f0, "code", &code));
    assert_string_equal(code, "Mã-1");
    assert_int_equal(kvjson_get_int64(f1, "id", &id), -ENOENT);
    OK(kvjson_get_str(f1, "code", &code));
    assert_string_equal(code, "NO-ID");
    /* Served order for the pager: the failed id counts, the id-less one does not. */
    assert_int_equal(p.nrecords, 2);
    assert_true(p.first_id == INT64_C(9007199254740993));
    kvjson_doc_free(&fl);
    map_page_free(&p);

    /* Order tracking: a descending pair clears ascending. */
    map_page_init(&p);
    parse_text("[" REC(5, "") "," REC(3, "") "]", &in);
    map_products(in.root, &o, &p);
    kvjson_doc_free(&in);
    assert_false(p.ascending);
    assert_true(p.first_id == 5 && p.last_id == 3);
    map_page_free(&p);
    jewel_map_free(jm);
}

/* Typed records: each row's id and modification time, each failure's and note's id, and
 * spans that cut their objects out of the texts exactly. */
static void test_typed_records(void **state)
{
    (void)state;
    jewel_map *jm = jewel_map_new_defaults();
    map_opts o = {.jewel = jm, .name_scan = false};
    kvjson_doc in;
    map_page p;
    map_page_init(&p);
    parse_text("[{\"id\":7,\"code\":\"A\",\"name\":\"a\",\"modifiedDate\":\"2024-05-01T10:00:00\"},"
               "{\"id\":8,\"code\":\"B\",\"name\":\"b\",\"attributes\":["
               "{\"attributeName\":\"TUỔI VÀNG\",\"attributeValue\":\"??\"}]},"
               "{\"id\":9,\"name\":\"c\",\"basePrice\":\"x\"},{\"code\":\"NO-ID\",\"name\":\"d\"}]",
               &in);
    map_products(in.root, &o, &p);
    kvjson_doc_free(&in);
    assert_int_equal(p.nrows, 2);
    assert_true(p.row[0].id == 7 && p.row[1].id == 8);
    int64_t want = 0;
    OK(kvtime_parse("2024-05-01T10:00:00", &want));
    assert_true(p.row[0].modified_us == want && p.row[1].modified_us == 0);
    assert_int_equal(p.nfailed, 2);
    assert_true(p.failure[0].id == 9 && p.failure[1].id == 0);
    assert_true(map_page_failed_without_id(&p));
    assert_int_equal(p.nnotes, 1);
    assert_true(p.note[0].id == 8);
    assert_memory_equal(p.notes.data + p.note[0].start, "{\"code\":\"B\"", 11);
    assert_int_equal(p.notes.data[p.note[0].start + p.note[0].len - 1], '}');
    assert_memory_equal(p.failures.data + p.failure[1].start, "{\"id\":null", 10);
    map_page_free(&p);
    jewel_map_free(jm);
}

/* map_page_keep_unseen: the rows of ids seen before go, with their notes; the others stay,
 * as the same text, and join the set. */
static void test_keep_unseen(void **state)
{
    (void)state;
    jewel_map *jm = jewel_map_new_defaults();
    map_opts o = {.jewel = jm, .name_scan = false};
    kvjson_doc in, rows;
    map_page p;
    map_page_init(&p);
    parse_text("[{\"id\":1,\"code\":\"A\",\"name\":\"a\",\"attributes\":["
               "{\"attributeName\":\"TUỔI VÀNG\",\"attributeValue\":\"??\"}]},"
               "{\"id\":2,\"code\":\"B\",\"name\":\"b\",\"attributes\":["
               "{\"attributeName\":\"TUỔI VÀNG\",\"attributeValue\":\"?!\"}]},"
               "{\"id\":3,\"code\":\"C\",\"name\":\"c\"},{\"id\":2,\"code\":\"B2\",\"name\":\"dup\"}]",
               &in);
    map_products(in.root, &o, &p);
    kvjson_doc_free(&in);
    assert_int_equal(p.nrows, 3); /* the in-page duplicate of 2 is dropped by mapping */
    assert_int_equal(p.nnotes, 2);
    char row3[256];
    snprintf(row3, sizeof row3, "%.*s", (int)p.row[2].len, p.rows.data + p.row[2].start);

    kvs_idset seen = {0};
    assert_true(kvs_idset_add(&seen, 1));
    assert_int_equal(map_page_keep_unseen(&p, &seen), 2);
    assert_int_equal(p.nrows, 2);
    assert_true(p.row[0].id == 2 && p.row[1].id == 3);
    assert_true(kvs_idset_has(&seen, 2) && kvs_idset_has(&seen, 3) && seen.n == 3);
    parse_text(kvs_buf_cstr(&p.rows), &rows);
    check_rows_consistent("keep_unseen", &p, rows.root);
    kvjson_doc_free(&rows);
    assert_int_equal((int)p.row[1].len, (int)strlen(row3));
    assert_memory_equal(p.rows.data + p.row[1].start, row3, p.row[1].len);
    assert_int_equal(p.nnotes, 1); /* the note about 1 went with its row */
    assert_true(p.note[0].id == 2);
    kvjson_doc nl;
    parse_list(&p.notes, &nl);
    assert_int_equal(cJSON_GetArraySize(nl.root), 1);
    const char *code = NULL;
    OK(kvjson_get_str(cJSON_GetArrayItem(nl.root, 0), "code", &code));
    assert_string_equal(code, "B");
    kvjson_doc_free(&nl);

    /* Seen again: nothing is left, and the texts are an empty array and an empty list. */
    assert_int_equal(map_page_keep_unseen(&p, &seen), 0);
    assert_int_equal(p.nrows, 0);
    assert_string_equal(kvs_buf_cstr(&p.rows), "[]");
    assert_int_equal(p.nnotes, 0);
    assert_int_equal((int)p.notes.len, 0);
    kvs_idset_free(&seen);
    map_page_free(&p);
    jewel_map_free(jm);
}

/* ---- categories ------------------------------------------------------------------------------ */

static void test_categories(void **state)
{
    (void)state;
    kvjson_doc in, rows;
    map_page p;
    map_page_init(&p);
    parse_text(
        "[{\"categoryId\":1490001,\"categoryName\":\"Nhẫn\",\"modifiedDate\":\"2025-06-03T08:12:40.377\"},"
        "{\"categoryId\":1490002,\"parentId\":1490001,\"categoryName\":\"Nhẫn cưới\","
        "\"createdDate\":\"2025-06-03T08:12:40.1\"},"
        "{\"categoryId\":\"1490003\",\"parentId\":0,\"categoryName\":\"Root with parentId 0\"},"
        "{\"categoryId\":1490010,\"categoryName\":\"Dây chuyền\",\"children\":["
        "  {\"categoryId\":1490011,\"categoryName\":\"Dây chuyền vàng\",\"children\":["
        "    {\"categoryId\":1490012,\"categoryName\":\"Dây chuyền vàng 18K\",\"children\":[]}]},"
        "  {\"categoryId\":1490013,\"parentId\":1490001,\"categoryName\":\"Explicit parent wins\"}]},"
        "{\"categoryId\":1490002,\"parentId\":1490001,\"categoryName\":\"Nhẫn cưới\"},"
        "{\"categoryId\":1490020},"
        "{\"categoryName\":\"no id\"},"
        "{\"categoryId\":1490021,\"categoryName\":\"bad parent\",\"parentId\":\"x\"}]",
        &in);
    map_categories(in.root, &p);
    kvjson_doc_free(&in);
    assert_int_equal(p.nrows, 7);
    assert_int_equal(p.nfailed, 3);
    parse_text(kvs_buf_cstr(&p.rows), &rows);
    check_rows_consistent("categories", &p, rows.root);
    static const struct {
        int64_t kid;
        const char *name;
        int64_t parent; /* 0 = absent */
        const char *modified;
    } want[] = {
        {1490001, "Nhẫn", 0, "2025-06-03T08:12:40.377+07:00"},
        {1490002, "Nhẫn cưới", 1490001, "2025-06-03T08:12:40.1+07:00"},
        {1490003, "Root with parentId 0", 0, NULL},
        {1490010, "Dây chuyền", 0, NULL},
        {1490011, "Dây chuyền vàng", 1490010, NULL},
        {1490012, "Dây chuyền vàng 18K", 1490011, NULL},
        {1490013, "Explicit parent wins", 1490001, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        const cJSON *r = cJSON_GetArrayItem(rows.root, (int)i);
        int64_t v;
        const char *s;
        OK(kvjson_get_int64(r, "kid", &v));
        assert_true(v == want[i].kid);
        OK(kvjson_get_str(r, "name", &s));
        assert_string_equal(s, want[i].name);
        if (want[i].parent) {
            OK(kvjson_get_int64(r, "parent_kid", &v));
            assert_true(v == want[i].parent);
        } else {
            assert_null(cJSON_GetObjectItemCaseSensitive(r, "parent_kid"));
        }
        if (want[i].modified) {
            OK(kvjson_get_str(r, "modified", &s));
            assert_string_equal(s, want[i].modified);
        } else {
            assert_null(cJSON_GetObjectItemCaseSensitive(r, "modified"));
        }
        OK(kvjson_get_str(r, "status", &s));
        assert_string_equal(s, "active");
    }
    check_failure(&p, 0, "categoryName");
    check_failure(&p, 1, "categoryId: missing");
    check_failure(&p, 2, "parentId");
    kvjson_doc_free(&rows);
    map_page_free(&p);
}

/* ---- stock records (GET /productOnHands) ------------------------------------------------------ */

/* Maps data with o into p and parses its rows into rows. */
static void map_stock_text(const char *data, const map_opts *o, map_page *p, kvjson_doc *rows)
{
    kvjson_doc in;
    map_page_init(p);
    parse_text(data, &in);
    map_stock(in.root, o, p);
    kvjson_doc_free(&in); /* the page must not borrow from the input */
    parse_text(kvs_buf_cstr(&p->rows), rows);
    check_rows_consistent("stock", p, rows->root);
}

static const char stock_data[] =
    "[{\"id\":101,\"code\":\"SP101\",\"createdDate\":\"2024-01-02T10:00:00.0000000\","
    "\"modifiedDate\":\"2025-06-17T14:34:09.0130000\",\"inventories\":["
    "{\"branchId\":61201,\"onHand\":2.0,\"reserved\":1.0},"
    "{\"branchId\":61202,\"onhand\":1.5,\"reserved\":0}]},"
    "{\"id\":102,\"code\":\"SP102\",\"inventories\":[{\"branchId\":61201,\"onHand\":3,"
    "\"cost\":1000.5},{\"branchId\":61202,\"onHand\":1,\"cost\":2000}]},"
    "{\"id\":103,\"code\":\"SP103\"},"
    "{\"id\":104,\"code\":\"SP104\",\"inventories\":[{\"branchId\":61201,\"onHand\":\"many\"}]},"
    "{\"id\":101,\"code\":\"SP101\",\"inventories\":[]},"
    "{\"code\":\"no id\",\"inventories\":[]},"
    "{\"id\":105,\"modifiedDate\":\"0001-01-01T00:00:00\",\"createdDate\":\"2024-03-04T05:06:07\","
    "\"inventories\":[]}]";

/* Stock records: the sum over branches (onHand or the doc's onhand), every branch's figures,
 * a value only when every counted branch states a cost, the stock's own date; no inventories:
 * skipped; unreadable: failed; served twice: once. */
static void test_stock(void **state)
{
    (void)state;
    map_opts o = {.stock_integer = true};
    map_page p;
    kvjson_doc rows;
    /* the per-branch list is a products page's, under the same key (store_depth's SQL) */
    assert_string_equal(stock_fields[SF_BRANCHES].key, product_fields[PF_BRANCH_STOCK].key);
    map_stock_text(stock_data, &o, &p, &rows);
    assert_int_equal(p.nrecords, 7);
    assert_int_equal(p.nrows, 3);
    assert_int_equal(p.nskipped, 1);
    assert_int_equal(p.nfailed, 2);
    assert_int_equal(p.nnotes, 1); /* 3.5 into a whole-number column */
    assert_true(p.row[0].id == 101 && p.row[1].id == 102 && p.row[2].id == 105);
    assert_true(p.row[0].modified_us == 1750145649013000LL); /* 14:34:09.013 +07:00 */
    assert_true(p.row[1].modified_us == 0);
    static const fexp r101[] = {
        {"stock", "n:3.5"}, {"inv_value", "-"},
        {"inv", "j:[{\"b\":61201,\"q\":2,\"r\":1},{\"b\":61202,\"q\":1.5,\"r\":0}]"},
        {"modified", "s:2025-06-17T14:34:09.013+07:00"}, {"code", "-"}, {"name", "-"}};
    static const fexp r102[] = {
        {"stock", "n:4"}, {"inv_value", "n:5001.5"}, {"modified", "-"},
        {"inv", "j:[{\"b\":61201,\"q\":3},{\"b\":61202,\"q\":1}]"}};
    static const fexp r105[] = {
        {"stock", "n:0"}, {"inv_value", "n:0"}, {"inv", "j:[]"},
        {"modified", "s:2024-03-04T05:06:07+07:00"}};
    check_row("stock 101", rows.root, 0, r101, ARRAY_SIZE(r101));
    check_row("stock 102", rows.root, 1, r102, ARRAY_SIZE(r102));
    check_row("stock 105", rows.root, 2, r105, ARRAY_SIZE(r105));
    check_failure(&p, 0, "bad onHand");
    check_failure(&p, 1, "field id: missing");
    assert_true(p.failure[0].id == 104 && p.failure[1].id == 0);
    kvjson_doc_free(&rows);
    map_page_free(&p);

    /* [mapping] branches: the sums count only 61201, whose cost is known; every branch is
     * still listed (the per-branch table holds them all). A counted branch without a cost:
     * no value. */
    static const int64_t only[] = {61201};
    o = (map_opts){.branches = only, .nbranches = 1};
    map_stock_text("[{\"id\":102,\"inventories\":[{\"branchId\":61201,\"onHand\":3,\"cost\":1000.5},"
                   "{\"branchId\":61202,\"onHand\":1}]},"
                   "{\"id\":106,\"inventories\":[{\"branchId\":61201,\"onHand\":3},"
                   "{\"branchId\":61202,\"onHand\":1,\"cost\":5}]}]",
                   &o, &p, &rows);
    assert_int_equal(p.nrows, 2);
    static const fexp b102[] = {
        {"stock", "n:3"}, {"inv_value", "n:3001.5"},
        {"inv", "j:[{\"b\":61201,\"q\":3},{\"b\":61202,\"q\":1}]"}};
    static const fexp b106[] = {{"stock", "n:3"}, {"inv_value", "-"}};
    check_row("branches 102", rows.root, 0, b102, ARRAY_SIZE(b102));
    check_row("branches 106", rows.root, 1, b106, ARRAY_SIZE(b106));
    kvjson_doc_free(&rows);
    map_page_free(&p);
}

/* ---- removedIds ------------------------------------------------------------------------------ */

static void test_removed_ids(void **state)
{
    (void)state;
    kvjson_doc in;
    int n, nbad;
    parse_text("[30000001, \"30000002\", 3.5, \"x\", null, 9007199254740993, {\"id\":1}, -4]", &in);
    int64_t *ids = map_removed_ids(in.root, &n, &nbad);
    assert_int_equal(n, 4);
    assert_int_equal(nbad, 4);
    assert_true(ids[0] == 30000001 && ids[1] == 30000002 && ids[2] == INT64_C(9007199254740993) &&
                ids[3] == -4);
    free(ids);
    kvjson_doc_free(&in);

    parse_text("[]", &in);
    ids = map_removed_ids(in.root, &n, &nbad);
    assert_int_equal(n, 0);
    assert_int_equal(nbad, 0);
    free(ids);
    kvjson_doc_free(&in);

    parse_text("{\"removedIds\":5}", &in);
    assert_null(map_removed_ids(in.root, &n, &nbad));
    assert_null(map_removed_ids(NULL, &n, &nbad));
    assert_int_equal(n, 0);
    kvjson_doc_free(&in);
}

/* ---- options from the config -------------------------------------------------------------- */

static kvs_config *load_conf(const char *mapping, kvs_err *e)
{
    char path[] = "/tmp/kvs-test-mapping-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "[database]\nurl = postgresql://x@127.0.0.1/db\n[mapping]\n%s\n", mapping);
    fclose(f);
    kvs_err_clear(e);
    kvs_config *c = config_load(path, e);
    unlink(path);
    return c;
}

static void test_opts_from_config(void **state)
{
    (void)state;
    kvs_err e;
    map_opts o;
    kvs_config *c = load_conf("", &e);
    assert_non_null(c);
    OK(map_opts_from_config(c, &o, &e));
    assert_true(o.name_scan);
    assert_null(o.branches);
    assert_int_equal(jewel_map_lookup(o.jewel, "TUỔI VÀNG"), JF_GOLD_PURITY);
    assert_int_equal(jewel_map_lookup(o.jewel, "tuoi vang"), JF_GOLD_PURITY); /* diacritics-insensitive */
    map_opts_free(&o);
    config_free(c);

    c = load_conf("gold_purity = KARAT VÀNG, Hàm lượng\nname_scan = no\nbranches = 61201, 61202\n"
                  "serial_number =\n",
                  &e);
    assert_non_null(c);
    OK(map_opts_from_config(c, &o, &e));
    assert_false(o.name_scan);
    assert_int_equal(o.nbranches, 2);
    assert_true(o.branches[0] == 61201 && o.branches[1] == 61202);
    assert_int_equal(jewel_map_lookup(o.jewel, "TUỔI VÀNG"), -1); /* replaced, not added */
    assert_int_equal(jewel_map_lookup(o.jewel, "ham luong"), JF_GOLD_PURITY);
    assert_int_equal(jewel_map_lookup(o.jewel, "Karat vang"), JF_GOLD_PURITY);
    assert_int_equal(jewel_map_lookup(o.jewel, "SỐ SERI"), -1); /* empty list: column not read */
    assert_int_equal(jewel_map_lookup(o.jewel, "HÌNH DẠNG"), JF_SHAPE);       /* others untouched */
    map_opts_free(&o);
    config_free(c);

    /* Issue 17: += adds to the built-in list (the README's advice), it does not replace it. */
    c = load_conf("gold_purity += HÀM LƯỢNG\n", &e);
    assert_non_null(c);
    OK(map_opts_from_config(c, &o, &e));
    assert_int_equal(jewel_map_lookup(o.jewel, "TUỔI VÀNG"), JF_GOLD_PURITY); /* kept */
    assert_int_equal(jewel_map_lookup(o.jewel, "ham luong"), JF_GOLD_PURITY); /* added */
    map_opts_free(&o);
    config_free(c);

    /* An alias of another column is refused by position, not quoted (issue 18). */
    c = load_conf("shape += Kich Thuoc\n", &e);
    assert_non_null(c);
    assert_int_equal(map_opts_from_config(c, &o, &e), -EINVAL);
    assert_non_null(strstr(e.msg, ":4: [mapping] shape: alias 1 of the list for shape reads as "
                                  "the same name as alias 1 of dimensions"));
    assert_null(strstr(e.msg, "Kich"));
    config_free(c);

    /* Errors name the file's line and the key, never the value (issue 18). */
    c = load_conf("name_scan = maybe\n", &e);
    assert_non_null(c);
    assert_int_equal(map_opts_from_config(c, &o, &e), -EINVAL);
    assert_non_null(strstr(e.msg, ":4: [mapping] name_scan: not true or false"));
    assert_null(strstr(e.msg, "maybe"));
    config_free(c);

    /* An alias of another column: refused, naming both. */
    c = load_conf("shape = TUOI VANG\n", &e);
    assert_non_null(c);
    assert_int_equal(map_opts_from_config(c, &o, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "[mapping] shape"));
    assert_non_null(strstr(e.msg, "gold_purity"));
    config_free(c);

    c = load_conf("branches = 0\n", &e);
    assert_non_null(c);
    assert_int_equal(map_opts_from_config(c, &o, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "branches"));
    config_free(c);
}

/* ---- --explain-product -------------------------------------------------------------------- */

static char *explain(const char *json, const map_opts *o)
{
    kvjson_doc in;
    kvs_buf out;
    kvs_buf_init(&out);
    parse_text(json, &in);
    map_explain_product(in.root, o, &out);
    kvjson_doc_free(&in);
    return kvs_buf_steal(&out);
}

#define HAS(text, needle)                                                                           \
    do {                                                                                            \
        if (!strstr((text), (needle))) fail_msg("missing <%s> in:\n%s", (needle), (text));         \
    } while (0)

static void test_explain(void **state)
{
    (void)state;
    jewel_map *jm = jewel_map_new_defaults();
    map_opts o = {.jewel = jm, .branches = branch_61201, .nbranches = 1, .name_scan = true};
    char *t = explain(
        "{\"id\":30000123,\"code\":\"NH-000123\",\"name\":\"Nhẫn Moissanite 6.3ly vàng trắng 14K\","
        "\"basePrice\":15900000,\"weight\":3.75,\"hasVariants\":true,\"masterProductId\":30000100,"
        "\"attributes\":[{\"attributeName\":\"KI\xcc\x81\x43H THU\xcc\x9bO\xcc\x9b\xcc\x81\x43 ĐÁ CHỦ\","
        "\"attributeValue\":\"6,3 ly\"},{\"attributeName\":\"MÀU SẮC\",\"attributeValue\":\"Đỏ\"},"
        "{\"attributeName\":\"TUỔI VÀNG\",\"attributeValue\":\"??\"},"
        "{\"attributeName\":\"SIZE ĐÁ\",\"attributeValue\":\"7 ly\"}],"
        "\"inventories\":[{\"branchId\":61201,\"branchName\":\"Trung tâm\",\"onHand\":1.5,\"cost\":7380000},"
        "{\"branchId\":61202,\"onHand\":4,\"cost\":1}],"
        "\"productSerials\":[{\"serialNumber\":\"SR9\",\"status\":1,\"branchId\":61201},"
        "{\"serialNumber\":\"SR1\",\"status\":0,\"branchId\":61201}]}",
        &o);
    HAS(t, "KiotViet product 30000123, code \"NH-000123\"");
    HAS(t, "kiotviet_master_id");
    HAS(t, "center_stone_size_mm (alias \"KÍCH THƯỚC ĐÁ CHỦ\"): ok 6.3 [used]");
    HAS(t, "center_stone_size_mm (alias \"SIZE ĐÁ\"): ok 7 [ignored: an earlier attribute gave this column]");
    HAS(t, "no column: no alias matches its key \"mau sac\"");
    HAS(t, "gold_purity (alias \"TUỔI VÀNG\"): invalid (not understood) [noted in sync_logs]");
    HAS(t, "gold_purity          = 14K          from the product name (attribute \"TUỔI VÀNG\" = \"??\" not understood)");
    HAS(t, "product_weight_g     = 3.75         from KiotViet weight (grams)");
    HAS(t, "serial_number        = SR9          from productSerials");
    HAS(t, "\"SR9\" status 1 (in stock) branch 61201  <- chosen");
    HAS(t, "onHand 1.5 x cost 7380000  counted");
    HAS(t, "branch 61202: onHand 4 x cost 1  not counted");
    HAS(t, "-> stock_quantity = 1.5, inventory_value = 11070000");
    HAS(t, "shape                = NULL         no attribute named: HÌNH DẠNG, DÁNG ĐÁ");
    HAS(t, "\"inv_value\":11070000");
    HAS(t, "\"stone_mm\":6.3");
    HAS(t, "Notes for sync_logs.error_details.attribute_notes: 1");
    HAS(t, "RESULT: synced as one product row");
    free(t);

    t = explain("{\"id\":2,\"code\":\"H10\",\"name\":\"Hộp 10\",\"masterUnitId\":1}", &o);
    HAS(t, "RESULT: skipped: a unit conversion of product 1 (masterUnitId)");
    free(t);
    t = explain("{\"id\":3,\"code\":\"B\",\"name\":\"x\",\"basePrice\":\"abc\"}", &o);
    HAS(t, "RESULT: fails mapping");
    HAS(t, "basePrice");
    free(t);
    t = explain("{\"code\":\"B\"}", &o);
    HAS(t, "no usable id");
    free(t);
    t = explain("[1]", &o);
    HAS(t, "not a product object");
    free(t);
    jewel_map_free(jm);
}

/* ---- hostile page sizes ------------------------------------------------------------------- */

#define LARGE_IDS 50000

/* The id of unique record k: multiples of 2^20, which fall into one bucket of any hash that
 * keeps only the low bits (the set must spread them). */
static int64_t large_id(int k) { return (int64_t)(k + 1) << 20; }

/* Parses the page text in b (and frees b), then maps it as products (o) or categories (NULL). */
static void map_built_page(kvs_buf *b, const map_opts *o, map_page *p)
{
    kvjson_doc in;
    parse_text(kvs_buf_cstr(b), &in);
    kvs_buf_free(b);
    map_page_init(p);
    if (o)
        map_products(in.root, o, p);
    else
        map_categories(in.root, p);
    kvjson_doc_free(&in);
}

/* 100,000 product records, every id twice: the second copies come in reverse order, so each
 * duplicate is far from its first copy. Each id is mapped once, in served order; every copy
 * counts as served. Duplicates are found with a hash set; the earlier scan of the ids handled
 * so far was quadratic (about 10^10 comparisons for this page). */
static void test_large_page_products(void **state)
{
    (void)state;
    jewel_map *jm = jewel_map_new_defaults();
    map_opts o = {.jewel = jm, .name_scan = true};
    kvs_buf b;
    kvs_buf_init(&b);
    OK(kvs_buf_puts(&b, "["));
    for (int k = 0; k < 2 * LARGE_IDS; k++) {
        int u = k < LARGE_IDS ? k : 2 * LARGE_IDS - 1 - k;
        OK(kvs_buf_printf(&b, "%s{\"id\":%" PRId64 ",\"code\":\"SP%d\",\"name\":\"Nhẫn %d\"}",
                          k ? "," : "", large_id(u), u, u));
    }
    OK(kvs_buf_puts(&b, "]"));
    kvjson_doc rows;
    map_page p;
    map_built_page(&b, &o, &p);
    assert_int_equal(p.nrecords, 2 * LARGE_IDS);
    assert_int_equal(p.nrows, LARGE_IDS);
    assert_int_equal(p.nfailed, 0);
    assert_int_equal(p.nskipped, 0);
    assert_false(p.ascending);
    assert_true(p.first_id == large_id(0) && p.last_id == large_id(0));
    parse_text(kvs_buf_cstr(&p.rows), &rows);
    assert_int_equal(cJSON_GetArraySize(rows.root), LARGE_IDS);
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rows.root) /* (not cJSON_GetArrayItem: that walks from the start) */
    {
        int64_t kid = 0;
        const char *code = NULL;
        OK(kvjson_get_int64(r, "kid", &kid));
        OK(kvjson_get_str(r, "code", &code));
        char want[32];
        snprintf(want, sizeof want, "SP%d", i);
        if (kid != large_id(i) || p.row[i].id != kid || strcmp(code, want))
            fail_msg("row %d: kid %" PRId64 " (ids[] %" PRId64 ") code %s; want %" PRId64 " %s", i,
                     kid, p.row[i].id, code, large_id(i), want);
        i++;
    }
    kvjson_doc_free(&rows);
    map_page_free(&p);
    jewel_map_free(jm);
}

/* 100,001 category records: one root whose children are 50,000 categories, then the same
 * 50,000 again flat and in reverse order. The nested copies are mapped (with the root as
 * parent); the flat ones are duplicates. */
static void test_large_page_categories(void **state)
{
    (void)state;
    kvs_buf b;
    kvs_buf_init(&b);
    OK(kvs_buf_puts(&b, "[{\"categoryId\":7,\"categoryName\":\"Gốc\",\"children\":["));
    for (int k = 0; k < LARGE_IDS; k++)
        OK(kvs_buf_printf(&b, "%s{\"categoryId\":%" PRId64 ",\"categoryName\":\"C%d\"}",
                          k ? "," : "", large_id(k), k));
    OK(kvs_buf_puts(&b, "]}"));
    for (int k = LARGE_IDS - 1; k >= 0; k--)
        OK(kvs_buf_printf(&b, ",{\"categoryId\":%" PRId64 ",\"categoryName\":\"flat C%d\"}",
                          large_id(k), k));
    OK(kvs_buf_puts(&b, "]"));
    kvjson_doc rows;
    map_page p;
    map_built_page(&b, NULL, &p);
    assert_int_equal(p.nrecords, 2 * LARGE_IDS + 1);
    assert_int_equal(p.nrows, LARGE_IDS + 1);
    assert_int_equal(p.nfailed, 0);
    parse_text(kvs_buf_cstr(&p.rows), &rows);
    assert_int_equal(cJSON_GetArraySize(rows.root), LARGE_IDS + 1);
    const char *pkey = category_fields[CF_PARENT_KID].key;
    int i = -1; /* row 0 is the root */
    const cJSON *r;
    cJSON_ArrayForEach(r, rows.root)
    {
        int64_t kid = 0, parent = 0;
        const char *name = NULL;
        OK(kvjson_get_int64(r, "kid", &kid));
        OK(kvjson_get_str(r, "name", &name));
        if (i < 0) {
            assert_true(kid == 7);
            assert_int_equal(kvjson_get_int64(r, pkey, &parent), -ENOENT);
        } else {
            char want[32];
            snprintf(want, sizeof want, "C%d", i);
            OK(kvjson_get_int64(r, pkey, &parent));
            if (kid != large_id(i) || p.row[i + 1].id != kid || parent != 7 || strcmp(name, want))
                fail_msg("row %d: kid %" PRId64 " parent %" PRId64 " name %s", i + 1, kid, parent,
                         name);
        }
        i++;
    }
    kvjson_doc_free(&rows);
    map_page_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_product_table),
        cmocka_unit_test(test_failure_details),
        cmocka_unit_test(test_typed_records),
        cmocka_unit_test(test_keep_unseen),
        cmocka_unit_test(test_categories),
        cmocka_unit_test(test_stock),
        cmocka_unit_test(test_removed_ids),
        cmocka_unit_test(test_opts_from_config),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_large_page_products),
        cmocka_unit_test(test_large_page_categories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
