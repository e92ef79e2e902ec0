/* store's SQL builders without a database: the one schema substitution, the statement table a
 * store owns, the lease predicate shared by both claims, and integ_row's secrets (parsing
 * registers nothing with the log redactor; the holder does, explicitly). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/store_int.h"
#include "log.h"
#include "store.h"

static void test_subst_every_at(void **state)
{
    (void)state;
    char *s = store_sql_subst("SELECT 1 FROM @.\"a\" JOIN @.\"b\" USING (x)", "\"sh\"\"op\"");
    assert_string_equal(s, "SELECT 1 FROM \"sh\"\"op\".\"a\" JOIN \"sh\"\"op\".\"b\" USING (x)");
    free(s);
    s = store_sql_subst("no schema here", "\"x\"");
    assert_string_equal(s, "no schema here");
    free(s);
    s = store_sql_subst("@", "");
    assert_string_equal(s, "");
    free(s);
}

/* Every statement is built for the schema: no "@" left, and the schema-qualified ones name the
 * quoted schema (a schema with a quote in its name stays one identifier). */
static void test_build_every_statement(void **state)
{
    (void)state;
    const char *q = "\"my \"\"shop\"\"\"";
    for (int i = 0; i < ST__COUNT; i++) {
        char *s = store_sql_build(q, (enum store_stmt)i);
        assert_non_null(s);
        assert_true(strlen(s) > 6);
        assert_null(strchr(s, '@'));
        free(s);
    }
    char *list = store_sql_build(q, ST_LIST);
    assert_non_null(strstr(list, "\"my \"\"shop\"\"\".\"third_party_integrations\""));
    free(list);
    char *listen = store_sql_build(q, ST_LISTEN);
    assert_string_equal(listen, "LISTEN " STORE_NOTIFY_CHANNEL);
    free(listen);
    char *now = store_sql_build(q, ST_DB_NOW);
    assert_string_equal(now, "SELECT (extract(epoch from pg_catalog.now()) * 1000000)::bigint");
    free(now);
}

/* The claim/lease predicate is written once: both claims carry the same text, and the list and
 * the abandoned-row check the same 'live' test. */
static void test_lease_predicate_shared(void **state)
{
    (void)state;
    const char *free_for = STORE_LEASE_FREE_FOR("$2");
    char *claim = store_sql_build("\"s\"", ST_CLAIM);
    char *due = store_sql_build("\"s\"", ST_CLAIM_DUE);
    assert_non_null(strstr(claim, free_for));
    assert_non_null(strstr(due, free_for));
    free(claim);
    free(due);
    char *list = store_sql_build("\"s\"", ST_LIST);
    char *abandoned = store_sql_build("\"s\"", ST_LOG_ABANDONED);
    assert_non_null(strstr(list, STORE_LEASE_LIVE("")));
    assert_non_null(strstr(abandoned, STORE_LEASE_LIVE("i.")));
    free(list);
    free(abandoned);
}

/* A store's table: one string per statement, the same texts store_sql_build makes. */
static void test_table_matches_build(void **state)
{
    (void)state;
    char **t = store_sql_table_new("\"public\"");
    for (int i = 0; i < ST__COUNT; i++) {
        char *b = store_sql_build("\"public\"", (enum store_stmt)i);
        assert_string_equal(t[i], b);
        free(b);
    }
    char **u = store_sql_table_new("\"other\"");
    assert_string_not_equal(t[ST_LIST], u[ST_LIST]); /* per store, not one process-wide copy */
    assert_ptr_not_equal(t[ST_LIST], u[ST_LIST]);
    store_sql_table_free(u);
    store_sql_table_free(t);
    store_sql_table_free(NULL);
}

#define ROW_SECRET "client-secret-4711"
#define ROW_TOKEN "access-token-0815"

/* One ST_LIST row (22 columns, the rest NULL) with a client secret and a token. */
static PGresult *list_result(void)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc att[22];
    char names[22][8];
    memset(att, 0, sizeof att);
    for (int i = 0; i < 22; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        att[i].name = names[i];
        att[i].format = 0;
        att[i].typid = 25; /* text */
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    assert_true(PQsetResultAttrs(r, 22, att));
    const char *vals[][2] = {{"0", "00000000-0000-0000-0000-000000000001"}, {"1", "kiotviet"},
                             {"5", ROW_SECRET}, {"7", ROW_TOKEN}, {"9", "t"}, {"10", "t"},
                             {"12", "15"}};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        assert_true(PQsetvalue(r, 0, atoi(vals[i][0]), (char *)vals[i][1], (int)strlen(vals[i][1])));
    return r;
}

static bool redacted(const char *secret)
{
    char buf[128];
    snprintf(buf, sizeof buf, "x %s y", secret);
    log_redact(buf, sizeof buf);
    return strstr(buf, secret) == NULL;
}

static void test_row_parse_registers_nothing(void **state)
{
    (void)state;
    PGresult *r = list_result();
    size_t base = log_secret_count();
    integ_row *x = integ_row_parse(r, 0);
    assert_string_equal(x->client_secret, ROW_SECRET);
    assert_string_equal(x->access_token, ROW_TOKEN);
    assert_string_equal(x->name, "kiotviet");
    assert_int_equal(x->interval_min, 15);
    assert_true(x->is_active && x->sync_enabled);
    assert_int_equal(log_secret_count(), base);
    assert_false(redacted(ROW_SECRET));
    integ_row_hold_secrets(x);
    assert_int_equal(log_secret_count(), base + 2);
    assert_true(redacted(ROW_SECRET));
    assert_true(redacted(ROW_TOKEN));
    integ_row_hold_secrets(x); /* once per row */
    integ_row_free(x);
    assert_int_equal(log_secret_count(), base);
    assert_false(redacted(ROW_TOKEN));
    PQclear(r);
}

/* A row that was never held leaves another holder's registration of the same text alone. */
static void test_unheld_row_keeps_others(void **state)
{
    (void)state;
    PGresult *r = list_result();
    size_t base = log_secret_count();
    log_secret_add(ROW_SECRET);
    integ_row *x = integ_row_parse(r, 0);
    integ_row_free(x);
    assert_int_equal(log_secret_count(), base + 1);
    assert_true(redacted(ROW_SECRET));
    log_secret_remove(ROW_SECRET);
    assert_int_equal(log_secret_count(), base);
    PQclear(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subst_every_at),
        cmocka_unit_test(test_build_every_statement),
        cmocka_unit_test(test_lease_predicate_shared),
        cmocka_unit_test(test_table_matches_build),
        cmocka_unit_test(test_row_parse_registers_nothing),
        cmocka_unit_test(test_unheld_row_keeps_others),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
