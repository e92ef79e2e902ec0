/* Unit tests for the jewellery attribute mapping (src/jewel.c).
 * Most value and name cases live in tests/unit/jewel_cases.tsv; each parser row is also run
 * NFD-decomposed and upper-cased here, so NFC/NFD and case insensitivity are checked on every
 * case, not just on the few written with explicit escapes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include "decimal.h"
#include "jewel.h"

/* ---- Case table --------------------------------------------------------------------------- */

struct jcase {
    int line;
    char *kind;   /* owned */
    char *input;  /* owned, unescaped */
    char *status; /* owned */
    char *expect; /* owned, unescaped */
};

static struct jcase *cases;
static size_t ncases;

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes \xHH, \t, \n, \s and \\ in place. */
static char *unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '\\' || !r[1]) {
            *w++ = *r;
            continue;
        }
        r++;
        if (*r == 'x' && hexval(r[1]) >= 0 && hexval(r[2]) >= 0) {
            *w++ = (char)(hexval(r[1]) * 16 + hexval(r[2]));
            r += 2;
        } else if (*r == 't') {
            *w++ = '\t';
        } else if (*r == 'n') {
            *w++ = '\n';
        } else if (*r == 's') {
            *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return s;
}

static const char *cases_path(void)
{
    static char path[4096];
    const char *env = getenv("JEWEL_CASES");
    if (env) return env;
    /* Next to this source file; __FILE__ is relative to the directory make runs in. */
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0),
             "jewel_cases.tsv");
    return path;
}

static int load_cases(void **state)
{
    (void)state;
    const char *path = cases_path();
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s (set JEWEL_CASES)\n", path);
        return -1;
    }
    char line[2048];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (!line[0] || line[0] == '#') continue;
        char *cols[4] = {0};
        char *p = line;
        int nc = 0;
        while (nc < 4) {
            cols[nc++] = p;
            char *tab = strchr(p, '\t');
            if (!tab) break;
            *tab = '\0';
            p = tab + 1;
        }
        if (nc != 4) {
            fprintf(stderr, "%s:%d: expected 4 TAB-separated columns\n", path, lineno);
            fclose(f);
            return -1;
        }
        cases = realloc(cases, (ncases + 1) * sizeof *cases);
        if (!cases) abort();
        cases[ncases].line = lineno;
        cases[ncases].kind = strdup(cols[0]);
        cases[ncases].input = unescape(strdup(cols[1]));
        cases[ncases].status = strdup(cols[2]);
        cases[ncases].expect = unescape(strdup(cols[3]));
        ncases++;
    }
    fclose(f);
    return 0;
}

static int free_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < ncases; i++) {
        free(cases[i].kind);
        free(cases[i].input);
        free(cases[i].status);
        free(cases[i].expect);
    }
    free(cases);
    cases = NULL;
    ncases = 0;
    return 0;
}

static const struct {
    const char *kind;
    int field;
    bool free_text; /* keeps case: skip the upper-case variant */
} kinds[] = {
    {"size", JF_CENTER_STONE_SIZE_MM, false}, {"carat", JF_CARAT_WEIGHT_CT, false},
    {"weight", JF_PRODUCT_WEIGHT_G, false},   {"purity", JF_GOLD_PURITY, false},
    {"shape", JF_SHAPE, false},               {"count", JF_STONE_COUNT, false},
    {"dims", JF_DIMENSIONS, true},            {"supplier", JF_SUPPLIER_ID, true},
    {"serial", JF_SERIAL_NUMBER, true},
};

/* Input transformed to NFD or upper case (NFD). Caller frees; NULL for invalid UTF-8. */
static char *variant(const char *s, bool upper)
{
    size_t len = 0;
    if (u8_check((const uint8_t *)s, strlen(s))) return NULL; /* libunistring would repair it */
    uint8_t *r = upper ? u8_toupper((const uint8_t *)s, strlen(s), NULL, UNINORM_NFD, NULL, &len)
                       : u8_normalize(UNINORM_NFD, (const uint8_t *)s, strlen(s), NULL, &len);
    if (!r) return NULL;
    char *out = malloc(len + 1);
    if (!out) abort();
    memcpy(out, r, len);
    out[len] = '\0';
    free(r);
    return out;
}

static int check_parse(const struct jcase *c, int field, const char *input, const char *how)
{
    char out[JEWEL_VALUE_MAX];
    enum jewel_status st = jewel_field_parser(field)(input, out, sizeof out);
    bool ok = strcmp(jewel_status_name(st), c->status) == 0 &&
              strcmp(out, st == JV_OK ? c->expect : "") == 0;
    if (!ok)
        fprintf(stderr, "jewel_cases.tsv:%d: %s(%s'%s') = %s '%s', want %s '%s'\n", c->line, c->kind,
                how, input, jewel_status_name(st), out, c->status, c->expect);
    return ok ? 0 : 1;
}

static void test_case_table(void **state)
{
    (void)state;
    jewel_map *m = jewel_map_new_defaults();
    int failures = 0;
    size_t parser_rows = 0, name_rows = 0;
    for (size_t i = 0; i < ncases; i++) {
        const struct jcase *c = &cases[i];
        if (strcmp(c->kind, "key") == 0) {
            char *k = jewel_key_normalize(c->input);
            if (!k || strcmp(k, c->expect) != 0) {
                fprintf(stderr, "jewel_cases.tsv:%d: key('%s') = '%s', want '%s'\n", c->line,
                        c->input, k ? k : "(null)", c->expect);
                failures++;
            }
            free(k);
            name_rows++;
            continue;
        }
        if (strcmp(c->kind, "lookup") == 0) {
            for (int v = 0; v < 3; v++) {
                char *in = v == 0 ? strdup(c->input) : variant(c->input, v == 2);
                if (!in) continue; /* invalid UTF-8 has no variants */
                int f = jewel_map_lookup(m, in);
                const char *got = f < 0 ? "none" : jewel_field_name(f);
                if (strcmp(got, c->expect) != 0) {
                    fprintf(stderr, "jewel_cases.tsv:%d: lookup(variant %d '%s') = %s, want %s\n",
                            c->line, v, in, got, c->expect);
                    failures++;
                }
                free(in);
            }
            name_rows++;
            continue;
        }
        size_t k = 0;
        while (k < ARRAY_SIZE(kinds) && strcmp(kinds[k].kind, c->kind) != 0) k++;
        if (k == ARRAY_SIZE(kinds)) {
            fprintf(stderr, "jewel_cases.tsv:%d: unknown kind '%s'\n", c->line, c->kind);
            failures++;
            continue;
        }
        parser_rows++;
        failures += check_parse(c, kinds[k].field, c->input, "");
        char *nfd = variant(c->input, false);
        if (nfd) {
            failures += check_parse(c, kinds[k].field, nfd, "NFD ");
            free(nfd);
        }
        if (!kinds[k].free_text) {
            char *up = variant(c->input, true);
            if (up) {
                failures += check_parse(c, kinds[k].field, up, "UPPER ");
                free(up);
            }
        }
    }
    jewel_map_free(m);
    assert_int_equal(failures, 0);
    assert_true(parser_rows >= 80);
    assert_true(name_rows >= 20);
}

/* ---- Parsers: things a table cannot say ------------------------------------------------- */

static void test_parsers_null_and_small_buffers(void **state)
{
    (void)state;
    char out[8];
    for (int f = 0; f < JF_COUNT; f++) {
        strcpy(out, "junk");
        assert_int_equal(jewel_field_parser(f)(NULL, out, sizeof out), JV_EMPTY);
        assert_string_equal(out, "");
    }
    assert_null(jewel_field_parser(JF_COUNT));
    assert_null(jewel_field_parser(-1));

    /* Never a truncated value: too small a buffer is JV_INVALID with "" in it. */
    char tiny[4];
    assert_int_equal(jewel_parse_weight_g("2 chỉ 5 phân 3 ly", tiny, sizeof tiny), JV_INVALID);
    assert_string_equal(tiny, "");
    assert_int_equal(jewel_parse_gold_purity("vàng 610", tiny, sizeof tiny), JV_INVALID);
    assert_int_equal(jewel_parse_shape("giọt nước", tiny, sizeof tiny), JV_INVALID);
    assert_int_equal(jewel_parse_supplier("NCC Kim Ngọc", tiny, sizeof tiny), JV_INVALID);
    assert_int_equal(jewel_parse_size_mm("6.3", tiny, sizeof tiny), JV_OK);
    assert_string_equal(tiny, "6.3");

    /* Text parsers give NFC for NFD input and keep case and diacritics. */
    char buf[64];
    assert_int_equal(jewel_parse_supplier(" Ca\xcc\x82y Va\xcc\x80ng ", buf, sizeof buf), JV_OK);
    assert_string_equal(buf, "Cây Vàng");

    /* Exactness: no binary floating point on the way (0.1 + 0.2 style errors). */
    assert_int_equal(jewel_parse_weight_g("3 phân 1 ly", buf, sizeof buf), JV_OK);
    assert_string_equal(buf, "1.1625");
    assert_int_equal(jewel_parse_carat("0.333 ct", buf, sizeof buf), JV_OK);
    assert_string_equal(buf, "0.333");

    /* A value far longer than any real one is refused, not cut. */
    char longv[2000];
    memset(longv, '1', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    assert_int_equal(jewel_parse_size_mm(longv, buf, sizeof buf), JV_INVALID);
    assert_int_equal(jewel_parse_stone_count(longv, buf, sizeof buf), JV_INVALID);
}

/* ---- Names ------------------------------------------------------------------------------- */

static void test_field_names(void **state)
{
    (void)state;
    for (int f = 0; f < JF_COUNT; f++) {
        const char *n = jewel_field_name(f);
        assert_non_null(n);
        assert_int_equal(jewel_field_from_name(n), f);
    }
    assert_int_equal(jewel_field_from_name("gold_purity"), JF_GOLD_PURITY);
    assert_int_equal(jewel_field_from_name("GOLD_PURITY"), JF_GOLD_PURITY);
    assert_int_equal(jewel_field_from_name("center_stone_size_mm"), JF_CENTER_STONE_SIZE_MM);
    assert_int_equal(jewel_field_from_name("purity"), -1);
    assert_int_equal(jewel_field_from_name(NULL), -1);
    assert_null(jewel_field_name(JF_COUNT));
    assert_string_equal(jewel_status_name(JV_AMBIGUOUS), "ambiguous");
}

static void test_key_normalize_edges(void **state)
{
    (void)state;
    assert_null(jewel_key_normalize(NULL));
    assert_null(jewel_key_normalize("TU\xc3"));      /* truncated UTF-8 */
    assert_null(jewel_key_normalize("\xc0\xaf"));    /* overlong */
    char *k = jewel_key_normalize("STRASSE Maße"); /* full case folding: ß -> ss */
    assert_string_equal(k, "strasse masse");
    free(k);
    /* Long names still fold (heap path of the lookup). */
    char longname[1500];
    memset(longname, 'A', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    k = jewel_key_normalize(longname);
    assert_int_equal(strlen(k), sizeof longname - 1);
    assert_true(k[0] == 'a' && k[sizeof longname - 2] == 'a');
    jewel_map *m = jewel_map_new_empty();
    assert_int_equal(jewel_map_set_aliases(m, JF_SHAPE, longname, NULL), 0);
    longname[0] = 'a';
    assert_int_equal(jewel_map_lookup(m, longname), JF_SHAPE);
    jewel_map_free(m);
    free(k);
}

static void test_defaults_complete(void **state)
{
    (void)state;
    /* Every default alias the brief requires maps to its field (and the defaults load
     * without a conflict, or jewel_map_new_defaults would have aborted). */
    static const struct {
        int field;
        const char *aliases[8];
    } want[] = {
        {JF_CENTER_STONE_SIZE_MM, {"KÍCH THƯỚC ĐÁ CHỦ", "ĐÁ CHỦ", "SIZE ĐÁ", "KÍCH THƯỚC ĐÁ",
                                   "Center stone size", "Stone size", "Main stone"}},
        {JF_SHAPE, {"HÌNH DẠNG", "DÁNG ĐÁ", "GIÁC CẮT", "Shape", "Cut"}},
        {JF_GOLD_PURITY, {"TUỔI VÀNG", "LOẠI VÀNG", "CHẤT LIỆU", "Gold purity", "Purity",
                          "Material", "Metal"}},
        {JF_CARAT_WEIGHT_CT, {"TRỌNG LƯỢNG ĐÁ", "CARAT", "Carat weight", "CT"}},
        {JF_STONE_COUNT, {"SỐ LƯỢNG ĐÁ", "SỐ VIÊN", "Stone count", "Number of stones"}},
        {JF_DIMENSIONS, {"KÍCH THƯỚC", "KÍCH CỠ", "Dimensions", "Size"}},
        {JF_PRODUCT_WEIGHT_G, {"TRỌNG LƯỢNG", "TRỌNG LƯỢNG VÀNG", "Weight", "Gold weight"}},
        {JF_SUPPLIER_ID, {"NHÀ CUNG CẤP", "NCC", "Supplier"}},
        {JF_SERIAL_NUMBER, {"SỐ SERI", "SERIAL", "MÃ KIỂM ĐỊNH", "Serial number", "Certificate"}},
    };
    jewel_map *m = jewel_map_new_defaults();
    for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
        for (size_t j = 0; j < 8 && want[i].aliases[j]; j++) {
            const char *a = want[i].aliases[j];
            if (jewel_map_lookup(m, a) != want[i].field)
                fail_msg("default alias '%s' does not map to %s", a, jewel_field_name(want[i].field));
        }
    }
    assert_true(jewel_map_alias_count(m, JF_GOLD_PURITY) >= 7);
    assert_string_equal(jewel_map_alias(m, JF_GOLD_PURITY, 0), "TUỔI VÀNG");
    assert_null(jewel_map_alias(m, JF_GOLD_PURITY, 1000));
    assert_int_equal(jewel_map_alias_count(m, -1), 0);
    assert_int_equal(jewel_map_lookup(m, NULL), -1);
    assert_int_equal(jewel_map_lookup(NULL, "CT"), -1);
    jewel_map_free(m);
}

static void test_set_aliases(void **state)
{
    (void)state;
    jewel_map *m = jewel_map_new_defaults();
    kvs_err err = {0};

    /* Replace: the old aliases go, the new ones (trimmed, any case/diacritics) come. */
    assert_int_equal(jewel_map_set_aliases(m, JF_SUPPLIER_ID, " Nguồn hàng ,  NCC ,, nguon hang", &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(jewel_map_alias_count(m, JF_SUPPLIER_ID), 2); /* duplicate key dropped */
    assert_string_equal(jewel_map_alias(m, JF_SUPPLIER_ID, 0), "Nguồn hàng");
    assert_int_equal(jewel_map_lookup(m, "NGUON HANG"), JF_SUPPLIER_ID);
    assert_int_equal(jewel_map_lookup(m, "ncc"), JF_SUPPLIER_ID);
    assert_int_equal(jewel_map_lookup(m, "Supplier"), -1);

    /* Conflict with another field's alias (equal after normalisation): error naming both
     * fields and the aliases' positions, never their text (configuration text: issue 18),
     * map unchanged. */
    assert_int_equal(jewel_map_set_aliases(m, JF_DIMENSIONS, "Kích thước, kich thuoc da chu", &err),
                     -EINVAL);
    assert_int_equal(err.code, -EINVAL);
    assert_null(strstr(err.msg, "kich thuoc da chu"));
    assert_non_null(strstr(err.msg, "alias 2 of the list for dimensions"));
    assert_non_null(strstr(err.msg, "alias 1 of center_stone_size_mm"));
    assert_non_null(strstr(err.msg, "dimensions"));
    assert_non_null(strstr(err.msg, "center_stone_size_mm"));
    assert_int_equal(jewel_map_lookup(m, "KÍCH THƯỚC"), JF_DIMENSIONS);
    assert_int_equal(jewel_map_lookup(m, "Size"), JF_DIMENSIONS);
    assert_int_equal(jewel_map_lookup(m, "KÍCH THƯỚC ĐÁ CHỦ"), JF_CENTER_STONE_SIZE_MM);

    /* Re-setting a field with its own aliases is no conflict. */
    kvs_err_clear(&err);
    assert_int_equal(jewel_map_set_aliases(m, JF_DIMENSIONS, "KÍCH THƯỚC, SIZE NHẪN", &err), 0);
    assert_int_equal(jewel_map_lookup(m, "size nhan"), JF_DIMENSIONS);
    assert_int_equal(jewel_map_lookup(m, "Size"), -1);

    /* Moving an alias: free it on the first field, then add it to the second. */
    assert_int_equal(jewel_map_set_aliases(m, JF_CARAT_WEIGHT_CT, "CARAT", &err), 0);
    assert_int_equal(jewel_map_set_aliases(m, JF_STONE_COUNT, "CT, Số viên", &err), 0);
    assert_int_equal(jewel_map_lookup(m, "ct"), JF_STONE_COUNT);

    /* An empty list disables the field. */
    assert_int_equal(jewel_map_set_aliases(m, JF_SHAPE, "", &err), 0);
    assert_int_equal(jewel_map_alias_count(m, JF_SHAPE), 0);
    assert_int_equal(jewel_map_lookup(m, "Shape"), -1);

    /* Bad input. */
    assert_int_equal(jewel_map_set_aliases(m, JF_COUNT, "x", &err), -EINVAL);
    assert_int_equal(jewel_map_set_aliases(m, JF_SHAPE, "ok, bad\xff", &err), -EINVAL);
    assert_non_null(strstr(err.msg, "UTF-8"));
    assert_int_equal(jewel_map_alias_count(m, JF_SHAPE), 0);
    /* Valid UTF-8 of format characters only (a BOM, found by tests/fuzz/fuzz_config) has no
     * key: refused, and the message does not call it invalid UTF-8. */
    assert_int_equal(jewel_map_set_aliases(m, JF_SHAPE, "ok, \xEF\xBB\xBF\xE2\x80\x8B", &err),
                     -EINVAL);
    assert_string_equal(err.msg, "shape: alias 2 of the list has no visible characters");
    assert_int_equal(jewel_map_alias_count(m, JF_SHAPE), 0);
    assert_int_equal(jewel_map_set_aliases(m, JF_SHAPE, "x", NULL), 0); /* NULL err is fine */
    jewel_map_free(m);
}

/* ---- Name scan ----------------------------------------------------------------------------- */

static void test_scan_name(void **state)
{
    (void)state;
    jewel_name_hits h;
    unsigned both = (1u << JF_CENTER_STONE_SIZE_MM) | (1u << JF_GOLD_PURITY);

    assert_int_equal(jewel_scan_name("Nhẫn kim cương Moissanite 6.3ly vàng trắng 14K", &h), both);
    assert_string_equal(h.size_mm, "6.3");
    assert_string_equal(h.purity, "14K");

    /* NFD, upper case, decimal comma, spaced unit. */
    assert_int_equal(jewel_scan_name("NHA\xcc\x82\xcc\x83N KIM CU\xcc\x9bO\xcc\x9bNG 6,3 LY VA\xcc\x80NG 18K", &h),
                     both);
    assert_string_equal(h.size_mm, "6.3");
    assert_string_equal(h.purity, "18K");

    assert_int_equal(jewel_scan_name("Bông tai đá 5mm Vàng 610", &h), both);
    assert_string_equal(h.size_mm, "5");
    assert_string_equal(h.purity, "14.6K");

    assert_int_equal(jewel_scan_name("Nhẫn cưới vàng 18K trơn", &h), 1u << JF_GOLD_PURITY);
    assert_string_equal(h.size_mm, "");
    assert_string_equal(h.purity, "18K");

    assert_int_equal(jewel_scan_name("Dây chuyền bạc 925 mặt 8 ly", &h), both);
    assert_string_equal(h.purity, "Silver 925");
    assert_string_equal(h.size_mm, "8");

    /* Two different sizes: we do not guess. The same value twice is fine. */
    assert_int_equal(jewel_scan_name("Nhẫn đá chủ 6.3ly tấm 1.5ly 14K", &h), 1u << JF_GOLD_PURITY);
    assert_string_equal(h.size_mm, "");
    assert_int_equal(jewel_scan_name("Nhẫn 18K vàng 750", &h), 1u << JF_GOLD_PURITY);
    assert_string_equal(h.purity, "18K");
    assert_int_equal(jewel_scan_name("Lắc tay 14K và 18K", &h), 0);

    /* Colour/origin words between the metal and its fineness. */
    assert_int_equal(jewel_scan_name("Bông tai vàng Ý 750 trơn", &h), 1u << JF_GOLD_PURITY);
    assert_string_equal(h.purity, "18K");
    assert_int_equal(jewel_scan_name("Nhẫn vàng tây 610", &h), 1u << JF_GOLD_PURITY);
    assert_string_equal(h.purity, "14.6K");
    assert_int_equal(jewel_scan_name("Nhẫn vàng Ý 750 14K", &h), 0); /* conflict */

    /* Plating: karats after mạ/xi/plated/vermeil describe the coating, not the item. */
    assert_int_equal(jewel_scan_name("Nhẫn mạ vàng 18K", &h), 0);
    assert_int_equal(jewel_scan_name("Dây chuyền bạc xi vàng 18K", &h), 0);
    assert_int_equal(jewel_scan_name("MA\xcc\xa3 VA\xcc\x80NG 24K", &h), 0); /* NFD */
    assert_int_equal(jewel_scan_name("Mặt dây plated 18k gold 6ly", &h), 1u << JF_CENTER_STONE_SIZE_MM);
    assert_string_equal(h.size_mm, "6");
    assert_int_equal(jewel_scan_name("Nhẫn vàng 18K xi rhodium", &h), 1u << JF_GOLD_PURITY);
    assert_string_equal(h.purity, "18K");

    /* Not sizes or purities: carats, prices, words. */
    assert_int_equal(jewel_scan_name("Nhẫn kim cương 0.5ct giá 15.900.000đ", &h), 0);
    assert_int_equal(jewel_scan_name("Nhẫn 30K", &h), 0);
    assert_int_equal(jewel_scan_name("Ly thủy tinh", &h), 0);
    assert_int_equal(jewel_scan_name("", &h), 0);
    assert_int_equal(jewel_scan_name(NULL, &h), 0);
    assert_int_equal(jewel_scan_name("bad \xff utf8 6.3ly", &h), 0);
}

/* ---- Record-level extraction ------------------------------------------------------------- */

static void assert_field(const jewel_result *r, int f, enum jewel_status st, const char *value,
                         const char *source)
{
    const jewel_value *v = &r->f[f];
    if (v->status != st || strcmp(v->value, value) != 0 || strcmp(v->source, source) != 0)
        fail_msg("%s: got %s '%s' from '%s', want %s '%s' from '%s'", jewel_field_name(f),
                 jewel_status_name(v->status), v->value, v->source, jewel_status_name(st), value,
                 source);
}

static void test_extract_fact_sheet_products(void **state)
{
    (void)state;
    jewel_map *m = jewel_map_new_defaults();
    jewel_result r;

    /* NKC-0501: no attributes; size and purity come from the name. */
    jewel_extract(m, NULL, 0, "Nhẫn kim cương Moissanite 6.3ly vàng trắng 14K", &r);
    assert_field(&r, JF_CENTER_STONE_SIZE_MM, JV_OK, "6.3", "name");
    assert_field(&r, JF_GOLD_PURITY, JV_OK, "14K", "name");
    for (int f = 0; f < JF_COUNT; f++) {
        if (f == JF_CENTER_STONE_SIZE_MM || f == JF_GOLD_PURITY) continue;
        assert_field(&r, f, JV_ABSENT, "", "");
        assert_int_equal(r.f[f].rejected, JV_ABSENT);
    }

    /* NC18K-012: CHẤT LIỆU "Vàng 18K" is the purity, SIZE "12" (ring size) the dimensions. */
    jewel_attr nc[] = {{"CHẤT LIỆU", "Vàng 18K"}, {"SIZE", "12"}};
    jewel_extract(m, nc, ARRAY_SIZE(nc), "Nhẫn cưới vàng 18K trơn", &r);
    assert_field(&r, JF_GOLD_PURITY, JV_OK, "18K", "CHẤT LIỆU");
    assert_field(&r, JF_DIMENSIONS, JV_OK, "12", "SIZE");
    assert_field(&r, JF_CENTER_STONE_SIZE_MM, JV_ABSENT, "", "");
    assert_field(&r, JF_SHAPE, JV_ABSENT, "", "");

    /* Attributes win over the name. */
    jewel_attr a14[] = {{"TUỔI VÀNG", "14K"}};
    jewel_extract(m, a14, 1, "Nhẫn vàng 18K", &r);
    assert_field(&r, JF_GOLD_PURITY, JV_OK, "14K", "TUỔI VÀNG");
    jewel_map_free(m);
}

static void test_extract_full_record(void **state)
{
    (void)state;
    jewel_map *m = jewel_map_new_defaults();
    jewel_result r;
    jewel_attr attrs[] = {
        {"TUỔI VÀNG", "??"},                                   /* not understood ... */
        {"KICH THUOC DA CHU", "  6,3   LY "},                   /* no diacritics, odd spacing */
        {"DA\xcc\x81NG \xc4\x90" "A\xcc\x81", "Tro\xcc\x80n"},    /* NFD name and value */
        {"SỐ VIÊN", "03 viên"},
        {"TRỌNG LƯỢNG ĐÁ", "0,5 ct"},
        {"TRỌNG LƯỢNG", "-"},                                   /* empty ... */
        {"Gold weight", "1 chỉ 2"},                             /* ... then ambiguous */
        {"Weight", "1 chi 2 phan"},                             /* ... then understood */
        {"NCC", " NCC Kim Ngọc "},
        {"MÃ KIỂM ĐỊNH", "GIA 2141234567"},
        {"SỐ SERI", "SHOULD-NOT-WIN"},                         /* first OK wins */
        {"MÀU SẮC", "Trắng"},                                  /* not a jewellery field */
        {NULL, "ignored"},
        {"KÍCH THƯỚC", "18 x 12 mm"},
        {"LOẠI VÀNG", "vàng tây"},                              /* ambiguous, after a failure */
    };
    jewel_extract(m, attrs, ARRAY_SIZE(attrs), "Nhẫn Moissanite 7ly vàng 18K", &r);

    assert_field(&r, JF_CENTER_STONE_SIZE_MM, JV_OK, "6.3", "KICH THUOC DA CHU"); /* not 7 */
    assert_field(&r, JF_SHAPE, JV_OK, "Round", "DA\xcc\x81NG \xc4\x90" "A\xcc\x81");
    assert_field(&r, JF_STONE_COUNT, JV_OK, "3", "SỐ VIÊN");
    assert_field(&r, JF_CARAT_WEIGHT_CT, JV_OK, "0.5", "TRỌNG LƯỢNG ĐÁ");
    assert_field(&r, JF_PRODUCT_WEIGHT_G, JV_OK, "4.5", "Weight");
    assert_int_equal(r.f[JF_PRODUCT_WEIGHT_G].rejected, JV_AMBIGUOUS);
    assert_string_equal(r.f[JF_PRODUCT_WEIGHT_G].rejected_source, "Gold weight");
    assert_string_equal(r.f[JF_PRODUCT_WEIGHT_G].raw, "1 chỉ 2");
    assert_field(&r, JF_SUPPLIER_ID, JV_OK, "NCC Kim Ngọc", "NCC");
    assert_field(&r, JF_SERIAL_NUMBER, JV_OK, "GIA 2141234567", "MÃ KIỂM ĐỊNH");
    assert_field(&r, JF_DIMENSIONS, JV_OK, "18 x 12 mm", "KÍCH THƯỚC");

    /* The purity attribute was garbage: the name supplies the value, and the rejection is
     * kept for the report "attribute 'TUỔI VÀNG' value '??' not understood". */
    assert_field(&r, JF_GOLD_PURITY, JV_OK, "18K", "name");
    assert_int_equal(r.f[JF_GOLD_PURITY].rejected, JV_INVALID);
    assert_string_equal(r.f[JF_GOLD_PURITY].rejected_source, "TUỔI VÀNG");
    assert_string_equal(r.f[JF_GOLD_PURITY].raw, "??");

    /* Without a usable name the failure is the field's status. */
    jewel_extract(m, attrs, ARRAY_SIZE(attrs), "Nhẫn Moissanite", &r);
    assert_field(&r, JF_GOLD_PURITY, JV_INVALID, "", "TUỔI VÀNG");
    assert_string_equal(r.f[JF_GOLD_PURITY].raw, "??");

    /* Empty only: status empty; an empty value is not a rejection. */
    jewel_attr empty[] = {{"SỐ VIÊN", "  "}, {"Stone count", "n/a"}};
    jewel_extract(m, empty, 2, NULL, &r);
    assert_field(&r, JF_STONE_COUNT, JV_EMPTY, "", "SỐ VIÊN");
    assert_int_equal(r.f[JF_STONE_COUNT].rejected, JV_ABSENT);

    /* Empty, then a failure: the failure is reported. */
    jewel_attr mixed[] = {{"SỐ VIÊN", "-"}, {"Stone count", "1-3"}};
    jewel_extract(m, mixed, 2, NULL, &r);
    assert_field(&r, JF_STONE_COUNT, JV_AMBIGUOUS, "", "Stone count");

    /* Long raw values and names are cut at a UTF-8 boundary, never mid-character. */
    char longv[600];
    size_t o = 0;
    while (o + 3 < sizeof longv) {
        memcpy(longv + o, "ắ", 3); /* 3 bytes each */
        o += 3;
    }
    longv[o] = '\0';
    jewel_attr lv[] = {{"TUỔI VÀNG", longv}};
    jewel_extract(m, lv, 1, NULL, &r);
    assert_int_equal(r.f[JF_GOLD_PURITY].rejected, JV_INVALID);
    size_t rl = strlen(r.f[JF_GOLD_PURITY].raw);
    assert_true(rl < JEWEL_VALUE_MAX && rl % 3 == 0 && rl >= JEWEL_VALUE_MAX - 3);
    jewel_map_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_table),
        cmocka_unit_test(test_parsers_null_and_small_buffers),
        cmocka_unit_test(test_field_names),
        cmocka_unit_test(test_key_normalize_edges),
        cmocka_unit_test(test_defaults_complete),
        cmocka_unit_test(test_set_aliases),
        cmocka_unit_test(test_scan_name),
        cmocka_unit_test(test_extract_fact_sheet_products),
        cmocka_unit_test(test_extract_full_record),
    };
    return cmocka_run_group_tests(tests, load_cases, free_cases);
}
