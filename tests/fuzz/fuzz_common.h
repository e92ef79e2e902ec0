/* Shared oracles for the libFuzzer targets (header-only: each target is one translation unit).
 *
 * A fuzz target that only calls the code finds crashes, leaks and undefined behaviour. These
 * checks also turn wrong-but-quiet results into crashes: text we hand to PostgreSQL must be
 * valid UTF-8 without NUL, and JSON we hand to jsonb_to_recordset must be strict RFC 8259 that
 * jsonb accepts (no "\u0000", no unpaired surrogate escapes, numbers numeric_in can read). */
#ifndef KVS_FUZZ_COMMON_H
#define KVS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stops the run with a message: libFuzzer reports abort() as a crash and saves the input. */
#define FUZZ_CHECK(cond, ...)                                                        \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s: ", __FILE__, __LINE__, \
                    #cond);                                                          \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            abort();                                                                 \
        }                                                                            \
    } while (0)

/* Well-formed UTF-8 (Unicode 3.9 table 3-7: no overlongs, no surrogates, <= U+10FFFF). */
static inline bool fz_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else
            return false;
        if (n - i < need + 1) return false;
        for (size_t k = 1; k <= need; k++) {
            if (s[i + k] < lo || s[i + k] > hi) return false;
            lo = 0x80;
            hi = 0xBF;
        }
        i += need + 1;
    }
    return true;
}

/* Text PostgreSQL's text type accepts: valid UTF-8 and no NUL. */
static inline bool fz_pg_text_ok(const char *s)
{
    return s && fz_utf8_valid((const unsigned char *)s, strlen(s));
}

/* ---- strict JSON (what PostgreSQL's jsonb input accepts) --------------------------------- */

typedef struct fz_json {
    const unsigned char *s;
    size_t n, i;
    int depth;
    const char *why;
} fz_json;

static inline void fz_ws(fz_json *j)
{
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' ||
                           j->s[j->i] == '\r'))
        j->i++;
}

static inline bool fz_fail(fz_json *j, const char *why)
{
    if (!j->why) j->why = why;
    return false;
}

static inline int fz_hex4(fz_json *j)
{
    if (j->n - j->i < 4) return -1;
    int v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = j->s[j->i + (size_t)k];
        int h = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    j->i += 4;
    return v;
}

static inline bool fz_string(fz_json *j)
{
    j->i++; /* opening quote */
    size_t start = j->i;
    while (j->i < j->n) {
        unsigned char c = j->s[j->i];
        if (c == '"') {
            if (!fz_utf8_valid(j->s + start, j->i - start)) return fz_fail(j, "invalid UTF-8");
            j->i++;
            return true;
        }
        if (c < 0x20) return fz_fail(j, "control character in string");
        if (c != '\\') {
            j->i++;
            continue;
        }
        j->i++;
        if (j->i >= j->n) return fz_fail(j, "cut escape");
        c = j->s[j->i++];
        if (strchr("\"\\/bfnrt", c) && c) continue;
        if (c != 'u') return fz_fail(j, "bad escape");
        int cp = fz_hex4(j);
        if (cp < 0) return fz_fail(j, "bad \\u escape");
        if (cp == 0) return fz_fail(j, "\\u0000 (jsonb rejects it)");
        if (cp >= 0xDC00 && cp <= 0xDFFF) return fz_fail(j, "lone low surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (j->n - j->i < 6 || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u')
                return fz_fail(j, "lone high surrogate");
            j->i += 2;
            int lo = fz_hex4(j);
            if (lo < 0xDC00 || lo > 0xDFFF) return fz_fail(j, "lone high surrogate");
        }
    }
    return fz_fail(j, "unterminated string");
}

/* A plain JSON number (strict grammar: no "01", "1.", "+1", ".5").
 *
 * Its range is not checked: PostgreSQL's numeric holds up to 131072 digits before the point and
 * 16383 after it (measured on 15: "1e131071" reads, "1e131072" overflows), and mapping.c passes
 * number texts it cannot hold exactly (beyond 38 digits) through unchanged, so a row may carry
 * one numeric rejects. That is by design: the page's statement fails, the daemon stores the
 * page row by row, and only that record fails, with the database's reason (see
 * tests/integration/test_security.py). */
static inline bool fz_number(fz_json *j)
{
    size_t i = j->i;
    const unsigned char *s = j->s;
    if (i < j->n && s[i] == '-') i++;
    if (i < j->n && s[i] == '0')
        i++;
    else if (i < j->n && s[i] >= '1' && s[i] <= '9')
        while (i < j->n && s[i] >= '0' && s[i] <= '9') i++;
    else
        return fz_fail(j, "bad number");
    if (i < j->n && s[i] == '.') {
        i++;
        if (!(i < j->n && s[i] >= '0' && s[i] <= '9')) return fz_fail(j, "bad fraction");
        while (i < j->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < j->n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < j->n && (s[i] == '+' || s[i] == '-')) i++;
        if (!(i < j->n && s[i] >= '0' && s[i] <= '9')) return fz_fail(j, "bad exponent");
        while (i < j->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    j->i = i;
    return true;
}

static inline bool fz_value(fz_json *j);

static inline bool fz_container(fz_json *j, unsigned char close)
{
    if (++j->depth > 1000) return fz_fail(j, "too deep");
    j->i++;
    fz_ws(j);
    if (j->i < j->n && j->s[j->i] == close) {
        j->i++;
        j->depth--;
        return true;
    }
    for (;;) {
        fz_ws(j);
        if (close == '}') {
            if (!(j->i < j->n && j->s[j->i] == '"')) return fz_fail(j, "key expected");
            if (!fz_string(j)) return false;
            fz_ws(j);
            if (!(j->i < j->n && j->s[j->i] == ':')) return fz_fail(j, "':' expected");
            j->i++;
        }
        if (!fz_value(j)) return false;
        fz_ws(j);
        if (j->i >= j->n) return fz_fail(j, "unterminated container");
        if (j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->s[j->i] == close) {
            j->i++;
            j->depth--;
            return true;
        }
        return fz_fail(j, "',' or close expected");
    }
}

static inline bool fz_value(fz_json *j)
{
    fz_ws(j);
    if (j->i >= j->n) return fz_fail(j, "value expected");
    unsigned char c = j->s[j->i];
    if (c == '{') return fz_container(j, '}');
    if (c == '[') return fz_container(j, ']');
    if (c == '"') return fz_string(j);
    if (c == '-' || (c >= '0' && c <= '9')) return fz_number(j);
    static const char *const lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (j->n - j->i >= l && !memcmp(j->s + j->i, lits[k], l)) {
            j->i += l;
            return true;
        }
    }
    return fz_fail(j, "bad literal");
}

/* 0 when s[0..n) is one strict JSON value; otherwise the reason (for the crash message). */
static inline const char *fz_json_check(const char *s, size_t n)
{
    fz_json j = {.s = (const unsigned char *)s, .n = n};
    if (!fz_value(&j)) return j.why ? j.why : "invalid";
    fz_ws(&j);
    if (j.i != n) return "trailing data";
    return NULL;
}

#endif
