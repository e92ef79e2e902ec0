/* Unit tests for config.c: the INI reader (long lines, comments, BOM, errors with file:line
 * and without the line's text), range checks, DATABASE_URL, and file reading limits. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static kvs_config *load(const char *text, kvs_err *err)
{
    kvs_err_clear(err);
    return config_load_text(text, strlen(text), "t.conf", err);
}

static int setup(void **state)
{
    (void)state;
    unsetenv("DATABASE_URL");
    return 0;
}

static void test_defaults_and_values(void **state)
{
    (void)state;
    kvs_err err;
    kvs_config *c = load("[database]\nurl = postgresql://u@h/db\n[sync]\npage_size = 50\n"
                         "[log]\nlevel = debug\n",
                         &err);
    assert_non_null(c);
    assert_string_equal(c->db_url, "postgresql://u@h/db");
    assert_string_equal(c->db_schema, "public");
    assert_int_equal(c->page_size, 50);
    assert_int_equal(c->pages_in_flight, 4);
    assert_int_equal(c->max_page_bytes, 33554432);
    assert_null(c->path);
    config_free(c);
}

/* Found while fuzzing the config reader: libinih cut lines at 200 bytes, so a long database
 * URL gave "syntax error" on the wrong line, and a '=' inside the password's second piece
 * made part of the password an "unknown key" printed in the error. */
static void test_long_url_line(void **state)
{
    (void)state;
    kvs_err err;
    char pw[600];
    memset(pw, 'p', sizeof pw - 1);
    pw[sizeof pw - 1] = '\0';
    pw[300] = '=';
    char text[1000];
    snprintf(text, sizeof text, "[database]\nurl = postgresql://user:%s@127.0.0.1/db\n[sync]\npage_size = 7\n",
             pw);
    kvs_config *c = load(text, &err);
    assert_non_null(c);
    assert_true(strstr(c->db_url, pw) != NULL);
    assert_int_equal(strlen(c->db_url), strlen("postgresql://user:@127.0.0.1/db") + strlen(pw));
    assert_int_equal(c->page_size, 7);
    config_free(c);
}

static void test_comments_bom_spacing(void **state)
{
    (void)state;
    kvs_err err;
    kvs_config *c = load("\xEF\xBB\xBF; comment\n# another\n\n  [ database ]  \n"
                         "  url=postgresql://u@h/db?a=b;c   ; inline comment\n"
                         "schema: shop   \r\n[SYNC]\nPage_Size = 9 ; x\r\n",
                         &err);
    assert_non_null(c);
    /* ';' without white space before it is part of the value. */
    assert_string_equal(c->db_url, "postgresql://u@h/db?a=b;c");
    assert_string_equal(c->db_schema, "shop");
    assert_int_equal(c->page_size, 9);
    config_free(c);
}

static void test_errors_name_file_and_line(void **state)
{
    (void)state;
    kvs_err err;
    assert_null(load("[database]\nurl = x\n[sync]\npage_size = 500\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [sync] page_size: 500 is out of range 1..100");
    assert_null(load("[database]\nurl = x\n[sync]\nlease_seconds = 2\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [sync] lease_seconds: 2 is out of range 3..3600");
    assert_null(load("[database]\nurl = x\n\n[sync]\nno_such_key = 1\n", &err));
    assert_string_equal(err.msg, "t.conf:5: [sync] no_such_key: unknown key");
    assert_null(load("[database]\nurl = x\n[sync]\npage_size = ten\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [sync] page_size: 'ten' is not a whole number");
    assert_null(load("[log]\nlevel = loud\n[database]\nurl = x\n", &err));
    assert_true(strstr(err.msg, "t.conf:2: [log] level:") == err.msg);
    assert_null(load("[database\nurl = x\n", &err));
    assert_string_equal(err.msg, "t.conf:1: syntax error (expected [section] or key = value)");
    assert_null(load("[database]\nurl = x\n = 5\n", &err));
    assert_true(strstr(err.msg, "t.conf:3: syntax error") == err.msg);
    assert_null(load("[sync]\npage_size = 5\n", &err));
    assert_true(strstr(err.msg, "[database] url: not set") != NULL);
    assert_null(load("[database]\nurl = x\nschema = a\"b\n", &err));
    assert_true(strstr(err.msg, "schema: invalid name") != NULL);
    /* Found by tests/fuzz/fuzz_config: an empty schema was a NULL pointer in validation. */
    assert_null(load("[database]\nurl = x\nschema =\n", &err));
    assert_string_equal(err.msg, "t.conf: [database] schema: empty (leave the key out for public)");
}

/* A line that is not "key = value" is never repeated in the error: it could be a password
 * pasted on its own line. An unknown key is named only when it looks like one. */
static void test_errors_never_quote_secrets(void **state)
{
    (void)state;
    kvs_err err;
    assert_null(load("[database]\nurl = x\nS3cr3t-P4ssw0rd!\n", &err));
    assert_null(strstr(err.msg, "S3cr3t"));
    assert_string_equal(err.msg, "t.conf:3: syntax error (expected [section] or key = value)");
    assert_null(load("[database]\nurl = x\nS3cr3t/P4ss+w0rd = 1\n", &err));
    assert_null(strstr(err.msg, "S3cr3t"));
    assert_true(strstr(err.msg, "unknown key") != NULL);
}

static void test_nul_byte_and_size_limit(void **state)
{
    (void)state;
    kvs_err err;
    const char text[] = "[database]\nurl = x\n[sync]\npage\0_size = 5\n";
    kvs_err_clear(&err);
    assert_null(config_load_text(text, sizeof text - 1, "t.conf", &err));
    assert_string_equal(err.msg, "t.conf:4: NUL byte in the file");

    char path[] = "/tmp/kvs-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("[database]\nurl = x\n", f);
    for (int i = 0; i < 80000; i++) fputs("; padding line\n", f); /* > 1 MiB */
    fclose(f);
    kvs_err_clear(&err);
    assert_null(config_load(path, &err));
    assert_true(strstr(err.msg, "larger than") != NULL);
    unlink(path);

    kvs_err_clear(&err);
    assert_null(config_load("/nonexistent/kvs.conf", &err));
    assert_true(strstr(err.msg, "/nonexistent/kvs.conf: cannot open:") == err.msg);
}

static void test_file_and_env(void **state)
{
    (void)state;
    kvs_err err;
    char path[] = "/tmp/kvs-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[database]\nurl = postgresql://file@h/db\n[kiotviet]\nmax_page_bytes = 65536\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    kvs_err_clear(&err);
    kvs_config *c = config_load(path, &err);
    assert_non_null(c);
    assert_string_equal(c->path, path);
    assert_string_equal(c->db_url, "postgresql://file@h/db");
    assert_false(c->db_url_from_env);
    assert_int_equal(c->max_page_bytes, 65536);
    config_free(c);

    setenv("DATABASE_URL", "postgresql://env@h/db", 1);
    c = config_load(path, &err);
    assert_non_null(c);
    assert_string_equal(c->db_url, "postgresql://env@h/db");
    assert_true(c->db_url_from_env);
    config_free(c);
    unsetenv("DATABASE_URL");
    unlink(path);
}

/* The client's retry delays: defaults, values, ranges, and base <= cap with the line of the
 * key set last (the one the reader just changed), whichever order they come in. */
static void test_retry_delay_keys(void **state)
{
    (void)state;
    kvs_err err;
    kvs_config *c = load("[database]\nurl = x\n", &err);
    assert_non_null(c);
    assert_int_equal(c->retry_base_ms, 1000);
    assert_int_equal(c->retry_cap_ms, 60000);
    config_free(c);
    c = load("[database]\nurl = x\n[kiotviet]\nretry_base_ms = 50\nretry_cap_ms = 400\n", &err);
    assert_non_null(c);
    assert_int_equal(c->retry_base_ms, 50);
    assert_int_equal(c->retry_cap_ms, 400);
    config_free(c);
    /* equal is fine; the bounds themselves are accepted */
    c = load("[database]\nurl = x\n[kiotviet]\nretry_base_ms = 10\nretry_cap_ms = 10\n", &err);
    assert_non_null(c);
    config_free(c);
    c = load("[database]\nurl = x\n[kiotviet]\nretry_base_ms = 600000\nretry_cap_ms = 600000\n",
             &err);
    assert_non_null(c);
    config_free(c);

    assert_null(load("[database]\nurl = x\n[kiotviet]\nretry_base_ms = 9\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [kiotviet] retry_base_ms: 9 is out of range 10..600000");
    assert_null(load("[database]\nurl = x\n[kiotviet]\nretry_cap_ms = 600001\n", &err));
    assert_string_equal(err.msg,
                        "t.conf:4: [kiotviet] retry_cap_ms: 600001 is out of range 10..600000");
    assert_null(load("[database]\nurl = x\n[kiotviet]\nretry_base_ms = 1s\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [kiotviet] retry_base_ms: '1s' is not a whole number");
    /* base above the cap: the cap set last is named ... */
    assert_null(load("[database]\nurl = x\n[kiotviet]\nretry_base_ms = 500\n\nretry_cap_ms = 200\n",
                     &err));
    assert_string_equal(err.msg, "t.conf:6: [kiotviet] retry_cap_ms: retry_base_ms (500) must not "
                                 "exceed retry_cap_ms (200)");
    /* ... or the base set last; against the default cap too */
    assert_null(load("[kiotviet]\nretry_cap_ms = 200\nretry_base_ms = 500\n[database]\nurl = x\n",
                     &err));
    assert_string_equal(err.msg, "t.conf:3: [kiotviet] retry_base_ms: retry_base_ms (500) must not "
                                 "exceed retry_cap_ms (200)");
    assert_null(load("[database]\nurl = x\n[kiotviet]\nretry_base_ms = 90000\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [kiotviet] retry_base_ms: retry_base_ms (90000) must "
                                 "not exceed retry_cap_ms (60000)");
    /* a later line may fix an earlier one: only the final values count */
    c = load("[database]\nurl = x\n[kiotviet]\nretry_base_ms = 90000\nretry_cap_ms = 120000\n",
             &err);
    assert_non_null(c);
    assert_int_equal(c->retry_cap_ms, 120000);
    config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_and_values, setup),
        cmocka_unit_test_setup(test_long_url_line, setup),
        cmocka_unit_test_setup(test_comments_bom_spacing, setup),
        cmocka_unit_test_setup(test_errors_name_file_and_line, setup),
        cmocka_unit_test_setup(test_errors_never_quote_secrets, setup),
        cmocka_unit_test_setup(test_nul_byte_and_size_limit, setup),
        cmocka_unit_test_setup(test_file_and_env, setup),
        cmocka_unit_test_setup(test_retry_delay_keys, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
