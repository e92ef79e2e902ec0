/* Unit tests for util.c: kvs_buf growth limits and JSON string escaping. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util.h"

/* A request so large that len + extra + 1 wraps around must fail, not "fit" (the following
 * copy would overrun the buffer). */
static void test_reserve_never_wraps(void **state)
{
    (void)state;
    kvs_buf b;
    kvs_buf_init(&b);
    assert_int_equal(kvs_buf_puts(&b, "abc"), 0);
    assert_int_equal(kvs_buf_reserve(&b, SIZE_MAX), -ENOMEM);
    assert_int_equal(kvs_buf_reserve(&b, SIZE_MAX - 3), -ENOMEM);
    assert_int_equal(kvs_buf_reserve(&b, SIZE_MAX / 2 + 1), -ENOMEM);
    assert_string_equal(kvs_buf_cstr(&b), "abc");
    assert_int_equal(kvs_buf_reserve(&b, 1000), 0);
    assert_true(b.cap >= 1004);
    kvs_buf_free(&b);
}

static void test_json_str(void **state)
{
    (void)state;
    kvs_buf b;
    kvs_buf_init(&b);
    assert_int_equal(kvs_buf_json_str(&b, "a\"b\\c\n\r\t\x01\x1f Nhẫn 💍"), 0);
    assert_string_equal(kvs_buf_cstr(&b), "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f Nhẫn 💍\"");
    kvs_buf_reset(&b);
    assert_int_equal(kvs_buf_json_str(&b, ""), 0);
    assert_string_equal(kvs_buf_cstr(&b), "\"\"");
    kvs_buf_free(&b);
}

static void test_printf_and_steal(void **state)
{
    (void)state;
    kvs_buf b;
    kvs_buf_init(&b);
    for (int i = 0; i < 1000; i++) assert_int_equal(kvs_buf_printf(&b, "%d,", i), 0);
    assert_int_equal(b.len, strlen(b.data));
    assert_memory_equal(b.data + b.len - 4, "999,", 4);
    char *s = kvs_buf_steal(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(s);
    s = kvs_buf_steal(&b);
    assert_string_equal(s, "");
    free(s);
}

/* kvs_idset: add says whether the id was new, through growth; has agrees. */
static void test_idset(void **state)
{
    (void)state;
    kvs_idset s = {0};
    assert_false(kvs_idset_has(&s, 5));
    for (int64_t i = 1; i <= 5000; i++) assert_true(kvs_idset_add(&s, i * 7919));
    for (int64_t i = 1; i <= 5000; i++) assert_false(kvs_idset_add(&s, i * 7919));
    assert_true(s.n == 5000 && s.cap >= 10000);
    assert_true(kvs_idset_has(&s, 7919) && !kvs_idset_has(&s, 7918));
    assert_true(kvs_idset_add(&s, INT64_MAX) && kvs_idset_has(&s, INT64_MAX));
    size_t n = 0;
    for (size_t i = 0; i < s.cap; i++) n += s.v[i] != 0;
    assert_true(n == s.n);
    kvs_idset_free(&s);
    assert_true(s.v == NULL && s.n == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_never_wraps),
        cmocka_unit_test(test_json_str),
        cmocka_unit_test(test_printf_and_steal),
        cmocka_unit_test(test_idset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
