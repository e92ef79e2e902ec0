/* libFuzzer target: KiotViet dates (kvtime) and exact decimals (decimal).
 *
 * The input is split at the first '|' into two texts A and B (as they would arrive in JSON
 * strings or number tokens). Properties checked, beyond sanitizers:
 *   kvtime  parse(A) ok => every formatter's output parses back to the same instant (the
 *           offset-less VN form to the instant floored to seconds), and is plain text
 *           PostgreSQL's timestamptz reads (4-digit year 0001..9999).
 *   decimal parse(A) ok => format parses back equal (dec_cmp), normalize keeps the value,
 *           the non-terminated dec_parse_n over the raw bytes agrees with dec_parse,
 *           a+b == b+a, a*b == b*a, sign(a + (-b)) == dec_cmp(a, b) when it fits,
 *           dec_format_double(strtod(A)) reads back as the same double. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "fuzz_common.h"
#include "kvtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_time(const char *a)
{
    int64_t us, back;
    char out[KVTIME_BUFSZ];
    if (kvtime_parse(a, &us) != 0) return;

    int n = kvtime_format_vn(us, out);
    FUZZ_CHECK(n > 0 && n < KVTIME_BUFSZ, "format_vn length %d", n);
    FUZZ_CHECK(kvtime_parse(out, &back) == 0 && back == us, "'%s' -> %lld -> '%s' does not read back",
               a, (long long)us, out);
    FUZZ_CHECK(out[4] == '-' && out[0] >= '0' && out[0] <= '9', "'%s' formats as '%s'", a, out);

    n = kvtime_format_utc(us, out);
    FUZZ_CHECK(n > 0 && n < KVTIME_BUFSZ, "format_utc length %d", n);
    FUZZ_CHECK(kvtime_parse(out, &back) == 0 && back == us, "'%s' -> utc '%s' does not read back",
               a, out);

    n = kvtime_format_vn_local(us, out);
    FUZZ_CHECK(n > 0 && n < KVTIME_BUFSZ, "format_vn_local length %d", n);
    int64_t floored = us - ((us % 1000000) + 1000000) % 1000000;
    FUZZ_CHECK(kvtime_parse(out, &back) == 0 && back == floored,
               "'%s' -> local '%s' does not read back floored", a, out);
}

static void check_dec_one(const char *a, size_t alen, const uint8_t *raw, size_t rawlen,
                          bool comma, kvs_dec *res, int *rc_out)
{
    kvs_dec d, back;
    char out[DEC_BUFSZ];
    int rc = dec_parse(a, comma, &d);
    *rc_out = rc;
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ERANGE, "dec_parse rc %d", rc);
    /* dec_parse_n over the exact bytes (no terminator) must agree when A is all of them. */
    if (alen == rawlen) {
        char *copy = malloc(rawlen ? rawlen : 1);
        FUZZ_CHECK(copy, "oom");
        if (rawlen) memcpy(copy, raw, rawlen);
        kvs_dec d2;
        int rc2 = dec_parse_n(copy, rawlen, comma, &d2);
        free(copy);
        if (memchr(raw, '\0', rawlen) == NULL) {
            FUZZ_CHECK(rc2 == rc, "dec_parse_n %d vs dec_parse %d for '%s'", rc2, rc, a);
            if (rc == 0) FUZZ_CHECK(d2.coef == d.coef && d2.scale == d.scale, "parse_n differs");
        }
    }
    if (rc) return;
    FUZZ_CHECK(d.scale >= 0 && d.scale <= DEC_MAX_SCALE, "scale %d", d.scale);
    int n = dec_format(&d, out);
    FUZZ_CHECK(n > 0 && n < DEC_BUFSZ && (size_t)n == strlen(out), "format length %d", n);
    FUZZ_CHECK(dec_parse(out, false, &back) == 0, "'%s' formats as '%s' which does not parse", a,
               out);
    FUZZ_CHECK(dec_cmp(&d, &back) == 0, "'%s' -> '%s' changes the value", a, out);
    FUZZ_CHECK(strcmp(out, "-0") != 0, "negative zero printed");
    kvs_dec norm = d;
    dec_normalize(&norm);
    FUZZ_CHECK(dec_cmp(&norm, &d) == 0, "normalize changed '%s'", a);
    FUZZ_CHECK(dec_is_zero(&d) == (strcmp(out, "0") == 0), "zero disagrees for '%s'", a);
    FUZZ_CHECK(dec_is_integer(&d) == (strchr(out, '.') == NULL), "integer disagrees for '%s'", a);
    *res = d;
}

static void check_pair(const kvs_dec *a, const kvs_dec *b)
{
    kvs_dec s1, s2, m1, m2, nb = *b, diff, zero;
    int r1 = dec_add(a, b, &s1), r2 = dec_add(b, a, &s2);
    FUZZ_CHECK(r1 == r2, "add not commutative in success (%d vs %d)", r1, r2);
    if (r1 == 0) FUZZ_CHECK(dec_cmp(&s1, &s2) == 0, "add not commutative");
    r1 = dec_mul(a, b, &m1);
    r2 = dec_mul(b, a, &m2);
    FUZZ_CHECK(r1 == r2, "mul not commutative in success (%d vs %d)", r1, r2);
    if (r1 == 0) FUZZ_CHECK(dec_cmp(&m1, &m2) == 0, "mul not commutative");
    nb.coef = -nb.coef;
    dec_from_int(0, &zero);
    if (dec_add(a, &nb, &diff) == 0) {
        int c = dec_cmp(a, b), s = dec_cmp(&diff, &zero);
        FUZZ_CHECK(c == s, "cmp(a,b)=%d but sign(a-b)=%d", c, s);
    }
    char fa[DEC_BUFSZ], fs[DEC_BUFSZ];
    if (dec_add(a, &zero, &s1) == 0) {
        dec_format(a, fa);
        dec_format(&s1, fs);
        FUZZ_CHECK(strcmp(fa, fs) == 0, "a + 0 = '%s' != '%s'", fs, fa);
    }
}

static void check_double(const char *a)
{
    char *end;
    double d = strtod(a, &end);
    char out[DEC_BUFSZ];
    int n = dec_format_double(d, out);
    if (!isfinite(d)) {
        FUZZ_CHECK(n == -EINVAL, "non-finite gave %d", n);
        return;
    }
    FUZZ_CHECK(n > 0 && n < DEC_BUFSZ && (size_t)n == strlen(out), "format_double length %d", n);
    double back = strtod(out, &end);
    FUZZ_CHECK(*end == '\0' && (back == d), "double %.17g -> '%s' does not read back", d, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *a = malloc(size + 1);
    FUZZ_CHECK(a, "oom");
    memcpy(a, data, size);
    a[size] = '\0';
    char *b = memchr(a, '|', size);
    if (b) *b++ = '\0';
    size_t alen = strlen(a);

    check_time(a);
    if (b) check_time(b);

    kvs_dec da, db;
    int ra, rb = -EINVAL;
    for (int comma = 0; comma < 2; comma++) {
        check_dec_one(a, alen, data, size, comma, &da, &ra);
        if (b) check_dec_one(b, strlen(b), data, 0, comma, &db, &rb);
        if (ra == 0 && rb == 0) check_pair(&da, &db);
    }
    check_double(a);
    free(a);
    return 0;
}
