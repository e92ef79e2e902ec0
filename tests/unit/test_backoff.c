/* Unit tests: retry delays, failing-integration intervals, and the hourly GET budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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
        cmocka_unit_test(test_retry_after_clamped),
        cmocka_unit_test(test_interval_backoff),
        cmocka_unit_test(test_budget_window),
        cmocka_unit_test(test_budget_resize_keeps_newest),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
