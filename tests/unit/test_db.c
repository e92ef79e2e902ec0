/* db.c against a real PostgreSQL 15 started by the test (tests/unit/pgtmp.h): pipelined batches,
 * errors inside a batch, parameters, connection loss and reconnect, connect failure and timeout,
 * LISTEN/NOTIFY, close with work pending, and a batch large enough to make PQflush wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "db.h"
#include "log.h"
#include "pgtmp.h"
#include "uvfx.h"

PGTMP_GROUP(pg, KVS_LOG_WARNING)

/* ---- fixtures (the per-test loop: uvfx.h) ------------------------------------------------- */

static db_opts opts_for(const char *conninfo)
{
    db_opts o = {.conninfo = conninfo, .connect_timeout_ms = 5000, .application_name = "kvs-unit"};
    return o;
}

/* ---- capturing results -------------------------------------------------------------------- */

#define CAP_MAX 256

typedef struct cap {
    int *done;              /* shared completion counter */
    int *seq;               /* shared sequence counter (order of completion), may be NULL */
    int order;              /* value of *seq when this batch completed */
    enum db_status status;
    int failed_stmt;
    char sqlstate[6];
    char message[512];
    bool has_detail;
    char detail[256];
    int n;
    bool null_res[CAP_MAX];  /* results[i] == NULL */
    int rstatus[CAP_MAX];    /* PQresultStatus */
    char *row0[CAP_MAX];     /* row 0 as "a|b|<null>", or NULL without rows */
    char cmdtuples[CAP_MAX][16];
    uint64_t t_ms;           /* completion time (monotonic) */
    void (*then)(struct cap *cap, void *arg); /* optional: runs inside the callback */
    void *then_arg;
} cap;

static void cap_free(cap *c)
{
    for (int i = 0; i < CAP_MAX; i++) {
        free(c->row0[i]);
        c->row0[i] = NULL;
    }
}

static void cap_cb(db_result *r, void *arg)
{
    cap *c = arg;
    c->status = r->status;
    c->failed_stmt = r->failed_stmt;
    memcpy(c->sqlstate, r->sqlstate, sizeof c->sqlstate);
    snprintf(c->message, sizeof c->message, "%s", r->message ? r->message : "(null)");
    c->has_detail = r->detail != NULL;
    snprintf(c->detail, sizeof c->detail, "%s", r->detail ? r->detail : "");
    c->n = r->nresults;
    for (int i = 0; i < r->nresults && i < CAP_MAX; i++) {
        PGresult *res = r->results[i];
        c->null_res[i] = res == NULL;
        if (!res) continue;
        c->rstatus[i] = PQresultStatus(res);
        snprintf(c->cmdtuples[i], sizeof c->cmdtuples[i], "%s", PQcmdTuples(res));
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0) {
            kvs_buf b;
            kvs_buf_init(&b);
            for (int col = 0; col < PQnfields(res); col++) {
                int rc = kvs_buf_puts(&b, col ? "|" : "");
                rc |= kvs_buf_puts(&b, PQgetisnull(res, 0, col) ? "<null>" : PQgetvalue(res, 0, col));
                assert_int_equal(rc, 0);
            }
            c->row0[i] = kvs_buf_steal(&b);
        }
    }
    c->t_ms = kvs_now_mono_ms();
    if (c->seq) c->order = (*c->seq)++;
    (*c->done)++;
    if (c->then) c->then(c, c->then_arg);
}

/* One statement on a blocking connection (test set-up and checks); returns row 0 col 0 or "". */
static char *blocking_value(const char *sql)
{
    kvs_err err;
    PGconn *conn = db_connect_blocking(pg.conninfo, &err);
    assert_non_null(conn);
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    char *v = kvs_strdup(st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(conn);
    return v;
}

static void blocking_exec(const char *sql) { free(blocking_value(sql)); }

/* ---- tests -------------------------------------------------------------------------------- */

static void test_connect_and_query(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    assert_false(db_conn_is_ready(c));
    int done = 0;
    cap a = {.done = &done};
    const char *p[] = {"41"};
    db_exec(c,
            "SELECT 1 + $1::int, pg_catalog.current_setting('search_path'),"
            " pg_catalog.current_setting('application_name'), pg_catalog.current_setting('TimeZone'),"
            " pg_catalog.current_setting('statement_timeout')",
            1, p, cap_cb, &a);
    assert_int_equal(done, 0); /* never called from inside db_exec */
    assert_true(run_until(f, &done, 1, 5000));
    assert_int_equal(a.status, DB_OK);
    assert_int_equal(a.failed_stmt, -1);
    assert_string_equal(a.sqlstate, "");
    assert_int_equal(a.n, 1);
    /* Session settings made at connect: the role's search_path (no schema configured: the
     * shop's triggers resolve their functions as they do for the shop), our name, UTC, the
     * server's default statement_timeout. */
    assert_string_equal(a.row0[0], "42|\"$user\", public|kvs-unit|UTC|0");
    assert_true(db_conn_is_ready(c));
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.batches_ok, 1);
    assert_string_equal(db_conn_last_error(c), "");
    cap_free(&a);
    db_conn_close(c);
}

static void test_statement_timeout(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    o.statement_timeout_ms = 100;
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done}, b = {.done = &done};
    db_exec(c, "SELECT pg_catalog.current_setting('statement_timeout')", 0, NULL, cap_cb, &a);
    db_exec(c, "SELECT pg_catalog.pg_sleep(2)", 0, NULL, cap_cb, &b);
    assert_true(run_until(f, &done, 2, 5000));
    assert_int_equal(a.status, DB_OK);
    assert_string_equal(a.row0[0], "100ms");
    assert_int_equal(b.status, DB_E_SQL);
    assert_string_equal(b.sqlstate, "57014"); /* query_canceled */
    assert_true(b.t_ms - a.t_ms < 1500);
    cap_free(&a);
    cap_free(&b);
    db_conn_close(c);
}

/* The first host refuses, the second (our unix socket) works: libpq replaces its socket in the
 * middle of PQconnectPoll, and db must follow it to the new fd. */
static int closed_tcp_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
    close(s); /* nothing listens there now */
    return ntohs(sa.sin_port);
}

static void test_multi_host_fallback(void **state)
{
    fx *f = *state;
    char ci[600];
    snprintf(ci, sizeof ci, "host=127.0.0.1,%s port=%d,%d user=postgres dbname=postgres", pg.dir,
             closed_tcp_port(), pg.port);
    db_opts o = opts_for(ci);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done};
    db_exec(c, "SELECT pg_catalog.inet_server_addr() IS NULL", 0, NULL, cap_cb, &a);
    assert_true(run_until(f, &done, 1, 5000));
    assert_int_equal(a.status, DB_OK);
    assert_string_equal(a.row0[0], "t"); /* a unix-socket connection has no server address */
    cap_free(&a);
    db_conn_close(c);
}

static void resubmit_then(cap *cp, void *arg);

typedef struct chain {
    db_conn *c;
    int left;
    cap caps[3];
    int done;
} chain;

/* A callback that submits the next batch (re-entrancy). */
static void resubmit_then(cap *cp, void *arg)
{
    chain *ch = arg;
    (void)cp;
    if (ch->left == 0) return;
    int i = 3 - ch->left--;
    ch->caps[i] = (cap){.done = &ch->done, .then = resubmit_then, .then_arg = ch};
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    const char *p[] = {v};
    db_exec(ch->c, "SELECT $1::int * 10", 1, p, cap_cb, &ch->caps[i]);
}

static void test_batches_in_flight_in_order(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0, seq = 0;
    enum { N = 10 };
    cap caps[N];
    for (int i = 0; i < N; i++) {
        caps[i] = (cap){.done = &done, .seq = &seq};
        db_batch *b = db_batch_new();
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *p[] = {v};
        db_batch_add(b, "SELECT $1::int", 1, p);
        db_batch_add(b, "SELECT $1::int + 100, pg_catalog.pg_sleep(0.01)", 1, p);
        assert_int_equal(db_batch_count(b), 2);
        db_submit(c, b, cap_cb, &caps[i]);
    }
    assert_true(run_until(f, &done, N, 5000));
    for (int i = 0; i < N; i++) {
        char want[32];
        assert_int_equal(caps[i].status, DB_OK);
        assert_int_equal(caps[i].order, i);
        snprintf(want, sizeof want, "%d", i);
        assert_string_equal(caps[i].row0[0], want);
        snprintf(want, sizeof want, "%d|", i + 100);
        assert_string_equal(caps[i].row0[1], want);
        cap_free(&caps[i]);
    }
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_true(st.max_in_flight >= N); /* all ten were pipelined, not sent one by one */
    assert_int_equal(st.connects, 1);

    /* A callback that submits from inside the callback, three times over. */
    chain ch = {.c = c, .left = 3};
    cap first = {.done = &ch.done, .then = resubmit_then, .then_arg = &ch};
    db_exec(c, "SELECT 1", 0, NULL, cap_cb, &first);
    assert_true(run_until(f, &ch.done, 4, 5000));
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", i * 10);
        assert_int_equal(ch.caps[i].status, DB_OK);
        assert_string_equal(ch.caps[i].row0[0], want);
        cap_free(&ch.caps[i]);
    }
    cap_free(&first);
    db_conn_close(c);
}

static void test_error_mid_batch_rolls_back(void **state)
{
    fx *f = *state;
    blocking_exec("CREATE TABLE public.kvs_fail (id int PRIMARY KEY)");
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done}, chk = {.done = &done}, after = {.done = &done};
    db_batch *b = db_batch_new();
    db_batch_add(b, "INSERT INTO public.kvs_fail (id) VALUES (10)", 0, NULL);
    db_batch_add(b, "INSERT INTO public.kvs_fail (id) VALUES (10)", 0, NULL); /* duplicate */
    db_batch_add(b, "INSERT INTO public.kvs_fail (id) VALUES (11)", 0, NULL);
    db_submit(c, b, cap_cb, &a);
    db_exec(c, "SELECT pg_catalog.count(*) FROM public.kvs_fail", 0, NULL, cap_cb, &chk);
    const char *p[] = {"12"};
    db_exec(c, "INSERT INTO public.kvs_fail (id) VALUES ($1::int) RETURNING id", 1, p, cap_cb, &after);
    assert_true(run_until(f, &done, 3, 5000));

    assert_int_equal(a.status, DB_E_SQL);
    assert_int_equal(a.failed_stmt, 1);
    assert_string_equal(a.sqlstate, "23505");
    assert_non_null(strstr(a.message, "duplicate key"));
    assert_true(a.has_detail);
    assert_non_null(strstr(a.detail, "(id)=(10)"));
    assert_int_equal(a.n, 3);
    assert_false(a.null_res[0]);
    assert_int_equal(a.rstatus[0], PGRES_COMMAND_OK);
    assert_false(a.null_res[1]);
    assert_int_equal(a.rstatus[1], PGRES_FATAL_ERROR);
    assert_true(a.null_res[2]); /* skipped after the error */

    /* The first INSERT ran but was rolled back with the rest of its batch. */
    assert_int_equal(chk.status, DB_OK);
    assert_string_equal(chk.row0[0], "0");
    /* And the connection goes on. */
    assert_int_equal(after.status, DB_OK);
    assert_string_equal(after.row0[0], "12");
    char *n = blocking_value("SELECT pg_catalog.string_agg(id::text, ',') FROM public.kvs_fail");
    assert_string_equal(n, "12");
    free(n);
    assert_true(db_conn_is_ready(c));
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.batches_ok, 2);
    assert_int_equal(st.batches_failed, 1);
    cap_free(&a);
    cap_free(&chk);
    cap_free(&after);
    db_conn_close(c);
    blocking_exec("DROP TABLE public.kvs_fail");
}

static void test_null_params(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done};
    const char *p[] = {NULL, "41", "Phở bò \"đặc biệt\"", ""};
    db_exec(c, "SELECT $1::text IS NULL, $2::int + 1, $3::text, $1::text, $4::text = ''", 4, p,
            cap_cb, &a);
    assert_true(run_until(f, &done, 1, 5000));
    assert_int_equal(a.status, DB_OK);
    assert_string_equal(a.row0[0], "t|42|Phở bò \"đặc biệt\"|<null>|t");
    cap_free(&a);

    /* An empty batch is just a Sync; a NULL callback discards the outcome. */
    cap e = {.done = &done}, last = {.done = &done};
    db_submit(c, db_batch_new(), cap_cb, &e);
    db_exec(c, "SELECT pg_catalog.pg_notify('nobody_listens', 'x')", 0, NULL, NULL, NULL);
    db_exec(c, "SELECT 3", 0, NULL, cap_cb, &last);
    assert_true(run_until(f, &done, 3, 5000));
    assert_int_equal(e.status, DB_OK);
    assert_int_equal(e.n, 0);
    assert_int_equal(last.status, DB_OK);
    assert_string_equal(last.row0[0], "3");
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.batches_ok, 4);
    cap_free(&last);
    db_conn_close(c);
}

/* 100 rows x 11 columns = 1,100 parameters in one multi-row upsert statement. */
static db_batch *upsert_batch(const char *tag)
{
    enum { ROWS = 100, COLS = 11 };
    kvs_buf sql;
    kvs_buf_init(&sql);
    int rc = kvs_buf_puts(&sql, "INSERT INTO public.kvs_products (id, c1, c2, c3, c4, c5, c6, c7,"
                                " c8, c9, c10) VALUES ");
    for (int r = 0; r < ROWS; r++) {
        rc |= kvs_buf_puts(&sql, r ? ",(" : "(");
        for (int k = 0; k < COLS; k++)
            rc |= kvs_buf_printf(&sql, "%s$%d%s", k ? "," : "", r * COLS + k + 1,
                                 k == 0 ? "::bigint" : "::text");
        rc |= kvs_buf_puts(&sql, ")");
    }
    rc |= kvs_buf_puts(&sql, " ON CONFLICT (id) DO UPDATE SET c1 = EXCLUDED.c1, c2 = EXCLUDED.c2,"
                             " c10 = EXCLUDED.c10");
    assert_int_equal(rc, 0);

    static char vals[ROWS * COLS][32];
    const char *params[ROWS * COLS];
    for (int r = 0; r < ROWS; r++)
        for (int k = 0; k < COLS; k++) {
            int i = r * COLS + k;
            if (k == 0) snprintf(vals[i], sizeof vals[i], "%d", 1000 + r);
            else snprintf(vals[i], sizeof vals[i], "%s-%d-%d", tag, r, k);
            /* c10 NULL on even rows: NULLs inside a big parameter list. */
            params[i] = (k == 10 && r % 2 == 0) ? NULL : vals[i];
        }
    db_batch *b = db_batch_new();
    db_batch_add(b, kvs_buf_cstr(&sql), ROWS * COLS, params);
    kvs_buf_free(&sql);
    return b;
}

static void test_multirow_upsert_many_params(void **state)
{
    fx *f = *state;
    blocking_exec("CREATE TABLE public.kvs_products (id bigint PRIMARY KEY, c1 text, c2 text,"
                  " c3 text, c4 text, c5 text, c6 text, c7 text, c8 text, c9 text, c10 text)");
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap ins = {.done = &done}, upd = {.done = &done}, chk = {.done = &done};
    db_submit(c, upsert_batch("v1"), cap_cb, &ins);
    db_submit(c, upsert_batch("v2"), cap_cb, &upd);
    db_exec(c,
            "SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE c1 LIKE 'v2-%'),"
            " pg_catalog.count(c10), pg_catalog.count(*) FILTER (WHERE c3 LIKE 'v1-%')"
            " FROM public.kvs_products",
            0, NULL, cap_cb, &chk);
    assert_true(run_until(f, &done, 3, 10000));
    assert_int_equal(ins.status, DB_OK);
    assert_string_equal(ins.cmdtuples[0], "100");
    assert_int_equal(upd.status, DB_OK);
    assert_string_equal(upd.cmdtuples[0], "100");
    assert_int_equal(chk.status, DB_OK);
    /* 100 rows, all updated by the second upsert, c10 NULL on half, c3 not in the SET list. */
    assert_string_equal(chk.row0[0], "100|100|50|100");
    cap_free(&ins);
    cap_free(&upd);
    cap_free(&chk);
    db_conn_close(c);
    blocking_exec("DROP TABLE public.kvs_products");
}

/* Terminates the backend running pg_sleep from a second (blocking) connection, once the query
 * is visibly active. */
typedef struct killer {
    uv_timer_t t;
    int pid;
    int killed;
} killer;

static void killer_cb(uv_timer_t *t)
{
    killer *k = t->data;
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
             " WHERE pid = %d AND state = 'active' AND query LIKE '%%pg_sleep(30)%%'",
             k->pid);
    char *v = blocking_value(sql);
    if (strcmp(v, "t") == 0) {
        k->killed = 1;
        uv_timer_stop(t);
    }
    free(v);
}

static void test_connection_killed_then_reconnect(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap pid1 = {.done = &done};
    db_exec(c, "SELECT pg_catalog.pg_backend_pid()", 0, NULL, cap_cb, &pid1);
    assert_true(run_until(f, &done, 1, 5000));
    assert_int_equal(pid1.status, DB_OK);

    cap sleep = {.done = &done}, behind = {.done = &done};
    db_exec(c, "SELECT pg_catalog.pg_sleep(30)", 0, NULL, cap_cb, &sleep);
    db_exec(c, "SELECT 2", 0, NULL, cap_cb, &behind); /* in flight behind it */
    killer k = {.pid = atoi(pid1.row0[0])};
    uv_timer_init(&f->loop, &k.t);
    k.t.data = &k;
    uv_timer_start(&k.t, killer_cb, 20, 20);
    uint64_t t0 = kvs_now_mono_ms();
    assert_true(run_until(f, &done, 3, 10000));
    assert_true(kvs_now_mono_ms() - t0 < 5000);
    assert_int_equal(k.killed, 1);
    uv_timer_stop(&k.t);
    uv_close((uv_handle_t *)&k.t, NULL);
    assert_int_equal(sleep.status, DB_E_CONN);
    assert_int_equal(behind.status, DB_E_CONN);
    assert_int_equal(sleep.failed_stmt, -1);
    assert_true(sleep.null_res[0]);
    assert_true(strlen(sleep.message) > 0);
    assert_false(db_conn_is_ready(c));
    assert_true(strlen(db_conn_last_error(c)) > 0);

    /* The next submit reconnects. */
    cap pid2 = {.done = &done};
    db_exec(c, "SELECT pg_catalog.pg_backend_pid()", 0, NULL, cap_cb, &pid2);
    assert_true(run_until(f, &done, 4, 5000));
    assert_int_equal(pid2.status, DB_OK);
    assert_string_not_equal(pid2.row0[0], pid1.row0[0]);
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_int_equal(st.connects, 2);
    cap_free(&pid1);
    cap_free(&pid2);
    cap_free(&sleep);
    cap_free(&behind);
    db_conn_close(c);
}

static void test_connect_refused(void **state)
{
    fx *f = *state;
    int port = closed_tcp_port();
    char ci[300];
    /* Two hosts, both refused: libpq opens a second socket during the attempt. */
    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres"
             " password=Sup3rSecretPw",
             port, port);
    db_opts o = opts_for(ci);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done}, b = {.done = &done};
    uint64_t t0 = kvs_now_mono_ms();
    db_exec(c, "SELECT 1", 0, NULL, cap_cb, &a);
    db_exec(c, "SELECT 2", 0, NULL, cap_cb, &b); /* queued ones fail too: no retry loop in db */
    assert_true(run_until(f, &done, 2, 5000));
    assert_true(kvs_now_mono_ms() - t0 < 1000);
    assert_int_equal(a.status, DB_E_CONN);
    assert_int_equal(b.status, DB_E_CONN);
    assert_non_null(strstr(a.message, "refused"));
    assert_null(strstr(a.message, "Sup3rSecretPw"));
    assert_null(strstr(db_conn_last_error(c), "Sup3rSecretPw"));
    assert_true(strlen(db_conn_last_error(c)) > 0);
    assert_false(db_conn_is_ready(c));
    cap_free(&a);
    cap_free(&b);
    db_conn_close(c);

    kvs_err err;
    assert_null(db_connect_blocking(ci, &err));
    assert_true(err.code < 0);
    assert_non_null(strstr(err.msg, "refused"));
    assert_null(strstr(err.msg, "Sup3rSecretPw"));
}

/* A TCP server that accepts and then never says a word. */
typedef struct silent {
    uv_tcp_t server;
    uv_tcp_t *clients[8];
    int nclients;  /* accepted so far */
    int port;
} silent;

static void free_on_close(uv_handle_t *h) { free(h); }

static void silent_on_conn(uv_stream_t *server, int status)
{
    silent *s = server->data;
    assert_int_equal(status, 0);
    assert_true(s->nclients < 8);
    uv_tcp_t *cl = malloc(sizeof *cl);
    assert_non_null(cl);
    uv_tcp_init(server->loop, cl);
    assert_int_equal(uv_accept(server, (uv_stream_t *)cl), 0);
    s->clients[s->nclients++] = cl;
}

static void silent_start(fx *f, silent *s)
{
    memset(s, 0, sizeof *s);
    uv_tcp_init(&f->loop, &s->server);
    s->server.data = s;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&s->server, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->server, 8, silent_on_conn), 0);
    int len = sizeof sa;
    assert_int_equal(uv_tcp_getsockname(&s->server, (struct sockaddr *)&sa, &len), 0);
    s->port = ntohs(sa.sin_port);
}

static void silent_stop(fx *f, silent *s)
{
    for (int i = 0; i < s->nclients; i++) uv_close((uv_handle_t *)s->clients[i], free_on_close);
    uv_close((uv_handle_t *)&s->server, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* target_session_attrs=prefer-standby on a primary: libpq connects to each host, finds no
 * standby, closes the socket and starts over, then settles for the first host on a second pass
 * (three sockets in one PQconnectPoll sequence). A new socket usually gets the old fd number, so
 * db must re-register the fd with epoll after every PQconnectPoll, not trust the old watch. */
static void test_connect_socket_replaced(void **state)
{
    fx *f = *state;
    char ci[600];
    snprintf(ci, sizeof ci,
             "host=%s,%s port=%d,%d user=postgres dbname=postgres target_session_attrs=prefer-standby",
             pg.dir, pg.dir, pg.port, pg.port);
    db_opts o = opts_for(ci);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done};
    uint64_t t0 = kvs_now_mono_ms();
    db_exec(c, "SELECT pg_catalog.pg_is_in_recovery()", 0, NULL, cap_cb, &a);
    assert_true(run_until(f, &done, 1, 5000));
    assert_int_equal(a.status, DB_OK);
    assert_string_equal(a.row0[0], "f");
    assert_true(kvs_now_mono_ms() - t0 < 2000);
    cap_free(&a);
    db_conn_close(c);
}

static void test_connect_timeout(void **state)
{
    fx *f = *state;
    silent s;
    silent_start(f, &s);
    char ci[300];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres", s.port);
    db_opts o = opts_for(ci);
    o.connect_timeout_ms = 300;
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done};
    uint64_t t0 = kvs_now_mono_ms();
    db_exec(c, "SELECT 1", 0, NULL, cap_cb, &a);
    assert_true(run_until(f, &done, 1, 5000));
    uint64_t took = kvs_now_mono_ms() - t0;
    assert_int_equal(a.status, DB_E_TIMEOUT);
    assert_true(took >= 290 && took < 1500);
    assert_int_equal(s.nclients, 1); /* it really connected and then waited */
    assert_non_null(strstr(db_conn_last_error(c), "timed out"));
    cap_free(&a);
    db_conn_close(c);
    silent_stop(f, &s);
}

typedef struct notes {
    int n;
    char channel[4][64];
    char payload[4][64];
} notes;

static void on_notify(const char *channel, const char *payload, void *arg)
{
    notes *ns = arg;
    if (ns->n >= 4) return;
    snprintf(ns->channel[ns->n], sizeof ns->channel[0], "%s", channel);
    snprintf(ns->payload[ns->n], sizeof ns->payload[0], "%s", payload);
    ns->n++;
}

static void test_listen_notify(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    db_conn *listener = db_conn_new(&f->loop, &o);
    notes ns = {0};
    db_conn_set_notify_cb(listener, on_notify, &ns);
    /* Connect without work first (what a LISTEN connection does). */
    db_conn_connect(listener);
    int ready = 0;
    for (int i = 0; i < 500 && !ready; i++) {
        uv_run(&f->loop, UV_RUN_ONCE);
        ready = db_conn_is_ready(listener);
    }
    assert_true(ready);
    int done = 0;
    cap l = {.done = &done};
    db_exec(listener, "LISTEN kvs_chan", 0, NULL, cap_cb, &l);
    assert_true(run_until(f, &done, 1, 5000));
    assert_int_equal(l.status, DB_OK);

    db_conn *sender = db_conn_new(&f->loop, &o);
    cap s1 = {.done = &done};
    const char *p[] = {"kvs_chan", "payload one"};
    db_batch *b = db_batch_new();
    db_batch_add(b, "SELECT pg_catalog.pg_notify($1, $2)", 2, p);
    db_batch_add(b, "NOTIFY kvs_chan, 'two'", 0, NULL);
    db_submit(sender, b, cap_cb, &s1);
    assert_true(run_until(f, &done, 2, 5000));
    assert_int_equal(s1.status, DB_OK);
    assert_true(run_until(f, &ns.n, 2, 5000));
    assert_string_equal(ns.channel[0], "kvs_chan");
    assert_string_equal(ns.payload[0], "payload one");
    assert_string_equal(ns.channel[1], "kvs_chan");
    assert_string_equal(ns.payload[1], "two");
    cap_free(&l);
    cap_free(&s1);
    db_conn_close(sender);
    db_conn_close(listener);
}

static void submit_during_close(cap *cp, void *arg)
{
    db_conn *c = arg;
    static cap late;
    late = (cap){.done = cp->done};
    cp->then = NULL;
    db_exec(c, "SELECT 1", 0, NULL, cap_cb, &late); /* fails at once: the conn is closing */
    assert_int_equal(late.status, DB_E_CANCELLED);
}

static void test_close_with_queued(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap caps[3];
    for (int i = 0; i < 3; i++) {
        caps[i] = (cap){.done = &done};
        db_exec(c, "SELECT 1", 0, NULL, cap_cb, &caps[i]);
    }
    caps[1].then = submit_during_close;
    caps[1].then_arg = c;
    db_conn_close(c);
    assert_int_equal(done, 4); /* before db_conn_close returned, incl. the late submit */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(caps[i].status, DB_E_CANCELLED);
        assert_true(caps[i].null_res[0]);
    }
    /* teardown: the loop must close with nothing left (uv_loop_close() == 0). */
}

/* Closing from inside a callback while another batch is in flight (connected this time). */
static void close_then(cap *cp, void *arg)
{
    (void)cp;
    db_conn_close(arg);
}

static void test_close_from_callback_in_flight(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done, .then = close_then, .then_arg = c};
    cap b = {.done = &done};
    db_exec(c, "SELECT 1", 0, NULL, cap_cb, &a);
    db_exec(c, "SELECT pg_catalog.pg_sleep(10)", 0, NULL, cap_cb, &b);
    uint64_t t0 = kvs_now_mono_ms();
    assert_true(run_until(f, &done, 2, 5000));
    assert_true(kvs_now_mono_ms() - t0 < 2000);
    assert_int_equal(a.status, DB_OK);
    assert_int_equal(b.status, DB_E_CANCELLED);
    cap_free(&a);
    cap_free(&b);
}

static void test_large_batch_flush_waits(void **state)
{
    fx *f = *state;
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    enum { N = 200, SZ = 64 * 1024 };
    char *big = malloc(SZ + 1);
    assert_non_null(big);
    memset(big, 'x', SZ);
    big[SZ] = '\0';
    db_batch *b = db_batch_new();
    for (int i = 0; i < N; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        big[0] = (char)('a' + i % 26);
        const char *p[] = {big, idx};
        db_batch_add(b, "SELECT pg_catalog.length($1::text), $2::int, pg_catalog.left($1::text, 1)", 2, p);
    }
    free(big);
    int done = 0;
    cap a = {.done = &done};
    db_submit(c, b, cap_cb, &a);
    assert_true(run_until(f, &done, 1, 20000));
    assert_int_equal(a.status, DB_OK);
    assert_int_equal(a.n, N);
    for (int i = 0; i < N; i++) {
        char want[48];
        snprintf(want, sizeof want, "%d|%d|%c", SZ, i, 'a' + i % 26);
        assert_string_equal(a.row0[i], want);
    }
    db_conn_stats st;
    db_conn_get_stats(c, &st);
    assert_true(st.flush_waits > 0); /* ~13 MB cannot go out in one non-blocking flush */
    cap_free(&a);
    db_conn_close(c);
}

static void test_quote_ident(void **state)
{
    fx *f = *state;
    const char *names[] = {"abc", "Tên sản phẩm", "a\"b", "\"", "", "select", "x y;--"};
    kvs_err err;
    PGconn *conn = db_connect_blocking(pg.conninfo, &err);
    assert_non_null(conn);
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        char *mine = db_quote_ident(names[i]);
        char *theirs = PQescapeIdentifier(conn, names[i], strlen(names[i]));
        assert_non_null(theirs);
        assert_string_equal(mine, theirs);
        PQfreemem(theirs);
        free(mine);
    }
    PQfinish(conn);
    char *q = db_quote_ident("a\"b");
    assert_string_equal(q, "\"a\"\"b\"");
    free(q);

    /* And the server accepts it as a column name. */
    char *col = db_quote_ident("Giá \"bán\"");
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT 7 AS %s", col);
    free(col);
    db_opts o = opts_for(pg.conninfo);
    db_conn *c = db_conn_new(&f->loop, &o);
    int done = 0;
    cap a = {.done = &done};
    db_exec(c, sql, 0, NULL, cap_cb, &a);
    assert_true(run_until(f, &done, 1, 5000));
    assert_int_equal(a.status, DB_OK);
    assert_string_equal(a.row0[0], "7");
    cap_free(&a);
    db_conn_close(c);
}

static void test_blocking_connect_settings(void **state)
{
    (void)state;
    kvs_err err;
    PGconn *conn = db_connect_blocking(pg.conninfo, &err);
    assert_non_null(conn);
    assert_int_equal(err.code, 0);
    PGresult *r = PQexec(conn, "SELECT pg_catalog.current_setting('search_path'),"
                               " pg_catalog.current_setting('TimeZone')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "");
    assert_string_equal(PQgetvalue(r, 0, 1), "UTC");
    PQclear(r);
    PQfinish(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_and_query, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_statement_timeout, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_multi_host_fallback, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_batches_in_flight_in_order, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_error_mid_batch_rolls_back, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_null_params, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_multirow_upsert_many_params, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_connection_killed_then_reconnect, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_connect_socket_replaced, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_listen_notify, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_close_with_queued, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback_in_flight, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_large_batch_flush_waits, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_quote_ident, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_blocking_connect_settings, uvfx_setup, uvfx_teardown),
    };
    return cmocka_run_group_tests(tests, pgtmp_group_setup, pgtmp_group_teardown);
}
