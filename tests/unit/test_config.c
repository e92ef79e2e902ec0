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
#include <sys/stat.h>
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
                         "  url=postgresql://u@h/db?application_name=b;c   ; inline comment\n"
                         "schema: shop   \r\n[SYNC]\nPage_Size = 9 ; x\r\n",
                         &err);
    assert_non_null(c);
    /* ';' without white space before it is part of the value. */
    assert_string_equal(c->db_url, "postgresql://u@h/db?application_name=b;c");
    assert_string_equal(c->db_schema, "shop");
    assert_int_equal(c->page_size, 9);
    config_free(c);
}

static void test_errors_name_file_and_line(void **state)
{
    (void)state;
    kvs_err err;
    assert_null(load("[database]\nurl = dbname=x\n[sync]\npage_size = 500\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [sync] page_size: out of range 1..100");
    assert_null(load("[database]\nurl = dbname=x\n[sync]\nlease_seconds = 2\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [sync] lease_seconds: out of range 3..3600");
    assert_null(load("[database]\nurl = dbname=x\n\n[sync]\nno_such_key = 1\n", &err));
    assert_true(strstr(err.msg, "t.conf:5: [sync]: unknown key") == err.msg);
    assert_null(strstr(err.msg, "no_such_key"));
    assert_null(load("[database]\nurl = dbname=x\n[sync]\npage_size = ten\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [sync] page_size: not a whole number");
    assert_null(load("[log]\nlevel = loud\n[database]\nurl = dbname=x\n", &err));
    assert_true(strstr(err.msg, "t.conf:2: [log] level:") == err.msg);
    assert_null(load("[database\nurl = dbname=x\n", &err));
    assert_string_equal(err.msg, "t.conf:1: syntax error (expected [section] or key = value)");
    assert_null(load("[database]\nurl = dbname=x\n = 5\n", &err));
    assert_true(strstr(err.msg, "t.conf:3: syntax error") == err.msg);
    assert_null(load("[sync]\npage_size = 5\n", &err));
    assert_true(strstr(err.msg, "[database] url: not set") != NULL);
    assert_null(load("[database]\nurl = dbname=x\nschema = a\"b\n", &err));
    assert_true(strstr(err.msg, "schema: invalid name") != NULL);
    /* Found by tests/fuzz/fuzz_config: an empty schema was a NULL pointer in validation. */
    assert_null(load("[database]\nurl = dbname=x\nschema =\n", &err));
    assert_string_equal(err.msg, "t.conf:3: [database] schema: empty (leave the key out for public)");
}

/* [webhook] and [metrics] listen: HOST:PORT with an IP address (no name lookups), checked when
 * the file is read; the error names the line. */
static void test_listen_addresses(void **state)
{
    (void)state;
    kvs_err err;
    kvs_config *c = load("[database]\nurl = dbname=x\n[webhook]\nlisten = 127.0.0.1:8089\n"
                         "[metrics]\nlisten = [::1]:0\n", &err);
    assert_non_null(c);
    assert_string_equal(c->webhook_listen, "127.0.0.1:8089");
    assert_string_equal(c->metrics_listen, "[::1]:0");
    config_free(c);
    c = load("[database]\nurl = dbname=x\n[webhook]\nlisten =\n", &err);
    assert_non_null(c);
    assert_null(c->webhook_listen); /* empty: no listener */
    config_free(c);
    static const char *const bad[] = {"127.0.0.1", "127.0.0.1:65536", "example.com:80", "::1:80",
                                      ":80", "127.0.0.1:-1", "127.0.0.1:8o"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char text[200];
        snprintf(text, sizeof text, "[database]\nurl = dbname=x\n\n[webhook]\nlisten = %s\n",
                 bad[i]);
        assert_null(load(text, &err));
        assert_true(strstr(err.msg, "t.conf:5: [webhook] listen: ") == err.msg);
    }
}

/* A line that is not "key = value" is never repeated in the error: it could be a password
 * pasted on its own line. An unknown key is named only when it looks like one. */
static void test_errors_never_quote_secrets(void **state)
{
    (void)state;
    kvs_err err;
    assert_null(load("[database]\nurl = dbname=x\nS3cr3t-P4ssw0rd!\n", &err));
    assert_null(strstr(err.msg, "S3cr3t"));
    assert_string_equal(err.msg, "t.conf:3: syntax error (expected [section] or key = value)");
    assert_null(load("[database]\nurl = dbname=x\nS3cr3t/P4ss+w0rd = 1\n", &err));
    assert_null(strstr(err.msg, "S3cr3t"));
    assert_true(strstr(err.msg, "unknown key") != NULL);
}

/* Issue 18: no configuration error repeats a value or an unknown key's text, whatever the
 * key's type; known keys are named with the file and line. */
static void test_errors_never_quote_values(void **state)
{
    (void)state;
    kvs_err err;
    static const char *const texts[] = {
        "[database]\nurl = dbname=x\n[sync]\npage_size = S3cr3tPw\n",
        "[database]\nurl = dbname=x\n[sync]\npage_size = 99999999\n",
        "[database]\nurl = dbname=x\n[log]\nlevel = S3cr3tPw\n",
        "[database]\nurl = dbname=x\n[mapping]\nbranches = S3cr3tPw\n",
        "[database]\nurl = dbname=x\n[mapping]\nname_scan = S3cr3tPw\n",
        "[database]\nurl = dbname=x\n[kiotviet]\nca_file = /nonexistent/S3cr3tPw\n",
        "[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 99999\nretry_cap_ms = 88888\n",
        "[database]\nurl = dbname=x\nS3cr3tPw = 1\n",
        "[database]\nurl = dbname=x\nS3cr3tPw\n",
        "[S3cr3tPw]\n",
        "[database]\nurl = dbname=x\n[S3cr3tPw]\nkey = 1\n",
        "S3cr3tPw = 1\n[database]\nurl = dbname=x\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        kvs_config *c = load(texts[i], &err);
        if (c) { /* name_scan is checked by the mapping (test_mapping) */
            config_free(c);
            continue;
        }
        assert_null(strstr(err.msg, "S3cr3tPw"));
        assert_null(strstr(err.msg, "9999"));
        assert_null(strstr(err.msg, "8888"));
        assert_true(strncmp(err.msg, "t.conf:", 7) == 0);
    }
    assert_null(load("[database]\nurl = dbname=x\n[log]\nlevel = S3cr3tPw\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [log] level: not one of error, warning, notice, info, "
                                 "debug");
    assert_null(load("[database]\nurl = dbname=x\n[mapping]\nbranches = S3cr3tPw\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [mapping] branches: not a comma-separated list of "
                                 "branch ids");
}

/* Issue 17: an unknown section is an error at its header, even when empty, and a key under a
 * misspelt section is reported as the unknown section, not as an unknown key. */
static void test_unknown_sections(void **state)
{
    (void)state;
    kvs_err err;
    assert_null(load("[database]\nurl = dbname=x\n[synk]\n", &err));
    assert_true(strstr(err.msg, "t.conf:3: unknown section") == err.msg);
    assert_null(load("[database]\nurl = dbname=x\n\n[synk]\npage_size = 5\n", &err));
    assert_true(strstr(err.msg, "t.conf:4: unknown section") == err.msg);
    assert_null(load("page_size = 5\n[database]\nurl = dbname=x\n", &err));
    assert_true(strstr(err.msg, "t.conf:1: a key before any [section]") == err.msg);
    kvs_config *c = load("[database]\nurl = dbname=x\n[ Mapping ]\n[SYNC]\n", &err);
    assert_non_null(c);
    config_free(c);
}

/* "key += list" adds to a [mapping] column's list; it is refused for other keys. */
static void test_mapping_append(void **state)
{
    (void)state;
    kvs_err err;
    kvs_config *c = load("[database]\nurl = dbname=x\n[mapping]\ngold_purity += HÀM LƯỢNG\n"
                         "gold_purity += KARA\nshape = A\nshape += B\n",
                         &err);
    assert_non_null(c);
    int gp = -1, sh = -1;
    for (int i = 0; i < KVS_MAPPING_KEYS; i++) {
        if (!strcmp(config_mapping_keys[i], "gold_purity")) gp = i;
        if (!strcmp(config_mapping_keys[i], "shape")) sh = i;
    }
    assert_string_equal(c->mapping[gp], "HÀM LƯỢNG, KARA");
    assert_true(c->mapping_append[gp]);
    assert_int_equal(c->mapping_line[gp], 5);
    assert_string_equal(c->mapping[sh], "A, B");
    assert_false(c->mapping_append[sh]);
    config_free(c);
    assert_null(load("[database]\nurl = dbname=x\n[mapping]\nname_scan += yes\n", &err));
    assert_true(strstr(err.msg, "t.conf:4: [mapping] name_scan: '+=' only adds") == err.msg);
    assert_null(load("[database]\nurl = dbname=x\n[sync]\npage_size += 5\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [sync] page_size: '+=' only adds to the alias lists "
                                 "of [mapping] columns; use '='");
}

/* Issue 18: a file (or the credential) anyone may write is refused; the credential path
 * follows the configuration's name. */
static void test_file_modes_and_credential(void **state)
{
    (void)state;
    kvs_err err;
    char path[] = "/tmp/kvs-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[database]\nurl = postgresql://file@h/db\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, 0666), 0);
    kvs_err_clear(&err);
    assert_null(config_load(path, &err));
    assert_int_equal(err.code, -EPERM);
    assert_true(strstr(err.msg, "writable by every user") != NULL);
    assert_int_equal(chmod(path, 0640), 0);
    kvs_config *c = config_load(path, &err);
    assert_non_null(c);
    assert_null(c->warning);
    config_free(c);

    char *url = NULL;
    assert_int_equal(chmod(path, 0602), 0);
    assert_int_equal(config_secret_file_read(path, &url, &err), -EPERM);
    assert_null(url);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(config_secret_file_read(path, &url, &err), 0);
    assert_string_equal(url, "[database]\nurl = postgresql://file@h/db");
    free(url);
    assert_int_equal(config_secret_file_read("/nonexistent/x", &url, &err), 0);
    assert_null(url);
    unlink(path);

    char *p = config_credential_path("/etc/kiotviet-sync/kiotviet-sync.conf");
    assert_string_equal(p, "/etc/kiotviet-sync/database-url");
    free(p);
    p = config_credential_path("/etc/kiotviet-sync/shop2.conf");
    assert_string_equal(p, "/etc/kiotviet-sync/shop2.database-url");
    free(p);
    p = config_credential_path(NULL);
    assert_string_equal(p, "/etc/kiotviet-sync/database-url");
    free(p);
}

static void test_nul_byte_and_size_limit(void **state)
{
    (void)state;
    kvs_err err;
    const char text[] = "[database]\nurl = dbname=x\n[sync]\npage\0_size = 5\n";
    kvs_err_clear(&err);
    assert_null(config_load_text(text, sizeof text - 1, "t.conf", &err));
    assert_string_equal(err.msg, "t.conf:4: NUL byte in the file");

    char path[] = "/tmp/kvs-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("[database]\nurl = dbname=x\n", f);
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
    kvs_config *c = load("[database]\nurl = dbname=x\n", &err);
    assert_non_null(c);
    assert_int_equal(c->retry_base_ms, 1000);
    assert_int_equal(c->retry_cap_ms, 60000);
    config_free(c);
    c = load("[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 50\nretry_cap_ms = 400\n", &err);
    assert_non_null(c);
    assert_int_equal(c->retry_base_ms, 50);
    assert_int_equal(c->retry_cap_ms, 400);
    config_free(c);
    /* equal is fine; the bounds themselves are accepted */
    c = load("[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 10\nretry_cap_ms = 10\n", &err);
    assert_non_null(c);
    config_free(c);
    c = load("[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 600000\nretry_cap_ms = 600000\n",
             &err);
    assert_non_null(c);
    config_free(c);

    assert_null(load("[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 9\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [kiotviet] retry_base_ms: out of range 10..600000");
    assert_null(load("[database]\nurl = dbname=x\n[kiotviet]\nretry_cap_ms = 600001\n", &err));
    assert_string_equal(err.msg,
                        "t.conf:4: [kiotviet] retry_cap_ms: out of range 10..600000");
    assert_null(load("[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 1s\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [kiotviet] retry_base_ms: not a whole number");
    /* base above the cap: the cap set last is named ... */
    assert_null(load("[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 500\n\nretry_cap_ms = 200\n",
                     &err));
    assert_string_equal(err.msg, "t.conf:6: [kiotviet] retry_cap_ms: retry_base_ms must not "
                                 "exceed retry_cap_ms");
    /* ... or the base set last; against the default cap too */
    assert_null(load("[kiotviet]\nretry_cap_ms = 200\nretry_base_ms = 500\n[database]\nurl = dbname=x\n",
                     &err));
    assert_string_equal(err.msg, "t.conf:3: [kiotviet] retry_base_ms: retry_base_ms must not "
                                 "exceed retry_cap_ms");
    assert_null(load("[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 90000\n", &err));
    assert_string_equal(err.msg, "t.conf:4: [kiotviet] retry_base_ms: retry_base_ms must "
                                 "not exceed retry_cap_ms");
    /* a later line may fix an earlier one: only the final values count */
    c = load("[database]\nurl = dbname=x\n[kiotviet]\nretry_base_ms = 90000\nretry_cap_ms = 120000\n",
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
        cmocka_unit_test_setup(test_listen_addresses, setup),
        cmocka_unit_test_setup(test_errors_name_file_and_line, setup),
        cmocka_unit_test_setup(test_errors_never_quote_secrets, setup),
        cmocka_unit_test_setup(test_errors_never_quote_values, setup),
        cmocka_unit_test_setup(test_unknown_sections, setup),
        cmocka_unit_test_setup(test_mapping_append, setup),
        cmocka_unit_test_setup(test_file_modes_and_credential, setup),
        cmocka_unit_test_setup(test_nul_byte_and_size_limit, setup),
        cmocka_unit_test_setup(test_file_and_env, setup),
        cmocka_unit_test_setup(test_retry_delay_keys, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
