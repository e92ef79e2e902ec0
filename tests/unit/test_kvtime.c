/* Unit tests for kvtime.c: every date form KiotViet sends, calendar range checks, fixed
 * +07:00 formatting, pre-1970 instants, and independence from the process time zone (main
 * sets an odd TZ with DST before running anything). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kvtime.h"

#define S INT64_C(1000000)

static uint64_t rng_state = 0xD1B54A32D192ED03ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

struct parse_case {
    const char *in;
    int rc;
    int64_t us; /* expected when rc == 0 (values computed with Python's datetime) */
};

/* 2016-05-11T09:37:39+07:00 */
#define T2016 INT64_C(1462934259000000)
/* 2024-03-04T23:39:24.147+07:00 */
#define T2024 INT64_C(1709570364147000)

static const struct parse_case parse_cases[] = {
    /* REST: offset-less Vietnam wall clock, 0..7 fraction digits. */
    {"2016-05-11T09:37:39.23", 0, T2016 + 230000},
    {"2016-05-11T09:37:39", 0, T2016},
    {"2016-05-11T09:37:39.2", 0, T2016 + 200000},
    {"2016-05-11T09:37:39.123", 0, T2016 + 123000},
    {"2016-05-11T09:37:39.1234", 0, T2016 + 123400},
    {"2016-05-11T09:37:39.12345", 0, T2016 + 123450},
    {"2016-05-11T09:37:39.123456", 0, T2016 + 123456},
    {"2016-05-11T09:37:39.1234567", 0, T2016 + 123456}, /* 100 ns digit truncated */
    {"2016-05-11T09:37:39.0000009", 0, T2016},
    {"2016-05-11 09:37:39.23", 0, T2016 + 230000},
    {"2025-06-17T14:34:09.013", 0, INT64_C(1750145649013000)},
    {"2024-03-04T23:39", 0, INT64_C(1709570340000000)},
    /* Webhooks and old endpoints: explicit offsets. */
    {"2024-03-04T23:39:24.1470000+07:00", 0, T2024},
    {"2024-03-04T23:39:24.147+0700", 0, T2024},
    {"2024-03-04T23:39:24.147+07", 0, T2024},
    {"2024-03-04T23:39:24.147Z", 0, INT64_C(1709595564147000)},
    {"2024-03-04T23:39Z", 0, INT64_C(1709595540000000)},
    {"2024-03-04T23:39:24.147-05:00", 0, INT64_C(1709613564147000)},
    {"2024-03-04T23:39:24.123456+05:30", 0, INT64_C(1709575764123456)},
    {"2024-03-04T23:39:24.147+00:00", 0, INT64_C(1709595564147000)},
    /* Date only: midnight in Vietnam, padded or not. */
    {"2024-12-1", 0, INT64_C(1732986000000000)},
    {"2024-12-01", 0, INT64_C(1732986000000000)},
    {"2024-3-04", 0, INT64_C(1709485200000000)},
    {"2024-02-26", 0, INT64_C(1708880400000000)},
    {"2024-02-29T00:00:00", 0, INT64_C(1709139600000000)},
    {"2000-02-29T12:00:00", 0, INT64_C(951800400000000)},
    /* KiotViet's "zero date" (.NET DateTime.MinValue) and other pre-1970 instants. */
    {"0001-01-01T00:00:00", 0, INT64_C(-62135622000000000)},
    {"1900-03-01T06:00:00", 0, INT64_C(-2203894800000000)},
    {"1969-12-31T23:59:59Z", 0, -S},
    {"1970-01-01T07:00:00", 0, 0},
    {"9999-12-31T23:59:59.999999", 0, INT64_C(253402275599999999)},
    /* .NET JSON dates: UTC milliseconds; the offset is informational. */
    {"/Date(1485157445877)/", 0, INT64_C(1485157445877000)},
    {"/Date(1485157445877+0700)/", 0, INT64_C(1485157445877000)},
    {"/Date(1485157445877-0500)/", 0, INT64_C(1485157445877000)},
    {"/Date(-1000)/", 0, -S},
    {"/Date(0)/", 0, 0},
    /* Calendar range checks. */
    {"2023-02-29", -EINVAL, 0},
    {"1900-02-29", -EINVAL, 0},
    {"2025-13-01", -EINVAL, 0},
    {"2025-00-10", -EINVAL, 0},
    {"2025-04-31", -EINVAL, 0},
    {"2025-01-00", -EINVAL, 0},
    {"2025-06-17T25:00", -EINVAL, 0},
    {"2025-06-17T25:00:00", -EINVAL, 0},
    {"2025-06-17T24:00:00", -EINVAL, 0},
    {"2025-06-17T23:60:00", -EINVAL, 0},
    {"2025-06-17T23:59:60", -EINVAL, 0},
    {"2025-06-17T10:00:00+24:00", -EINVAL, 0},
    {"2025-06-17T10:00:00+07:60", -EINVAL, 0},
    /* Malformed, empty, trailing junk. */
    {"", -EINVAL, 0},
    {"garbage", -EINVAL, 0},
    {"2024", -EINVAL, 0},
    {"2024-", -EINVAL, 0},
    {"2024-03", -EINVAL, 0},
    {"20240304", -EINVAL, 0},
    {"24-03-04", -EINVAL, 0},
    {"02024-03-04", -EINVAL, 0},
    {"2024-003-04", -EINVAL, 0},
    {"2024-03-004", -EINVAL, 0},
    {" 2024-03-04", -EINVAL, 0},
    {"2024-03-04 ", -EINVAL, 0},
    {"2024-03-04x", -EINVAL, 0},
    {"2024-03-04T", -EINVAL, 0},
    {"2024-03-04T10", -EINVAL, 0},
    {"2024-03-04T10:0", -EINVAL, 0},
    {"2024-03-04T1:00:00", -EINVAL, 0},
    {"2024-12-1T10:00:00", -EINVAL, 0}, /* unpadded only for date-only */
    {"2024-03-04T10:00:00.", -EINVAL, 0},
    {"2024-03-04T10:00:00.12345678", -EINVAL, 0},
    {"2024-03-04T10:00.5", -EINVAL, 0},
    {"2024-03-04T10:00:00Zjunk", -EINVAL, 0},
    {"2024-03-04T10:00:00+07:00 ", -EINVAL, 0},
    {"2024-03-04T10:00:00+7", -EINVAL, 0},
    {"2024-03-04T10:00:00+07:0", -EINVAL, 0},
    {"2024-03-04T10:00:00+070", -EINVAL, 0},
    {"2024-03-04T10:00:00+07:00:00", -EINVAL, 0},
    {"2024-03-04Z", -EINVAL, 0},
    {"/Date()/", -EINVAL, 0},
    {"/Date(12)", -EINVAL, 0},
    {"/Date(12)/x", -EINVAL, 0},
    {"/Date(12+07)/", -EINVAL, 0},
    {"/Date(abc)/", -EINVAL, 0},
    /* Found by tests/fuzz/fuzz_numbers: instants whose Vietnam year is not 0001..9999 used
     * to parse, then format as "10000-01-01T…" or "-2000-…", which neither kvtime_parse nor
     * PostgreSQL reads back (a record like that would fail its whole page's SQL). */
    {"/Date(9223372036854775)/", -EINVAL, 0},
    {"/Date(-9223372036854775)/", -EINVAL, 0},
    {"/Date(253402275599999)/", 0, INT64_C(253402275599999000)}, /* 9999-12-31T23:59:59.999+07 */
    {"/Date(253402275600000)/", -EINVAL, 0},                     /* 10000-01-01T00:00+07 */
    {"/Date(-62135622000000)/", 0, INT64_C(-62135622000000000)}, /* 0001-01-01T00:00+07 */
    {"/Date(-62135622000001)/", -EINVAL, 0},
    {"9999-12-31T23:59:59.999999+02:00", -EINVAL, 0}, /* 10000-01-01 in Vietnam */
    {"9999-12-31T16:59:59.999999Z", 0, INT64_C(253402275599999999)},
    {"0001-01-01T00:00:00Z", 0, INT64_C(-62135596800000000)},
    {"0001-01-01T00:00:00+08:00", -EINVAL, 0}, /* year 0000 in Vietnam */
    {"0000-12-31T17:00:00Z", 0, INT64_C(-62135622000000000)},
    {"0000-12-31T16:59:59Z", -EINVAL, 0},
    {"0000-01-01", -EINVAL, 0},
    {"/Date(9223372036854776)/", -EINVAL, 0}, /* µs would overflow int64 */
    {"/Date(1234567890123456789)/", -EINVAL, 0},
};

static void test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(parse_cases); i++) {
        const struct parse_case *c = &parse_cases[i];
        int64_t us = 42;
        int rc = kvtime_parse(c->in, &us);
        if (rc != c->rc) fail_msg("kvtime_parse(\"%s\") = %d, want %d", c->in, rc, c->rc);
        if (rc == 0 && us != c->us)
            fail_msg("kvtime_parse(\"%s\") = %lld, want %lld", c->in, (long long)us, (long long)c->us);
    }
    int64_t us;
    assert_int_equal(kvtime_parse(NULL, &us), -EINVAL);
}

/* The whole point of +07:00: the same wall clock with and without the offset is one instant. */
static void test_offsetless_means_vietnam(void **state)
{
    (void)state;
    int64_t a, b, z;
    assert_int_equal(kvtime_parse("2025-06-17T14:34:09.013", &a), 0);
    assert_int_equal(kvtime_parse("2025-06-17T14:34:09.013+07:00", &b), 0);
    assert_int_equal(kvtime_parse("2025-06-17T07:34:09.013Z", &z), 0);
    assert_true(a == b && b == z);
}

struct fmt_case {
    int64_t us;
    const char *vn, *vn_local, *utc;
};

static const struct fmt_case fmt_cases[] = {
    {INT64_C(1750145649013000), "2025-06-17T14:34:09.013+07:00", "2025-06-17T14:34:09",
     "2025-06-17T07:34:09.013Z"},
    {INT64_C(1750145649000000), "2025-06-17T14:34:09+07:00", "2025-06-17T14:34:09",
     "2025-06-17T07:34:09Z"},
    {T2016 + 230000, "2016-05-11T09:37:39.23+07:00", "2016-05-11T09:37:39",
     "2016-05-11T02:37:39.23Z"},
    {T2016 + 123456, "2016-05-11T09:37:39.123456+07:00", "2016-05-11T09:37:39",
     "2016-05-11T02:37:39.123456Z"},
    {T2016 + 10, "2016-05-11T09:37:39.00001+07:00", "2016-05-11T09:37:39",
     "2016-05-11T02:37:39.00001Z"},
    /* +7 h crosses the day, month and year boundary. */
    {INT64_C(1735675200000000), "2025-01-01T03:00:00+07:00", "2025-01-01T03:00:00",
     "2024-12-31T20:00:00Z"},
    {INT64_C(1709139600000000) - 1, "2024-02-28T23:59:59.999999+07:00", "2024-02-28T23:59:59",
     "2024-02-28T16:59:59.999999Z"},
    {0, "1970-01-01T07:00:00+07:00", "1970-01-01T07:00:00", "1970-01-01T00:00:00Z"},
    /* Pre-1970: floor, not truncation, toward the previous second and day. */
    {-1, "1970-01-01T06:59:59.999999+07:00", "1970-01-01T06:59:59", "1969-12-31T23:59:59.999999Z"},
    {-S, "1970-01-01T06:59:59+07:00", "1970-01-01T06:59:59", "1969-12-31T23:59:59Z"},
    {-8 * 3600 * S, "1969-12-31T23:00:00+07:00", "1969-12-31T23:00:00", "1969-12-31T16:00:00Z"},
    {INT64_C(-2203894800000000) - 500000, "1900-03-01T05:59:59.5+07:00", "1900-03-01T05:59:59",
     "1900-02-28T22:59:59.5Z"},
    {INT64_C(-62135622000000000), "0001-01-01T00:00:00+07:00", "0001-01-01T00:00:00",
     "0000-12-31T17:00:00Z"},
    {INT64_C(253402275599999999), "9999-12-31T23:59:59.999999+07:00", "9999-12-31T23:59:59",
     "9999-12-31T16:59:59.999999Z"},
};

static void test_format_table(void **state)
{
    (void)state;
    char buf[KVTIME_BUFSZ];
    for (size_t i = 0; i < ARRAY_SIZE(fmt_cases); i++) {
        const struct fmt_case *c = &fmt_cases[i];
        int n = kvtime_format_vn(c->us, buf);
        assert_string_equal(buf, c->vn);
        assert_int_equal(n, (int)strlen(buf));
        n = kvtime_format_vn_local(c->us, buf);
        assert_string_equal(buf, c->vn_local);
        assert_int_equal(n, (int)strlen(buf));
        n = kvtime_format_utc(c->us, buf);
        assert_string_equal(buf, c->utc);
        assert_int_equal(n, (int)strlen(buf));
    }
}

/* Every formatted instant parses back to itself (vn_local: to the floored second), across
 * years 1..9999 including negative instants; kvtime_format_utc agrees with the C library's
 * gmtime_r (UTC, unaffected by TZ) as an independent calendar. */
static void test_roundtrip_and_gmtime_oracle(void **state)
{
    (void)state;
    const int64_t lo = INT64_C(-62135596800000000) + 7 * 3600 * S; /* 0001-01-01T07:00Z */
    const int64_t hi = INT64_C(253402300799999999) - 7 * 3600 * S; /* 9999-12-31T16:59:59Z */
    char buf[KVTIME_BUFSZ], want[64];
    for (int i = 0; i < 50000; i++) {
        int64_t us = lo + (int64_t)(rng() % (uint64_t)(hi - lo));
        if (i % 4 == 0) us -= us % S; /* whole seconds too */
        int64_t back;

        kvtime_format_vn(us, buf);
        assert_int_equal(kvtime_parse(buf, &back), 0);
        assert_true(back == us);

        kvtime_format_utc(us, buf);
        assert_int_equal(kvtime_parse(buf, &back), 0);
        assert_true(back == us);

        int64_t secs = us / S - (us % S < 0);
        time_t t = (time_t)secs;
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
        if (tm.tm_year + 1900 < 1000) /* glibc's %Y does not pad */
            snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        assert_memory_equal(buf, want, 19);

        kvtime_format_vn_local(us, buf);
        assert_int_equal(kvtime_parse(buf, &back), 0);
        assert_true(back == secs * S);
    }
}

/* Extreme inputs must not overflow or overrun the buffer. */
static void test_format_extremes(void **state)
{
    (void)state;
    char buf[KVTIME_BUFSZ];
    const int64_t v[] = {INT64_MIN, INT64_MIN + 1, INT64_MAX, INT64_MAX - 1};
    for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
        assert_true(kvtime_format_vn(v[i], buf) < KVTIME_BUFSZ);
        assert_true(kvtime_format_vn_local(v[i], buf) < KVTIME_BUFSZ);
        assert_true(kvtime_format_utc(v[i], buf) < KVTIME_BUFSZ);
    }
    kvtime_format_utc(INT64_MAX, buf);
    assert_string_equal(buf, "294247-01-10T04:00:54.775807Z");
}

/* The test environment really is in an odd zone (so the results above prove independence). */
static void test_tz_is_odd(void **state)
{
    (void)state;
    time_t t = 0;
    struct tm tm;
    assert_non_null(localtime_r(&t, &tm));
    assert_int_not_equal(tm.tm_gmtoff, 0);
    assert_int_not_equal(tm.tm_gmtoff, KVTIME_VN_OFFSET_S);
}

/* KiotViet's zero date (year 1, .NET DateTime.MinValue) is "no date"; year 2 is a date. */
static void test_zero_date(void **state)
{
    (void)state;
    int64_t us;
    assert_int_equal(kvtime_parse("0001-01-01T00:00:00", &us), 0);
    assert_true(kvtime_is_zero_date(us));
    assert_int_equal(kvtime_parse("0001-12-31T23:59:59.9999999", &us), 0);
    assert_true(kvtime_is_zero_date(us));
    assert_int_equal(kvtime_parse("0002-01-01T00:00:00", &us), 0);
    assert_false(kvtime_is_zero_date(us));
    assert_int_equal(kvtime_parse("2023-10-31T14:46:20.1000000", &us), 0);
    assert_false(kvtime_is_zero_date(us));
    assert_int_equal(kvtime_parse("2025-03-23T16:20:57.6524797+07:00", &us), 0);
    assert_false(kvtime_is_zero_date(us));
}

int main(void)
{
    /* UTC-5:17 with DST: any use of the process zone would shift the results above. */
    setenv("TZ", "ODD+5:17DST,M3.2.0,M11.1.0", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tz_is_odd),
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_offsetless_means_vietnam),
        cmocka_unit_test(test_format_table),
        cmocka_unit_test(test_roundtrip_and_gmtime_oracle),
        cmocka_unit_test(test_format_extremes),
        cmocka_unit_test(test_zero_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
