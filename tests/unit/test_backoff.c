/* Unit tests: retry delays, failing-integration intervals, and the hourly GET budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void test_delay_grows_and_caps(void **state)
{
    (void)state;
    /* rnd = 0 gives the lower half exactly: base*2^n / 2 */
    assert_int_equal(backoff_delay_ms(0, 1000, 60000, 0), 500);
    assert_int_equal(backoff_delay_ms(1, 1000, 60000, 0), 1000);
    assert_int_equal(backoff_delay_ms(3, 1000, 60000, 0), 4000);
    assert_int_equal(backoff_delay_ms(20, 1000, 60000, 0), 30000);
    /* the random half never exceeds the cap */
    for (uint32_t r = 0; r < 100000; r += 997) {
        uint64_t d = backoff_delay_ms(10, 1000, 60000, r * 2654435761u);
        assert_true(d >= 30000 && d <= 60000);
    }
    assert_int_equal(backoff_delay_ms(100, 1000, 60000, UINT32_MAX) <= 60000, 1);
}

static void test_delay_jitter_spans_the_upper_half(void **state)
{
    (void)state;
    /* attempt n: d = min(cap, base * 2^n); the delay lies in [d/2, d] and both ends occur */
    for (unsigned n = 0; n < 12; n++) {
        uint64_t d = 1000u << n;
        if (d > 60000) d = 60000;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (uint32_t i = 0; i < 20000; i++) {
            uint64_t v = backoff_delay_ms(n, 1000, 60000, i * 2654435761u + n);
            assert_true(v >= d / 2 && v <= d);
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        assert_int_equal(backoff_delay_ms(n, 1000, 60000, 0), d / 2);
        assert_int_equal(backoff_delay_ms(n, 1000, 60000, (uint32_t)(d / 2)), d);
        assert_true(hi - lo > d / 4); /* really random, not a constant */
    }
}

static void test_no_overflow(void **state)
{
    (void)state;
    /* huge bases, attempts and caps saturate instead of wrapping around to tiny delays */
    assert_true(backoff_delay_ms(70, 1, UINT64_MAX, 0) >= UINT64_MAX / 2 - 1);
    assert_true(backoff_delay_ms(UINT32_MAX, (uint64_t)1 << 62, UINT64_MAX, 0) >=
                UINT64_MAX / 2 - 1);
    assert_int_equal(backoff_delay_ms(5, 0, 60000, 123), 0);
    assert_int_equal(backoff_retry_after_ms(LONG_MAX, 300000), 300000);
    assert_int_equal(backoff_interval_ms(60000, INT32_MAX, UINT64_MAX), UINT64_MAX);
    assert_int_equal(backoff_interval_ms(0, 1000000, 60000), 0);
}

static void test_retry_after_clamped(void **state)
{
    (void)state;
    assert_int_equal(backoff_retry_after_ms(7, 120000), 7000);
    assert_int_equal(backoff_retry_after_ms(0, 120000), 1000);
    assert_int_equal(backoff_retry_after_ms(-1, 120000), 1000);
    assert_int_equal(backoff_retry_after_ms(3600, 120000), 120000);
}

static void test_interval_backoff(void **state)
{
    (void)state;
    const uint64_t min = 60000;
    assert_int_equal(backoff_interval_ms(15 * min, 0, 240 * min), 15 * min);
    assert_int_equal(backoff_interval_ms(15 * min, 1, 240 * min), 30 * min);
    assert_int_equal(backoff_interval_ms(15 * min, 4, 240 * min), 240 * min);
    assert_int_equal(backoff_interval_ms(15 * min, 40, 240 * min), 240 * min);
    /* a cap below the interval never shortens the interval */
    assert_int_equal(backoff_interval_ms(300 * min, 2, 240 * min), 300 * min);
}

static void test_budget_window(void **state)
{
    (void)state;
    kv_budget b;
    kv_budget_init(&b, 3);
    assert_int_equal(kv_budget_take(&b, 1000), 0);
    assert_int_equal(kv_budget_take(&b, 2000), 0);
    assert_int_equal(kv_budget_take(&b, 3000), 0);
    /* full: the next slot frees when the first stamp leaves the hour */
    assert_int_equal(kv_budget_take(&b, 4000), 1000 + 3600000 - 4000);
    assert_int_equal(kv_budget_used(&b, 4000), 3);
    assert_int_equal(kv_budget_take(&b, 1000 + 3600000), 0);
    assert_int_equal(kv_budget_used(&b, 1000 + 3600000), 3);
    assert_int_equal(kv_budget_used(&b, 3000 + 3600000), 1);
    kv_budget_free(&b);
}

static void test_budget_on_any_monotonic_origin(void **state)
{
    (void)state;
    /* The budget only ever sees CLOCK_MONOTONIC values (never the wall clock, which can jump):
     * any origin works, e.g. a host up for years. */
    kv_budget b;
    kv_budget_init(&b, 2);
    uint64_t t = (uint64_t)5 * 365 * 24 * 3600 * 1000;
    assert_int_equal(kv_budget_take(&b, t), 0);
    assert_int_equal(kv_budget_take(&b, t + 10), 0);
    assert_int_equal(kv_budget_take(&b, t + 20), 3600000 - 20);
    assert_int_equal(kv_budget_take(&b, t + 3600000), 0);
    assert_int_equal(kv_budget_used(&b, t + 3600000), 2);
    kv_budget_free(&b);
}

static void test_budget_resize_keeps_newest(void **state)
{
    (void)state;
    kv_budget b;
    kv_budget_init(&b, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(kv_budget_take(&b, 100 + (uint64_t)i), 0);
    kv_budget_resize(&b, 2);
    assert_int_equal(kv_budget_used(&b, 200), 2);
    /* the two newest (103, 104) remain: the next slot frees at 103 + 1 h */
    assert_int_equal(kv_budget_take(&b, 200), 103 + 3600000 - 200);
    kv_budget_resize(&b, 10);
    assert_int_equal(kv_budget_take(&b, 200), 0);
    assert_int_equal(kv_budget_used(&b, 200), 3);
    kv_budget_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_grows_and_caps),
        cmocka_unit_test(test_delay_jitter_spans_the_upper_half),
        cmocka_unit_test(test_no_overflow),
        cmocka_unit_test(test_budget_on_any_monotonic_origin),
        cmocka_unit_test(test_retry_after_clamped),
        cmocka_unit_test(test_interval_backoff),
        cmocka_unit_test(test_budget_window),
        cmocka_unit_test(test_budget_resize_keeps_newest),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
