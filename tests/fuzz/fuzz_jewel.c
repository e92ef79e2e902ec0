/* libFuzzer target: jewellery attribute text (untrusted: typed by shop staff, served by
 * KiotViet). The input is lines; the first line is the product name, the others are
 * attributes "NAME\tVALUE" (a line without a tab is a value of attribute "VALUE").
 *
 * Properties checked, beyond sanitizers:
 *   - jewel_key_normalize is idempotent, yields PostgreSQL text, and lookups through the
 *     normalised key agree with lookups through the original;
 *   - every value parser writes a NUL-terminated result inside outsz, "" unless JV_OK,
 *     valid UTF-8 when JV_OK, and with a smaller buffer either the same text or JV_INVALID
 *     (never a truncated value); canonical outputs of the number/keyword parsers parse back
 *     to themselves;
 *   - jewel_extract fills every field consistently (value only with JV_OK, sources and raw
 *     texts valid UTF-8 and NUL-terminated);
 *   - jewel_map_set_aliases either fails leaving the map unchanged or makes every item
 *     resolve to the field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "jewel.h"

#define MAX_ATTRS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static jewel_map *defaults;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    defaults = jewel_map_new_defaults();
    return 0;
}

static bool in_buf(const char *buf, size_t cap)
{
    return memchr(buf, '\0', cap) != NULL;
}

static void check_key(const char *s)
{
    char *k = jewel_key_normalize(s);
    if (!k) return;
    FUZZ_CHECK(fz_pg_text_ok(k), "key of '%s' is not valid text", s);
    char *k2 = jewel_key_normalize(k);
    FUZZ_CHECK(k2 && strcmp(k, k2) == 0, "key not idempotent: '%s' -> '%s' -> '%s'", s, k,
               k2 ? k2 : "(null)");
    FUZZ_CHECK(jewel_map_lookup(defaults, s) == jewel_map_lookup(defaults, k),
               "lookup('%s') != lookup(key '%s')", s, k);
    free(k2);
    free(k);
}

static void check_parsers(const char *v, size_t small)
{
    for (int f = 0; f < JF_COUNT; f++) {
        jewel_parse_fn fn = jewel_field_parser(f);
        FUZZ_CHECK(fn, "no parser for field %d", f);
        char out[JEWEL_VALUE_MAX], out2[JEWEL_VALUE_MAX], tiny[JEWEL_VALUE_MAX];
        memset(out, 'X', sizeof out);
        enum jewel_status st = fn(v, out, sizeof out);
        FUZZ_CHECK(st >= JV_OK && st <= JV_INVALID, "%s: status %d", jewel_field_name(f), st);
        FUZZ_CHECK(in_buf(out, sizeof out), "%s: result not terminated", jewel_field_name(f));
        if (st != JV_OK) {
            FUZZ_CHECK(out[0] == '\0', "%s: '%s' left text '%s' with status %s",
                       jewel_field_name(f), v, out, jewel_status_name(st));
            continue;
        }
        FUZZ_CHECK(fz_pg_text_ok(out), "%s: '%s' gave invalid text", jewel_field_name(f), v);
        FUZZ_CHECK(out[0] != '\0', "%s: JV_OK with empty text for '%s'", jewel_field_name(f), v);

        /* A smaller buffer: same text when it fits, else JV_INVALID and "". */
        memset(tiny, 'X', sizeof tiny);
        enum jewel_status st2 = fn(v, tiny, small);
        if (small > 0) FUZZ_CHECK(in_buf(tiny, small), "%s: small result not terminated", jewel_field_name(f));
        FUZZ_CHECK(tiny[small] == 'X' || small == sizeof tiny, "%s: wrote past outsz %zu",
                   jewel_field_name(f), small);
        if (strlen(out) < small)
            FUZZ_CHECK(st2 == JV_OK && strcmp(out, tiny) == 0, "%s: '%s' differs with outsz %zu",
                       jewel_field_name(f), v, small);
        else
            FUZZ_CHECK(st2 == JV_INVALID && (small == 0 || tiny[0] == '\0'),
                       "%s: '%s' truncated to outsz %zu (status %s)", jewel_field_name(f), v, small,
                       jewel_status_name(st2));

        /* Canonical output reads back as itself (weight: a bare number is ambiguous by
         * design, so it reads back with its unit). */
        if (f == JF_PRODUCT_WEIGHT_G) {
            char with_unit[JEWEL_VALUE_MAX + 4];
            snprintf(with_unit, sizeof with_unit, "%s g", out);
            st2 = fn(with_unit, out2, sizeof out2);
        } else {
            st2 = fn(out, out2, sizeof out2);
        }
        FUZZ_CHECK(st2 == JV_OK && strcmp(out, out2) == 0,
                   "%s: '%s' -> '%s' -> %s '%s' is not stable", jewel_field_name(f), v, out,
                   jewel_status_name(st2), out2);
    }
}

/* t is a copy of the start of src, cut (if at all) before a UTF-8 continuation byte: the raw
 * texts keep the shop's bytes (mapping.c sanitises them when it writes notes). */
static bool prefix_at_boundary(const char *t, const char *src)
{
    size_t n = strlen(t);
    if (!src) return n == 0;
    if (strncmp(t, src, n) != 0) return false;
    return ((unsigned char)src[n] & 0xC0) != 0x80;
}

static bool from_attrs(const jewel_attr *attrs, size_t na, const char *text, bool value)
{
    for (size_t i = 0; i < na; i++)
        if (prefix_at_boundary(text, value ? attrs[i].value : attrs[i].name)) return true;
    return false;
}

static void check_value(const jewel_value *jv, int f, const jewel_attr *attrs, size_t na)
{
    FUZZ_CHECK(in_buf(jv->value, sizeof jv->value) && in_buf(jv->source, sizeof jv->source) &&
                   in_buf(jv->rejected_source, sizeof jv->rejected_source) &&
                   in_buf(jv->raw, sizeof jv->raw),
               "field %d: unterminated text", f);
    FUZZ_CHECK((jv->status == JV_OK) == (jv->value[0] != '\0'), "field %s: status %s value '%s'",
               jewel_field_name(f), jewel_status_name(jv->status), jv->value);
    FUZZ_CHECK(jv->status != JV_ABSENT || jv->source[0] == '\0', "absent with a source");
    FUZZ_CHECK(fz_pg_text_ok(jv->value), "field %s: invalid UTF-8 in value '%s'",
               jewel_field_name(f), jv->value);
    if (jv->source[0] && strcmp(jv->source, "name") != 0)
        FUZZ_CHECK(from_attrs(attrs, na, jv->source, false), "field %s: source '%s' is no attribute",
                   jewel_field_name(f), jv->source);
    if (jv->rejected != JV_ABSENT) {
        FUZZ_CHECK(jv->rejected == JV_AMBIGUOUS || jv->rejected == JV_INVALID, "rejected status");
        FUZZ_CHECK(from_attrs(attrs, na, jv->rejected_source, false), "rejected source");
        FUZZ_CHECK(from_attrs(attrs, na, jv->raw, true), "field %s: raw '%s' is no value",
                   jewel_field_name(f), jv->raw);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    char *text = malloc(size + 1);
    FUZZ_CHECK(text, "oom");
    memcpy(text, data, size);
    text[size] = '\0';
    size_t small = size % 12; /* a small output buffer for the truncation check */

    char *lines[MAX_ATTRS + 1];
    int nl = 0;
    for (char *p = text; p && nl <= MAX_ATTRS;) {
        lines[nl++] = p;
        p = strchr(p, '\n');
        if (p) *p++ = '\0';
    }
    jewel_attr attrs[MAX_ATTRS];
    size_t na = 0;
    for (int i = 0; i < nl; i++) {
        check_key(lines[i]);
        char *tab = strchr(lines[i], '\t');
        const char *value = tab ? tab + 1 : lines[i];
        if (tab) *tab = '\0';
        check_parsers(value, small);
        if (i > 0) {
            attrs[na].name = tab ? lines[i] : "VALUE";
            attrs[na].value = value;
            na++;
        }
        jewel_name_hits hits;
        unsigned mask = jewel_scan_name(lines[i], &hits);
        FUZZ_CHECK(fz_pg_text_ok(hits.size_mm) && fz_pg_text_ok(hits.purity), "scan text");
        FUZZ_CHECK(!!(mask & (1u << JF_CENTER_STONE_SIZE_MM)) == (hits.size_mm[0] != '\0'),
                   "scan mask/size disagree");
        FUZZ_CHECK(!!(mask & (1u << JF_GOLD_PURITY)) == (hits.purity[0] != '\0'),
                   "scan mask/purity disagree");
    }

    jewel_result res;
    jewel_extract(defaults, attrs, na, nl ? lines[0] : NULL, &res);
    for (int f = 0; f < JF_COUNT; f++) check_value(&res.f[f], f, attrs, na);

    /* Alias lists from the config: the first line, for a field picked by the input. */
    jewel_map *m = jewel_map_new_defaults();
    int field = (int)(size % JF_COUNT);
    kvs_err err;
    kvs_err_clear(&err);
    if (jewel_map_set_aliases(m, field, lines[0], &err) == 0) {
        for (size_t i = 0; i < jewel_map_alias_count(m, field); i++) {
            const char *al = jewel_map_alias(m, field, i);
            FUZZ_CHECK(al && jewel_map_lookup(m, al) == field, "alias '%s' does not resolve",
                       al ? al : "(null)");
        }
    } else {
        FUZZ_CHECK(err.msg[0] != '\0', "set_aliases failed without a reason");
        FUZZ_CHECK(jewel_map_alias_count(m, field) == jewel_map_alias_count(defaults, field),
                   "failed set_aliases changed the map");
    }
    jewel_map_free(m);
    free(text);
    return 0;
}
