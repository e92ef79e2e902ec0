/* cJSON with exact number texts.
 *
 * kvjson_parse makes two passes over the caller's buffer:
 * 1. A lexer that knows only strings and number tokens. Inside strings it rewrites "\u0000"
 *    (and unpaired surrogate escapes, which cJSON rejects outright) to "\ufffd" in place,
 *    same length, and rejects escapes cJSON would silently turn into NUL ("\u00zz"). Outside
 *    strings it copies every number token (a value starting with '-' or a digit, extended by
 *    the characters cJSON's parse_number consumes: 0-9 + - e E .) NUL-separated into one
 *    arena, in document order.
 * 2. cJSON_ParseWithLengthOpts on the same bytes, then a depth-first walk that hands the arena
 *    texts to the number items in the same (document) order.
 * In any document cJSON accepts, its number items and our tokens are the same sequence: a
 * number is followed by whitespace, ',', ']', '}' or the end, so cJSON's strtod stops exactly
 * where our token ends; true/false/null contain no digit or '-'. A count mismatch is still
 * checked and reported (-EINVAL) rather than trusted. */
#include "kvjson.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

/* Byte classes for the lexer, outside strings. */
enum { C_NUM_START = 1, C_NUM = 2, C_QUOTE = 4, C_NUL = 8 };

static const unsigned char lex_class[256] = {
    ['\0'] = C_NUL, ['"'] = C_QUOTE,
    ['-'] = C_NUM_START | C_NUM, ['0'] = C_NUM_START | C_NUM, ['1'] = C_NUM_START | C_NUM,
    ['2'] = C_NUM_START | C_NUM, ['3'] = C_NUM_START | C_NUM, ['4'] = C_NUM_START | C_NUM,
    ['5'] = C_NUM_START | C_NUM, ['6'] = C_NUM_START | C_NUM, ['7'] = C_NUM_START | C_NUM,
    ['8'] = C_NUM_START | C_NUM, ['9'] = C_NUM_START | C_NUM,
    ['+'] = C_NUM, ['e'] = C_NUM, ['E'] = C_NUM, ['.'] = C_NUM,
};

typedef struct lexer {
    char *buf;
    size_t len;
    char *arena;    /* owned until handed to the doc */
    size_t used, cap;
    size_t ntok;
    size_t err_off; /* where the problem is, when lex fails */
    const char *err_what;
} lexer;

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Value of the "\uXXXX" escape at buf[i] (buf[i] == '\\', buf[i+1] == 'u'), or -1. */
static long hex4_at(const lexer *lx, size_t i)
{
    if (lx->len - i < 6) return -1;
    long v = 0;
    for (size_t k = 2; k < 6; k++) {
        int h = hexval((unsigned char)lx->buf[i + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static void put_fffd(lexer *lx, size_t i) { memcpy(lx->buf + i + 2, "fffd", 4); }

/* Handles the escape at buf[i] (a backslash inside a string); returns the index after it,
 * or 0 with err_off set. An escape cut off by the end is left for cJSON to report. */
static size_t lex_escape(lexer *lx, size_t i)
{
    if (i + 1 >= lx->len) return lx->len;
    if (lx->buf[i + 1] != 'u') return i + 2;
    long cp = hex4_at(lx, i);
    if (cp < 0) {
        lx->err_off = i;
        lx->err_what = "bad \\u escape";
        return 0;
    }
    if (cp == 0) {
        put_fffd(lx, i);
    } else if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = i + 7 < lx->len && lx->buf[i + 6] == '\\' && lx->buf[i + 7] == 'u'
                      ? hex4_at(lx, i + 6) : -1;
        if (lo >= 0xDC00 && lo <= 0xDFFF) return i + 12;
        put_fffd(lx, i); /* high surrogate without its low half */
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        put_fffd(lx, i); /* low surrogate without a high half */
    }
    return i + 6;
}

static void arena_put(lexer *lx, const char *tok, size_t n)
{
    if (lx->used + n + 1 > lx->cap) {
        size_t cap = lx->cap ? lx->cap : 256;
        while (cap < lx->used + n + 1) cap *= 2;
        lx->arena = kvs_xrealloc(lx->arena, cap);
        lx->cap = cap;
    }
    memcpy(lx->arena + lx->used, tok, n);
    lx->arena[lx->used + n] = '\0';
    lx->used += n + 1;
    lx->ntok++;
}

static int lex(lexer *lx)
{
    const unsigned char *b = (const unsigned char *)lx->buf;
    size_t i = 0, n = lx->len;
    /* Number text is a small share of a page; start near it and grow by doubling. */
    lx->cap = n / 8 + 64;
    lx->arena = kvs_xmalloc(lx->cap);

    while (i < n) {
        unsigned char c = lex_class[b[i]];
        if (!(c & (C_NUM_START | C_QUOTE | C_NUL))) {
            i++;
        } else if (c & C_NUM_START) {
            size_t start = i;
            while (i < n && (lex_class[b[i]] & C_NUM)) i++;
            arena_put(lx, lx->buf + start, i - start);
        } else if (c & C_QUOTE) {
            /* memchr is vectorised: find the closing quote, then look for escapes and NULs
             * only inside that span (most strings have neither). */
            i++;
            for (;;) {
                const unsigned char *q = memchr(b + i, '"', n - i);
                if (!q) return 0; /* unterminated: cJSON reports it */
                size_t span = (size_t)(q - (b + i));
                const unsigned char *bs = memchr(b + i, '\\', span);
                size_t clean = bs ? (size_t)(bs - (b + i)) : span;
                const unsigned char *z = memchr(b + i, '\0', clean);
                if (z) {
                    i = (size_t)(z - b);
                    goto nul;
                }
                if (!bs) {
                    i = (size_t)(q - b) + 1;
                    break;
                }
                i = lex_escape(lx, (size_t)(bs - b));
                if (i == 0) return -EINVAL;
                if (i >= n) return 0;
            }
        } else {
            goto nul;
        }
    }
    return 0;
nul:
    /* JSON never contains a raw NUL; cJSON would cut a string there without a word. */
    lx->err_off = i;
    lx->err_what = "NUL byte";
    return -EINVAL;
}

/* cJSON_IsNumber is an out-of-line library call; the walks below visit every item. */
static inline bool is_number(const cJSON *it) { return (it->type & 0xFF) == cJSON_Number; }

/* Depth-first, document order. Recursion depth is bounded by CJSON_NESTING_LIMIT. */
static int assign_texts(cJSON *item, const char **next, const char *end)
{
    for (; item; item = item->next) {
        if (is_number(item)) {
            if (*next >= end) return -EINVAL;
            item->valuestring = (char *)*next; /* borrowed from the arena */
            *next += strlen(*next) + 1;
        } else if (item->child) {
            int rc = assign_texts(item->child, next, end);
            if (rc) return rc;
        }
    }
    return 0;
}

static void clear_texts(cJSON *item)
{
    for (; item; item = item->next) {
        if (is_number(item))
            item->valuestring = NULL;
        else if (item->child)
            clear_texts(item->child);
    }
}

static bool is_json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int kvjson_parse(char *buf, size_t len, kvjson_doc *doc, kvs_err *err)
{
    lexer lx = {.buf = buf, .len = len};
    cJSON *root = NULL;
    const char *end = NULL, *next = NULL;
    size_t off = 0;
    int rc = -EINVAL;

    memset(doc, 0, sizeof *doc);
    kvs_err_clear(err);
    if (!buf || len == 0) {
        kvs_err_set(err, -EINVAL, "invalid JSON at byte 0: empty document");
        goto cleanup;
    }
    if (lex(&lx) != 0) {
        kvs_err_set(err, -EINVAL, "invalid JSON at byte %zu: %s", lx.err_off, lx.err_what);
        goto cleanup;
    }

    root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    if (!root) {
        off = end ? (size_t)(end - buf) : 0;
        kvs_err_set(err, -EINVAL, "invalid JSON at byte %zu of %zu", off, len);
        goto cleanup;
    }
    /* Only whitespace may follow the value ("require null terminated" without needing a
     * NUL inside buf[0..len)). */
    off = (size_t)(end - buf);
    while (off < len && is_json_ws(buf[off])) off++;
    if (off < len) {
        kvs_err_set(err, -EINVAL, "invalid JSON at byte %zu: trailing data after the value", off);
        goto cleanup;
    }

    next = lx.arena;
    if (assign_texts(root, &next, lx.arena + lx.used) != 0 || next != lx.arena + lx.used) {
        clear_texts(root);
        kvs_err_set(err, -EINVAL, "invalid JSON: number tokens and number items disagree");
        goto cleanup;
    }

    doc->root = root;
    doc->arena = lx.arena;
    root = NULL;
    lx.arena = NULL;
    rc = 0;

cleanup:
    if (root) cJSON_Delete(root);
    free(lx.arena);
    return rc;
}

void kvjson_doc_free(kvjson_doc *doc)
{
    if (!doc) return;
    if (doc->root) {
        /* cJSON_Delete frees any non-NULL valuestring; ours point into the arena. */
        clear_texts(doc->root);
        cJSON_Delete(doc->root);
    }
    free(doc->arena);
    doc->root = NULL;
    doc->arena = NULL;
}

/* JSON null is treated like an absent key everywhere: KiotViet omits or nulls at will. */
const cJSON *kvjson_get(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj) || !key) return NULL;
    const cJSON *it = cJSON_GetObjectItem(obj, key);
    return cJSON_IsNull(it) ? NULL : it;
}

const cJSON *kvjson_get_any(const cJSON *obj, const char *const *keys)
{
    for (; keys && *keys; keys++) {
        const cJSON *it = kvjson_get(obj, *keys);
        if (it) return it;
    }
    return NULL;
}

/* Optional '-' then digits only; exact int64 or -EINVAL. */
static int parse_int64_text(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (neg) s++;
    if (!*s) return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (lim - d) / 10) return -EINVAL;
        v = v * 10 + d;
    }
    /* -2^63 has no positive counterpart: negate in unsigned, then convert. */
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int kvjson_int64(const cJSON *item, int64_t *out)
{
    if (!item || cJSON_IsNull(item)) return -ENOENT;
    if (cJSON_IsNumber(item)) {
        if (item->valuestring) return parse_int64_text(item->valuestring, out);
        /* An item built outside kvjson_parse: trust the double only where it is exact. */
        double d = item->valuedouble;
        if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
            return -EINVAL;
        *out = (int64_t)d;
        return 0;
    }
    if (cJSON_IsString(item) && item->valuestring) return parse_int64_text(item->valuestring, out);
    return -EINVAL;
}

int kvjson_get_int64(const cJSON *obj, const char *key, int64_t *out)
{
    return kvjson_int64(kvjson_get(obj, key), out);
}

int kvjson_get_str(const cJSON *obj, const char *key, const char **out)
{
    const cJSON *it = kvjson_get(obj, key);
    if (!it) return -ENOENT;
    if (!cJSON_IsString(it) || !it->valuestring) return -EINVAL;
    *out = it->valuestring;
    return 0;
}

int kvjson_get_bool(const cJSON *obj, const char *key, bool *out)
{
    const cJSON *it = kvjson_get(obj, key);
    if (!it) return -ENOENT;
    if (cJSON_IsBool(it)) {
        *out = cJSON_IsTrue(it);
        return 0;
    }
    if (cJSON_IsNumber(it) && (it->valuedouble == 0 || it->valuedouble == 1)) {
        *out = it->valuedouble == 1;
        return 0;
    }
    if (cJSON_IsString(it) && it->valuestring) {
        if (kvs_strcaseeq(it->valuestring, "true")) {
            *out = true;
            return 0;
        }
        if (kvs_strcaseeq(it->valuestring, "false")) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

int kvjson_num_text(const cJSON *item, const char **out)
{
    kvs_dec d;
    if (!item || cJSON_IsNull(item)) return -ENOENT;
    if (cJSON_IsNumber(item) && item->valuestring) {
        *out = item->valuestring;
        return 0;
    }
    if (cJSON_IsString(item) && item->valuestring && dec_parse(item->valuestring, false, &d) == 0) {
        *out = item->valuestring;
        return 0;
    }
    return -EINVAL;
}

int kvjson_get_num_text(const cJSON *obj, const char *key, const char **out)
{
    return kvjson_num_text(kvjson_get(obj, key), out);
}

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when the bytes at s start an
 * ill-formed one; *bad then says how many bytes form its maximal subpart (Unicode §3.9,
 * "U+FFFD substitution of maximal subparts"), the unit replaced by one U+FFFD. */
static size_t utf8_seq(const unsigned char *s, size_t *bad)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t need;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* beyond U+10FFFF */
    } else {
        *bad = 1; /* 80..C1, F5..FF never start a sequence */
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        unsigned char b = s[k]; /* the NUL terminator fails the test, so no overrun */
        if (b < lo || b > hi) {
            *bad = k;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

char *kvs_utf8_sanitize(const char *s)
{
    if (!s) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, bad = 0, seq;
    /* Fast path: most text is valid and needs no copy. */
    while (p[i] && (seq = utf8_seq(p + i, &bad)) != 0) i += seq;
    if (!p[i]) return NULL;

    /* Worst case every byte becomes the 3-byte U+FFFD. */
    char *out = kvs_xmalloc(strlen(s) * 3 + 1); /* caller frees */
    size_t o = i;
    memcpy(out, s, i);
    while (p[i]) {
        seq = utf8_seq(p + i, &bad);
        if (seq) {
            memcpy(out + o, p + i, seq);
            o += seq;
            i += seq;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += bad;
        }
    }
    out[o] = '\0';
    return out;
}
