/* Unit tests: the metrics object and its Prometheus text rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metrics.h"

/* The rendering of m, caller frees. */
static char *render(const kvs_metrics *m)
{
    kvs_buf b;
    kvs_buf_init(&b);
    assert_int_equal(metrics_render(m, &b), 0);
    (void)kvs_buf_cstr(&b);
    return kvs_buf_steal(&b);
}

static void assert_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return;
    fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void test_null_is_a_no_op(void **state)
{
    (void)state;
    metrics_run_end(NULL, "shop", "success", 3, 1);
    metrics_api_request(NULL, "shop", 200);
    metrics_budget_left(NULL, "shop", 10);
    metrics_webhook(NULL, "shop", "product.update", "applied");
    metrics_change_latency(NULL, 1.0);
    metrics_free(NULL);
    /* NULL renders the families, empty */
    char *t = render(NULL);
    assert_has_line(t, "# TYPE kiotviet_sync_runs_total counter");
    assert_has_line(t, "kiotviet_change_to_row_seconds_count 0");
    free(t);
}

static void test_families_and_values(void **state)
{
    (void)state;
    kvs_metrics *m = metrics_new();
    metrics_run_end(m, "shop", "success", 120, 1700000000500000);
    metrics_run_end(m, "shop", "failed", 0, 1700000100000000);
    metrics_run_end(m, "shop", "success", 5, 1700000200000000);
    metrics_api_request(m, "shop", 200);
    metrics_api_request(m, "shop", 200);
    metrics_api_request(m, "shop", 429);
    metrics_api_request(m, "other", 0);
    metrics_budget_left(m, "shop", 4990);
    metrics_budget_left(m, "shop", 4980);
    metrics_webhook(m, "shop", "product.update", "stored");
    metrics_webhook(m, "shop", "", "bad_signature");
    char *t = render(m);
    assert_has_line(t, "# TYPE kiotviet_sync_runs_total counter");
    assert_has_line(t, "kiotviet_sync_runs_total{integration=\"shop\",status=\"success\"} 2");
    assert_has_line(t, "kiotviet_sync_runs_total{integration=\"shop\",status=\"failed\"} 1");
    /* the failed run does not move the last success */
    assert_has_line(t, "kiotviet_sync_last_success_timestamp_seconds{integration=\"shop\"} "
                       "1700000200");
    assert_has_line(t, "kiotviet_sync_rows_written_total{integration=\"shop\"} 125");
    assert_has_line(t, "kiotviet_api_requests_total{integration=\"shop\",code=\"200\"} 2");
    assert_has_line(t, "kiotviet_api_requests_total{integration=\"shop\",code=\"429\"} 1");
    assert_has_line(t, "kiotviet_api_requests_total{integration=\"other\",code=\"0\"} 1");
    assert_has_line(t, "# TYPE kiotviet_api_get_budget_left gauge");
    assert_has_line(t, "kiotviet_api_get_budget_left{integration=\"shop\"} 4980");
    assert_has_line(t, "kiotviet_webhook_events_total{integration=\"shop\",type=\"product.update\","
                       "result=\"stored\"} 1");
    assert_has_line(t, "kiotviet_webhook_events_total{integration=\"shop\",type=\"\","
                       "result=\"bad_signature\"} 1");
    free(t);
    metrics_free(m);
}

static void test_fraction_of_a_second(void **state)
{
    (void)state;
    kvs_metrics *m = metrics_new();
    metrics_run_end(m, "shop", "partial", 1, 1700000000500000);
    char *t = render(m);
    assert_has_line(t, "kiotviet_sync_last_success_timestamp_seconds{integration=\"shop\"} "
                       "1700000000.5");
    free(t);
    metrics_free(m);
}

static void test_label_values_escaped(void **state)
{
    (void)state;
    kvs_metrics *m = metrics_new();
    metrics_budget_left(m, "a\"b\\c\nd", 7);
    char *t = render(m);
    assert_has_line(t, "kiotviet_api_get_budget_left{integration=\"a\\\"b\\\\c\\nd\"} 7");
    free(t);
    metrics_free(m);
}

static void test_latency_histogram_cumulative(void **state)
{
    (void)state;
    kvs_metrics *m = metrics_new();
    metrics_change_latency(m, 0.05);
    metrics_change_latency(m, 0.3);
    metrics_change_latency(m, 0.5); /* on a bound: counted in it (le) */
    metrics_change_latency(m, -2);  /* clock skew: counted as 0 */
    metrics_change_latency(m, 5000);
    char *t = render(m);
    assert_has_line(t, "# TYPE kiotviet_change_to_row_seconds histogram");
    assert_has_line(t, "kiotviet_change_to_row_seconds_bucket{le=\"0.1\"} 2");
    assert_has_line(t, "kiotviet_change_to_row_seconds_bucket{le=\"0.25\"} 2");
    assert_has_line(t, "kiotviet_change_to_row_seconds_bucket{le=\"0.5\"} 4");
    assert_has_line(t, "kiotviet_change_to_row_seconds_bucket{le=\"900\"} 4");
    assert_has_line(t, "kiotviet_change_to_row_seconds_bucket{le=\"+Inf\"} 5");
    assert_has_line(t, "kiotviet_change_to_row_seconds_sum 5000.8500000000004");
    assert_has_line(t, "kiotviet_change_to_row_seconds_count 5");
    free(t);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_is_a_no_op),
        cmocka_unit_test(test_families_and_values),
        cmocka_unit_test(test_fraction_of_a_second),
        cmocka_unit_test(test_label_values_escaped),
        cmocka_unit_test(test_latency_histogram_cumulative),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
