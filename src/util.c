/* Small shared helpers. Allocation failure aborts: a sync daemon that cannot get a few
 * kilobytes cannot do anything useful, and systemd restarts it. */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

_Noreturn void kvs_require_fail(const char *what, const char *file, int line, const char *func)
{
    fprintf(stderr, "<2>fatal: REQUIRE(%s) failed at %s:%d:%s\n", what, file, line, func);
    abort();
}

void kvs_err_set(kvs_err *e, int code, const char *fmt, ...)
{
    if (!e) return;
    va_list ap;
    e->code = code ? code : -EINVAL;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

void kvs_err_clear(kvs_err *e)
{
    if (!e) return;
    e->code = 0;
    e->msg[0] = '\0';
}

void kvs_buf_init(kvs_buf *b) { memset(b, 0, sizeof *b); }

void kvs_buf_free(kvs_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void kvs_buf_reset(kvs_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

int kvs_buf_reserve(kvs_buf *b, size_t extra)
{
    /* len + extra + 1 must not wrap: a wrapped sum would "fit" and the copy would overrun. */
    if (extra > SIZE_MAX - b->len - 1) return -ENOMEM;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) return -ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int kvs_buf_append(kvs_buf *b, const void *p, size_t n)
{
    int rc = kvs_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int kvs_buf_puts(kvs_buf *b, const char *s) { return kvs_buf_append(b, s, strlen(s)); }

int kvs_buf_printf(kvs_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    int rc = kvs_buf_reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int kvs_buf_json_str(kvs_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    int rc = kvs_buf_reserve(b, strlen(s) + 2);
    if (rc) return rc;
    b->data[b->len++] = '"';
    const unsigned char *p = (const unsigned char *)s;
    for (;;) {
        /* Copy the run of bytes that need no escape in one append. */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p != '"' && *p != '\\') p++;
        if (p > run && (rc = kvs_buf_append(b, run, (size_t)(p - run)))) return rc;
        if (!*p) break;
        char esc[7];
        const char *out;
        size_t n = 2;
        switch (*p) {
        case '"': out = "\\\""; break;
        case '\\': out = "\\\\"; break;
        case '\n': out = "\\n"; break;
        case '\r': out = "\\r"; break;
        case '\t': out = "\\t"; break;
        default:
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[*p >> 4]; esc[5] = hex[*p & 15]; esc[6] = 0;
            out = esc; n = 6;
        }
        if ((rc = kvs_buf_append(b, out, n))) return rc;
        p++;
    }
    return kvs_buf_append(b, "\"", 1);
}

const char *kvs_buf_cstr(kvs_buf *b) { return b->data ? b->data : ""; }

char *kvs_buf_steal(kvs_buf *b)
{
    char *p = b->data;
    if (!p) p = kvs_strdup("");
    memset(b, 0, sizeof *b);
    return p;
}

uint64_t kvs_now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t kvs_now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void *kvs_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) kvs_require_fail("out of memory", __FILE__, __LINE__, __func__);
    return p;
}

void *kvs_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) kvs_require_fail("out of memory", __FILE__, __LINE__, __func__);
    return p;
}

void *kvs_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) kvs_require_fail("out of memory", __FILE__, __LINE__, __func__);
    return q;
}

char *kvs_strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = kvs_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

bool kvs_streq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

bool kvs_strcaseeq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcasecmp(a, b) == 0;
}

static size_t idset_hash(int64_t id, size_t mask)
{
    uint64_t h = (uint64_t)id * UINT64_C(0x9E3779B97F4A7C15); /* Fibonacci hashing */
    return (size_t)(h ^ (h >> 29)) & mask;
}

static void idset_put(int64_t *slot, size_t mask, int64_t id)
{
    size_t i = idset_hash(id, mask);
    while (slot[i]) i = (i + 1) & mask;
    slot[i] = id;
}

bool kvs_idset_has(const kvs_idset *s, int64_t id)
{
    if (!s->cap) return false;
    size_t mask = s->cap - 1;
    for (size_t i = idset_hash(id, mask); s->v[i]; i = (i + 1) & mask)
        if (s->v[i] == id) return true;
    return false;
}

bool kvs_idset_add(kvs_idset *s, int64_t id)
{
    REQUIRE(id > 0);
    if (kvs_idset_has(s, id)) return false;
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        int64_t *v = kvs_xcalloc(cap, sizeof *v);
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i]) idset_put(v, cap - 1, s->v[i]);
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    idset_put(s->v, s->cap - 1, id);
    s->n++;
    return true;
}

void kvs_idset_free(kvs_idset *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}
