/* Unit tests for log.c: record format on stderr, one line per record whatever the message or
 * the (database-supplied) integration name holds, and secret redaction, including a secret
 * cut off at the end of a message too long for the record buffer, and a registry that forgets
 * a secret once its last holder removed it (bounded over a long run of token refreshes). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* Runs fn with stderr redirected to a pipe; returns what it wrote (caller frees). */
static char *capture(void (*fn)(void))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    close(fds[1]);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    char *out = calloc(1, 65536);
    assert_non_null(out);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], out + n, 65535 - n)) > 0) n += (size_t)r;
    close(fds[0]);
    return out;
}

static int setup(void **state)
{
    (void)state;
    unsetenv("JOURNAL_STREAM");
    log_init();
    log_set_level(KVS_LOG_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_secret_forget_all();
    return 0;
}

static void emit_basic(void)
{
    log_info("hello %d", 42);
    log_ctx ctx = {.integration = "kiotviet", .run = "17"};
    rlog_warn(&ctx, "page %s", "failed");
}

static void test_format(void **state)
{
    (void)state;
    char *out = capture(emit_basic);
    assert_string_equal(out, "<6>info hello 42\n<4>warning [kiotviet#17] page failed\n");
    free(out);
}

static void emit_injection(void)
{
    /* A newline in the message (a server's error text) or in the integration name (a row of
     * third_party_integrations) must not start a forged record. */
    log_ctx ctx = {.integration = "evil\n<3>error [kiotviet#1] forged", .run = "1\r\n2"};
    rlog_info(&ctx, "line one\nline two\x1b[31m");
}

static void test_one_line_per_record(void **state)
{
    (void)state;
    char *out = capture(emit_injection);
    assert_string_equal(out, "<6>info [evil <3>error [kiotviet#1] forged#1  2] line one line two [31m\n");
    free(out);
}

static void emit_secrets(void)
{
    log_info("token abcdef0123456789 and password S3cret-pw in one line");
    log_info("short ones stay: abc");
}

static void test_secrets_redacted(void **state)
{
    (void)state;
    log_secret_add("abcdef0123456789");
    log_secret_add("S3cret-pw");
    log_secret_add("abc"); /* shorter than 4 bytes: ignored */
    char *out = capture(emit_secrets);
    assert_string_equal(out, "<6>info token *** and password *** in one line\n"
                             "<6>info short ones stay: abc\n");
    free(out);
}

static void emit_tab_secret_and_bad_utf8(void)
{
    log_info("password Pw\tWith-Tab9 and bytes \xff\xfe ok \xc3\xa9 cut \xe1\x80");
}

/* A secret holding a tab was looked for after the tab became a space, and escaped redaction;
 * bytes that are not UTF-8 (a KiotViet body) become '?', valid ones stay. */
static void test_secret_with_control_chars_and_bad_utf8(void **state)
{
    (void)state;
    log_secret_add("Pw\tWith-Tab9");
    char *out = capture(emit_tab_secret_and_bad_utf8);
    assert_string_equal(out, "<6>info password *** and bytes ?? ok \xc3\xa9 cut ?\n");
    free(out);
}

static char filler[2100];

static void emit_cut_secret(void)
{
    /* The record buffer holds 2047 message bytes: the secret starts 5 bytes before the cut. */
    log_info("%.*s%s tail", 2042, filler, "TOKEN-0123456789-abcdef");
}

static void test_secret_cut_at_the_end_is_redacted(void **state)
{
    (void)state;
    memset(filler, 'x', sizeof filler - 1);
    log_secret_add("TOKEN-0123456789-abcdef");
    char *out = capture(emit_cut_secret);
    assert_null(strstr(out, "TOKEN"));
    assert_null(strstr(out, "TOKE"));
    size_t n = strlen(out);
    assert_true(n > 10);
    assert_string_equal(out + n - 5, "x***\n");
    free(out);
}

static void test_log_redact_buffer(void **state)
{
    (void)state;
    log_secret_add("pw-0123456789");
    char buf[64] = "connection failed for pw-0123456789 at host";
    log_redact(buf, sizeof buf);
    assert_string_equal(buf, "connection failed for *** at host");
    /* A text cut after the first bytes of a secret (>= 4 of them). */
    char cut[64] = "detail: pw-01";
    log_redact(cut, sizeof cut);
    assert_string_equal(cut, "detail: ***");
    char fine[64] = "a word: pw-";
    log_redact(fine, sizeof fine);
    assert_string_equal(fine, "a word: pw-"); /* 3 bytes say nothing */
}

static void emit_old_and_new_token(void)
{
    log_info("old tok-OLD-0123456789 new tok-NEW-0123456789");
}

/* A holder that replaces its token removes the old one; another holder of the same secret
 * keeps it registered until it lets go too. */
static void test_secret_remove_counts_holders(void **state)
{
    (void)state;
    assert_int_equal(log_secret_count(), 0);
    log_secret_add("tok-OLD-0123456789");      /* the client */
    log_secret_add("tok-OLD-0123456789");      /* the integration row that stored it */
    assert_int_equal(log_secret_count(), 1);
    log_secret_add("tok-NEW-0123456789");
    log_secret_remove("tok-OLD-0123456789");   /* the client moved on */
    assert_int_equal(log_secret_count(), 2);
    char buf[80] = "tok-OLD-0123456789";
    log_redact(buf, sizeof buf);
    assert_string_equal(buf, "***");           /* still held by the row */
    log_secret_remove("tok-OLD-0123456789");   /* the row is freed */
    assert_int_equal(log_secret_count(), 1);
    char *out = capture(emit_old_and_new_token);
    assert_string_equal(out, "<6>info old tok-OLD-0123456789 new ***\n");
    free(out);
    /* Unknown, short and NULL secrets: nothing happens. */
    log_secret_remove("never-registered");
    log_secret_remove("abc");
    log_secret_remove(NULL);
    assert_int_equal(log_secret_count(), 1);
    log_secret_remove("tok-NEW-0123456789");
    assert_int_equal(log_secret_count(), 0);
    /* Removing more often than adding does not underflow into a later add. */
    log_secret_remove("tok-NEW-0123456789");
    log_secret_add("tok-NEW-0123456789");
    log_secret_remove("tok-NEW-0123456789");
    assert_int_equal(log_secret_count(), 0);
}

/* A day of token refreshes for a few integrations: each new token is registered by the client
 * and by the row that stores it, the old one is dropped by both. The registry stays at the
 * live set (one token and one client secret per integration), and redaction still works. */
static void test_secret_registry_stays_bounded(void **state)
{
    (void)state;
    enum { INTEGRATIONS = 5, REFRESHES = 2000 };
    char cur[INTEGRATIONS][48];
    for (int i = 0; i < INTEGRATIONS; i++) {
        char sec[48];
        snprintf(sec, sizeof sec, "client-secret-%d-xyz", i);
        log_secret_add(sec);
        cur[i][0] = '\0';
    }
    for (int n = 0; n < REFRESHES; n++) {
        for (int i = 0; i < INTEGRATIONS; i++) {
            char next[48];
            snprintf(next, sizeof next, "token-%d-%06d-abcdef", i, n);
            log_secret_add(next); /* client */
            log_secret_add(next); /* row */
            if (cur[i][0]) {
                log_secret_remove(cur[i]);
                log_secret_remove(cur[i]);
            }
            snprintf(cur[i], sizeof cur[i], "%s", next);
        }
        assert_true(log_secret_count() <= 2 * INTEGRATIONS);
    }
    assert_int_equal(log_secret_count(), 2 * INTEGRATIONS);
    char buf[128];
    snprintf(buf, sizeof buf, "a %s b client-secret-3-xyz c token-1-000005-abcdef", cur[2]);
    log_redact(buf, sizeof buf);
    assert_string_equal(buf, "a *** b *** c token-1-000005-abcdef");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_line_per_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_with_control_chars_and_bad_utf8, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_secret_cut_at_the_end_is_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_redact_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_remove_counts_holders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_registry_stays_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
