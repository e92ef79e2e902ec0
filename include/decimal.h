/* Exact decimal numbers for money, weights and sizes: value = coef / 10^scale.
 * Parsed from JSON number text (never through double), so 0.35 stays 0.35. */
#ifndef KVS_DECIMAL_H
#define KVS_DECIMAL_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define DEC_MAX_SCALE 30
#define DEC_BUFSZ 64 /* enough for any formatted kvs_dec */

typedef struct kvs_dec {
    __int128 coef; /* signed coefficient */
    int scale;     /* 0..DEC_MAX_SCALE digits after the point */
} kvs_dec;

/* Parses JSON-number-like text: optional '-', digits, optional '.digits', optional exponent
 * (e/E, sign, digits); also accepts a leading '+' and a decimal comma ("6,3") when
 * allow_comma. Surrounding spaces are not accepted. Returns 0, -EINVAL (not a number) or
 * -ERANGE (does not fit exactly in 38 digits / scale <= DEC_MAX_SCALE). */
int dec_parse(const char *s, bool allow_comma, kvs_dec *out) KVS_MUSTCHECK;
int dec_parse_n(const char *s, size_t n, bool allow_comma, kvs_dec *out) KVS_MUSTCHECK;
/* Exact arithmetic; -ERANGE on overflow (result left unspecified). */
int dec_add(const kvs_dec *a, const kvs_dec *b, kvs_dec *out) KVS_MUSTCHECK;
int dec_mul(const kvs_dec *a, const kvs_dec *b, kvs_dec *out) KVS_MUSTCHECK;
int dec_cmp(const kvs_dec *a, const kvs_dec *b);
bool dec_is_zero(const kvs_dec *a);
bool dec_is_integer(const kvs_dec *a);
void dec_from_int(long long v, kvs_dec *out);
/* Drops trailing fractional zeros (scale decreases). */
void dec_normalize(kvs_dec *a);
/* Plain notation, no exponent, no trailing fractional zeros, "-0" printed as "0".
 * Returns the length written (< DEC_BUFSZ). */
int dec_format(const kvs_dec *a, char out[DEC_BUFSZ]);
/* Shortest text that reads back as exactly d ("%.{1..17}g" search), for values that only
 * exist as doubles. Non-finite values give -EINVAL. */
int dec_format_double(double d, char out[DEC_BUFSZ]) KVS_MUSTCHECK;

#endif
