/* The scheduler's arithmetic (sched_plan.h) without a daemon: due times, timer delays and
 * jitter, the backoff after failed runs and refused logins, and the waits around another
 * daemon's lease. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sched_plan.h"

#define MIN_MS 60000u

/* Stable and bounded: the same id always gets the same jitter, every id one below 3 s, and
 * ids differ (FNV-1a of the id: "" is the offset basis mod 3000). */
static void test_jitter(void **state)
{
    (void)state;
    assert_int_equal(sched_jitter_ms(""), 1469598103934665603ull % 3000);
    const char *a = "6f1c0e2a-7c1b-4a55-9d1e-3f2b8e0c4d11";
    assert_int_equal(sched_jitter_ms(a), sched_jitter_ms(a));
    uint64_t seen_min = UINT64_MAX, seen_max = 0;
    int distinct = 0;
    uint64_t prev = UINT64_MAX;
    for (int i = 0; i < 2000; i++) {
        char id[48];
        snprintf(id, sizeof id, "00000000-0000-0000-0000-%012d", i);
        uint64_t j = sched_jitter_ms(id);
        assert_true(j < SCHED_JITTER_MS);
        if (j < seen_min) seen_min = j;
        if (j > seen_max) seen_max = j;
        if (j != prev) distinct++;
        prev = j;
    }
    /* spread over the window, not bunched */
    assert_true(seen_min < 100 && seen_max > 2900);
    assert_true(distinct > 1900);
}

/* interval x 2^failures, capped by max_backoff, never below the interval itself. */
static void test_interval_backoff(void **state)
{
    (void)state;
    assert_int_equal(sched_interval_ms(15, 0, 240), 15 * MIN_MS);
    assert_int_equal(sched_interval_ms(15, 1, 240), 30 * MIN_MS);
    assert_int_equal(sched_interval_ms(15, 3, 240), 120 * MIN_MS);
    assert_int_equal(sched_interval_ms(15, 4, 240), 240 * MIN_MS);
    assert_int_equal(sched_interval_ms(15, 5, 240), 240 * MIN_MS);
    assert_int_equal(sched_interval_ms(15, 60, 240), 240 * MIN_MS); /* no overflow */
    assert_int_equal(sched_interval_ms(300, 2, 240), 300 * MIN_MS); /* cap below the interval */
}

static void test_due(void **state)
{
    (void)state;
    /* a run-now request wins over everything */
    assert_true(sched_due_ms(true, true, 5000, 15, 2, 240) == SCHED_DUE_REQUEST);
    assert_true(sched_due_ms(true, false, 0, 15, 0, 240) == SCHED_DUE_REQUEST);
    /* never synced */
    assert_true(sched_due_ms(false, false, 123, 15, 0, 240) == SCHED_DUE_NEVER);
    /* last sync + interval, with the backoff of failures */
    assert_int_equal(sched_due_ms(false, true, 1000, 15, 0, 240), 1000 + 15 * MIN_MS);
    assert_int_equal(sched_due_ms(false, true, 1000, 15, 2, 240), 1000 + 60 * MIN_MS);
    /* a last sync before this host's boot (negative monotonic time) */
    assert_int_equal(sched_due_ms(false, true, -5 * (int64_t)MIN_MS, 15, 0, 240), 10 * MIN_MS);

    assert_true(sched_is_due(SCHED_DUE_REQUEST, 0, 10));
    assert_true(sched_is_due(SCHED_DUE_NEVER, 0, 10));
    assert_true(sched_is_due(10, 0, 10));
    assert_false(sched_is_due(11, 0, 10));
    assert_false(sched_is_due(SCHED_DUE_REQUEST, 11, 10)); /* another daemon's lease */
    assert_true(sched_is_due(5, 10, 10));
}

static void test_delay(void **state)
{
    (void)state;
    uint64_t now = 1000000;
    /* request: at once; never synced: its jitter */
    assert_int_equal(sched_delay_ms(SCHED_DUE_REQUEST, 1234, 0, now), 0);
    assert_int_equal(sched_delay_ms(SCHED_DUE_NEVER, 1234, 0, now), 1234);
    /* due later: what is left plus the jitter; overdue: the jitter only */
    assert_int_equal(sched_delay_ms((int64_t)now + 60000, 1234, 0, now), 61234);
    assert_int_equal(sched_delay_ms((int64_t)now - 60000, 1234, 0, now), 1234);
    /* another daemon's lease: not before it ends, even for a request */
    assert_int_equal(sched_delay_ms(SCHED_DUE_REQUEST, 1234, now + 5000, now), 5000);
    assert_int_equal(sched_delay_ms((int64_t)now + 60000, 1234, now + 5000, now), 61234);
    assert_int_equal(sched_delay_ms((int64_t)now + 1000, 0, now + 5000, now), 5000);
    assert_int_equal(sched_delay_ms((int64_t)now + 1000, 0, now - 1, now), 1000); /* past */
}

/* last_sync_at on the monotonic clock: 90 s before the database's now, learnt at 500000. */
static void test_synced_mono(void **state)
{
    (void)state;
    int64_t db_now = 1733100000000000;
    assert_int_equal(sched_synced_mono_ms(db_now - 90000000, db_now, 500000), 410000);
    assert_int_equal(sched_synced_mono_ms(db_now, db_now, 500000), 500000);
    assert_int_equal(sched_synced_mono_ms(db_now - 600000000, db_now, 500000), -100000);
}

static void test_waits(void **state)
{
    (void)state;
    /* no database: 30 s, or the poll interval when shorter */
    assert_int_equal(sched_no_db_retry_ms(60), 30000);
    assert_int_equal(sched_no_db_retry_ms(30), 30000);
    assert_int_equal(sched_no_db_retry_ms(5), 5000);
    assert_int_equal(sched_no_db_retry_ms(0), 30000);
    /* refused logins: 2, 4, 8 ... minutes, at most an hour */
    assert_int_equal(sched_auth_wait_ms(1), 2 * MIN_MS);
    assert_int_equal(sched_auth_wait_ms(2), 4 * MIN_MS);
    assert_int_equal(sched_auth_wait_ms(5), 32 * MIN_MS);
    assert_int_equal(sched_auth_wait_ms(6), 60 * MIN_MS);
    assert_int_equal(sched_auth_wait_ms(40), 60 * MIN_MS);
    /* --once --wait: the lease's end plus the margin, at most a second */
    assert_int_equal(sched_once_wait_ms(100), 350);
    assert_int_equal(sched_once_wait_ms(750), 1000);
    assert_int_equal(sched_once_wait_ms(90000), 1000);
    /* after a failed claim */
    assert_int_equal(sched_not_before_ms(1000, 4000), 5250);
    assert_int_equal(sched_not_before_ms(1000, 0), 1250);
}

/* A burst is gathered until it is quiet for 40 ms, and never longer than 250 ms. */
static void test_inbox_gather(void **state)
{
    (void)state;
    assert_int_equal(sched_inbox_gather_due_ms(1000, 1000), 1040);  /* one notification */
    assert_int_equal(sched_inbox_gather_due_ms(1000, 1100), 1140);  /* still coming */
    assert_int_equal(sched_inbox_gather_due_ms(1000, 1210), 1250);  /* capped */
    assert_int_equal(sched_inbox_gather_due_ms(1000, 5000), 1250);  /* a steady stream */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jitter),   cmocka_unit_test(test_interval_backoff),
        cmocka_unit_test(test_due),      cmocka_unit_test(test_delay),
        cmocka_unit_test(test_synced_mono), cmocka_unit_test(test_waits),
        cmocka_unit_test(test_inbox_gather),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
