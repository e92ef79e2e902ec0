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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_never_wraps),
        cmocka_unit_test(test_json_str),
        cmocka_unit_test(test_printf_and_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
