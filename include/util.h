/* Small shared helpers: error carrier, growable buffer, clocks. */
#ifndef KVS_UTIL_H
#define KVS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVS_MUSTCHECK __attribute__((warn_unused_result))
#define KVS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Always-on check for "cannot happen": aborts with the location. */
#define REQUIRE(cond)                                                                    \
    do {                                                                                 \
        if (!(cond)) kvs_require_fail(#cond, __FILE__, __LINE__, __func__);              \
    } while (0)
_Noreturn void kvs_require_fail(const char *what, const char *file, int line, const char *func);

/* An error code (negative errno style) with a human message; functions that can fail
 * take a `kvs_err *` (may be NULL) and fill it. */
typedef struct kvs_err {
    int code;       /* 0 = no error */
    char msg[512];  /* NUL-terminated, never contains secrets */
} kvs_err;

void kvs_err_set(kvs_err *e, int code, const char *fmt, ...) KVS_PRINTF(3, 4);
void kvs_err_clear(kvs_err *e);

/* Growable byte buffer, always NUL-terminated when len > 0 or after kvs_buf_cstr. */
typedef struct kvs_buf {
    char *data;  /* owned; freed by kvs_buf_free */
    size_t len;
    size_t cap;
} kvs_buf;

void kvs_buf_init(kvs_buf *b);
void kvs_buf_free(kvs_buf *b);
void kvs_buf_reset(kvs_buf *b);
int kvs_buf_reserve(kvs_buf *b, size_t extra) KVS_MUSTCHECK;
int kvs_buf_append(kvs_buf *b, const void *p, size_t n) KVS_MUSTCHECK;
int kvs_buf_puts(kvs_buf *b, const char *s) KVS_MUSTCHECK;
int kvs_buf_printf(kvs_buf *b, const char *fmt, ...) KVS_PRINTF(2, 3) KVS_MUSTCHECK;
/* Appends s as a JSON string literal (quotes, escapes); invalid UTF-8 is passed through. */
int kvs_buf_json_str(kvs_buf *b, const char *s) KVS_MUSTCHECK;
const char *kvs_buf_cstr(kvs_buf *b); /* "" for an empty buffer */
/* Hands the data to the caller (caller frees) and resets the buffer. */
char *kvs_buf_steal(kvs_buf *b);

/* Clocks. */
uint64_t kvs_now_mono_ms(void);  /* CLOCK_MONOTONIC, for timeouts and schedules */
int64_t kvs_now_wall_ms(void);   /* CLOCK_REALTIME, for timestamps shown to people */

/* A set of int64 ids (> 0: 0 marks a free slot): open addressing with linear probing,
 * power-of-two capacity at most half full, so adding n ids is linear in n. The set owns v;
 * kvs_idset_free releases it. Zero-initialise to start empty. Iterate over v[0..cap) skipping
 * zeros. */
typedef struct kvs_idset {
    int64_t *v; /* owned */
    size_t cap, n;
} kvs_idset;
/* Adds id (> 0); true if it was not in the set yet. */
bool kvs_idset_add(kvs_idset *s, int64_t id);
bool kvs_idset_has(const kvs_idset *s, int64_t id);
void kvs_idset_free(kvs_idset *s);

char *kvs_strdup(const char *s); /* NULL-safe strdup; aborts on OOM */
void *kvs_xmalloc(size_t n);     /* aborts on OOM: allocation failure is not recoverable here */
void *kvs_xcalloc(size_t n, size_t sz);
void *kvs_xrealloc(void *p, size_t n);
bool kvs_streq(const char *a, const char *b); /* NULL-safe */
bool kvs_strcaseeq(const char *a, const char *b); /* ASCII case-insensitive, NULL-safe */

#endif
