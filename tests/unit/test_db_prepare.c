/* db.c's automatic prepared statements, against a real PostgreSQL 15 (tests/unit/pgtmp.h): a
 * statement is prepared on its second use and executed by name afterwards, with the same results
 * as the text; a Parse that is aborted or fails leaves nothing behind; a statement that vanished
 * server-side (a transaction pooler, DEALLOCATE) fails what is in flight as a lost connection
 * and the connection goes on without prepared statements; no_prepare never prepares. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "db.h"
#include "log.h"
#include "pgtmp.h"
#include "uvfx.h"

PGTMP_GROUP(pg, KVS_LOG_ERR)

/* Outcome of one batch: status, sqlstate and row 0 / col 0 of every statement. */
typedef struct out {
    int *done;
    enum db_status status;
    char sqlstate[6];
    int failed_stmt;
    char v[4][64];
} out;

static void out_cb(db_result *r, void *arg)
{
    out *o = arg;
    o->status = r->status;
    o->failed_stmt = r->failed_stmt;
    memcpy(o->sqlstate, r->sqlstate, sizeof o->sqlstate);
    for (int i = 0; i < r->nresults && i < 4; i++) {
        PGresult *res = r->results[i];
        snprintf(o->v[i], sizeof o->v[i], "%s",
                 !res ? "<none>"
                 : PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0
                     ? PQgetvalue(res, 0, 0)
                     : "<no rows>");
    }
    (*o->done)++;
}

static const char sq[] = "SELECT $1::int * 2";
/* Names of this session's prepared statements that db.c made. */
static const char list_sql[] =
    "SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE name LIKE 'kvs\\_%'";

static db_conn *conn_new(fx *f, bool no_prepare)
{
    db_opts o = {.conninfo = pg.conninfo, .connect_timeout_ms = 5000,
                 .application_name = "kvs-unit-prep", .no_prepare = no_prepare};
    return db_conn_new(&f->loop, &o);
}

static void run_one(fx *f, db_conn *c, const char *sql, const char *param, out *o)
{
    int done = 0;
    memset(o, 0, sizeof *o);
    o->done = &done;
    const char *p[1] = {param};
    db_exec(c, sql, param ? 1 : 0, param ? p : NULL, out_cb, o);
    assert_true(run_until(f, &done, 1, 10000));
}

static void close_conn(fx *f, db_conn *c)
{
    db_conn_close(c);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Sequential uses: the first by text, the second prepares, the rest run by name; every answer
 * is right and exactly one statement exists server-side. */
static void test_second_use_prepares(void **state)
{
    fx *f = *state;
    db_conn *c = conn_new(f, false);
    out o;
    char want[16], arg[16];
    for (int i = 1; i <= 6; i++) {
        snprintf(arg, sizeof arg, "%d", i);
        snprintf(want, sizeof want, "%d", 2 * i);
        run_one(f, c, sq, arg, &o);
        assert_int_equal(o.status, DB_OK);
        assert_string_equal(o.v[0], want);
    }
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.prepared, 1);
    run_one(f, c, list_sql, NULL, &o);
    assert_string_equal(o.v[0], "1");
    close_conn(f, c);
}

/* Many pipelined batches of the same statement: those sent before the Parse is confirmed go by
 * text, the rest by name; all answers right and in order. */
static void test_pipelined_uses(void **state)
{
    fx *f = *state;
    db_conn *c = conn_new(f, false);
    enum { N = 40 };
    static out o[N];
    char args[N][16];
    int done = 0;
    for (int i = 0; i < N; i++) {
        memset(&o[i], 0, sizeof o[i]);
        o[i].done = &done;
        snprintf(args[i], sizeof args[i], "%d", i);
        const char *p[1] = {args[i]};
        db_batch *b = db_batch_new();
        db_batch_add(b, sq, 1, p);
        db_batch_add(b, "SELECT $1::text || 'x'", 1, p);
        db_submit(c, b, out_cb, &o[i]);
        if (i % 7 == 3) uv_run(&f->loop, UV_RUN_NOWAIT); /* let some go out early */
    }
    assert_true(run_until(f, &done, N, 15000));
    for (int i = 0; i < N; i++) {
        char w0[16], w1[16];
        snprintf(w0, sizeof w0, "%d", 2 * i);
        snprintf(w1, sizeof w1, "%dx", i);
        assert_int_equal(o[i].status, DB_OK);
        assert_string_equal(o[i].v[0], w0);
        assert_string_equal(o[i].v[1], w1);
    }
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.prepared, 2);
    close_conn(f, c);
}

/* A data error in a prepared execution is reported like any other, and the statement keeps
 * working afterwards. */
static void test_error_in_prepared_execution(void **state)
{
    fx *f = *state;
    db_conn *c = conn_new(f, false);
    out o;
    run_one(f, c, sq, "1", &o);
    run_one(f, c, sq, "2", &o); /* prepared now */
    run_one(f, c, sq, "x", &o);
    assert_int_equal(o.status, DB_E_SQL);
    assert_string_equal(o.sqlstate, "22P02");
    assert_int_equal(o.failed_stmt, 0);
    run_one(f, c, sq, "21", &o);
    assert_int_equal(o.status, DB_OK);
    assert_string_equal(o.v[0], "42");
    close_conn(f, c);
}

/* The second use of a statement comes after a failing statement in the same batch: its Parse
 * is aborted with the pipeline, nothing is left half-prepared, and the statement is prepared on
 * a later use. A statement with a syntax error fails the same way by text and by Parse. */
static void test_aborted_and_failed_parse(void **state)
{
    fx *f = *state;
    db_conn *c = conn_new(f, false);
    out o;
    run_one(f, c, sq, "1", &o);
    int done = 0;
    memset(&o, 0, sizeof o);
    o.done = &done;
    const char *p[1] = {"5"};
    db_batch *b = db_batch_new();
    db_batch_add(b, "SELECT 1/0", 0, NULL);
    db_batch_add(b, sq, 1, p);
    db_submit(c, b, out_cb, &o);
    assert_true(run_until(f, &done, 1, 10000));
    assert_int_equal(o.status, DB_E_SQL);
    assert_string_equal(o.sqlstate, "22012");
    assert_int_equal(o.failed_stmt, 0);
    assert_string_equal(o.v[1], "<none>");
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.prepared, 0);
    run_one(f, c, sq, "7", &o);
    assert_int_equal(o.status, DB_OK);
    assert_string_equal(o.v[0], "14");
    db_conn_get_stats(c, &st);
    assert_int_equal(st.prepared, 1);

    static const char bad[] = "SELEC $1::int";
    for (int i = 0; i < 3; i++) {
        run_one(f, c, bad, "1", &o);
        assert_int_equal(o.status, DB_E_SQL);
        assert_string_equal(o.sqlstate, "42601");
        assert_int_equal(o.failed_stmt, 0);
    }
    db_conn_get_stats(c, &st);
    assert_int_equal(st.prepared, 1);
    close_conn(f, c);
}

/* Our statements disappear server-side (as behind a transaction pooler): the batch fails as a
 * lost connection (retryable: nothing of it committed), the connection comes back, and from
 * then on statements are sent as text only. */
static void test_vanished_statement(void **state)
{
    fx *f = *state;
    db_conn *c = conn_new(f, false);
    out o;
    run_one(f, c, sq, "1", &o);
    run_one(f, c, sq, "2", &o);
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.prepared, 1);
    run_one(f, c, "DEALLOCATE ALL", NULL, &o);
    assert_int_equal(o.status, DB_OK);
    run_one(f, c, sq, "3", &o);
    assert_int_equal(o.status, DB_E_CONN);
    for (int i = 0; i < 4; i++) {
        run_one(f, c, sq, "4", &o);
        assert_int_equal(o.status, DB_OK);
        assert_string_equal(o.v[0], "8");
    }
    run_one(f, c, list_sql, NULL, &o);
    assert_string_equal(o.v[0], "0");
    db_conn_get_stats(c, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.prepared, 1);
    close_conn(f, c);
}

static void test_no_prepare_option(void **state)
{
    fx *f = *state;
    db_conn *c = conn_new(f, true);
    out o;
    for (int i = 0; i < 4; i++) {
        run_one(f, c, sq, "5", &o);
        assert_int_equal(o.status, DB_OK);
        assert_string_equal(o.v[0], "10");
    }
    run_one(f, c, list_sql, NULL, &o);
    assert_string_equal(o.v[0], "0");
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.prepared, 0);
    close_conn(f, c);
}

/* A lost connection forgets what was prepared; the new session prepares again. */
static void test_reconnect_prepares_again(void **state)
{
    fx *f = *state;
    db_conn *c = conn_new(f, false);
    out o;
    run_one(f, c, sq, "1", &o);
    run_one(f, c, sq, "2", &o);
    run_one(f, c, "SELECT pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid())", NULL, &o);
    assert_int_not_equal(o.status, DB_OK);
    run_one(f, c, sq, "3", &o); /* new session: known statement, prepared again at once */
    assert_int_equal(o.status, DB_OK);
    run_one(f, c, sq, "4", &o);
    assert_int_equal(o.status, DB_OK);
    assert_string_equal(o.v[0], "8");
    run_one(f, c, list_sql, NULL, &o);
    assert_string_equal(o.v[0], "1");
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.prepared, 2);
    close_conn(f, c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_use_prepares, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_uses, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_error_in_prepared_execution, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_aborted_and_failed_parse, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_vanished_statement, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_no_prepare_option, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_prepares_again, uvfx_setup, uvfx_teardown),
    };
    return cmocka_run_group_tests(tests, pgtmp_group_setup, pgtmp_group_teardown);
}
