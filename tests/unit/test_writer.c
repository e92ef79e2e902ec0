/* writer.c against a real PostgreSQL 15 (tests/unit/pgtmp.h) holding the test shop's schema
 * (db/schema/shop_base.sql) and the migrations: a page inserted, an unchanged page writes
 * nothing, a page with one bad row stores the others and reports the bad one, a connection
 * killed under a page is retried, a lost lease stops writes. Pages come from map_products, as
 * in a run. Run from the repository root (make check-unit does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "db.h"
#include "jewel.h"
#include "kvjson.h"
#include "kvtime.h"
#include "log.h"
#include "mapping.h"
#include "pgtmp.h"
#include "store.h"
#include "uvfx.h"
#include "writer.h"

static pgtmp pg;
static store *st;
static char integ[64];   /* third_party_integrations.id of the test's integration */
static jewel_map *jm;

#define OWNER "unit-writer"
#define APP "kvs-writer-unit"

/* ---- blocking helpers (set-up and checks; the loop is not running meanwhile) ---------------- */

static PGconn *blocking_conn(void)
{
    kvs_err err;
    PGconn *c = db_connect_blocking(pg.conninfo, &err);
    if (!c) fail_msg("connect: %s", err.msg);
    return c;
}

/* Runs sql (one or several statements); returns row 0 column 0 of the last result, or "". */
static char *sql_value(const char *sql)
{
    PGconn *c = blocking_conn();
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) fail_msg("%.80s: %s", sql, PQresultErrorMessage(r));
    char *v = kvs_strdup(s == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
    return v;
}

static long sql_long(const char *sql)
{
    char *v = sql_value(sql);
    long n = atol(v);
    free(v);
    return n;
}

static void sql_file(PGconn *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("%s: cannot open (run from the repository root)", path);
    kvs_buf b;
    kvs_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) assert_int_equal(kvs_buf_append(&b, chunk, n), 0);
    fclose(f);
    PGresult *r = PQexec(c, kvs_buf_cstr(&b));
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", path, PQresultErrorMessage(r));
    PQclear(r);
    kvs_buf_free(&b);
}

static int group_setup(void **state)
{
    (void)state;
    log_set_level(KVS_LOG_ERR);
    if (pgtmp_start(&pg)) return -1;
    PGconn *c = blocking_conn();
    static const char *const files[] = {
        "db/schema/shop_base.sql", "db/migrations/add_kiotviet_integration.sql",
        "db/migrations/001_lease_session.sql", "db/migrations/002_integration_checks_without_row.sql",
        "db/migrations/003_token_credentials_and_endpoints.sql",
        "db/migrations/005_branches_stock_serials.sql"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) sql_file(c, files[i]);
    const char *schema = "public";
    PGresult *d = PQexecParams(c, store_discover_sql, 1, NULL, &schema, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(d), PGRES_TUPLES_OK);
    char *warnings = NULL;
    kvs_err err;
    kvs_err_clear(&err);
    st = store_new("public", d, &warnings, &err);
    if (!st) fail_msg("store_new: %s", err.msg);
    free(warnings);
    PQclear(d);
    PQfinish(c);
    /* The migration made the row named kiotviet: hold its lease. */
    char *id = sql_value("UPDATE public.third_party_integrations SET sync_lease_owner = '" OWNER "',"
                         " sync_lease_expires_at = now() + interval '1 hour' WHERE name = 'kiotviet'"
                         " RETURNING id");
    snprintf(integ, sizeof integ, "%s", id);
    free(id);
    jm = jewel_map_new_defaults();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    jewel_map_free(jm);
    store_free(st);
    pgtmp_stop(&pg);
    log_deinit();
    return 0;
}

/* ---- the writer under test ------------------------------------------------------------------ */

typedef struct got {
    int n;                   /* outcomes received */
    writer_outcome o;        /* the last one; failed copied below */
    writer_failure failed[8];
    char error[512];
} got;

static void got_cb(const writer_outcome *o, void *arg)
{
    got *g = arg;
    g->o = *o;
    g->o.failed = NULL;
    for (int i = 0; i < o->nfailed && i < 8; i++) g->failed[i] = o->failed[i];
    snprintf(g->error, sizeof g->error, "%s", o->error ? o->error : "");
    g->o.error = NULL;
    g->n++;
}

static const db_opts dbo_template = {.connect_timeout_ms = 5000, .application_name = APP};

static writer *writer_for(fx *f, got *g, db_opts *dbo)
{
    *dbo = dbo_template;
    dbo->conninfo = pg.conninfo;
    static const log_ctx lctx = {.integration = "kiotviet"};
    writer_opts o = {
        .loop = &f->loop,
        .store = st,
        .db = dbo,
        .connections = 1,
        .integration = integ,
        .owner = OWNER,
        .lease_seconds = 60,
        .max_delete_ratio = 0.2,
        .lctx = &lctx,
        .cb = got_cb,
        .arg = g,
    };
    return writer_new(&o);
}

/* Maps a products "data" array into p. */
static void page_of(const char *json, map_page *p)
{
    map_opts mo = {.jewel = jm, .name_scan = false};
    kvjson_doc d;
    kvs_err e;
    char *copy = kvs_strdup(json);
    if (kvjson_parse(copy, strlen(copy), &d, &e)) fail_msg("%s: %s", json, e.msg);
    map_page_init(p);
    map_products(d.root, &mo, p);
    kvjson_doc_free(&d);
    free(copy);
}

/* Writes one page and runs the loop until the writer reports it. */
static void write_page(fx *f, writer *w, got *g, const char *json)
{
    map_page p;
    page_of(json, &p);
    int before = g->n;
    writer_put_page(w, WRITER_PRODUCTS, &p);
    map_page_free(&p);
    assert_true(run_until(f, &g->n, before + 1, 30000));
    assert_int_equal(writer_pending(w), 0);
}

/* Frees the writer and lets db.c finish closing its connections. */
static void writer_done(fx *f, writer *w)
{
    writer_free(w);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

#define PROD(id, code, price) \
    "{\"id\":" #id ",\"code\":\"" code "\",\"name\":\"N" #id "\",\"basePrice\":" #price \
    ",\"modifiedDate\":\"2024-05-0" #id "T10:00:00\"}"

static long kv_rows(const char *where)
{
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL %s", where);
    return sql_long(q);
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* A page of new rows is inserted; the same page again is unchanged and writes nothing. */
static void test_page_inserted_then_unchanged(void **state)
{
    fx *f = *state;
    got g = {0};
    db_opts dbo;
    writer *w = writer_for(f, &g, &dbo);
    const char *page = "[" PROD(1, "W-1", 100) "," PROD(2, "W-2", 200) "," PROD(3, "W-3", 300) "]";
    write_page(f, w, &g, page);
    assert_int_equal(g.o.kind, WRITER_PAGE);
    assert_int_equal(g.o.ent, WRITER_PRODUCTS);
    assert_int_equal(g.o.rows, 3);
    assert_int_equal(g.o.inserted, 3);
    assert_int_equal(g.o.updated + g.o.unchanged + g.o.nfailed + g.o.unsent, 0);
    assert_false(g.o.lease_lost || g.o.db_down);
    assert_string_equal(g.error, "");
    assert_int_equal(kv_rows("AND sku LIKE 'W-%'"), 3);
    char *xmins = sql_value("SELECT string_agg(xmin::text, ',' ORDER BY kiotviet_id) FROM public.products"
                            " WHERE sku LIKE 'W-%'");

    write_page(f, w, &g, page);
    assert_int_equal(g.o.rows, 3);
    assert_int_equal(g.o.unchanged, 3);
    assert_int_equal(g.o.inserted + g.o.updated + g.o.nfailed + g.o.unsent, 0);
    char *again = sql_value("SELECT string_agg(xmin::text, ',' ORDER BY kiotviet_id) FROM public.products"
                            " WHERE sku LIKE 'W-%'");
    assert_string_equal(again, xmins); /* no row version written */
    free(xmins);
    free(again);

    /* One changed row: updated, the others unchanged. */
    write_page(f, w, &g, "[" PROD(1, "W-1", 100) "," PROD(2, "W-2", 250) "," PROD(3, "W-3", 300) "]");
    assert_int_equal(g.o.updated, 1);
    assert_int_equal(g.o.unchanged, 2);
    assert_int_equal(sql_long("SELECT price::int FROM public.products WHERE kiotviet_id = 2"), 250);
    writer_done(f, w);
}

/* A row the database refuses (price beyond numeric(18,2)) is reported with its id, time and
 * message; the page's other rows are stored. */
static void test_bad_row_reported_others_stored(void **state)
{
    fx *f = *state;
    got g = {0};
    db_opts dbo;
    writer *w = writer_for(f, &g, &dbo);
    write_page(f, w, &g,
               "[" PROD(4, "B-4", 1) "," PROD(5, "B-5", 1e20) "," PROD(6, "B-6", 3) "]");
    assert_int_equal(g.o.rows, 3);
    assert_int_equal(g.o.inserted, 2);
    assert_int_equal(g.o.nfailed, 1);
    assert_int_equal(g.o.unsent, 0);
    assert_true(g.failed[0].id == 5);
    int64_t want = 0;
    assert_int_equal(kvtime_parse("2024-05-05T10:00:00", &want), 0);
    assert_true(g.failed[0].modified_us == want);
    if (!strstr(g.failed[0].message, "overflow")) fail_msg("message: %s", g.failed[0].message);
    assert_string_equal(g.error, ""); /* a row's failure is not the page's */
    assert_int_equal(kv_rows("AND sku IN ('B-4', 'B-6')"), 2);
    assert_int_equal(kv_rows("AND kiotviet_id = 5"), 0);
    writer_done(f, w);
}

/* A connection killed while a page waits on a lock: the page is sent again and stored. */
static void test_killed_connection_retried(void **state)
{
    fx *f = *state;
    got g = {0};
    db_opts dbo;
    writer *w = writer_for(f, &g, &dbo);
    PGconn *locker = blocking_conn();
    PQclear(PQexec(locker, "BEGIN"));
    PGresult *r = PQexec(locker, "LOCK TABLE public.products IN EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);

    map_page p;
    page_of("[" PROD(7, "K-7", 7) "," PROD(8, "K-8", 8) "]", &p);
    writer_put_page(w, WRITER_PRODUCTS, &p);
    map_page_free(&p);
    /* Wait until its statement is blocked on our lock, then kill its session. */
    long killed = 0;
    for (int i = 0; i < 100 && !killed; i++) {
        int never = 0;
        run_until(f, &never, 1, 100);
        killed = sql_long("SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM"
                          " pg_catalog.pg_stat_activity WHERE application_name = '" APP "'"
                          " AND wait_event_type = 'Lock'");
    }
    assert_int_equal(killed, 1);
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);
    assert_int_equal(g.n, 0); /* not reported: waiting to be sent again */
    assert_true(run_until(f, &g.n, 1, 30000));
    assert_int_equal(g.o.inserted, 2);
    assert_false(g.o.db_down);
    assert_string_equal(g.error, "");
    assert_int_equal(kv_rows("AND sku LIKE 'K-%'"), 2);
    writer_done(f, w);
}

/* Another owner took the lease: the page writes nothing and says so. */
static void test_lost_lease_stops_writes(void **state)
{
    fx *f = *state;
    got g = {0};
    db_opts dbo;
    writer *w = writer_for(f, &g, &dbo);
    free(sql_value("UPDATE public.third_party_integrations SET sync_lease_owner = 'other'"));
    write_page(f, w, &g, "[" PROD(9, "L-9", 9) "]");
    assert_true(g.o.lease_lost);
    assert_int_equal(g.o.unsent, 1);
    assert_int_equal(g.o.inserted + g.o.updated + g.o.unchanged, 0);
    assert_int_equal(kv_rows("AND sku LIKE 'L-%'"), 0);
    /* Removals are lease-checked too. */
    int64_t ids[] = {1};
    writer_put_ids(w, WRITER_REMOVE, WRITER_PRODUCTS, ids, 1);
    assert_true(run_until(f, &g.n, 2, 30000));
    assert_true(g.o.lease_lost);
    assert_int_equal(g.o.marked, 0);
    free(sql_value("UPDATE public.third_party_integrations SET sync_lease_owner = '" OWNER "'"));
    writer_done(f, w);
}

/* writer_stop gives up a page waiting to be retried, reporting it unsent before it returns. */
static void test_stop_gives_up_waiting(void **state)
{
    fx *f = *state;
    got g = {0};
    db_opts dbo = dbo_template;
    dbo.conninfo = "host=/nonexistent-kvs-dir port=1 user=postgres dbname=postgres";
    static const log_ctx lctx = {.integration = "kiotviet"};
    writer_opts o = {.loop = &f->loop, .store = st, .db = &dbo, .connections = 1,
                     .integration = integ, .owner = OWNER, .lease_seconds = 60,
                     .lctx = &lctx, .cb = got_cb, .arg = &g};
    writer *w = writer_new(&o);
    map_page p;
    page_of("[" PROD(1, "S-1", 1) "]", &p);
    writer_put_page(w, WRITER_PRODUCTS, &p);
    map_page_free(&p);
    /* The connect fails: the page waits for its retry timer. */
    int never = 0;
    run_until(f, &never, 1, 300);
    assert_int_equal(g.n, 0);
    assert_int_equal(writer_pending(w), 1);
    writer_stop(w);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.o.unsent, 1);
    assert_false(g.o.db_down || g.o.lease_lost);
    assert_int_equal(writer_pending(w), 0);
    writer_done(f, w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_page_inserted_then_unchanged, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_row_reported_others_stored, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_killed_connection_retried, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_lost_lease_stops_writes, uvfx_setup, uvfx_teardown),
        cmocka_unit_test_setup_teardown(test_stop_gives_up_waiting, uvfx_setup, uvfx_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
