/* Jewellery attribute mapping: attribute-name matching, value parsers, product-name scan.
 * See include/jewel.h for the accepted forms and the decisions taken.
 *
 * Everything reads a "folded" copy of the text (NFD, case-folded, marks stripped, đ -> d,
 * white space collapsed, NFC), so the grammar below only ever sees lower-case ASCII words for
 * Vietnamese and English, numbers and punctuation. Numbers stay exact (kvs_dec). */
#include "jewel.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "decimal.h"

#define FOLD_STACK 512 /* stack buffer for folding; longer text goes through the heap */
#define MAX_TOKS 32    /* a jewellery value with more tokens than this is not a value */
#define SCAN_FOLD 1024 /* product names: KiotViet caps them well below this */
#define SCAN_TOKS 192

/* ---- Fields ------------------------------------------------------------------------------ */

static const char *const field_names[JF_COUNT] = {
    [JF_CENTER_STONE_SIZE_MM] = "center_stone_size_mm",
    [JF_SHAPE] = "shape",
    [JF_DIMENSIONS] = "dimensions",
    [JF_STONE_COUNT] = "stone_count",
    [JF_CARAT_WEIGHT_CT] = "carat_weight_ct",
    [JF_GOLD_PURITY] = "gold_purity",
    [JF_PRODUCT_WEIGHT_G] = "product_weight_g",
    [JF_SUPPLIER_ID] = "supplier_id",
    [JF_SERIAL_NUMBER] = "serial_number",
};

/* Built-in aliases, one comma-separated list per field (the same syntax as the config). */
static const char *const default_aliases[JF_COUNT] = {
    [JF_CENTER_STONE_SIZE_MM] = "KÍCH THƯỚC ĐÁ CHỦ, ĐÁ CHỦ, SIZE ĐÁ, KÍCH THƯỚC ĐÁ, "
                                "SIZE ĐÁ CHỦ, Center stone size, Centre stone size, "
                                "Stone size, Main stone",
    [JF_SHAPE] = "HÌNH DẠNG, DÁNG ĐÁ, GIÁC CẮT, HÌNH DÁNG, Shape, Cut",
    [JF_DIMENSIONS] = "KÍCH THƯỚC, KÍCH CỠ, Dimensions, Size",
    [JF_STONE_COUNT] = "SỐ LƯỢNG ĐÁ, SỐ VIÊN, SỐ VIÊN ĐÁ, Stone count, Number of stones",
    [JF_CARAT_WEIGHT_CT] = "TRỌNG LƯỢNG ĐÁ, CARAT, Carat weight, CT",
    [JF_GOLD_PURITY] = "TUỔI VÀNG, LOẠI VÀNG, CHẤT LIỆU, Gold purity, Purity, Material, Metal",
    [JF_PRODUCT_WEIGHT_G] = "TRỌNG LƯỢNG, TRỌNG LƯỢNG VÀNG, KHỐI LƯỢNG, Weight, Gold weight",
    [JF_SUPPLIER_ID] = "NHÀ CUNG CẤP, NCC, Supplier",
    [JF_SERIAL_NUMBER] = "SỐ SERI, SERIAL, MÃ KIỂM ĐỊNH, Serial number, Certificate",
};

const char *jewel_default_aliases(int field)
{
    return field >= 0 && field < JF_COUNT ? default_aliases[field] : NULL;
}

const char *jewel_field_name(int field)
{
    if (field < 0 || field >= JF_COUNT) return NULL;
    return field_names[field];
}

int jewel_field_from_name(const char *name)
{
    if (!name) return -1;
    for (int f = 0; f < JF_COUNT; f++)
        if (strcasecmp(name, field_names[f]) == 0) return f;
    return -1;
}

const char *jewel_status_name(enum jewel_status st)
{
    switch (st) {
    case JV_OK: return "ok";
    case JV_EMPTY: return "empty";
    case JV_AMBIGUOUS: return "ambiguous";
    case JV_INVALID: return "invalid";
    case JV_ABSENT: return "absent";
    }
    return "?";
}

/* ---- Folding ----------------------------------------------------------------------------- */

/* Writes the comparison form of s[0..n) into out (NUL-terminated). Returns its length,
 * -EINVAL for invalid UTF-8, -ERANGE when out is too small, -ENOMEM. Any text. */
static int fold_text_general(const char *s, size_t n, char *out, size_t outsz);

/* Latin text (Vietnamese included: Basic Latin to Latin Extended-B, and Latin Extended
 * Additional for the precomposed letters) folds code point by code point: without combining
 * marks in the input nothing reorders or composes across code points, so the fold of the text
 * is the concatenation of the folds of its code points, which are computed once each. Product
 * names are all different (a cache of whole texts missed them): this folds them ~18x faster. */
#define CP_LATIN_END 0x250
#define CP_VN_FIRST 0x1E00
#define CP_VN_END 0x1F00
static struct { signed char len; char s[7]; } cp_fold[CP_LATIN_END + (CP_VN_END - CP_VN_FIRST)];

static int cp_fold_index(ucs4_t uc)
{
    if (uc < CP_LATIN_END) return (int)uc;
    if (uc >= CP_VN_FIRST && uc < CP_VN_END) return CP_LATIN_END + (int)(uc - CP_VN_FIRST);
    return -1;
}

/* Returns the fold's length, -EAGAIN when the text needs the general path, or -EINVAL/-ERANGE
 * like fold_text. */
static int fold_text_latin(const char *s, size_t n, char *out, size_t outsz)
{
    const uint8_t *p = (const uint8_t *)s, *end = p + n;
    size_t w = 0;
    bool space = false;
    while (p < end) {
        ucs4_t uc;
        int k = u8_mbtoucr(&uc, p, (size_t)(end - p));
        if (k < 0) return -EINVAL;
        p += k;
        int ix = cp_fold_index(uc);
        if (ix < 0) return -EAGAIN;
        if (cp_fold[ix].len == 0) { /* first time: fold it the general way */
            uint8_t one[6];
            char f[16];
            int ulen = u8_uctomb(one, uc, sizeof one);
            int rc = ulen > 0 ? fold_text_general((const char *)one, (size_t)ulen, f, sizeof f)
                              : -EINVAL;
            bool ws = uc_is_property_white_space(uc);
            if (rc < 0 || rc > (int)sizeof cp_fold[ix].s) return -EAGAIN;
            cp_fold[ix].len = ws ? -1 : (signed char)(rc + 1); /* -1 white space; len+1 */
            memcpy(cp_fold[ix].s, f, (size_t)rc);
        }
        if (cp_fold[ix].len < 0) {
            if (w > 0) space = true;
            continue;
        }
        size_t len = (size_t)cp_fold[ix].len - 1;
        if (len == 0) continue; /* a mark or format character */
        if (w + (space ? 1 : 0) + len + 1 > outsz) return -ERANGE;
        if (space) {
            out[w++] = ' ';
            space = false;
        }
        memcpy(out + w, cp_fold[ix].s, len);
        w += len;
    }
    out[w] = '\0';
    return (int)w;
}

/* The comparison form of any text: Latin through the table, the rest the general way. */
static int fold_text(const char *s, size_t n, char *out, size_t outsz)
{
    int rc = fold_text_latin(s, n, out, outsz);
    return rc != -EAGAIN ? rc : fold_text_general(s, n, out, outsz);
}

static int fold_text_general(const char *s, size_t n, char *out, size_t outsz)
{
    uint8_t buf1[FOLD_STACK], buf2[FOLD_STACK];
    uint8_t *nfd = NULL, *cf = NULL, *nfc = NULL; /* each either a stack buffer or malloc'd */
    size_t nfd_len = sizeof buf1, cf_len = sizeof buf2, nfc_len = sizeof buf1;
    int rc;

    if (u8_check((const uint8_t *)s, n)) return -EINVAL;
    /* Canonical caseless matching is NFD(casefold(NFD(x))): decompose first. */
    nfd = u8_normalize(UNINORM_NFD, (const uint8_t *)s, n, buf1, &nfd_len);
    if (!nfd) {
        rc = -ENOMEM;
        goto cleanup;
    }
    cf = u8_casefold(nfd, nfd_len, NULL, UNINORM_NFD, buf2, &cf_len);
    if (!cf) {
        rc = -ENOMEM;
        goto cleanup;
    }
    if (nfd != buf1) free(nfd);
    nfd = NULL;

    /* Strip marks and format characters, map đ, collapse white space; in place, because the
     * output never outgrows the input consumed so far (a pending space stands for at least
     * one white-space byte already skipped). */
    size_t w = 0;
    bool space = false;
    for (size_t i = 0; i < cf_len;) {
        ucs4_t uc;
        int k = u8_mbtouc(&uc, cf + i, cf_len - i);
        size_t start = i;
        i += (size_t)k;
        if (uc_is_property_white_space(uc)) {
            if (w > 0) space = true;
            continue;
        }
        if (uc_is_general_category(uc, UC_CATEGORY_M) || uc_is_general_category(uc, UC_CATEGORY_Cf))
            continue;
        if (space) {
            cf[w++] = ' ';
            space = false;
        }
        if (uc == 0x0111) { /* đ (Đ folds to it): a letter, not a mark, so NFD keeps it */
            cf[w++] = 'd';
            continue;
        }
        memmove(cf + w, cf + start, (size_t)k);
        w += (size_t)k;
    }
    nfc = u8_normalize(UNINORM_NFC, cf, w, buf1, &nfc_len);
    if (!nfc) {
        rc = -ENOMEM;
        goto cleanup;
    }
    if (nfc_len + 1 > outsz) {
        rc = -ERANGE;
        goto cleanup;
    }
    memcpy(out, nfc, nfc_len);
    out[nfc_len] = '\0';
    rc = (int)nfc_len;
cleanup:
    if (nfd && nfd != buf1) free(nfd);
    if (cf && cf != buf2) free(cf);
    if (nfc && nfc != buf1) free(nfc);
    return rc;
}

char *jewel_key_normalize(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    /* Case folding can lengthen text (ß -> ss, ΐ -> 3 code points): grow until it fits. */
    for (size_t cap = 2 * n + 16;; cap *= 2) {
        char *out = kvs_xmalloc(cap);
        int rc = fold_text(s, n, out, cap);
        if (rc >= 0) return out;
        free(out);
        if (rc != -ERANGE) return NULL;
    }
}

/* ---- Alias map --------------------------------------------------------------------------- */

struct jewel_alias {
    char *text; /* owned; as configured (trimmed) */
    char *key;  /* owned; jewel_key_normalize(text) */
};

struct jewel_alias_list {
    struct jewel_alias *v; /* owned array */
    size_t n;
};

struct jewel_map {
    struct jewel_alias_list f[JF_COUNT];
};

static void alias_list_free(struct jewel_alias_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].text);
        free(l->v[i].key);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

jewel_map *jewel_map_new_empty(void) { return kvs_xcalloc(1, sizeof(jewel_map)); }

jewel_map *jewel_map_new_defaults(void)
{
    jewel_map *m = jewel_map_new_empty();
    for (int f = 0; f < JF_COUNT; f++) {
        kvs_err err = {0};
        int rc = jewel_map_set_aliases(m, f, default_aliases[f], &err);
        REQUIRE(rc == 0); /* the built-in table is consistent; the unit test checks it */
    }
    return m;
}

void jewel_map_free(jewel_map *m)
{
    if (!m) return;
    for (int f = 0; f < JF_COUNT; f++) alias_list_free(&m->f[f]);
    free(m);
}

static bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Sets (add: appends to) a field's aliases from a comma-separated list. */
static int aliases_set(jewel_map *m, int field, const char *list, bool add, kvs_err *err)
{
    struct jewel_alias_list nl = {0};
    int rc = 0;

    if (!m || field < 0 || field >= JF_COUNT) {
        kvs_err_set(err, -EINVAL, "unknown jewellery field %d", field);
        return -EINVAL;
    }
    for (size_t i = 0; add && i < m->f[field].n; i++) { /* the current ones first */
        nl.v = kvs_xrealloc(nl.v, (nl.n + 1) * sizeof *nl.v);
        nl.v[nl.n].text = kvs_strdup(m->f[field].v[i].text);
        nl.v[nl.n].key = kvs_strdup(m->f[field].v[i].key);
        nl.n++;
    }
    const char *p = list ? list : "";
    /* Aliases are named by their position, never quoted: the list is configuration text
     * (issue 18: configuration errors never repeat a value). */
    size_t pos = 0;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && is_ascii_space(*a)) a++;
        while (b > a && is_ascii_space(b[-1])) b--;
        p = *end ? end + 1 : end;
        if (a == b) continue;
        pos++;

        char *text = kvs_xmalloc((size_t)(b - a) + 1);
        memcpy(text, a, (size_t)(b - a));
        text[b - a] = '\0';
        char *key = jewel_key_normalize(text);
        if (!key || !*key) {
            /* A valid alias of only format characters (BOM, ZWSP) normalises to nothing. */
            kvs_err_set(err, -EINVAL, "%s: alias %zu of the list %s", field_names[field], pos,
                        key ? "has no visible characters" : "is not valid UTF-8 text");
            free(text);
            free(key);
            rc = -EINVAL;
            goto cleanup;
        }
        bool dup = false;
        for (size_t i = 0; i < nl.n && !dup; i++) dup = strcmp(nl.v[i].key, key) == 0;
        for (int f = 0; f < JF_COUNT && !dup && rc == 0; f++) {
            if (f == field) continue;
            for (size_t i = 0; i < m->f[f].n; i++) {
                if (strcmp(m->f[f].v[i].key, key) != 0) continue;
                kvs_err_set(err, -EINVAL,
                            "alias %zu of the list for %s reads as the same name as alias %zu of "
                            "%s (case, spacing and diacritics do not count)",
                            pos, field_names[field], i + 1, field_names[f]);
                rc = -EINVAL;
                break;
            }
        }
        if (dup || rc) {
            free(text);
            free(key);
            if (rc) goto cleanup;
            continue;
        }
        nl.v = kvs_xrealloc(nl.v, (nl.n + 1) * sizeof *nl.v);
        nl.v[nl.n].text = text;
        nl.v[nl.n].key = key;
        nl.n++;
    }
    alias_list_free(&m->f[field]);
    m->f[field] = nl;
    nl.v = NULL;
    nl.n = 0;
cleanup:
    alias_list_free(&nl);
    return rc;
}

int jewel_map_set_aliases(jewel_map *m, int field, const char *list, kvs_err *err)
{
    return aliases_set(m, field, list, false, err);
}

int jewel_map_add_aliases(jewel_map *m, int field, const char *list, kvs_err *err)
{
    return aliases_set(m, field, list, true, err);
}

static int map_lookup_key(const jewel_map *m, const char *key)
{
    for (int f = 0; f < JF_COUNT; f++)
        for (size_t i = 0; i < m->f[f].n; i++)
            if (strcmp(m->f[f].v[i].key, key) == 0) return f;
    return -1;
}

int jewel_map_lookup(const jewel_map *m, const char *attribute_name)
{
    char key[FOLD_STACK];
    if (!m || !attribute_name) return -1;
    int rc = fold_text(attribute_name, strlen(attribute_name), key, sizeof key);
    if (rc >= 0) return map_lookup_key(m, key);
    if (rc != -ERANGE) return -1;
    char *heap = jewel_key_normalize(attribute_name); /* rare: very long names */
    int f = heap ? map_lookup_key(m, heap) : -1;
    free(heap);
    return f;
}

size_t jewel_map_alias_count(const jewel_map *m, int field)
{
    if (!m || field < 0 || field >= JF_COUNT) return 0;
    return m->f[field].n;
}

const char *jewel_map_alias(const jewel_map *m, int field, size_t i)
{
    if (!m || field < 0 || field >= JF_COUNT || i >= m->f[field].n) return NULL;
    return m->f[field].v[i].text;
}

/* ---- Tokens ------------------------------------------------------------------------------ */

enum tok_kind { T_NUM, T_WORD, T_PUNCT, T_BAD };

struct tok {
    enum tok_kind kind;
    const char *p; /* borrowed from the folded text */
    size_t n;
    bool frac;   /* T_NUM: written with a decimal separator */
    kvs_dec num; /* T_NUM: exact value */
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_sep(char c) { return c == '.' || c == ','; }

/* Non-ASCII punctuation and symbols (–, —, ×, ⌀, …) are single punctuation tokens. */
static int nonascii_punct_len(const char *s, size_t n)
{
    ucs4_t uc;
    int k = u8_mbtouc(&uc, (const uint8_t *)s, n);
    if (uc_is_general_category(uc, UC_CATEGORY_P) || uc_is_general_category(uc, UC_CATEGORY_S))
        return k;
    return 0;
}

/* Reads one number at s: digits, optionally one separator and digits. A second separator
 * ("1.234,5", "1.2.3") makes it T_BAD: we cannot tell thousands from decimals. */
static size_t lex_number(const char *s, struct tok *t)
{
    size_t j = 0;
    while (is_digit(s[j])) j++;
    size_t int_end = j, frac_start = j;
    if (is_sep(s[j]) && is_digit(s[j + 1])) {
        frac_start = ++j;
        while (is_digit(s[j])) j++;
    }
    t->p = s;
    t->n = j;
    t->frac = frac_start != int_end;
    t->kind = T_NUM;
    if (is_sep(s[j]) && is_digit(s[j + 1])) {
        while (is_digit(s[j]) || (is_sep(s[j]) && is_digit(s[j + 1]))) j++;
        t->n = j;
        t->kind = T_BAD;
        return j;
    }
    /* Leading zeros ("03 viên") are dropped: the decimal grammar is JSON's. */
    char buf[80];
    size_t z = 0;
    while (z + 1 < int_end && s[z] == '0') z++;
    size_t il = int_end - z, fl = t->frac ? j - frac_start : 0;
    if (il + fl + 2 > sizeof buf) {
        t->kind = T_BAD;
        return j;
    }
    memcpy(buf, s + z, il);
    size_t bl = il;
    if (fl) {
        buf[bl++] = '.';
        memcpy(buf + bl, s + frac_start, fl);
        bl += fl;
    }
    if (dec_parse_n(buf, bl, false, &t->num) != 0) t->kind = T_BAD;
    return j;
}

/* Splits folded text into tokens. Returns the count, or -1 when there are more than max. */
static int lex(const char *s, struct tok *toks, int max)
{
    int nt = 0;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ') {
            i++;
            continue;
        }
        if (nt == max) return -1;
        struct tok *t = &toks[nt++];
        memset(t, 0, sizeof *t);
        if (is_digit((char)c)) {
            i += lex_number(s + i, t);
            continue;
        }
        int pl = 0;
        if (c < 0x80 && !((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
            pl = 1;
        else if (c >= 0x80)
            pl = nonascii_punct_len(s + i, len - i);
        if (pl > 0) {
            t->kind = T_PUNCT;
            t->p = s + i;
            t->n = (size_t)pl;
            i += (size_t)pl;
            continue;
        }
        t->kind = T_WORD;
        t->p = s + i;
        size_t j = i;
        while (j < len) {
            unsigned char d = (unsigned char)s[j];
            if (d < 0x80) {
                if (!((d | 0x20) >= 'a' && (d | 0x20) <= 'z')) break;
                j++;
            } else {
                if (nonascii_punct_len(s + j, len - j) > 0) break;
                ucs4_t uc;
                j += (size_t)u8_mbtouc(&uc, (const uint8_t *)s + j, len - j);
            }
        }
        t->n = j - i;
        i = j;
    }
    return nt;
}

/* Called for every token against every word of a list: no strlen of the word (that was a tenth
 * of the daemon's CPU); strncmp stops at the word's end, so a shorter word differs. */
static bool tok_is(const struct tok *t, enum tok_kind kind, const char *text)
{
    return t->kind == kind && t->n > 0 && t->p[0] == text[0] && strncmp(t->p, text, t->n) == 0 &&
           text[t->n] == '\0';
}

static bool word_is(const struct tok *t, const char *w) { return tok_is(t, T_WORD, w); }
static bool punct_is(const struct tok *t, const char *p) { return tok_is(t, T_PUNCT, p); }

static bool word_in(const struct tok *t, const char *const *list)
{
    for (; *list; list++)
        if (word_is(t, *list)) return true;
    return false;
}

static bool punct_in(const struct tok *t, const char *const *list)
{
    for (; *list; list++)
        if (punct_is(t, *list)) return true;
    return false;
}

/* Placeholders that mean "no value": checked on the folded text. */
static bool is_placeholder(const char *f)
{
    static const char *const words[] = {"n/a", "na", "n.a", "n.a.", "none", "null", "nil",
                                        "khong", "khong co", "chua co", NULL};
    for (const char *const *w = words; *w; w++)
        if (strcmp(f, *w) == 0) return true;
    for (const char *p = f; *p;) {
        if (strchr("-._/ ", *p)) {
            p++;
        } else if (strncmp(p, "\xe2\x80\x93", 3) == 0 || strncmp(p, "\xe2\x80\x94", 3) == 0) {
            p += 3; /* – and — */
        } else {
            return false;
        }
    }
    return true;
}

/* Common start of the grammar-based parsers: folds, spots placeholders, tokenises.
 * Returns JV_OK to continue with *nt tokens. */
static enum jewel_status value_prepare(const char *value, char *fold, size_t foldsz, struct tok *toks,
                                       int *nt)
{
    if (!value) return JV_EMPTY;
    if (fold_text(value, strlen(value), fold, foldsz) < 0) return JV_INVALID;
    if (is_placeholder(fold)) return JV_EMPTY;
    *nt = lex(fold, toks, MAX_TOKS);
    if (*nt < 0) return JV_INVALID;
    for (int i = 0; i < *nt; i++)
        if (toks[i].kind == T_BAD) return JV_INVALID;
    return JV_OK;
}

/* Drops trailing '.' tokens ("6.3 mm.", "0.5 ct."). */
static int trim_trailing_dots(const struct tok *toks, int nt)
{
    while (nt > 0 && punct_is(&toks[nt - 1], ".")) nt--;
    return nt;
}

static const char *const range_seps[] = {"-", "~", "/", "*", "+", "\xc3\x97" /* × */,
                                         "\xe2\x80\x93" /* – */, NULL};
static const char *const range_words[] = {"x", "den", "to", "va", "and", NULL};

/* True when two numbers stand around a range/dimension separator: "6-6.5", "6.5x4.5",
 * "1 + 20", "3 đến 4". Used to tell JV_AMBIGUOUS from JV_INVALID. */
static bool has_number_pair(const struct tok *toks, int nt, bool allow_slash)
{
    for (int i = 0; i + 1 < nt; i++) {
        if (toks[i].kind != T_NUM) continue;
        int j = i + 1;
        if (j < nt && toks[j].kind == T_WORD && !word_in(&toks[j], range_words)) {
            j++; /* a unit: "5 ly 4" is the colloquial 5.4 ly, or two sizes */
            if (j < nt && toks[j].kind == T_NUM) return true;
        }
        if (j + 1 < nt && toks[j + 1].kind == T_NUM &&
            ((punct_in(&toks[j], range_seps) && (allow_slash || !punct_is(&toks[j], "/"))) ||
             word_in(&toks[j], range_words)))
            return true;
    }
    return false;
}

static int count_numbers(const struct tok *toks, int nt)
{
    int c = 0;
    for (int i = 0; i < nt; i++) c += toks[i].kind == T_NUM;
    return c;
}

/* ---- Decimal helpers --------------------------------------------------------------------- */

static void set_out(char *out, size_t outsz, const char *s)
{
    if (outsz) snprintf(out, outsz, "%s", s);
}

static enum jewel_status emit_dec(const kvs_dec *d, char *out, size_t outsz)
{
    char buf[DEC_BUFSZ];
    kvs_dec v = *d;
    dec_normalize(&v);
    int n = dec_format(&v, buf);
    if (n < 0 || (size_t)n + 1 > outsz) return JV_INVALID;
    memcpy(out, buf, (size_t)n + 1);
    return JV_OK;
}

/* d as an exact integer within [0, 10^15], or -1. */
static long long dec_to_small_int(const kvs_dec *d)
{
    kvs_dec v = *d;
    dec_normalize(&v);
    if (v.scale != 0 || v.coef < 0 || v.coef > (__int128)1000000000000000LL) return -1;
    return (long long)v.coef;
}

/* A constant from our own tables: failing to parse it is a bug. */
static void dec_const(const char *s, kvs_dec *out)
{
    int rc = dec_parse(s, false, out);
    REQUIRE(rc == 0);
}

/* Multiplies by a factor given as text ("3.75"); -ERANGE on overflow. */
static int dec_mul_text(const kvs_dec *a, const char *factor, kvs_dec *out)
{
    kvs_dec f;
    dec_const(factor, &f);
    return dec_mul(a, &f, out);
}

/* v += 0.5, for the Vietnamese "rưỡi" ("1 chỉ rưỡi" = 1.5 chỉ). */
static int add_half(kvs_dec *v)
{
    kvs_dec half;
    dec_const("0.5", &half);
    return dec_add(v, &half, v);
}

/* a/b as an exact decimal; -EDOM when it has no finite decimal expansion. */
static int dec_fraction(long long a, long long b, kvs_dec *out)
{
    if (b <= 0 || a < 0) return -EDOM;
    __int128 num = a;
    for (int k = 0; k <= 18; k++) {
        if (num % b == 0) {
            out->coef = num / b;
            out->scale = k;
            return 0;
        }
        num *= 10;
    }
    return -EDOM;
}

struct unit {
    const char *word;
    const char *factor; /* multiply by this to get the target unit */
};

static const struct unit *unit_find(const struct unit *units, const struct tok *t)
{
    if (t->kind != T_WORD) return NULL;
    for (; units->word; units++)
        if (word_is(t, units->word)) return units;
    return NULL;
}

/* ---- Size in mm -------------------------------------------------------------------------- */

static const struct unit size_units[] = {
    {"mm", "1"},       {"ly", "1"},          {"li", "1"},          {"milimet", "1"},
    {"millimet", "1"}, {"millimeter", "1"},  {"millimeters", "1"}, {"millimetre", "1"},
    {"millimetres", "1"}, {"cm", "10"},      {NULL, NULL},
};

enum jewel_status jewel_parse_size_mm(const char *value, char *out, size_t outsz)
{
    char fold[FOLD_STACK];
    struct tok toks[MAX_TOKS];
    int nt = 0;
    set_out(out, outsz, "");
    enum jewel_status st = value_prepare(value, fold, sizeof fold, toks, &nt);
    if (st != JV_OK) return st;
    nt = trim_trailing_dots(toks, nt);

    static const char *const prefix_words[] = {"\xc3\xb8" /* ø */, "phi", "d", "size", "duong", "kinh", NULL};
    static const char *const prefix_puncts[] = {"\xe2\x8c\x80" /* ⌀ */, ":", "=", NULL};
    int i = 0;
    while (i < nt && (word_in(&toks[i], prefix_words) || punct_in(&toks[i], prefix_puncts))) i++;

    if (count_numbers(toks + i, nt - i) > 1)
        return has_number_pair(toks + i, nt - i, true) ? JV_AMBIGUOUS : JV_INVALID;
    if (i >= nt || toks[i].kind != T_NUM) return JV_INVALID;
    const struct unit *u = NULL;
    kvs_dec v = toks[i].num;
    if (i + 1 < nt) {
        u = unit_find(size_units, &toks[i + 1]);
        bool half = u && i + 3 == nt && word_is(&toks[i + 2], "ruoi"); /* "5 ly rưỡi" */
        if (!u || (i + 2 != nt && !half)) return JV_INVALID;
        if (half && add_half(&v) != 0) return JV_INVALID;
    }
    if (u && dec_mul_text(&v, u->factor, &v) != 0) return JV_INVALID;
    if (dec_is_zero(&v)) return JV_EMPTY;
    return emit_dec(&v, out, outsz);
}

/* ---- Carat ------------------------------------------------------------------------------- */

static const char *const carat_words[] = {"ct", "cts", "ctw", "tcw", "carat", "carats", "cara", NULL};

enum jewel_status jewel_parse_carat(const char *value, char *out, size_t outsz)
{
    char fold[FOLD_STACK];
    struct tok toks[MAX_TOKS];
    int nt = 0;
    set_out(out, outsz, "");
    enum jewel_status st = value_prepare(value, fold, sizeof fold, toks, &nt);
    if (st != JV_OK) return st;
    nt = trim_trailing_dots(toks, nt);
    if (nt > 0 && word_in(&toks[nt - 1], carat_words)) nt--; /* the unit is optional */

    kvs_dec v;
    if (nt == 1 && toks[0].kind == T_NUM) {
        v = toks[0].num;
    } else if ((nt == 3 || nt == 4) && toks[nt - 3].kind == T_NUM && punct_is(&toks[nt - 2], "/") &&
               toks[nt - 1].kind == T_NUM && (nt == 3 || toks[0].kind == T_NUM)) {
        /* "1/2" or "1 1/2": integers only */
        long long a = dec_to_small_int(&toks[nt - 3].num), b = dec_to_small_int(&toks[nt - 1].num);
        long long whole = nt == 4 ? dec_to_small_int(&toks[0].num) : 0;
        if (a < 0 || b <= 0 || whole < 0 || a > 1000000000LL || b > 1000000000LL) return JV_INVALID;
        if (dec_fraction(a, b, &v) != 0) return JV_AMBIGUOUS;
        kvs_dec w;
        dec_from_int(whole, &w);
        if (dec_add(&v, &w, &v) != 0) return JV_INVALID;
    } else {
        return has_number_pair(toks, nt, false) ? JV_AMBIGUOUS : JV_INVALID;
    }
    if (dec_is_zero(&v)) return JV_EMPTY;
    return emit_dec(&v, out, outsz);
}

/* ---- Product weight in grams ------------------------------------------------------------- */

static const struct unit weight_units[] = {
    {"g", "1"},        {"gr", "1"},          {"gram", "1"},     {"grams", "1"},   {"gam", "1"},
    {"gramme", "1"},   {"grammes", "1"},     {"mg", "0.001"},   {"kg", "1000"},   {"kgs", "1000"},
    {"kilo", "1000"},  {"kilogram", "1000"}, {"luong", "37.5"}, {"cay", "37.5"},  {"chi", "3.75"},
    {"phan", "0.375"}, {"ly", "0.0375"},     {"li", "0.0375"},  {NULL, NULL},
};

enum jewel_status jewel_parse_weight_g(const char *value, char *out, size_t outsz)
{
    char fold[FOLD_STACK];
    struct tok toks[MAX_TOKS];
    int nt = 0;
    set_out(out, outsz, "");
    enum jewel_status st = value_prepare(value, fold, sizeof fold, toks, &nt);
    if (st != JV_OK) return st;
    nt = trim_trailing_dots(toks, nt);
    if (nt == 0) return JV_INVALID;

    kvs_dec total;
    dec_from_int(0, &total);
    for (int i = 0; i < nt;) {
        if (toks[i].kind != T_NUM) return has_number_pair(toks, nt, true) ? JV_AMBIGUOUS : JV_INVALID;
        if (i + 1 == nt) return JV_AMBIGUOUS; /* "5.2" or "1 chỉ 2": grams or chỉ/phân? */
        const struct unit *u = unit_find(weight_units, &toks[i + 1]);
        if (!u) return has_number_pair(toks, nt, true) ? JV_AMBIGUOUS : JV_INVALID;
        kvs_dec amount = toks[i].num, part;
        i += 2;
        if (i < nt && word_is(&toks[i], "ruoi")) { /* "1 chỉ rưỡi": and a half */
            if (add_half(&amount) != 0) return JV_INVALID;
            i++;
        }
        if (dec_mul_text(&amount, u->factor, &part) != 0 || dec_add(&total, &part, &total) != 0)
            return JV_INVALID;
    }
    if (dec_is_zero(&total)) return JV_EMPTY;
    return emit_dec(&total, out, outsz);
}

/* ---- Gold purity ------------------------------------------------------------------------- */

/* Fineness in tenths of per mille -> karat in tenths. */
static const struct {
    int fine10;
    int karat10;
} gold_fineness[] = {
    {3330, 80},  {3750, 90},  {4160, 100}, {4170, 100}, {5830, 140},  {5850, 140},
    {6100, 146}, {6800, 163}, {7000, 168}, {7500, 180}, {8330, 200},  {8750, 210},
    {9160, 220}, {9170, 220}, {9990, 240}, {9999, 240}, {10000, 240},
};
static const int silver_fineness[] = {800, 835, 900, 925, 950, 958, 999};
static const int plat_fineness[] = {850, 900, 950, 999};

/* Fineness (per mille, exact) in tenths, or -1 when not a whole number of tenths. */
static long long fine10_of(const kvs_dec *permille)
{
    kvs_dec t;
    if (dec_mul_text(permille, "10", &t) != 0) return -1;
    return dec_to_small_int(&t);
}

static int gold_karat10(long long fine10)
{
    for (size_t i = 0; i < ARRAY_SIZE(gold_fineness); i++)
        if (gold_fineness[i].fine10 == fine10) return gold_fineness[i].karat10;
    return -1;
}

/* Gold alloys run from 8K (333) to 24K; anything else is a misread ("0.5 ct", "vàng 1"). */
static bool karat_in_range(const kvs_dec *k)
{
    kvs_dec lo, hi;
    dec_from_int(8, &lo);
    dec_from_int(24, &hi);
    return dec_cmp(k, &lo) >= 0 && dec_cmp(k, &hi) <= 0;
}

static bool int_in(long long v, const int *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == v) return true;
    return false;
}

enum metal { M_UNKNOWN, M_SILVER, M_PLATINUM };

static const char *const karat_words[] = {"k", "kt", "kr", "kara", "karat", "karats", "ct", NULL};
/* Colour and material words that say nothing about the purity. */
static const char *const colour_words[] = {"trang", "white", "hong", "rose", "pink", "yellow", "do",
                                           "red", "y", "w", "r", "yg", "wg", "rg", "mau", "tay",
                                           "ta", NULL};
/* Plating: the karat is the coating's, not the item's. */
static const char *const plated_words[] = {"ma", "xi", "plated", "gp", "vermeil", NULL};
static const char *const gold_words[] = {"vang", "gold", "au", NULL};
static const char *const silver_words[] = {"bac", "silver", "sterling", "s", NULL};
static const char *const plat_words[] = {"platinum", "plat", "pt", NULL};
static const char *const purity_puncts[] = {"(", ")", "-", ",", "/", ".", ":", ";", "+", "&", NULL};

struct purity_acc {
    kvs_dec karats[MAX_TOKS]; /* karat candidates */
    int nk;
    kvs_dec fines[MAX_TOKS]; /* fineness candidates, per mille */
    int nf;
    kvs_dec bare[MAX_TOKS]; /* numbers without unit */
    int nb;
};

static enum jewel_status purity_emit_karat(const kvs_dec *k, char *out, size_t outsz)
{
    char buf[DEC_BUFSZ + 2];
    kvs_dec v = *k;
    dec_normalize(&v);
    int n = dec_format(&v, buf);
    buf[n] = 'K';
    buf[n + 1] = '\0';
    if ((size_t)n + 2 > outsz) return JV_INVALID;
    memcpy(out, buf, (size_t)n + 2);
    return JV_OK;
}

/* Silver or platinum: every number must be one fineness from the table. */
static enum jewel_status purity_other_metal(const struct purity_acc *a, enum metal metal, char *out,
                                            size_t outsz)
{
    long long fine = -1;
    if (a->nk) return JV_INVALID;
    for (int i = 0; i < a->nf + a->nb; i++) {
        const kvs_dec *d = i < a->nf ? &a->fines[i] : &a->bare[i - a->nf];
        long long v = dec_to_small_int(d);
        bool known = metal == M_SILVER ? int_in(v, silver_fineness, ARRAY_SIZE(silver_fineness))
                                       : int_in(v, plat_fineness, ARRAY_SIZE(plat_fineness));
        if (!known) return JV_INVALID;
        if (fine >= 0 && fine != v) return JV_AMBIGUOUS;
        fine = v;
    }
    char buf[32];
    if (metal == M_SILVER)
        snprintf(buf, sizeof buf, fine < 0 ? "Silver" : "Silver %lld", fine);
    else
        snprintf(buf, sizeof buf, fine < 0 ? "Platinum" : "PT%lld", fine);
    if (strlen(buf) + 1 > outsz) return JV_INVALID;
    set_out(out, outsz, buf);
    return JV_OK;
}

enum jewel_status jewel_parse_gold_purity(const char *value, char *out, size_t outsz)
{
    char fold[FOLD_STACK];
    struct tok toks[MAX_TOKS];
    struct purity_acc a;
    int nt = 0;
    /* coating: we are past a plating word ("bạc xi vàng 18K"); metal words and karats from
     * there on describe the coating, not the item. Bare numbers still count ("Bạc xi vàng
     * 925" is 925 silver). */
    bool gold = false, vang_ta = false, unclear = false, coating = false;
    enum metal metal = M_UNKNOWN;

    set_out(out, outsz, "");
    enum jewel_status st = value_prepare(value, fold, sizeof fold, toks, &nt);
    if (st != JV_OK) return st;
    a.nk = a.nf = a.nb = 0;

    for (int i = 0; i < nt; i++) {
        const struct tok *t = &toks[i], *next = i + 1 < nt ? &toks[i + 1] : NULL;
        enum metal named = M_UNKNOWN;
        bool is_gold = false;
        if (t->kind == T_PUNCT) {
            if (!punct_in(t, purity_puncts)) return JV_INVALID;
            continue;
        }
        if (t->kind == T_NUM) {
            if (next && word_in(next, karat_words)) {
                if (!coating) a.karats[a.nk++] = t->num;
                i++;
            } else if (next && punct_is(next, "%")) {
                if (!coating && dec_mul_text(&t->num, "10", &a.fines[a.nf++]) != 0) return JV_INVALID;
                i++;
            } else if (next && word_is(next, "tuoi")) { /* "7.5 tuổi": tenths of pure */
                if (!coating && dec_mul_text(&t->num, "100", &a.fines[a.nf++]) != 0) return JV_INVALID;
                i++;
            } else {
                a.bare[a.nb++] = t->num;
            }
            continue;
        }
        if (word_is(t, "vang")) {
            is_gold = true;
            if (next && word_is(next, "ta")) { /* "vàng ta": pure gold */
                if (!coating) vang_ta = true;
                i++;
            }
        } else if (word_is(t, "bach") && next && word_is(next, "kim")) {
            named = M_PLATINUM;
            i++;
        } else if (word_in(t, plat_words)) {
            named = M_PLATINUM;
        } else if (word_in(t, silver_words)) {
            named = M_SILVER;
        } else if (word_in(t, gold_words)) {
            is_gold = true;
        } else if (word_in(t, plated_words)) {
            coating = true;
        } else if (!word_in(t, colour_words)) {
            return JV_INVALID;
        }
        if (coating) continue;
        gold |= is_gold;
        if (named != M_UNKNOWN) {
            if (metal != M_UNKNOWN && metal != named) return JV_INVALID; /* "bạc bạch kim" */
            metal = named;
        }
    }
    /* "Mạ vàng 18K" on an unnamed base metal: the item is not 18K gold. */
    if (coating && !gold && metal == M_UNKNOWN) return JV_AMBIGUOUS;
    /* Silver/platinum named with gold outside a coating ("vàng bạc"?) is not a purity. */
    if (metal != M_UNKNOWN && gold) return JV_INVALID;
    if (metal != M_UNKNOWN) return purity_other_metal(&a, metal, out, outsz);
    /* A bare 925 is sterling silver: no gold alloy has that fineness. */
    if (!gold && a.nk == 0 && a.nf == 0 && a.nb == 1 && dec_to_small_int(&a.bare[0]) == 925)
        return purity_other_metal(&a, M_SILVER, out, outsz);

    kvs_dec karat[2 * MAX_TOKS + 1]; /* every reading of the value, as karats */
    int n = 0;
    for (int i = 0; i < a.nk; i++) {
        if (!karat_in_range(&a.karats[i])) return JV_INVALID;
        karat[n++] = a.karats[i];
    }
    for (int i = 0; i < a.nb; i++) {
        kvs_dec k24, k100;
        dec_from_int(24, &k24);
        dec_from_int(100, &k100);
        const kvs_dec *b = &a.bare[i];
        if (dec_cmp(b, &k24) <= 0) { /* "vàng 18": a karat */
            if (!karat_in_range(b)) return JV_INVALID;
            karat[n++] = *b;
        } else if (dec_cmp(b, &k100) > 0) { /* fineness per mille; 9999 means 999.9 */
            if (dec_to_small_int(b) == 9999)
                dec_const("999.9", &a.fines[a.nf++]);
            else
                a.fines[a.nf++] = *b;
        } else if (b->scale > 0 || !dec_is_integer(b)) { /* "99.99", "58.5": percent */
            if (dec_mul_text(b, "10", &a.fines[a.nf++]) != 0) return JV_INVALID;
        } else {
            unclear = true; /* "75": percent? */
        }
    }
    for (int i = 0; i < a.nf; i++) {
        int k10 = gold_karat10(fine10_of(&a.fines[i]));
        if (k10 < 0) return JV_INVALID;
        karat[n].coef = k10;
        karat[n].scale = 1;
        n++;
    }
    if (vang_ta) dec_from_int(24, &karat[n++]);
    if (n == 0) return (gold || unclear) ? JV_AMBIGUOUS : JV_INVALID;
    if (unclear) return JV_AMBIGUOUS;
    for (int i = 1; i < n; i++)
        if (dec_cmp(&karat[0], &karat[i]) != 0) return JV_AMBIGUOUS;
    return purity_emit_karat(&karat[0], out, outsz);
}

/* ---- Shape ------------------------------------------------------------------------------- */

static const struct {
    const char *key; /* folded words */
    const char *shape;
} shape_table[] = {
    {"round", "Round"},         {"tron", "Round"},          {"princess", "Princess"},
    {"vuong", "Princess"},      {"oval", "Oval"},           {"bau duc", "Oval"},
    {"cushion", "Cushion"},     {"goi", "Cushion"},         {"emerald", "Emerald"},
    {"chu nhat", "Emerald"},    {"pear", "Pear"},           {"giot nuoc", "Pear"},
    {"giot le", "Pear"},        {"teardrop", "Pear"},       {"tear drop", "Pear"},
    {"marquise", "Marquise"},   {"marquis", "Marquise"},    {"navette", "Marquise"},
    {"hat gao", "Marquise"},    {"thuyen", "Marquise"},     {"heart", "Heart"},
    {"trai tim", "Heart"},      {"tim", "Heart"},           {"asscher", "Asscher"},
    {"radiant", "Radiant"},     {"baguette", "Baguette"},   {"trillion", "Trillion"},
    {"trilliant", "Trillion"},  {"tam giac", "Trillion"},   {"triangle", "Trillion"},
};

static const char *const shape_fillers[] = {"hinh", "dang", "giac", "cat", "kieu", "da", "cut",
                                            "shape", "shaped", "brilliant", NULL};

static const char *shape_lookup(const struct tok *w, int n)
{
    char key[128];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (len + w[i].n + 2 > sizeof key) return NULL;
        if (i) key[len++] = ' ';
        memcpy(key + len, w[i].p, w[i].n);
        len += w[i].n;
    }
    key[len] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(shape_table); i++)
        if (strcmp(shape_table[i].key, key) == 0) return shape_table[i].shape;
    return NULL;
}

enum jewel_status jewel_parse_shape(const char *value, char *out, size_t outsz)
{
    char fold[FOLD_STACK];
    struct tok toks[MAX_TOKS], words[MAX_TOKS];
    int nt = 0, nw = 0;
    set_out(out, outsz, "");
    enum jewel_status st = value_prepare(value, fold, sizeof fold, toks, &nt);
    if (st != JV_OK) return st;
    nt = trim_trailing_dots(toks, nt);
    for (int i = 0; i < nt; i++) {
        if (toks[i].kind == T_WORD)
            words[nw++] = toks[i];
        else if (!punct_is(&toks[i], "-")) /* "Round-Brilliant"; anything else is not a shape */
            return JV_INVALID;
    }
    /* Peel filler words off both ends, trying the table at each step, so "tam giác" is found
     * before its "giác" could be dropped. */
    int l = 0, r = nw;
    while (l < r) {
        const char *shape = shape_lookup(words + l, r - l);
        if (shape) {
            if (strlen(shape) + 1 > outsz) return JV_INVALID;
            set_out(out, outsz, shape);
            return JV_OK;
        }
        if (word_in(&words[l], shape_fillers))
            l++;
        else if (word_in(&words[r - 1], shape_fillers))
            r--;
        else
            break;
    }
    return JV_INVALID;
}

/* ---- Stone count ------------------------------------------------------------------------- */

enum jewel_status jewel_parse_stone_count(const char *value, char *out, size_t outsz)
{
    static const char *const count_words[] = {"vien", "hat", "da", "pcs", "pc", "piece", "pieces",
                                              "stone", "stones", NULL};
    char fold[FOLD_STACK];
    struct tok toks[MAX_TOKS];
    int nt = 0;
    set_out(out, outsz, "");
    enum jewel_status st = value_prepare(value, fold, sizeof fold, toks, &nt);
    if (st != JV_OK) return st;
    nt = trim_trailing_dots(toks, nt);
    if (count_numbers(toks, nt) > 1) return has_number_pair(toks, nt, true) ? JV_AMBIGUOUS : JV_INVALID;
    if (nt == 0 || toks[0].kind != T_NUM || toks[0].frac) return JV_INVALID;
    for (int i = 1; i < nt; i++)
        if (!word_in(&toks[i], count_words)) return JV_INVALID;
    if (!dec_is_integer(&toks[0].num)) return JV_INVALID;
    /* The column is a PostgreSQL integer: a larger count would fail the whole page's upsert. */
    long long v = dec_to_small_int(&toks[0].num);
    if (v < 0 || v > INT32_MAX) return JV_INVALID;
    return emit_dec(&toks[0].num, out, outsz);
}

/* ---- Free text --------------------------------------------------------------------------- */

/* NFC, trimmed, optionally with internal white space collapsed to one ' '. */
static enum jewel_status parse_text(const char *value, bool collapse, char *out, size_t outsz)
{
    char fold[FOLD_STACK];
    uint8_t buf[FOLD_STACK];
    enum jewel_status st;
    set_out(out, outsz, "");
    if (!value) return JV_EMPTY;
    size_t n = strlen(value);
    int frc = fold_text(value, n, fold, sizeof fold);
    if (frc == -EINVAL) return JV_INVALID;
    if (frc >= 0 && is_placeholder(fold)) return JV_EMPTY;

    size_t len = sizeof buf;
    uint8_t *nfc = u8_normalize(UNINORM_NFC, (const uint8_t *)value, n, buf, &len);
    if (!nfc) return JV_INVALID;
    size_t w = 0;
    bool space = false;
    for (size_t i = 0; i < len;) {
        ucs4_t uc;
        int k = u8_mbtouc(&uc, nfc + i, len - i);
        size_t start = i;
        i += (size_t)k;
        if (uc_is_property_white_space(uc)) {
            if (w > 0) space = true;
            if (!collapse && w > 0) { /* keep inner spacing as is; trailing is cut below */
                memmove(nfc + w, nfc + start, (size_t)k);
                w += (size_t)k;
            }
            continue;
        }
        if (space && collapse) nfc[w++] = ' ';
        space = false;
        memmove(nfc + w, nfc + start, (size_t)k);
        w += (size_t)k;
    }
    if (!collapse) { /* drop trailing white space copied above */
        while (w > 0) {
            size_t s = w - 1;
            while (s > 0 && (nfc[s] & 0xC0) == 0x80) s--;
            ucs4_t uc;
            u8_mbtouc(&uc, nfc + s, w - s);
            if (!uc_is_property_white_space(uc)) break;
            w = s;
        }
    }
    if (w == 0) {
        st = JV_EMPTY;
    } else if (w + 1 > outsz) {
        st = JV_INVALID;
    } else {
        memcpy(out, nfc, w);
        out[w] = '\0';
        st = JV_OK;
    }
    if (nfc != buf) free(nfc);
    return st;
}

enum jewel_status jewel_parse_dimensions(const char *value, char *out, size_t outsz)
{
    return parse_text(value, true, out, outsz);
}

enum jewel_status jewel_parse_supplier(const char *value, char *out, size_t outsz)
{
    return parse_text(value, false, out, outsz);
}

enum jewel_status jewel_parse_serial(const char *value, char *out, size_t outsz)
{
    return parse_text(value, false, out, outsz);
}

jewel_parse_fn jewel_field_parser(int field)
{
    static const jewel_parse_fn parsers[JF_COUNT] = {
        [JF_CENTER_STONE_SIZE_MM] = jewel_parse_size_mm,
        [JF_SHAPE] = jewel_parse_shape,
        [JF_DIMENSIONS] = jewel_parse_dimensions,
        [JF_STONE_COUNT] = jewel_parse_stone_count,
        [JF_CARAT_WEIGHT_CT] = jewel_parse_carat,
        [JF_GOLD_PURITY] = jewel_parse_gold_purity,
        [JF_PRODUCT_WEIGHT_G] = jewel_parse_weight_g,
        [JF_SUPPLIER_ID] = jewel_parse_supplier,
        [JF_SERIAL_NUMBER] = jewel_parse_serial,
    };
    if (field < 0 || field >= JF_COUNT) return NULL;
    return parsers[field];
}

/* ---- Name scan --------------------------------------------------------------------------- */

/* Records a hit; a second, different hit poisons the field (we do not guess). */
static void scan_hit(char *slot, size_t slotsz, bool *poisoned, const char *text)
{
    if (*poisoned) return;
    if (!slot[0]) {
        if (strlen(text) + 1 <= slotsz) snprintf(slot, slotsz, "%s", text);
    } else if (strcmp(slot, text) != 0) {
        *poisoned = true;
        slot[0] = '\0';
    }
}

unsigned jewel_scan_name(const char *name, jewel_name_hits *out)
{
    char fold[SCAN_FOLD];
    struct tok toks[SCAN_TOKS];
    bool size_bad = false, purity_bad = false;
    static const char *const mm_words[] = {"ly", "li", "mm", NULL};
    static const char *const name_karat_words[] = {"k", "kt", "kara", "karat", NULL};

    memset(out, 0, sizeof *out);
    if (!name || fold_text(name, strlen(name), fold, sizeof fold) < 0) return 0;
    int nt = lex(fold, toks, SCAN_TOKS);
    if (nt < 0) nt = SCAN_TOKS; /* very long names: the first tokens are scanned */
    /* After a plating word ("Nhẫn bạc xi vàng 18K", "mạ vàng 18K") karats describe the
     * coating, as in jewel_parse_gold_purity: no purity is read from there on. */
    bool coating = false;

    for (int i = 0; i < nt; i++) {
        const struct tok *t = &toks[i], *next = i + 1 < nt ? &toks[i + 1] : NULL;
        char buf[DEC_BUFSZ + 16];
        /* The fineness after a metal word may follow colour/origin words: "vàng Ý 750". */
        int fi = i + 1;
        while (fi < nt && word_in(&toks[fi], colour_words)) fi++;
        const struct tok *fine = fi < nt ? &toks[fi] : NULL;
        if (word_in(t, plated_words)) coating = true;
        if (t->kind == T_NUM && next && word_in(next, mm_words) && !dec_is_zero(&t->num)) {
            if (emit_dec(&t->num, buf, sizeof buf) == JV_OK)
                scan_hit(out->size_mm, sizeof out->size_mm, &size_bad, buf);
        } else if (coating) {
            continue;
        } else if (t->kind == T_NUM && next && word_in(next, name_karat_words)) {
            /* "14K"; the parser checks the range */
            char text[DEC_BUFSZ + 4];
            size_t len = (size_t)(next->p + next->n - t->p);
            if (len < sizeof text) {
                memcpy(text, t->p, len);
                text[len] = '\0';
                if (jewel_parse_gold_purity(text, buf, sizeof buf) == JV_OK)
                    scan_hit(out->purity, sizeof out->purity, &purity_bad, buf);
            }
        } else if ((word_in(t, gold_words) || word_in(t, silver_words) || word_in(t, plat_words)) &&
                   fine && fine->kind == T_NUM &&
                   !(fi + 1 < nt && (word_in(&toks[fi + 1], mm_words) ||
                                     word_in(&toks[fi + 1], name_karat_words)))) {
            /* "vàng 610", "bạc 925", "PT950", "vàng Ý 750": a metal word then a bare fineness */
            char text[256];
            size_t len = (size_t)(fine->p + fine->n - t->p);
            if (len < sizeof text) {
                memcpy(text, t->p, len);
                text[len] = '\0';
                if (dec_to_small_int(&fine->num) > 100 &&
                    jewel_parse_gold_purity(text, buf, sizeof buf) == JV_OK)
                    scan_hit(out->purity, sizeof out->purity, &purity_bad, buf);
            }
        }
    }
    unsigned mask = 0;
    if (out->size_mm[0]) mask |= 1u << JF_CENTER_STONE_SIZE_MM;
    if (out->purity[0]) mask |= 1u << JF_GOLD_PURITY;
    return mask;
}

/* ---- Record-level extraction ------------------------------------------------------------- */

/* Copies src, cutting at a UTF-8 character boundary when it does not fit. */
static void copy_trunc(char *dst, size_t dstsz, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n + 1 > dstsz) {
        n = dstsz - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
    }
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

void jewel_extract(const jewel_map *m, const jewel_attr *attrs, size_t n, const char *name,
                   jewel_result *res)
{
    char buf[JEWEL_VALUE_MAX];
    for (int f = 0; f < JF_COUNT; f++) {
        jewel_value *v = &res->f[f];
        v->status = JV_ABSENT;
        v->rejected = JV_ABSENT;
        v->value[0] = v->source[0] = v->rejected_source[0] = v->raw[0] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        if (!attrs[i].name) continue;
        int f = jewel_map_lookup(m, attrs[i].name);
        if (f < 0) continue;
        jewel_value *v = &res->f[f];
        if (v->status == JV_OK) continue;
        enum jewel_status st = jewel_field_parser(f)(attrs[i].value, buf, sizeof buf);
        if (st == JV_OK) {
            v->status = JV_OK;
            copy_trunc(v->value, sizeof v->value, buf);
            copy_trunc(v->source, sizeof v->source, attrs[i].name);
            continue;
        }
        if (st != JV_EMPTY && v->rejected == JV_ABSENT) {
            v->rejected = st;
            copy_trunc(v->rejected_source, sizeof v->rejected_source, attrs[i].name);
            copy_trunc(v->raw, sizeof v->raw, attrs[i].value);
        }
        /* A failure says more than an empty value; the first of each kind is kept. */
        if (v->status == JV_ABSENT || (v->status == JV_EMPTY && st != JV_EMPTY)) {
            v->status = st;
            copy_trunc(v->source, sizeof v->source, attrs[i].name);
        }
    }
    if (res->f[JF_CENTER_STONE_SIZE_MM].status == JV_OK && res->f[JF_GOLD_PURITY].status == JV_OK)
        return;
    jewel_name_hits hits;
    unsigned found = jewel_scan_name(name, &hits);
    static const int scanned[] = {JF_CENTER_STONE_SIZE_MM, JF_GOLD_PURITY};
    for (size_t i = 0; i < ARRAY_SIZE(scanned); i++) {
        jewel_value *v = &res->f[scanned[i]];
        if (v->status == JV_OK || !(found & (1u << scanned[i]))) continue;
        v->status = JV_OK;
        copy_trunc(v->value, sizeof v->value,
                   scanned[i] == JF_GOLD_PURITY ? hits.purity : hits.size_mm);
        copy_trunc(v->source, sizeof v->source, "name");
    }
}
