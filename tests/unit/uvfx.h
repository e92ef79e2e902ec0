/* A libuv loop per test for the unit tests that drive db.c (header-only, like pgtmp.h):
 *
 *     cmocka_unit_test_setup_teardown(test_x, uvfx_setup, uvfx_teardown)
 *     ... fx *f = *state; db_conn *c = db_conn_new(&f->loop, &o); ...
 *     assert_true(run_until(f, &done, 1, 5000));
 *
 * Every test closes what it opened; one loop turn must then finish every close (db frees its
 * connection there) and uv_loop_close() must succeed. Whatever a failed test left open is
 * force-closed so the next test still runs, and the teardown fails. */
#ifndef KVS_TEST_UVFX_H
#define KVS_TEST_UVFX_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#define UVFX_FN static __attribute__((unused))

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t guard; /* wakes run_until() up at its deadline */
} fx;

UVFX_FN int uvfx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f || uv_loop_init(&f->loop) != 0) return -1;
    uv_timer_init(&f->loop, &f->guard);
    *state = f;
    return 0;
}

UVFX_FN void uvfx_close_leftover(uv_handle_t *h, void *arg)
{
    int *n = arg;
    if (uv_is_closing(h)) return;
    uv_close(h, NULL);
    (*n)++;
}

UVFX_FN int uvfx_teardown(void **state)
{
    fx *f = *state;
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    int leftover = 0;
    if (uv_loop_alive(&f->loop)) {
        uv_walk(&f->loop, uvfx_close_leftover, &leftover);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        fprintf(stderr, "teardown: %d handle(s) left open\n", leftover);
    }
    int rc = uv_loop_close(&f->loop);
    if (rc != 0) fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    free(f);
    return rc == 0 && leftover == 0 ? 0 : -1;
}

UVFX_FN void uvfx_guard_cb(uv_timer_t *t) { (void)t; }

/* Runs the loop until *counter >= target or timeout_ms passes; returns whether it got there. */
UVFX_FN bool run_until(fx *f, const int *counter, int target, uint64_t timeout_ms)
{
    uv_update_time(&f->loop);
    uint64_t deadline = uv_now(&f->loop) + timeout_ms;
    uv_timer_start(&f->guard, uvfx_guard_cb, timeout_ms, 0);
    while (*counter < target && uv_now(&f->loop) < deadline) uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->guard);
    return *counter >= target;
}

#endif
