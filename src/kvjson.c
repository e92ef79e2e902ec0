/* JSON documents with exact number texts, parsed in one pass into an arena.
 *
 * kvjson_parse is a small recursive-descent parser that builds ordinary cJSON items, so the
 * rest of the daemon walks them with the cJSON API, but:
 * - every item, key, string and number text lives in a few 64 KB arena blocks owned by the
 *   document (one free per block instead of two per item: parse + free of a 100-product page
 *   went from ~1.0 ms (cJSON plus a lexer pass) to a fraction of it, see test_kvjson);
 * - number items keep cJSON_Number with valuedouble/valueint as cJSON computes them, and
 *   valuestring points at the original token text ("0.35", "30118850", "1e308");
 * - it accepts what cJSON 1.7 accepts (a UTF-8 BOM, bytes <= 32 between tokens, raw control
 *   characters in strings, numbers up to 63 characters, nesting up to CJSON_NESTING_LIMIT), with
 *   these deliberate differences: "\u0000" and unpaired surrogate escapes become U+FFFD (and are
 *   rewritten to "\ufffd" in the caller's buffer), a "\u" escape that is not four hex digits, a
 *   raw NUL byte and anything but whitespace after the top-level value are errors.
 * The tree is read-only for callers: never cJSON_Delete (or detach) its items. */
#include "kvjson.h"

#include <errno.h>
#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

/* Blocks stay below glibc's mmap threshold (128 KB): reused from the heap page after page
 * instead of being mapped, faulted in and unmapped each time. */
#define ARENA_BLOCK (64u * 1024u)
#define NUM_MAX 63 /* cJSON copies at most 63 number characters */

typedef struct ablock {
    struct ablock *next; /* older block */
    size_t cap, used;    /* bytes of data[] */
    alignas(max_align_t) char data[];
} ablock;

typedef struct parser {
    char *buf;
    size_t len, pos;
    ablock *blocks;      /* newest first; handed to the doc (as its arena) on success */
    size_t err_off;
    const char *err_what;
    int depth;
} parser;

static void *arena_alloc(parser *p, size_t n, size_t align)
{
    ablock *b = p->blocks;
    if (b) {
        size_t at = (b->used + align - 1) & ~(align - 1);
        if (at + n <= b->cap) {
            b->used = at + n;
            return b->data + at;
        }
    }
    size_t cap = n > ARENA_BLOCK - sizeof(ablock) ? n : ARENA_BLOCK - sizeof(ablock);
    b = kvs_xmalloc(sizeof(ablock) + cap);
    b->next = p->blocks;
    b->cap = cap;
    b->used = n;
    p->blocks = b;
    return b->data;
}

static cJSON *new_item(parser *p, int type)
{
    cJSON *it = arena_alloc(p, sizeof *it, alignof(cJSON));
    memset(it, 0, sizeof *it);
    it->type = type;
    return it;
}

static bool fail(parser *p, size_t off, const char *what)
{
    if (!p->err_what) {
        p->err_off = off;
        p->err_what = what;
    }
    return false;
}

/* cJSON treats every byte <= 32 between tokens as whitespace; NUL is ours to reject. */
static bool skip_ws(parser *p)
{
    const unsigned char *b = (const unsigned char *)p->buf;
    while (p->pos < p->len && b[p->pos] <= 32) {
        if (b[p->pos] == 0) return fail(p, p->pos, "NUL byte");
        p->pos++;
    }
    return true;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Value of the "\uXXXX" escape at buf[i] (buf[i] == '\\', buf[i+1] == 'u'), or -1. */
static long hex4_at(const parser *p, size_t i)
{
    if (p->len - i < 6) return -1;
    long v = 0;
    for (size_t k = 2; k < 6; k++) {
        int h = hexval((unsigned char)p->buf[i + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static void put_fffd(parser *p, size_t i) { memcpy(p->buf + i + 2, "fffd", 4); }

/* First pass over a string whose opening quote is at pos - 1: finds the closing quote and
 * rewrites "\u0000" and unpaired surrogate escapes to "\ufffd" in place (same length). Returns
 * the index of the closing quote and whether any escape is present, or false on error. */
static bool string_scan(parser *p, size_t *end, bool *escaped)
{
    /* Most strings are short keys and values: a table-driven byte loop beats three memchr
     * calls per string. */
    static const unsigned char stop[256] = {[0] = 1, ['"'] = 1, ['\\'] = 1};
    const unsigned char *b = (const unsigned char *)p->buf;
    size_t i = p->pos, n = p->len;
    *escaped = false;
    for (;;) {
        while (i < n && !stop[b[i]]) i++;
        if (i >= n) return fail(p, n, "unterminated string");
        if (b[i] == '"') {
            *end = i;
            return true;
        }
        if (b[i] == 0) return fail(p, i, "NUL byte");
        *escaped = true;
        if (i + 1 >= n) return fail(p, n, "unterminated string");
        if (b[i + 1] != 'u') {
            i += 2;
            continue;
        }
        long cp = hex4_at(p, i);
        if (cp < 0) return fail(p, i, "bad \\u escape");
        if (cp == 0) {
            put_fffd(p, i);
        } else if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = i + 7 < n && b[i + 6] == '\\' && b[i + 7] == 'u' ? hex4_at(p, i + 6) : -1;
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                i += 12;
                continue;
            }
            put_fffd(p, i); /* high surrogate without its low half */
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            put_fffd(p, i); /* low surrogate without a high half */
        }
        i += 6;
    }
}

static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses the string at pos (a '"'); returns its decoded text in the arena, or NULL. Decoded
 * text is never longer than its escaped form. */
static char *parse_string(parser *p)
{
    size_t start = ++p->pos, end;
    bool escaped;
    if (!string_scan(p, &end, &escaped)) return NULL;
    char *out = arena_alloc(p, end - start + 1, 1);
    const char *s = p->buf + start;
    if (!escaped) {
        memcpy(out, s, end - start);
        out[end - start] = '\0';
        p->pos = end + 1;
        return out;
    }
    size_t o = 0, i = start;
    while (i < end) {
        const char *bs = memchr(p->buf + i, '\\', end - i);
        size_t run = bs ? (size_t)(bs - (p->buf + i)) : end - i;
        memcpy(out + o, p->buf + i, run);
        o += run;
        i += run;
        if (i >= end) break;
        char c = p->buf[i + 1];
        switch (c) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case '"':
        case '\\':
        case '/': out[o++] = c; break;
        case 'u': {
            /* After string_scan: no NUL, and a surrogate here is always a valid pair. */
            unsigned long cp = (unsigned long)hex4_at(p, i);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned long lo = (unsigned long)hex4_at(p, i + 6);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            o += put_utf8(out + o, cp);
            i += 6;
            continue;
        }
        default:
            fail(p, i, "bad escape");
            return NULL;
        }
        i += 2;
    }
    out[o] = '\0';
    p->pos = end + 1;
    return out;
}

/* A number as cJSON reads it (the characters 0-9 + - e E . handed to strtod), keeping the
 * token text. */
static bool parse_number(parser *p, cJSON *it)
{
    static const unsigned char numch[256] = {
        ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
        ['8'] = 1, ['9'] = 1, ['+'] = 1, ['-'] = 1, ['e'] = 1, ['E'] = 1, ['.'] = 1,
    };
    const unsigned char *b = (const unsigned char *)p->buf;
    size_t start = p->pos, i = start;
    while (i < p->len && numch[b[i]]) i++;
    size_t n = i - start;
    if (n > NUM_MAX) return fail(p, start + NUM_MAX, "number too long");
    char *text = arena_alloc(p, n + 1, 1);
    memcpy(text, b + start, n);
    text[n] = '\0';
    /* Up to 15 digits: the integer is exact in a double, and so is strtod's answer. */
    size_t d0 = text[0] == '-' ? 1 : 0, k = d0;
    uint64_t v = 0;
    while (k < n && k - d0 < 15 && text[k] >= '0' && text[k] <= '9') v = v * 10 + (uint64_t)(text[k++] - '0');
    double num;
    if (k == n && k > d0) {
        num = d0 ? -(double)v : (double)v; /* -0 stays negative zero, as strtod makes it */
    } else {
        char *endp;
        num = strtod(text, &endp);
        if (endp == text) return fail(p, start, "bad number");
        if ((size_t)(endp - text) != n) return fail(p, start + (size_t)(endp - text), "bad number");
    }
    it->valuedouble = num;
    if (num >= INT_MAX)
        it->valueint = INT_MAX;
    else if (num <= (double)INT_MIN)
        it->valueint = INT_MIN;
    else
        it->valueint = (int)num;
    it->valuestring = text;
    p->pos = i;
    return true;
}

static bool parse_value(parser *p, cJSON *it);

static bool literal(parser *p, const char *word, size_t n)
{
    if (p->len - p->pos < n || memcmp(p->buf + p->pos, word, n) != 0)
        return fail(p, p->pos, "unexpected character");
    p->pos += n;
    return true;
}

/* Arrays and objects: items chained like cJSON's (child->prev is the last item). */
static bool parse_container(parser *p, cJSON *it, bool object)
{
    char close = object ? '}' : ']';
    if (++p->depth > CJSON_NESTING_LIMIT) return fail(p, p->pos, "nested too deeply");
    p->pos++;
    if (!skip_ws(p)) return false;
    if (p->pos < p->len && p->buf[p->pos] == close) {
        p->pos++;
        p->depth--;
        return true;
    }
    cJSON *last = NULL;
    for (;;) {
        cJSON *child = new_item(p, 0);
        if (object) {
            if (!skip_ws(p)) return false;
            if (p->pos >= p->len || p->buf[p->pos] != '"') return fail(p, p->pos, "expected a key");
            if (!(child->string = parse_string(p))) return false;
            if (!skip_ws(p)) return false;
            if (p->pos >= p->len || p->buf[p->pos] != ':') return fail(p, p->pos, "expected ':'");
            p->pos++;
        }
        if (!skip_ws(p) || !parse_value(p, child) || !skip_ws(p)) return false;
        if (last) {
            last->next = child;
            child->prev = last;
        } else {
            it->child = child;
        }
        last = child;
        if (p->pos >= p->len) return fail(p, p->len, "unterminated container");
        char c = p->buf[p->pos++];
        if (c == ',') continue;
        if (c != close) return fail(p, p->pos - 1, "expected ',' or a closing bracket");
        break;
    }
    it->child->prev = last;
    p->depth--;
    return true;
}

static bool parse_value(parser *p, cJSON *it)
{
    if (p->pos >= p->len) return fail(p, p->len, "value expected");
    unsigned char c = (unsigned char)p->buf[p->pos];
    switch (c) {
    case '"':
        it->type = cJSON_String;
        return (it->valuestring = parse_string(p)) != NULL;
    case '{':
        it->type = cJSON_Object;
        return parse_container(p, it, true);
    case '[':
        it->type = cJSON_Array;
        return parse_container(p, it, false);
    case 'n':
        it->type = cJSON_NULL;
        return literal(p, "null", 4);
    case 't':
        it->type = cJSON_True;
        it->valueint = 1;
        return literal(p, "true", 4);
    case 'f':
        it->type = cJSON_False;
        return literal(p, "false", 5);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            it->type = cJSON_Number;
            return parse_number(p, it);
        }
        if (c == 0) return fail(p, p->pos, "NUL byte");
        return fail(p, p->pos, "unexpected character");
    }
}

static void blocks_free(ablock *b)
{
    while (b) {
        ablock *next = b->next;
        free(b);
        b = next;
    }
}

static bool is_json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int kvjson_parse(char *buf, size_t len, kvjson_doc *doc, kvs_err *err)
{
    parser p = {.buf = buf, .len = len};
    memset(doc, 0, sizeof *doc);
    kvs_err_clear(err);
    if (!buf || len == 0) {
        kvs_err_set(err, -EINVAL, "invalid JSON at byte 0: empty document");
        return -EINVAL;
    }
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) p.pos = 3; /* as cJSON skips it */
    cJSON *root = new_item(&p, 0);
    if (!skip_ws(&p) || !parse_value(&p, root)) goto fail;
    /* Only whitespace may follow the value. */
    while (p.pos < len && is_json_ws(buf[p.pos])) p.pos++;
    if (p.pos < len) {
        fail(&p, p.pos, buf[p.pos] ? "trailing data after the value" : "NUL byte");
        goto fail;
    }
    doc->root = root;
    doc->arena = (char *)p.blocks;
    return 0;
fail:
    kvs_err_set(err, -EINVAL, "invalid JSON at byte %zu of %zu: %s", p.err_off, len, p.err_what);
    blocks_free(p.blocks);
    return -EINVAL;
}

void kvjson_doc_free(kvjson_doc *doc)
{
    if (!doc) return;
    blocks_free((ablock *)(void *)doc->arena);
    doc->root = NULL;
    doc->arena = NULL;
}

/* cJSON_GetObjectItem's rule (first key equal ignoring ASCII case; tolower of the C locale)
 * without a library call and two tolower() calls per byte: mapping looks up ~40 keys in
 * objects of ~40 keys for every product. */
static bool key_eq(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x != y) {
            if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
            if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
            if (x != y) return false;
        }
        if (!x) return true;
    }
}

/* JSON null is treated like an absent key everywhere: KiotViet omits or nulls at will. */
const cJSON *kvjson_get(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj) || !key) return NULL;
    const cJSON *it = obj->child;
    while (it && !(it->string && key_eq(key, it->string))) it = it->next;
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

void kvs_utf8_clean(char *s)
{
    if (!s) return;
    unsigned char *p = (unsigned char *)s, *o = p;
    size_t bad = 0, seq;
    while (*p) {
        if (*p < 0x80) {
            *o++ = *p++;
            continue;
        }
        if ((seq = utf8_seq(p, &bad)) != 0) {
            memmove(o, p, seq);
            o += seq;
            p += seq;
        } else {
            *o++ = '?'; /* never longer than what it replaces: in place, within any buffer */
            p += bad;
        }
    }
    *o = '\0';
}

char *kvs_utf8_sanitize(const char *s)
{
    if (!s) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, bad = 0, seq;
    /* Fast path: most text is valid and needs no copy; ASCII runs need no decoding. */
    for (;;) {
        while (p[i] && p[i] < 0x80) i++;
        if (!p[i] || (seq = utf8_seq(p + i, &bad)) == 0) break;
        i += seq;
    }
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
