/* The fast Latin path of jewel.c's text folding against the general path it stands in for.
 * The file includes src/jewel.c to reach its static functions (the library's copy of jewel.o
 * is then not linked). Random strings over Vietnamese letters in both cases, white space of
 * several kinds, and the Latin letters whose folds are unusual (ß, İ, ŉ, ǰ, ſ, Ǆ, soft hyphen). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../../src/jewel.c"

static const char *const pieces[] = {
    "a", "à", "á", "ả", "ã", "ạ", "ă", "ằ", "ắ", "Ẳ", "ẵ", "Ặ", "â", "Ầ", "ấ", "đ", "Đ", "e", "Ê",
    "ề", "i", "Í", "o", "Ô", "ơ", "Ờ", "u", "Ư", "ữ", "y", "Ỳ", "ỹ", " ", "  ", "\t", "\xc2\xa0",
    "1", "2", ".", ",", "K", "ß", "İ", "ŉ", "ǰ", "Ø", "\xc2\xad", "-", "x", "Z", "Ǆ", "ǅ", "ſ",
};

static void test_latin_path_matches_general_path(void **state)
{
    (void)state;
    unsigned seed = 12345;
    int fast = 0;
    for (int it = 0; it < 50000; it++) {
        char s[256] = "";
        seed = seed * 1103515245u + 12345u;
        int len = (int)(seed >> 16) % 12;
        for (int i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            strcat(s, pieces[(seed >> 16) % (sizeof pieces / sizeof *pieces)]);
        }
        char a[512], b[512];
        int ra = fold_text_latin(s, strlen(s), a, sizeof a);
        int rb = fold_text_general(s, strlen(s), b, sizeof b);
        assert_int_not_equal(ra, -EAGAIN); /* every piece is Latin */
        fast++;
        assert_int_equal(ra, rb);
        if (ra >= 0) assert_string_equal(a, b);
    }
    assert_int_equal(fast, 50000);
}

static void test_latin_path_edges(void **state)
{
    (void)state;
    char out[64];
    /* combining marks and other scripts take the general path */
    assert_int_equal(fold_text_latin("a\xcc\x81", 3, out, sizeof out), -EAGAIN);
    assert_int_equal(fold_text_latin("\xce\xb1", 2, out, sizeof out), -EAGAIN);
    /* invalid UTF-8 is refused like the general path refuses it */
    assert_int_equal(fold_text_latin("a\xff", 2, out, sizeof out), -EINVAL);
    assert_int_equal(fold_text_general("a\xff", 2, out, sizeof out), -EINVAL);
    /* too small an output */
    assert_int_equal(fold_text_latin("Vàng 18K", strlen("Vàng 18K"), out, 4), -ERANGE);
    /* white space trimmed and collapsed, marks dropped, đ -> d */
    assert_int_equal(fold_text("  Đá \t quý  ", strlen("  Đá \t quý  "), out, sizeof out), 6);
    assert_string_equal(out, "da quy");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latin_path_matches_general_path),
        cmocka_unit_test(test_latin_path_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
