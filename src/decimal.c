/* Exact decimals: value = coef / 10^scale with |coef| < 10^38 and 0 <= scale <= DEC_MAX_SCALE.
 *
 * Everything is integer arithmetic on __int128; doubles appear only in dec_format_double,
 * which exists for values that never had a decimal text. The 38-digit bound (not the full
 * __int128 range) keeps every coefficient printable in DEC_BUFSZ and makes "fits" mean the
 * same thing for parse, add and mul. */
#include "decimal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC_MAX_DIGITS 38
#define P19 ((__int128)10000000000000000000ULL)

/* 10^k for k = 0..38; 10^38 - 1 is the largest allowed coefficient magnitude. */
static const __int128 pow10_tab[DEC_MAX_DIGITS + 1] = {
    1,
    10,
    100,
    1000,
    10000,
    100000,
    1000000,
    10000000,
    100000000,
    1000000000,
    10000000000ULL,
    100000000000ULL,
    1000000000000ULL,
    10000000000000ULL,
    100000000000000ULL,
    1000000000000000ULL,
    10000000000000000ULL,
    100000000000000000ULL,
    1000000000000000000ULL,
    P19,
    P19 * 10,
    P19 * 100,
    P19 * 1000,
    P19 * 10000,
    P19 * 100000,
    P19 * 1000000,
    P19 * 10000000,
    P19 * 100000000,
    P19 * 1000000000,
    P19 * 10000000000ULL,
    P19 * 100000000000ULL,
    P19 * 1000000000000ULL,
    P19 * 10000000000000ULL,
    P19 * 100000000000000ULL,
    P19 * 1000000000000000ULL,
    P19 * 10000000000000000ULL,
    P19 * 100000000000000000ULL,
    P19 * 1000000000000000000ULL,
    P19 * 10000000000000000000ULL,
};
#define DEC_MAX_COEF (pow10_tab[DEC_MAX_DIGITS] - 1)

/* Exponents beyond this cannot produce a representable value except zero; saturating here
 * keeps the bookkeeping in int64 without overflow for any input length. */
#define EXP_SATURATE 100000

static bool coef_fits(__int128 c) { return c <= DEC_MAX_COEF && c >= -DEC_MAX_COEF; }

static bool scale_ok(const kvs_dec *a) { return a->scale >= 0 && a->scale <= DEC_MAX_SCALE; }

/* Brings a freshly computed value into range by dropping trailing fractional zeros, which
 * is exact; anything that still does not fit is -ERANGE. */
static int dec_fit(kvs_dec *a)
{
    while ((a->scale > DEC_MAX_SCALE || !coef_fits(a->coef)) && a->scale > 0 && a->coef % 10 == 0) {
        a->coef /= 10;
        a->scale--;
    }
    if (a->scale > DEC_MAX_SCALE || !coef_fits(a->coef)) return -ERANGE;
    return 0;
}

int dec_parse(const char *s, bool allow_comma, kvs_dec *out)
{
    if (!s) return -EINVAL;
    return dec_parse_n(s, strlen(s), allow_comma, out);
}

int dec_parse_n(const char *s, size_t n, bool allow_comma, kvs_dec *out)
{
    size_t i = 0;
    bool neg = false, too_many = false;
    __int128 coef = 0;     /* significant digits without trailing zeros */
    int64_t ndig = 0;      /* digits in coef */
    int64_t pending = 0;   /* zeros seen after the last non-zero digit, not yet in coef */
    int64_t nint = 0, nfrac = 0, exp = 0;

    if (!s || !out) return -EINVAL;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';

    /* Integer and fraction digits share one accumulator; only the count of fraction digits
     * matters for the scale. Trailing zeros are counted, not multiplied in, so that
     * "1000…0e-40" style inputs do not overflow before the exponent is known. */
    for (int part = 0; part < 2; part++) {
        int64_t *count = part == 0 ? &nint : &nfrac;
        if (part == 1) {
            if (i >= n || !(s[i] == '.' || (allow_comma && s[i] == ','))) break;
            i++;
        }
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            int d = s[i] - '0';
            (*count)++;
            if (d == 0) {
                if (ndig > 0) pending++;
                continue;
            }
            if (too_many || ndig + pending + 1 > DEC_MAX_DIGITS) {
                too_many = true; /* keep scanning: bad syntax must still say -EINVAL */
                continue;
            }
            coef = coef * pow10_tab[pending] * 10 + d;
            ndig += pending + 1;
            pending = 0;
        }
        if (*count == 0) return -EINVAL; /* "", "-", ".5", "1." */
    }

    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;
        int64_t edig = 0;
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) eneg = s[i++] == '-';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, edig++)
            if (exp < EXP_SATURATE) exp = exp * 10 + (s[i] - '0');
        if (edig == 0) return -EINVAL;
        if (exp > EXP_SATURATE) exp = EXP_SATURATE;
        if (eneg) exp = -exp;
    }
    if (i != n) return -EINVAL;
    if (too_many) return -ERANGE;

    /* Scale as written ("1.50" keeps 2), lowered as far as needed to fit (exact either way). */
    int64_t written = nfrac - exp > 0 ? nfrac - exp : 0;
    if (coef == 0) {
        out->coef = 0;
        out->scale = written < DEC_MAX_SCALE ? (int)written : DEC_MAX_SCALE;
        return 0;
    }
    int64_t e = pending + exp - nfrac; /* value = coef * 10^e */
    int64_t smin = e < 0 ? -e : 0;
    int64_t sc = written < DEC_MAX_SCALE ? written : DEC_MAX_SCALE;
    if (sc < smin) sc = smin;
    if (ndig + e + sc > DEC_MAX_DIGITS) sc -= ndig + e + sc - DEC_MAX_DIGITS;
    if (sc < smin || sc > DEC_MAX_SCALE) return -ERANGE;
    out->coef = coef * pow10_tab[e + sc];
    if (neg) out->coef = -out->coef;
    out->scale = (int)sc;
    return 0;
}

void dec_normalize(kvs_dec *a)
{
    if (a->coef == 0) {
        a->scale = 0;
        return;
    }
    while (a->scale > 0 && a->coef % 10 == 0) {
        a->coef /= 10;
        a->scale--;
    }
}

/* Coefficient of x at the larger scale s, or -ERANGE when it would leave 38 digits. */
static int dec_rescale(const kvs_dec *x, int s, __int128 *out)
{
    if (__builtin_mul_overflow(x->coef, pow10_tab[s - x->scale], out)) return -ERANGE;
    return coef_fits(*out) ? 0 : -ERANGE;
}

static int dec_add_raw(const kvs_dec *a, const kvs_dec *b, kvs_dec *out)
{
    int s = a->scale > b->scale ? a->scale : b->scale;
    __int128 ca, cb;
    if (dec_rescale(a, s, &ca) || dec_rescale(b, s, &cb)) return -ERANGE;
    if (__builtin_add_overflow(ca, cb, &out->coef)) return -ERANGE;
    out->scale = s;
    return dec_fit(out);
}

int dec_add(const kvs_dec *a, const kvs_dec *b, kvs_dec *out)
{
    if (!scale_ok(a) || !scale_ok(b)) return -EINVAL;
    kvs_dec x = *a, y = *b;
    if (dec_add_raw(&x, &y, out) == 0) return 0;
    /* Written scales can cost digits ("1.000…0"); retry with the minimal exact ones. */
    dec_normalize(&x);
    dec_normalize(&y);
    return dec_add_raw(&x, &y, out);
}

static int dec_mul_raw(const kvs_dec *a, const kvs_dec *b, kvs_dec *out)
{
    if (__builtin_mul_overflow(a->coef, b->coef, &out->coef)) return -ERANGE;
    out->scale = a->scale + b->scale;
    return dec_fit(out);
}

int dec_mul(const kvs_dec *a, const kvs_dec *b, kvs_dec *out)
{
    if (!scale_ok(a) || !scale_ok(b)) return -EINVAL;
    kvs_dec x = *a, y = *b;
    if (dec_mul_raw(&x, &y, out) == 0) return 0;
    dec_normalize(&x);
    dec_normalize(&y);
    /* Still -ERANGE when the 76-digit intermediate product overflows __int128 even though
     * the final value would fit after cancelling 2s and 5s: rare, and documented. */
    return dec_mul_raw(&x, &y, out);
}

static int sign128(__int128 v) { return (v > 0) - (v < 0); }

int dec_cmp(const kvs_dec *a, const kvs_dec *b)
{
    REQUIRE(scale_ok(a) && scale_ok(b));
    int sa = sign128(a->coef), sb = sign128(b->coef);
    if (sa != sb) return sa < sb ? -1 : 1;
    if (sa == 0) return 0;
    /* Compare integer parts, then fractions at the common scale: scaling whole coefficients
     * could overflow, fractions (< 10^30) cannot. Same sign, so truncation agrees. */
    __int128 ia = a->coef / pow10_tab[a->scale], ib = b->coef / pow10_tab[b->scale];
    if (ia != ib) return ia < ib ? -1 : 1;
    int s = a->scale > b->scale ? a->scale : b->scale;
    __int128 fa = (a->coef % pow10_tab[a->scale]) * pow10_tab[s - a->scale];
    __int128 fb = (b->coef % pow10_tab[b->scale]) * pow10_tab[s - b->scale];
    return (fa > fb) - (fa < fb);
}

bool dec_is_zero(const kvs_dec *a) { return a->coef == 0; }

bool dec_is_integer(const kvs_dec *a)
{
    REQUIRE(scale_ok(a));
    return a->coef % pow10_tab[a->scale] == 0;
}

void dec_from_int(long long v, kvs_dec *out)
{
    out->coef = v;
    out->scale = 0;
}

int dec_format(const kvs_dec *a, char out[DEC_BUFSZ])
{
    REQUIRE(scale_ok(a));
    /* Magnitude as unsigned so that even a hand-built INT128_MIN cannot overflow. */
    unsigned __int128 u = a->coef < 0 ? -(unsigned __int128)a->coef : (unsigned __int128)a->coef;
    int scale = a->scale;
    while (scale > 0 && u % 10 == 0) {
        u /= 10;
        scale--;
    }
    char digits[48];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    /* digits[] is reversed: digits[nd-1] is the most significant. */
    int len = 0;
    if (a->coef < 0) out[len++] = '-'; /* coef < 0 implies a non-zero magnitude: no "-0" */
    if (nd <= scale) {
        out[len++] = '0';
        out[len++] = '.';
        for (int z = 0; z < scale - nd; z++) out[len++] = '0';
        while (nd) out[len++] = digits[--nd];
    } else {
        while (nd > scale) out[len++] = digits[--nd];
        if (scale) out[len++] = '.';
        while (nd) out[len++] = digits[--nd];
    }
    out[len] = '\0';
    return len;
}

/* Shortest "%.*e" rendering of d that strtod reads back exactly (the header's %.{1..17}g
 * search), laid out with JavaScript's Number#toString rules (ECMA-262 Number::toString):
 * plain notation when 1e-6 <= |d| < 1e21, i.e. decimal exponent -6..20 ("0.000001",
 * "100000000000000000000"), otherwise d[.ddd]e±x ("5e-7", "1e+21", "1e+308"). -0 is "0". */
int dec_format_double(double d, char out[DEC_BUFSZ])
{
    char tmp[40];
    if (!isfinite(d)) return -EINVAL;
    if (d == 0) {
        strcpy(out, "0");
        return 1;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* Pull the digits and the exponent out of "-d.ddde+xx"; skipping non-digits also copes
     * with a locale whose decimal point is not '.'. */
    char dig[24];
    int k = 0, e10 = 0;
    const char *p = tmp;
    for (; *p && *p != 'e' && *p != 'E'; p++)
        if (*p >= '0' && *p <= '9' && k < (int)sizeof dig) dig[k++] = *p;
    if (*p) e10 = atoi(p + 1);
    while (k > 1 && dig[k - 1] == '0') k--;

    int n = e10 + 1; /* value = 0.d1d2…dk × 10^n */
    int len = 0;
    if (d < 0) out[len++] = '-';
    if (k <= n && n <= 21) {
        memcpy(out + len, dig, (size_t)k);
        len += k;
        for (int z = 0; z < n - k; z++) out[len++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(out + len, dig, (size_t)n);
        len += n;
        out[len++] = '.';
        memcpy(out + len, dig + n, (size_t)(k - n));
        len += k - n;
    } else if (-6 < n && n <= 0) {
        out[len++] = '0';
        out[len++] = '.';
        for (int z = 0; z < -n; z++) out[len++] = '0';
        memcpy(out + len, dig, (size_t)k);
        len += k;
    } else {
        out[len++] = dig[0];
        if (k > 1) {
            out[len++] = '.';
            memcpy(out + len, dig + 1, (size_t)(k - 1));
            len += k - 1;
        }
        len += snprintf(out + len, (size_t)(DEC_BUFSZ - len), "e%c%d", n - 1 >= 0 ? '+' : '-',
                        n - 1 >= 0 ? n - 1 : 1 - n);
    }
    out[len] = '\0';
    return len;
}
