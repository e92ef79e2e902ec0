/* Unit tests for decimal.c: parsing JSON number text exactly, exact arithmetic with overflow
 * and scale limits, canonical formatting, and shortest round-trip formatting of doubles. */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decimal.h"

/* Deterministic pseudo-random numbers for property checks (xorshift64*). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static kvs_dec D(const char *s)
{
    kvs_dec d;
    int rc = dec_parse(s, false, &d);
    if (rc != 0) fail_msg("dec_parse(\"%s\") = %d", s, rc);
    return d;
}

static const char *F(const kvs_dec *d, char buf[DEC_BUFSZ])
{
    int n = dec_format(d, buf);
    assert_int_equal(n, (int)strlen(buf));
    assert_true(n < DEC_BUFSZ);
    return buf;
}

struct parse_case {
    const char *in;
    bool comma;
    int rc;
    const char *fmt; /* expected dec_format output when rc == 0 */
    int scale;       /* expected scale when rc == 0, or -1 */
};

#define NINES38 "99999999999999999999999999999999999999"

static const struct parse_case parse_cases[] = {
    {"0", false, 0, "0", 0},
    {"-0", false, 0, "0", 0},
    {"0.35", false, 0, "0.35", 2},
    {"1.5e3", false, 0, "1500", 0},
    {"2.5E-2", false, 0, "0.025", 3},
    {"1E+2", false, 0, "100", 0},
    {"1e0", false, 0, "1", 0},
    {"1.50", false, 0, "1.5", 2}, /* written scale kept; format drops the zero */
    {"11250000", false, 0, "11250000", 0},
    {"-12.345", false, 0, "-12.345", 3},
    {"+7", false, 0, "7", 0},
    {"007", false, 0, "7", 0}, /* leading zeros tolerated (cJSON accepts them too) */
    {"0.000", false, 0, "0", 3},
    {"0e400", false, 0, "0", 0},
    {"0e-99999999999999999999", false, 0, "0", 30},
    {"-0.0e-5", false, 0, "0", 6},
    {"1234.5e-2", false, 0, "12.345", 3},
    {"6,3", true, 0, "6.3", 1},
    {"6.3", true, 0, "6.3", 1},
    {"-0,25", true, 0, "-0.25", 2},
    {NINES38, false, 0, NINES38, 0},
    {"-" NINES38, false, 0, "-" NINES38, 0},
    {"1234567890123456789012345678901234567.8", false, 0, "1234567890123456789012345678901234567.8", 1},
    {"12345678901234567890123456789012345678e-30", false, 0,
     "12345678.901234567890123456789012345678", 30},
    {"0.000000000000000000000000000001", false, 0, "0.000000000000000000000000000001", 30},
    {"1.0000000000000000000000000000000000000000", false, 0, "1", 30}, /* 40 zeros: fits as 1 */
    {"100000000000000000000000000000000000000000e-10", false, 0, "10000000000000000000000000000000", -1},
    {"1e37", false, 0, "10000000000000000000000000000000000000", 0},
    /* -EINVAL: not JSON-number-like */
    {"", false, -EINVAL, NULL, -1},
    {"-", false, -EINVAL, NULL, -1},
    {"+", false, -EINVAL, NULL, -1},
    {".5", false, -EINVAL, NULL, -1},
    {"-.5", false, -EINVAL, NULL, -1},
    {"1.", false, -EINVAL, NULL, -1},
    {"abc", false, -EINVAL, NULL, -1},
    {"1e", false, -EINVAL, NULL, -1},
    {"1e+", false, -EINVAL, NULL, -1},
    {"1.2.3", false, -EINVAL, NULL, -1},
    {" 1", false, -EINVAL, NULL, -1},
    {"1 ", false, -EINVAL, NULL, -1},
    {"--1", false, -EINVAL, NULL, -1},
    {"+-1", false, -EINVAL, NULL, -1},
    {"1e5.5", false, -EINVAL, NULL, -1},
    {"0x10", false, -EINVAL, NULL, -1},
    {"NaN", false, -EINVAL, NULL, -1},
    {"Infinity", false, -EINVAL, NULL, -1},
    {"1,5", false, -EINVAL, NULL, -1},
    {"1,,5", true, -EINVAL, NULL, -1},
    {"1,", true, -EINVAL, NULL, -1},
    {"1e400x", false, -EINVAL, NULL, -1}, /* bad syntax wins over range */
    {"1234567890123456789012345678901234567890123x", false, -EINVAL, NULL, -1},
    /* -ERANGE: a number, but not exactly in 38 digits / scale 30 */
    {"1e400", false, -ERANGE, NULL, -1},
    {"1e-400", false, -ERANGE, NULL, -1},
    {"1e999999999999999999999", false, -ERANGE, NULL, -1},
    {"1e38", false, -ERANGE, NULL, -1},
    {"123456789012345678901234567890123456789", false, -ERANGE, NULL, -1}, /* 39 digits */
    {"1.23456789012345678901234567890123456789", false, -ERANGE, NULL, -1},
    {"0.0000000000000000000000000000001", false, -ERANGE, NULL, -1}, /* scale 31 */
    {"1e308", false, -ERANGE, NULL, -1},
};

static void test_parse_table(void **state)
{
    (void)state;
    char buf[DEC_BUFSZ];
    for (size_t i = 0; i < ARRAY_SIZE(parse_cases); i++) {
        const struct parse_case *c = &parse_cases[i];
        kvs_dec d = {.coef = 12345, .scale = 7};
        int rc = dec_parse(c->in, c->comma, &d);
        if (rc != c->rc) fail_msg("dec_parse(\"%s\", %d) = %d, want %d", c->in, c->comma, rc, c->rc);
        if (rc != 0) continue;
        dec_format(&d, buf);
        if (strcmp(buf, c->fmt) != 0) fail_msg("\"%s\" formats as \"%s\", want \"%s\"", c->in, buf, c->fmt);
        if (c->scale >= 0 && d.scale != c->scale)
            fail_msg("\"%s\" scale %d, want %d", c->in, d.scale, c->scale);
    }
}

static void test_parse_minus_zero_is_zero(void **state)
{
    (void)state;
    kvs_dec d = D("-0");
    assert_true(dec_is_zero(&d));
    assert_true(d.coef == 0);
}

static void test_parse_n_uses_only_n_bytes(void **state)
{
    (void)state;
    kvs_dec d;
    char buf[DEC_BUFSZ];
    assert_int_equal(dec_parse_n("12.5abc", 4, false, &d), 0);
    assert_string_equal(F(&d, buf), "12.5");
    assert_int_equal(dec_parse_n("12.5abc", 5, false, &d), -EINVAL);
    assert_int_equal(dec_parse_n("12", 0, false, &d), -EINVAL);
    assert_int_equal(dec_parse_n("1\0" "2", 3, false, &d), -EINVAL);
    assert_int_equal(dec_parse(NULL, false, &d), -EINVAL);
}

/* The product-page arithmetic from the brief: stock value and weights stay exact. */
static void test_business_examples(void **state)
{
    (void)state;
    char buf[DEC_BUFSZ];
    kvs_dec a, b, sum;

    /* Σ onHand × cost over two branches: 1 × 11250000 + 0 × 0. */
    kvs_dec on1 = D("1"), cost1 = D("11250000"), on2 = D("0"), cost2 = D("0");
    assert_int_equal(dec_mul(&on1, &cost1, &a), 0);
    assert_int_equal(dec_mul(&on2, &cost2, &b), 0);
    assert_int_equal(dec_add(&a, &b, &sum), 0);
    assert_string_equal(F(&sum, buf), "11250000");

    kvs_dec x = D("1.5"), y = D("7380000");
    assert_int_equal(dec_mul(&x, &y, &a), 0);
    assert_string_equal(F(&a, buf), "11070000");

    kvs_dec w = D("0.35");
    assert_string_equal(F(&w, buf), "0.35");

    x = D("3.75");
    y = D("2");
    assert_int_equal(dec_mul(&x, &y, &a), 0);
    assert_string_equal(F(&a, buf), "7.5");

    x = D("0.1");
    y = D("0.2");
    assert_int_equal(dec_add(&x, &y, &a), 0);
    assert_string_equal(F(&a, buf), "0.3");
    kvs_dec want = D("0.3");
    assert_int_equal(dec_cmp(&a, &want), 0);
}

struct arith_case {
    char op; /* '+' or '*' */
    const char *a, *b;
    int rc;
    const char *fmt;
};

static const struct arith_case arith_cases[] = {
    {'+', "-1.5", "1.5", 0, "0"},
    {'+', "0.001", "1000", 0, "1000.001"},
    {'+', "-7", "2.25", 0, "-4.75"},
    {'*', "-2.5", "4", 0, "-10"},
    {'*', "-2.5", "-0.4", 0, "1"},
    {'*', "0.10", "0.10", 0, "0.01"},
    {'*', "0", "123.456", 0, "0"},
    {'*', "0.000000000000001", "0.000000000000001", 0, "0.000000000000000000000000000001"},
    /* Over the scale cap: 10^-6 × 10^-25 needs scale 31. */
    {'*', "0.000001", "0.0000000000000000000000001", -ERANGE, NULL},
    /* Scale 16 + 16 = 32 is fine when the product's trailing zeros can go. */
    {'*', "1.0000000000000000", "1.0000000000000000", 0, "1"},
    /* Overflow of 38 digits. */
    {'+', NINES38, "1", -ERANGE, NULL},
    {'+', "-" NINES38, "-1", -ERANGE, NULL},
    {'+', NINES38, NINES38, -ERANGE, NULL}, /* would overflow __int128 itself */
    {'+', NINES38, "-1", 0, "99999999999999999999999999999999999998"},
    {'*', "99999999999999999999", "99999999999999999999", -ERANGE, NULL},
    {'*', NINES38, NINES38, -ERANGE, NULL},
    {'*', "10000000000000000000", "10000000000000000000", -ERANGE, NULL}, /* 10^38 */
    {'*', "1000000000000000000", "10000000000000000000", 0, "10000000000000000000000000000000000000"},
    /* Written scales that do not fit together: retried with minimal scales. */
    {'+', "1.000000000000000000000000000000", "10000000000000000000000000000000000000", 0,
     "10000000000000000000000000000000000001"},
    {'*', "1.0000000000000000000000", "12345678901234567890", 0, "12345678901234567890"},
    /* Sum needs a scale-30 digit next to 38 integer digits: cannot be exact. */
    {'+', "0.000000000000000000000000000001", "10000000000000000000000000000000000000", -ERANGE, NULL},
};

static void test_arith_table(void **state)
{
    (void)state;
    char buf[DEC_BUFSZ];
    for (size_t i = 0; i < ARRAY_SIZE(arith_cases); i++) {
        const struct arith_case *c = &arith_cases[i];
        kvs_dec a = D(c->a), b = D(c->b), r;
        int rc = c->op == '+' ? dec_add(&a, &b, &r) : dec_mul(&a, &b, &r);
        if (rc != c->rc) fail_msg("%s %c %s = rc %d, want %d", c->a, c->op, c->b, rc, c->rc);
        if (rc) continue;
        if (strcmp(F(&r, buf), c->fmt) != 0)
            fail_msg("%s %c %s = %s, want %s", c->a, c->op, c->b, buf, c->fmt);
        assert_true(r.scale >= 0 && r.scale <= DEC_MAX_SCALE);
        /* Commutative, same value. */
        kvs_dec r2;
        assert_int_equal(c->op == '+' ? dec_add(&b, &a, &r2) : dec_mul(&b, &a, &r2), 0);
        assert_int_equal(dec_cmp(&r, &r2), 0);
    }
}

static void test_arith_rejects_bad_scale(void **state)
{
    (void)state;
    kvs_dec a = {.coef = 1, .scale = DEC_MAX_SCALE + 1}, b = {.coef = 1, .scale = 0}, r;
    assert_int_equal(dec_add(&a, &b, &r), -EINVAL);
    assert_int_equal(dec_mul(&b, &a, &r), -EINVAL);
}

struct cmp_case {
    const char *a, *b;
    int want;
};

static const struct cmp_case cmp_cases[] = {
    {"1.5", "1.50", 0},
    {"0", "-0", 0},
    {"0.000", "0", 0},
    {"-1", "1", -1},
    {"0.1", "0.09", 1},
    {"-0.1", "-0.09", -1},
    {"12345678.9", "12345678.89", 1},
    {"-12345678.9", "-12345678.89", -1},
    {NINES38, "0.000000000000000000000000000001", 1}, /* scaling either would overflow */
    {"10000000000000000000000000000000000000", "9999999.999999999999999999999999999999", 1},
    {"-" NINES38, "-0.000000000000000000000000000001", -1},
    {"2", "10", -1},
    {"0.5", "0", 1},
    {"-0.5", "0", -1},
};

static void test_cmp_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cmp_cases); i++) {
        kvs_dec a = D(cmp_cases[i].a), b = D(cmp_cases[i].b);
        int got = dec_cmp(&a, &b), back = dec_cmp(&b, &a);
        if (got != cmp_cases[i].want || back != -cmp_cases[i].want)
            fail_msg("cmp(%s, %s) = %d / %d, want %d", cmp_cases[i].a, cmp_cases[i].b, got, back,
                     cmp_cases[i].want);
    }
}

static void test_predicates_and_helpers(void **state)
{
    (void)state;
    char buf[DEC_BUFSZ];
    kvs_dec d = D("1.000");
    assert_true(dec_is_integer(&d));
    d = D("1.5");
    assert_false(dec_is_integer(&d));
    d = D("-3");
    assert_true(dec_is_integer(&d));
    d = D("0.0");
    assert_true(dec_is_integer(&d));
    assert_true(dec_is_zero(&d));
    d = D("0.001");
    assert_false(dec_is_zero(&d));

    d = D("1.500");
    dec_normalize(&d);
    assert_int_equal(d.scale, 1);
    assert_true(d.coef == 15);
    d = D("0.000");
    dec_normalize(&d);
    assert_int_equal(d.scale, 0);
    d = D("1500");
    dec_normalize(&d); /* integer zeros are not fractional: untouched */
    assert_int_equal(d.scale, 0);
    assert_true(d.coef == 1500);

    dec_from_int(LLONG_MIN, &d);
    assert_string_equal(F(&d, buf), "-9223372036854775808");
    dec_from_int(LLONG_MAX, &d);
    assert_string_equal(F(&d, buf), "9223372036854775807");
    dec_from_int(0, &d);
    assert_string_equal(F(&d, buf), "0");
}

static void test_format_extremes(void **state)
{
    (void)state;
    char buf[DEC_BUFSZ];
    kvs_dec d = D("-" NINES38);
    d.scale = DEC_MAX_SCALE;
    assert_string_equal(F(&d, buf), "-99999999.999999999999999999999999999999");
    d.coef = 1;
    assert_string_equal(F(&d, buf), "0.000000000000000000000000000001");
    d.coef = -10;
    d.scale = 2;
    assert_string_equal(F(&d, buf), "-0.1");
    /* Hand-built values outside the 38-digit invariant still print. */
    d.coef = -(__int128)((~(unsigned __int128)0) >> 1) - 1;
    d.scale = DEC_MAX_SCALE;
    assert_string_equal(F(&d, buf), "-170141183.460469231731687303715884105728");
}

/* Property: format then parse gives the same value and the same text, for random values
 * across the whole coefficient and scale range. */
static void test_format_parse_roundtrip(void **state)
{
    (void)state;
    char buf[DEC_BUFSZ], buf2[DEC_BUFSZ];
    for (int i = 0; i < 20000; i++) {
        kvs_dec d, back;
        unsigned __int128 u = ((unsigned __int128)rng() << 64) | rng();
        int digits = (int)(rng() % 39);
        __int128 p = 1;
        for (int k = 0; k < digits; k++) p *= 10;
        d.coef = (__int128)(u % (unsigned __int128)p);
        if (rng() & 1) d.coef = -d.coef;
        d.scale = (int)(rng() % (DEC_MAX_SCALE + 1));
        dec_format(&d, buf);
        int rc = dec_parse(buf, false, &back);
        if (rc != 0) fail_msg("cannot re-parse \"%s\": %d", buf, rc);
        assert_int_equal(dec_cmp(&d, &back), 0);
        dec_format(&back, buf2);
        assert_string_equal(buf, buf2);
    }
}

struct dbl_case {
    double d;
    const char *want;
};

static void test_format_double_table(void **state)
{
    (void)state;
    const struct dbl_case cases[] = {
        {0.1, "0.1"},
        {2.1, "2.1"},
        {0.35, "0.35"},
        {3.9, "3.9"},
        {100, "100"},
        {-2.5, "-2.5"},
        {123.456, "123.456"},
        {0.0, "0"},
        {-0.0, "0"},
        {0.1 + 0.2, "0.30000000000000004"},
        {9007199254740992.0, "9007199254740992"},
        {1e20, "100000000000000000000"},
        {123456789012345680000.0, "123456789012345680000"},
        {1e21, "1e+21"},
        {1e308, "1e+308"},
        {1.5e300, "1.5e+300"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {1e-6, "0.000001"},
        {1.25e-6, "0.00000125"},
        {1e-7, "1e-7"},
        {1.5e-7, "1.5e-7"},
        {-1e-7, "-1e-7"},
        {5e-324, "5e-324"},
    };
    char buf[DEC_BUFSZ];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int n = dec_format_double(cases[i].d, buf);
        if (n < 0 || strcmp(buf, cases[i].want) != 0)
            fail_msg("dec_format_double(%.17g) = %d \"%s\", want \"%s\"", cases[i].d, n, buf,
                     cases[i].want);
        assert_int_equal(n, (int)strlen(buf));
    }
    assert_int_equal(dec_format_double(NAN, buf), -EINVAL);
    assert_int_equal(dec_format_double(INFINITY, buf), -EINVAL);
    assert_int_equal(dec_format_double(-INFINITY, buf), -EINVAL);
}

/* Checks one double: the text reads back exactly, is JSON number syntax, and with one
 * significant digit fewer %e (the header's search) would not have round-tripped. */
static void check_double(double d)
{
    char buf[DEC_BUFSZ], tmp[40];
    int n = dec_format_double(d, buf);
    assert_true(n > 0 && n < DEC_BUFSZ);
    if (strtod(buf, NULL) != d) fail_msg("%.17g -> \"%s\" does not read back", d, buf);
    kvs_dec x;
    int rc = dec_parse(buf, false, &x);
    if (rc != 0 && rc != -ERANGE) fail_msg("\"%s\" is not JSON number text", buf);
    /* Plain notation exactly for 1e-6 <= |d| < 1e21, like JavaScript. */
    bool plain = strchr(buf, 'e') == NULL;
    if (plain != (fabs(d) >= 1e-6 && fabs(d) < 1e21)) fail_msg("%.17g -> \"%s\"", d, buf);
    /* Significant digits run from the first to the last non-zero digit. */
    int first = -1, last = -1, pos = 0;
    for (const char *p = buf; *p && *p != 'e'; p++) {
        if (*p < '0' || *p > '9') continue;
        if (*p != '0') {
            if (first < 0) first = pos;
            last = pos;
        }
        pos++;
    }
    int k = last - first + 1;
    if (k > 1) {
        snprintf(tmp, sizeof tmp, "%.*e", k - 2, d);
        if (strtod(tmp, NULL) == d) fail_msg("%.17g -> \"%s\" is not the shortest", d, buf);
    }
}

/* Property over random finite doubles: random bit patterns (every exponent) and random
 * mantissas scaled around the plain-notation range. */
static void test_format_double_roundtrip(void **state)
{
    (void)state;
    int checked = 0;
    while (checked < 20000) {
        uint64_t bits = rng();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d) || d == 0) continue;
        check_double(d);
        checked++;
    }
    for (int i = 0; i < 20000; i++) {
        double d = ldexp((double)(rng() >> (11 + rng() % 40)), (int)(rng() % 130) - 90);
        if (d != 0) check_double(rng() & 1 ? d : -d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_minus_zero_is_zero),
        cmocka_unit_test(test_parse_n_uses_only_n_bytes),
        cmocka_unit_test(test_business_examples),
        cmocka_unit_test(test_arith_table),
        cmocka_unit_test(test_arith_rejects_bad_scale),
        cmocka_unit_test(test_cmp_table),
        cmocka_unit_test(test_predicates_and_helpers),
        cmocka_unit_test(test_format_extremes),
        cmocka_unit_test(test_format_parse_roundtrip),
        cmocka_unit_test(test_format_double_table),
        cmocka_unit_test(test_format_double_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
