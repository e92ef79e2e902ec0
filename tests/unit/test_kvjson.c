/* Unit tests for kvjson.c: exact number texts attached to cJSON number items, in-place string
 * normalisation, strict document boundaries, tolerant getters, UTF-8 sanitising, and the
 * parse time of a realistic 230 KB product page (printed, not asserted). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "decimal.h"
#include "kvjson.h"
#include "kvtime.h"

#define OK(call) assert_int_equal((call), 0)

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Parses n bytes of text from an exact-size heap copy that is freed right after: ASan then
 * proves that kvjson neither reads past len nor keeps pointers into the input. */
static int parse_n(const char *text, size_t n, kvjson_doc *doc, kvs_err *err)
{
    char *buf = kvs_xmalloc(n);
    memcpy(buf, text, n);
    int rc = kvjson_parse(buf, n, doc, err);
    free(buf);
    return rc;
}

static int parse(const char *text, kvjson_doc *doc, kvs_err *err)
{
    return parse_n(text, strlen(text), doc, err);
}

static const char *num_text(const cJSON *obj, const char *key)
{
    const char *t = NULL;
    int rc = kvjson_get_num_text(obj, key, &t);
    if (rc) fail_msg("no number text for %s: %d", key, rc);
    return t;
}

static void test_exact_ids_beyond_2_53(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    int64_t v;
    OK(parse("{\"id\": 9007199254740993, \"big\": 9223372036854775807,"
             " \"min\": -9223372036854775808, \"over\": 9223372036854775808,"
             " \"under\": -9223372036854775809, \"id2\": 30118850}", &doc, &err));
    const cJSON *id = kvjson_get(doc.root, "id");
    assert_true(cJSON_IsNumber(id));
    assert_true(id->valuedouble == 9007199254740992.0); /* what cJSON alone would give */
    assert_string_equal(id->valuestring, "9007199254740993");
    OK(kvjson_get_int64(doc.root, "id", &v));
    assert_true(v == INT64_C(9007199254740993));
    OK(kvjson_get_int64(doc.root, "big", &v));
    assert_true(v == INT64_MAX);
    OK(kvjson_get_int64(doc.root, "min", &v));
    assert_true(v == INT64_MIN);
    assert_int_equal(kvjson_get_int64(doc.root, "over", &v), -EINVAL);
    assert_int_equal(kvjson_get_int64(doc.root, "under", &v), -EINVAL);
    OK(kvjson_get_int64(doc.root, "id2", &v));
    assert_true(v == 30118850);
    kvjson_doc_free(&doc);
}

static void test_number_texts_preserved(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    int64_t v;
    char buf[DEC_BUFSZ];
    OK(parse("{\"weight\": 0.35, \"huge\": 1e308, \"nz\": -0, \"e\": 2.5E-2, \"neg\": -12.50,"
             " \"f\": 12.0, \"onHand\": 1.5, \"cost\": 7380000}", &doc, &err));
    assert_string_equal(num_text(doc.root, "weight"), "0.35");
    assert_string_equal(num_text(doc.root, "huge"), "1e308");
    assert_true(kvjson_get(doc.root, "huge")->valuedouble == 1e308);
    assert_string_equal(num_text(doc.root, "nz"), "-0");
    assert_string_equal(num_text(doc.root, "e"), "2.5E-2");
    assert_string_equal(num_text(doc.root, "neg"), "-12.50");

    /* Exact arithmetic straight from the texts. */
    kvs_dec w, on, cost, value;
    OK(dec_parse(num_text(doc.root, "weight"), false, &w));
    dec_format(&w, buf);
    assert_string_equal(buf, "0.35");
    OK(dec_parse(num_text(doc.root, "onHand"), false, &on));
    OK(dec_parse(num_text(doc.root, "cost"), false, &cost));
    OK(dec_mul(&on, &cost, &value));
    dec_format(&value, buf);
    assert_string_equal(buf, "11070000");

    /* Integers only: no fraction, no exponent, even when the value is whole. */
    OK(kvjson_get_int64(doc.root, "nz", &v));
    assert_true(v == 0);
    assert_int_equal(kvjson_get_int64(doc.root, "f", &v), -EINVAL);
    assert_int_equal(kvjson_get_int64(doc.root, "huge", &v), -EINVAL);
    assert_int_equal(kvjson_get_int64(doc.root, "weight", &v), -EINVAL);
    kvjson_doc_free(&doc);
}

/* Collects the number texts of a tree in depth-first order. */
static void collect(const cJSON *it, const char **out, size_t *n, size_t cap)
{
    for (; it; it = it->next) {
        if (cJSON_IsNumber(it)) {
            assert_true(*n < cap);
            out[(*n)++] = it->valuestring;
        }
        collect(it->child, out, n, cap);
    }
}

static void test_nested_arrays_in_order(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    const char *got[16];
    size_t n = 0;
    static const char *const want[] = {"1", "2.5", "-3e2", "4", "5", "6", "7", "0"};
    OK(parse("[[1,[2.5,[-3e2]]],4,{\"a\":[5,6],\"b\":{\"c\":7}},[[[]]],{},0]", &doc, &err));
    collect(doc.root, got, &n, ARRAY_SIZE(got));
    assert_int_equal(n, ARRAY_SIZE(want));
    for (size_t i = 0; i < n; i++) assert_string_equal(got[i], want[i]);
    kvjson_doc_free(&doc);
}

static void test_numbers_inside_strings_not_counted(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    const char *s;
    int64_t v;
    OK(parse("{\"a1.5\": \"5\", \"b-2\": \"x-1e5 3\", \"c\": 7, \"d\": [\"8\", 9, true, false, null, -1]}",
             &doc, &err));
    assert_string_equal(num_text(doc.root, "c"), "7");
    const cJSON *d = kvjson_get(doc.root, "d");
    assert_string_equal(cJSON_GetArrayItem(d, 1)->valuestring, "9");
    assert_string_equal(cJSON_GetArrayItem(d, 5)->valuestring, "-1");
    OK(kvjson_get_str(doc.root, "a1.5", &s));
    assert_string_equal(s, "5");
    OK(kvjson_get_str(doc.root, "b-2", &s));
    assert_string_equal(s, "x-1e5 3");
    /* Tolerance: a numeric string still yields an integer or a number text. */
    OK(kvjson_get_int64(doc.root, "a1.5", &v));
    assert_true(v == 5);
    assert_string_equal(num_text(doc.root, "a1.5"), "5");
    kvjson_doc_free(&doc);
}

static void test_escaped_quotes(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    const char *s;
    OK(parse("{\"s\": \"he said \\\"12\\\" \\\\\", \"t\": \"\\\\\\\"\", \"u\": \"\\\\\", \"n\": 3}", &doc,
             &err));
    OK(kvjson_get_str(doc.root, "s", &s));
    assert_string_equal(s, "he said \"12\" \\");
    OK(kvjson_get_str(doc.root, "t", &s));
    assert_string_equal(s, "\\\"");
    OK(kvjson_get_str(doc.root, "u", &s));
    assert_string_equal(s, "\\");
    assert_string_equal(num_text(doc.root, "n"), "3");
    kvjson_doc_free(&doc);
}

static void test_nul_escape_becomes_fffd_in_place(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    const char *s;
    char buf[] = "{\"s\":\"a\\u0000b\",\"k\":\"\\\\u0000\",\"n\":1}";
    size_t len = strlen(buf);
    OK(kvjson_parse(buf, len, &doc, &err));
    OK(kvjson_get_str(doc.root, "s", &s));
    assert_string_equal(s, "a\xEF\xBF\xBD" "b"); /* not cut at the NUL */
    OK(kvjson_get_str(doc.root, "k", &s));
    assert_string_equal(s, "\\u0000"); /* escaped backslash: plain text, untouched */
    assert_string_equal(buf, "{\"s\":\"a\\ufffdb\",\"k\":\"\\\\u0000\",\"n\":1}");
    assert_int_equal(strlen(buf), len);
    kvjson_doc_free(&doc);
}

static void test_surrogates(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    const char *s;
    OK(parse("{\"a\":\"\\ud83d\\udc8e\",\"b\":\"\\uD83D\\uDC8E!\",\"c\":\"\\ud83d\",\"d\":\"\\udc8e\","
             "\"e\":\"\\ud83dx\",\"f\":\"\\ud83d\\u0041\",\"g\":\"\\ud83d\\ud83d\\udc8e\"}",
             &doc, &err));
    OK(kvjson_get_str(doc.root, "a", &s));
    assert_string_equal(s, "💎");
    assert_string_equal(s, "\xF0\x9F\x92\x8E");
    OK(kvjson_get_str(doc.root, "b", &s));
    assert_string_equal(s, "💎!");
    /* Unpaired halves: U+FFFD instead of failing the whole page (cJSON alone rejects them). */
    OK(kvjson_get_str(doc.root, "c", &s));
    assert_string_equal(s, "\xEF\xBF\xBD");
    OK(kvjson_get_str(doc.root, "d", &s));
    assert_string_equal(s, "\xEF\xBF\xBD");
    OK(kvjson_get_str(doc.root, "e", &s));
    assert_string_equal(s, "\xEF\xBF\xBDx");
    OK(kvjson_get_str(doc.root, "f", &s));
    assert_string_equal(s, "\xEF\xBF\xBD" "A");
    OK(kvjson_get_str(doc.root, "g", &s));
    assert_string_equal(s, "\xEF\xBF\xBD💎");
    kvjson_doc_free(&doc);
}

static void test_vietnamese_byte_exact(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    const char *s;
    const char *name = "Nhẫn cưới vàng 18K trơn – Chi nhánh Hà Đông, Ổ chấu 4 chấu";
    OK(parse("{\"raw\":\"Nhẫn cưới vàng 18K trơn – Chi nhánh Hà Đông, Ổ chấu 4 chấu\","
             "\"esc\":\"Nh\\u1eabn c\\u01b0\\u1edbi\"}", &doc, &err));
    OK(kvjson_get_str(doc.root, "raw", &s));
    assert_int_equal(strlen(s), strlen(name));
    assert_memory_equal(s, name, strlen(name));
    assert_null(kvs_utf8_sanitize(s)); /* valid: no copy */
    OK(kvjson_get_str(doc.root, "esc", &s));
    assert_string_equal(s, "Nhẫn cưới");
    kvjson_doc_free(&doc);
}

/* Offset reported in "... at byte N ...". */
static size_t err_offset(const kvs_err *err)
{
    const char *p = strstr(err->msg, "at byte ");
    if (!p) fail_msg("no offset in \"%s\"", err->msg);
    return (size_t)strtoull(p + 8, NULL, 10);
}

struct bad_case {
    const char *text;
    size_t len;   /* 0: strlen */
    long offset;  /* expected error offset, or -1 for "somewhere in the document" */
};

static void test_invalid_documents(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"{\"a\":1} x", 0, 8},
        {"{\"a\":1}{}", 0, 7},
        {"{\"a\":1},", 0, 7},
        {"1 2", 0, 2},
        {"[1]]", 0, 3},
        {"{\"a\":1}\0", 8, 7},           /* raw NUL after the value */
        {"{\"a\":\"x\0y\"}", 11, 7},     /* raw NUL inside a string */
        {"{\"a\":\"\\u00zz\"}", 0, 6},   /* cJSON would turn this into NUL */
        {"{\"a\":\"\\u12\"}", 0, 6},
        {"{\"data\":[{\"id\":1},{\"id\":2", 0, -1},
        {"{\"a\":\"abc", 0, -1},
        {"{\"a\":", 0, -1},
        {"[1,", 0, -1},
        {"", 0, -1},
        {"   ", 0, -1},
        {"{\"a\":01x}", 0, -1},
        {"{\"a\":1.5.3}", 0, -1},
        {"{\"a\":+1}", 0, -1},
        {"{\"a\":.5}", 0, -1},
        {"{\"a\":tru}", 0, -1},
        {"{\"a\":true1}", 0, -1},
        {"{\"a\":\"\\x\"}", 0, -1},
        {"{a:1}", 0, -1},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct bad_case *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        kvjson_doc doc = {.root = (cJSON *)1, .arena = (char *)1};
        kvs_err err;
        kvs_err_clear(&err);
        int rc = parse_n(c->text, len, &doc, &err);
        if (rc != -EINVAL) fail_msg("case %zu \"%s\": rc %d", i, c->text, rc);
        assert_int_equal(err.code, -EINVAL);
        assert_null(doc.root);
        assert_null(doc.arena);
        assert_non_null(strstr(err.msg, "invalid JSON"));
        if (c->offset >= 0) {
            if (err_offset(&err) != (size_t)c->offset)
                fail_msg("case %zu: \"%s\", want offset %ld", i, err.msg, c->offset);
        } else if (len > 0) {
            assert_true(err_offset(&err) <= len);
        }
        kvjson_doc_free(&doc); /* harmless on a failed parse */
    }
}

static void test_truncated_reports_offset(void **state)
{
    (void)state;
    const char *text = "{\"data\":[{\"id\":1,\"name\":\"x\"},{\"id\":2,\"na";
    kvjson_doc doc;
    kvs_err err;
    assert_int_equal(parse(text, &doc, &err), -EINVAL);
    size_t off = err_offset(&err);
    /* The error is at the cut, not at the start. */
    assert_true(off >= 30 && off <= strlen(text));
}

static void test_trailing_whitespace_and_scalars(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    OK(parse("{\"a\":1}  \r\n\t", &doc, &err));
    kvjson_doc_free(&doc);
    OK(parse("42", &doc, &err));
    assert_string_equal(doc.root->valuestring, "42");
    kvjson_doc_free(&doc);
    OK(parse("  -7.25e1 \n", &doc, &err));
    assert_string_equal(doc.root->valuestring, "-7.25e1");
    assert_true(doc.root->valuedouble == -72.5);
    kvjson_doc_free(&doc);
    OK(parse("\xEF\xBB\xBF{\"a\":5}", &doc, &err)); /* UTF-8 BOM, as cJSON skips it */
    assert_string_equal(num_text(doc.root, "a"), "5");
    kvjson_doc_free(&doc);
    OK(parse("\"12\"", &doc, &err));
    assert_true(cJSON_IsString(doc.root));
    kvjson_doc_free(&doc);
}

static void test_removed_ids_spellings(void **state)
{
    (void)state;
    static const char *const keys[] = {"removedIds", "removeIds", "removedId", "RemoveId", NULL};
    static const struct {
        const char *text;
        const char *first; /* text of the first id, NULL = none */
    } cases[] = {
        {"{\"removedIds\":[30118790,30118791]}", "30118790"},
        {"{\"removeIds\":[7]}", "7"},
        {"{\"removedId\":[8]}", "8"},
        {"{\"RemoveId\":[9]}", "9"},
        {"{\"REMOVEDIDS\":[10]}", "10"},
        {"{\"removedIds\":null,\"removeIds\":[11]}", "11"}, /* null counts as absent */
        {"{\"data\":[]}", NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        kvjson_doc doc;
        kvs_err err;
        OK(parse(cases[i].text, &doc, &err));
        const cJSON *ids = kvjson_get_any(doc.root, keys);
        if (!cases[i].first) {
            assert_null(ids);
        } else {
            assert_true(cJSON_IsArray(ids));
            int64_t v;
            OK(kvjson_int64(ids->child, &v));
            assert_string_equal(ids->child->valuestring, cases[i].first);
        }
        kvjson_doc_free(&doc);
    }
}

static void test_case_insensitive_keys(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    const char *s;
    bool b;
    int64_t us, id;
    OK(parse("{\"Id\":30118801,\"ModifiedDate\":\"2024-03-04T23:39:24.1470000+07:00\",\"isActive\":true,"
             "\"OnHand\":1.5}", &doc, &err));
    OK(kvjson_get_str(doc.root, "modifiedDate", &s));
    OK(kvtime_parse(s, &us));
    assert_true(us == INT64_C(1709570364147000));
    OK(kvjson_get_bool(doc.root, "IsActive", &b));
    assert_true(b);
    OK(kvjson_get_int64(doc.root, "id", &id));
    assert_true(id == 30118801);
    assert_string_equal(num_text(doc.root, "onHand"), "1.5");
    kvjson_doc_free(&doc);
}

static void test_getters(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    const char *s;
    bool b;
    int64_t v;
    OK(parse("{\"n\":5,\"s\":\"x\",\"nul\":null,\"t\":true,\"f\":false,\"one\":1,\"zero\":0,"
             "\"two\":2,\"half\":0.5,\"st\":\"true\",\"sF\":\"False\",\"yes\":\"yes\",\"arr\":[],"
             "\"digits\":\"30118850\",\"negs\":\"-42\",\"fs\":\"12.0\",\"es\":\"1e3\",\"sp\":\" 5\","
             "\"empty\":\"\",\"minus\":\"-\",\"dec\":\"12.5\",\"comma\":\"1,5\",\"big\":\"1e400\"}",
             &doc, &err));
    /* strings */
    OK(kvjson_get_str(doc.root, "s", &s));
    assert_string_equal(s, "x");
    assert_int_equal(kvjson_get_str(doc.root, "n", &s), -EINVAL);
    assert_int_equal(kvjson_get_str(doc.root, "t", &s), -EINVAL);
    assert_int_equal(kvjson_get_str(doc.root, "absent", &s), -ENOENT);
    assert_int_equal(kvjson_get_str(doc.root, "nul", &s), -ENOENT);
    /* booleans */
    static const struct {
        const char *key;
        int rc;
        bool v;
    } bools[] = {
        {"t", 0, true},       {"f", 0, false},       {"one", 0, true},     {"zero", 0, false},
        {"st", 0, true},      {"sF", 0, false},      {"two", -EINVAL, 0},  {"half", -EINVAL, 0},
        {"yes", -EINVAL, 0},  {"arr", -EINVAL, 0},   {"nul", -ENOENT, 0},  {"absent", -ENOENT, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bools); i++) {
        b = !bools[i].v;
        int rc = kvjson_get_bool(doc.root, bools[i].key, &b);
        if (rc != bools[i].rc) fail_msg("get_bool(%s) = %d", bools[i].key, rc);
        if (rc == 0) assert_int_equal(b, bools[i].v);
    }
    /* integers */
    static const struct {
        const char *key;
        int rc;
        int64_t v;
    } ints[] = {
        {"n", 0, 5},           {"digits", 0, 30118850}, {"negs", 0, -42},       {"fs", -EINVAL, 0},
        {"es", -EINVAL, 0},    {"sp", -EINVAL, 0},      {"empty", -EINVAL, 0},  {"minus", -EINVAL, 0},
        {"t", -EINVAL, 0},     {"arr", -EINVAL, 0},     {"half", -EINVAL, 0},   {"nul", -ENOENT, 0},
        {"absent", -ENOENT, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(ints); i++) {
        int rc = kvjson_get_int64(doc.root, ints[i].key, &v);
        if (rc != ints[i].rc) fail_msg("get_int64(%s) = %d", ints[i].key, rc);
        if (rc == 0) assert_true(v == ints[i].v);
    }
    /* number texts */
    assert_string_equal(num_text(doc.root, "half"), "0.5");
    assert_string_equal(num_text(doc.root, "dec"), "12.5");
    assert_string_equal(num_text(doc.root, "digits"), "30118850");
    assert_int_equal(kvjson_get_num_text(doc.root, "s", &s), -EINVAL);
    assert_int_equal(kvjson_get_num_text(doc.root, "comma", &s), -EINVAL);
    assert_int_equal(kvjson_get_num_text(doc.root, "big", &s), -EINVAL);
    assert_int_equal(kvjson_get_num_text(doc.root, "t", &s), -EINVAL);
    assert_int_equal(kvjson_get_num_text(doc.root, "nul", &s), -ENOENT);
    assert_int_equal(kvjson_num_text(NULL, &s), -ENOENT);
    /* lookups on non-objects */
    assert_null(kvjson_get(NULL, "n"));
    assert_null(kvjson_get(kvjson_get(doc.root, "arr"), "n"));
    assert_null(kvjson_get(kvjson_get(doc.root, "n"), "n"));
    assert_null(kvjson_get(doc.root, NULL));
    assert_int_equal(kvjson_int64(NULL, &v), -ENOENT);
    kvjson_doc_free(&doc);
}

/* Items built by cJSON itself have no text: integers only where the double is exact. */
static void test_int64_without_text(void **state)
{
    (void)state;
    int64_t v;
    cJSON *n = cJSON_CreateNumber(42);
    OK(kvjson_int64(n, &v));
    assert_true(v == 42);
    cJSON_SetNumberValue(n, 1.5);
    assert_int_equal(kvjson_int64(n, &v), -EINVAL);
    cJSON_SetNumberValue(n, 1e300);
    assert_int_equal(kvjson_int64(n, &v), -EINVAL);
    cJSON_SetNumberValue(n, -9007199254740992.0);
    OK(kvjson_int64(n, &v));
    assert_true(v == INT64_C(-9007199254740992));
    const char *t;
    assert_int_equal(kvjson_num_text(n, &t), -EINVAL);
    cJSON_Delete(n);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    kvjson_doc doc;
    kvs_err err;
    enum { DEPTH = 900 };
    char *text = kvs_xmalloc(2 * DEPTH + 16);
    size_t n = 0;
    for (int i = 0; i < DEPTH; i++) text[n++] = '[';
    memcpy(text + n, "-1.5e-3", 7);
    n += 7;
    for (int i = 0; i < DEPTH; i++) text[n++] = ']';
    OK(parse_n(text, n, &doc, &err));
    const cJSON *it = doc.root;
    while (cJSON_IsArray(it)) it = it->child;
    assert_string_equal(it->valuestring, "-1.5e-3");
    kvjson_doc_free(&doc);
    free(text);
}

/* Many numbers: the arena grows past its first guess and every text still lands on its item. */
static void test_many_numbers(void **state)
{
    (void)state;
    kvs_buf b;
    kvs_buf_init(&b);
    OK(kvs_buf_puts(&b, "["));
    for (int i = 0; i < 20000; i++) OK(kvs_buf_printf(&b, "%s%d", i ? "," : "", i * 7 - 5000));
    OK(kvs_buf_puts(&b, "]"));
    kvjson_doc doc;
    kvs_err err;
    OK(parse_n(b.data, b.len, &doc, &err));
    int i = 0;
    char want[16];
    for (const cJSON *it = doc.root->child; it; it = it->next, i++) {
        snprintf(want, sizeof want, "%d", i * 7 - 5000);
        assert_string_equal(it->valuestring, want);
    }
    assert_int_equal(i, 20000);
    kvjson_doc_free(&doc);
    kvs_buf_free(&b);
}

/* Random documents: strings full of digits, signs, escapes and non-ASCII text between number
 * values of every shape; each number item must carry exactly the text it was written with. */
static const char *const rnd_numbers[] = {
    "0", "-0", "7", "-12", "0.35", "1e308", "-2.5E-2", "9007199254740993", "1.0", "3.75",
    "123456789012345678901234567890", "1E+2", "0.000001", "11250000", "-9223372036854775808",
};
static const char *const rnd_pieces[] = {
    "12", "-3", "1.5e3", "e", "E", "+", ".", "\\\"", "\\\\", "\\/", "\\n", "\\u0041", "\\u1eab",
    "\\ud83d\\udc8e", "ẫ", "Đ", " ", "true", "null", "[1]", "{\\\"a\\\":2}", ",", ":",
};

static void gen_value(kvs_buf *b, int depth, const char **texts, size_t *nt, size_t cap);

static void gen_ws(kvs_buf *b)
{
    static const char *const ws[] = {"", " ", "\n  ", "\t", "\r\n"};
    OK(kvs_buf_puts(b, ws[rng() % ARRAY_SIZE(ws)]));
}

static void gen_string(kvs_buf *b)
{
    OK(kvs_buf_puts(b, "\""));
    for (int k = (int)(rng() % 6); k > 0; k--) OK(kvs_buf_puts(b, rnd_pieces[rng() % ARRAY_SIZE(rnd_pieces)]));
    OK(kvs_buf_puts(b, "\""));
}

static void gen_value(kvs_buf *b, int depth, const char **texts, size_t *nt, size_t cap)
{
    int kind = (int)(rng() % (depth > 4 ? 3 : 5));
    gen_ws(b);
    if (kind == 0) {
        const char *t = rnd_numbers[rng() % ARRAY_SIZE(rnd_numbers)];
        assert_true(*nt < cap);
        texts[(*nt)++] = t;
        OK(kvs_buf_puts(b, t));
    } else if (kind == 1) {
        gen_string(b);
    } else if (kind == 2) {
        static const char *const lits[] = {"true", "false", "null"};
        OK(kvs_buf_puts(b, lits[rng() % 3]));
    } else if (kind == 3) {
        OK(kvs_buf_puts(b, "["));
        for (int k = (int)(rng() % 5); k > 0; k--) {
            gen_value(b, depth + 1, texts, nt, cap);
            if (k > 1) OK(kvs_buf_puts(b, ","));
        }
        OK(kvs_buf_puts(b, "]"));
    } else {
        OK(kvs_buf_puts(b, "{"));
        for (int k = (int)(rng() % 5); k > 0; k--) {
            gen_ws(b);
            gen_string(b);
            gen_ws(b);
            OK(kvs_buf_puts(b, ":"));
            gen_value(b, depth + 1, texts, nt, cap);
            if (k > 1) OK(kvs_buf_puts(b, ","));
        }
        OK(kvs_buf_puts(b, "}"));
    }
    gen_ws(b);
}

static void test_random_documents(void **state)
{
    (void)state;
    enum { CAP = 4096 };
    const char **texts = kvs_xcalloc(CAP, sizeof *texts);
    const char **got = kvs_xcalloc(CAP, sizeof *got);
    for (int round = 0; round < 400; round++) {
        kvs_buf b;
        kvs_buf_init(&b);
        size_t nt = 0, ng = 0;
        OK(kvs_buf_puts(&b, "["));
        for (int k = 0; k < 4; k++) {
            if (k) OK(kvs_buf_puts(&b, ","));
            gen_value(&b, 0, texts, &nt, CAP);
        }
        OK(kvs_buf_puts(&b, "]"));
        kvjson_doc doc;
        kvs_err err;
        if (parse_n(b.data, b.len, &doc, &err) != 0) fail_msg("%s: %s", err.msg, b.data);
        collect(doc.root, got, &ng, CAP);
        assert_int_equal(ng, nt);
        for (size_t i = 0; i < nt; i++) assert_string_equal(got[i], texts[i]);
        kvjson_doc_free(&doc);
        kvs_buf_free(&b);
    }
    free(texts);
    free(got);
}

/* Mutated documents (bytes flipped, cut short, pieces duplicated): kvjson never crashes or
 * reads out of bounds (ASan), fails only with -EINVAL, and whenever it accepts a document,
 * every number item's text is exactly what cJSON converted (strtod(text) == valuedouble). */
static void check_texts_match_doubles(const cJSON *it)
{
    for (; it; it = it->next) {
        if (cJSON_IsNumber(it)) {
            assert_non_null(it->valuestring);
            double d = strtod(it->valuestring, NULL);
            if (!(d == it->valuedouble))
                fail_msg("text \"%s\" but valuedouble %.17g", it->valuestring, it->valuedouble);
        }
        check_texts_match_doubles(it->child);
    }
}

static void test_mutated_documents(void **state)
{
    (void)state;
    static const char seed[] =
        "{\"total\": 3, \"data\": [{\"id\": 30118850, \"name\": \"Nh\\u1eabn \\\"6.3ly\\\"\", "
        "\"weight\": 2.1, \"cost\": -1.5e3, \"tags\": [\"a1\", 0.35, true, null, false]}, "
        "{\"Id\": 9007199254740993, \"x\": \"\\ud83d\\udc8e\\u0000\", \"n\": [1, [2, [3e-2]]]}], "
        "\"removedIds\": [1, -0]}";
    const char alphabet[] = "0123456789-+.eE\"\\{}[],: \nutrfalsn\x00\xC3";
    char buf[sizeof seed * 2], tmp[sizeof seed * 2]; /* separate copies: no overlapping moves */
    int accepted = 0;
    for (int round = 0; round < 5000; round++) {
        size_t n = sizeof seed - 1;
        memcpy(buf, seed, n);
        for (int k = (int)(rng() % 3) + 1; k > 0; k--) {
            size_t pos = rng() % n;
            switch (rng() % 4) {
            case 0: buf[pos] = alphabet[rng() % (sizeof alphabet - 1)]; break;
            case 1: n = pos + 1; break;                          /* truncate */
            case 2: /* delete a byte */
                memcpy(tmp, buf, n);
                memcpy(buf + pos, tmp + pos + 1, n - pos - 1);
                n--;
                break;
            default: /* duplicate a byte */
                if (n + 1 < sizeof buf) {
                    memcpy(tmp, buf, n);
                    memcpy(buf + pos + 1, tmp + pos, n - pos);
                    n++;
                }
            }
        }
        kvjson_doc doc;
        kvs_err err;
        int rc = parse_n(buf, n, &doc, &err);
        assert_true(rc == 0 || rc == -EINVAL);
        if (rc == 0) {
            accepted++;
            check_texts_match_doubles(doc.root);
            kvjson_doc_free(&doc);
        } else {
            assert_non_null(strstr(err.msg, "invalid JSON"));
        }
    }
    /* Some mutations keep the document valid (a digit for a digit): both paths ran. */
    assert_true(accepted > 0 && accepted < 5000);
}

static void test_doc_free_idempotent(void **state)
{
    (void)state;
    kvjson_doc doc = {0};
    kvjson_doc_free(&doc);
    kvjson_doc_free(NULL);
    kvs_err err;
    OK(parse("{\"a\":[1,2,{\"b\":3}]}", &doc, &err));
    kvjson_doc_free(&doc);
    assert_null(doc.root);
    assert_null(doc.arena);
    kvjson_doc_free(&doc);
}

struct utf8_case {
    const char *in;
    const char *out; /* NULL: already valid */
};

#define R "\xEF\xBF\xBD"

static void test_utf8_sanitize(void **state)
{
    (void)state;
    static const struct utf8_case cases[] = {
        {"", NULL},
        {"plain ascii", NULL},
        {"Nhẫn cưới – Đ 💎 \xEF\xBF\xBF \xF4\x8F\xBF\xBF", NULL}, /* U+FFFF, U+10FFFF are valid */
        {"\xED\x9F\xBF", NULL},                                 /* U+D7FF, just below surrogates */
        {"\xEE\x80\x80", NULL},                                 /* U+E000, just above */
        {"a\x80" "b", "a" R "b"},                               /* lone continuation */
        {"\xC0\x80", R R},                                      /* overlong NUL */
        {"\xC1\xBF", R R},                                      /* overlong */
        {"\xE0\x80\x80", R R R},                                /* overlong 3-byte */
        {"\xE0\x9F\xBF", R R R},
        {"\xF0\x80\x80\x80", R R R R},                          /* overlong 4-byte */
        {"\xF0\x8F\xBF\xBF", R R R R},
        {"\xED\xA0\x80", R R R},                                /* U+D800 */
        {"\xED\xBF\xBF", R R R},                                /* U+DFFF */
        {"\xED\xA0\xBD\xED\xB2\x8E", R R R R R R},              /* CESU-8 surrogate pair */
        {"\xF4\x90\x80\x80", R R R R},                          /* U+110000 */
        {"\xF5\x80\x80\x80", R R R R},
        {"\xFE\xFF", R R},
        {"\xE1\x80", R},                                        /* truncated at the end */
        {"\xE1\x80" "A", R "A"},                                /* truncated before ASCII */
        {"\xF0\x9F\x92" "x\xF0\x9F\x92\x8E", R "x💎"},
        {"\xC3", R},
        {"ok \xC3\xA9 \xC3(", "ok é " R "("},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *got = kvs_utf8_sanitize(cases[i].in);
        if (!cases[i].out) {
            if (got) fail_msg("case %zu: expected no change, got \"%s\"", i, got);
            continue;
        }
        if (!got || strcmp(got, cases[i].out) != 0) fail_msg("case %zu: got \"%s\"", i, got ? got : "(null)");
        assert_null(kvs_utf8_sanitize(got)); /* the result is valid */
        free(got);
    }
    assert_null(kvs_utf8_sanitize(NULL));
}

/* A KiotViet-like /products page: 100 products with two inventories each, ~230 KB pretty
 * printed (the size PERF-NOTES.md measured). Quantities and costs are chosen so that the
 * exact stock value is known. */
static void build_page(kvs_buf *b, int64_t *stock_value)
{
    static const char desc[] =
        "Nhẫn kim cương Moissanite 6.3ly vàng trắng 14K, ổ chấu 4 chấu, đá Moissanite 6.3 ly, "
        "kèm giấy kiểm định. Trọng lượng 1 chỉ, đánh bóng gương, bảo hành trọn đời. ";
    *stock_value = 0;
    OK(kvs_buf_puts(b, "{\n  \"total\": 100,\n  \"pageSize\": 100,\n  \"data\": [\n"));
    for (int i = 0; i < 100; i++) {
        int64_t id = INT64_C(9007199254740993) + 2 * i; /* beyond 2^53 on purpose */
        OK(kvs_buf_printf(b,
            "    {\n      \"id\": %lld,\n      \"retailerId\": 500712345,\n      \"code\": \"NKC-%04d\",\n"
            "      \"barCode\": \"89360990%05d\",\n      \"name\": \"Nhẫn kim cương Moissanite %d\",\n"
            "      \"fullName\": \"Nhẫn kim cương Moissanite %d - Vàng 18K - 12\",\n"
            "      \"categoryId\": 1490003,\n      \"categoryName\": \"Nhẫn kim cương\",\n"
            "      \"tradeMarkId\": 171001,\n      \"tradeMarkName\": \"Kim Ngọc\",\n"
            "      \"allowsSale\": true,\n      \"type\": 2,\n      \"hasVariants\": true,\n"
            "      \"attributes\": [\n"
            "        { \"productId\": %lld, \"attributeName\": \"CHẤT LIỆU\", \"attributeValue\": \"Vàng 18K\" },\n"
            "        { \"productId\": %lld, \"attributeName\": \"SIZE\", \"attributeValue\": \"12\" }\n"
            "      ],\n      \"unit\": \"chiếc\",\n      \"conversionValue\": 1,\n      \"units\": [],\n"
            "      \"basePrice\": %d,\n      \"weight\": %d.%02d,\n      \"description\": \"%s\",\n"
            "      \"images\": [\n"
            "        \"https://cdn2-retail-images.kiotviet.vn/vangbackimngoc/9c2e7d41a0b84f6f8e3d2c1b0a9f8e7d.jpg\",\n"
            "        \"https://cdn2-retail-images.kiotviet.vn/vangbackimngoc/4f1c2a9e8b7d4c3fa2e1d0c9b8a7f6e5.jpg\"\n"
            "      ],\n      \"inventories\": [\n",
            (long long)id, i, i, i, i, (long long)id, (long long)id, 15900000 + i * 1000, 2 + i % 5,
            i % 100, desc));
        for (int br = 0; br < 2; br++) {
            int on_tenths = (i * 3 + br * 7) % 25; /* onHand 0.0 .. 2.4 */
            int cost = 7000000 + i * 1250 + br * 500;
            *stock_value += (int64_t)on_tenths * cost; /* in tenths */
            OK(kvs_buf_printf(b,
                "        {\n          \"productId\": %lld,\n          \"productCode\": \"NKC-%04d\",\n"
                "          \"productName\": \"Nhẫn kim cương Moissanite %d\",\n"
                "          \"branchId\": %d,\n          \"branchName\": \"Chi nhánh Hà Đông\",\n"
                "          \"cost\": %d,\n          \"onHand\": %d.%d,\n          \"reserved\": 0,\n"
                "          \"onOrder\": 0,\n          \"minQuantity\": 0,\n"
                "          \"maxQuantity\": 999999999,\n          \"isActive\": true\n        }%s\n",
                (long long)id, i, i, 61201 + br, cost, on_tenths / 10, on_tenths % 10, br ? "" : ","));
        }
        OK(kvs_buf_printf(b,
            "      ],\n      \"isActive\": true,\n      \"isRewardPoint\": true,\n      \"orderTemplate\": \"\",\n"
            "      \"isLotSerialControl\": false,\n      \"isBatchExpireControl\": false,\n"
            "      \"createdDate\": \"2024-11-02T15:20:05.1\",\n      \"modifiedDate\": \"2025-06-16T09:41:%02d.527\"\n"
            "    }%s\n",
            i % 60, i < 99 ? "," : ""));
    }
    OK(kvs_buf_puts(b, "  ],\n  \"removedIds\": [30118790, 30118791],\n  \"timestamp\": \"2025-06-17T14:34:09.013\"\n}\n"));
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void test_product_page_and_timing(void **state)
{
    (void)state;
    kvs_buf page;
    kvs_buf_init(&page);
    int64_t want_tenths;
    build_page(&page, &want_tenths);
    assert_true(page.len > 200 * 1024 && page.len < 260 * 1024);

    /* Correctness on the page: exact ids, exact stock value from the number texts. */
    kvjson_doc doc;
    kvs_err err;
    OK(parse_n(page.data, page.len, &doc, &err));
    const cJSON *data = kvjson_get(doc.root, "data");
    assert_int_equal(cJSON_GetArraySize(data), 100);
    kvs_dec total;
    dec_from_int(0, &total);
    int i = 0;
    for (const cJSON *p = data->child; p; p = p->next, i++) {
        int64_t id;
        OK(kvjson_get_int64(p, "id", &id));
        assert_true(id == INT64_C(9007199254740993) + 2 * i);
        const cJSON *inv;
        cJSON_ArrayForEach(inv, kvjson_get(p, "inventories"))
        {
            kvs_dec on, cost, v;
            OK(dec_parse(num_text(inv, "onHand"), false, &on));
            OK(dec_parse(num_text(inv, "cost"), false, &cost));
            OK(dec_mul(&on, &cost, &v));
            OK(dec_add(&total, &v, &total));
        }
    }
    kvs_dec want = {.coef = want_tenths, .scale = 1};
    assert_int_equal(dec_cmp(&total, &want), 0);
    kvjson_doc_free(&doc);

    /* Timing: kvjson_parse + free against plain cJSON parse + delete on the same bytes. */
    enum { ROUNDS = 40 };
    char *copy = kvs_xmalloc(page.len);
    double t0 = now_ms();
    for (int r = 0; r < ROUNDS; r++) {
        memcpy(copy, page.data, page.len);
        OK(kvjson_parse(copy, page.len, &doc, &err));
        kvjson_doc_free(&doc);
    }
    double t1 = now_ms();
    for (int r = 0; r < ROUNDS; r++) {
        memcpy(copy, page.data, page.len);
        cJSON *root = cJSON_ParseWithLength(copy, page.len);
        assert_non_null(root);
        cJSON_Delete(root);
    }
    double t2 = now_ms();
    printf("# kvjson: %zu-byte page of 100 products: kvjson_parse+free %.3f ms, "
           "cJSON parse+delete %.3f ms (ratio %.2f)\n",
           page.len, (t1 - t0) / ROUNDS, (t2 - t1) / ROUNDS, (t1 - t0) / (t2 - t1));
    free(copy);
    kvs_buf_free(&page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_ids_beyond_2_53),
        cmocka_unit_test(test_number_texts_preserved),
        cmocka_unit_test(test_nested_arrays_in_order),
        cmocka_unit_test(test_numbers_inside_strings_not_counted),
        cmocka_unit_test(test_escaped_quotes),
        cmocka_unit_test(test_nul_escape_becomes_fffd_in_place),
        cmocka_unit_test(test_surrogates),
        cmocka_unit_test(test_vietnamese_byte_exact),
        cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_truncated_reports_offset),
        cmocka_unit_test(test_trailing_whitespace_and_scalars),
        cmocka_unit_test(test_removed_ids_spellings),
        cmocka_unit_test(test_case_insensitive_keys),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_int64_without_text),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_many_numbers),
        cmocka_unit_test(test_random_documents),
        cmocka_unit_test(test_mutated_documents),
        cmocka_unit_test(test_doc_free_idempotent),
        cmocka_unit_test(test_utf8_sanitize),
        cmocka_unit_test(test_product_page_and_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
