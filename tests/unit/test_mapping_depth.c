/* Unit tests for mapping_stock.c (issue 16): a product's stock by branch and serials as keys of
 * its row, /branches records, the price book's price and the product types left out. Expected
 * texts are written out by hand from the fact sheet (§4 inventories, productSerials, priceBooks;
 * §9 /branches) and the README's rules. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvjson.h"
#include "jsonfx.h"
#include "kvtime.h"
#include "mapping.h"

/* Maps a "data" array of products with o into p (rows text kept in p). */
static void map_text(const char *data, const map_opts *o, map_page *p)
{
    kvjson_doc doc = {0};
    parse_text(data, &doc);
    map_page_init(p);
    map_products(doc.root, o, p);
    kvjson_doc_free(&doc);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) fail_msg("expected %s in %s", needle, hay);
}

static void test_stock_and_serials(void **state)
{
    (void)state;
    map_opts o = {0};
    map_page p;
    /* Two branches (the second fractional, no reserved), a repeated branch (the first entry
     * wins), an entry without a branch; serials: one sold, one without status (in stock), one
     * listed twice (sold, then in stock: in stock wins, with its branch), one padded with
     * spaces (trimmed, as products.serial_number), one without a number (skipped). */
    map_text("[{\"id\":7,\"name\":\"Nhẫn\",\"inventories\":["
             "{\"branchId\":61201,\"onHand\":2.0,\"reserved\":1,\"cost\":5},"
             "{\"branchId\":61202,\"onHand\":1.5},"
             "{\"branchId\":61201,\"onHand\":9},"
             "{\"onHand\":4}],"
             "\"productSerials\":["
             "{\"serialNumber\":\"GIA-1\",\"status\":0,\"branchId\":61201,"
             "\"modifiedDate\":\"2025-06-16T09:41:27.5270000\"},"
             "{\"serialNumber\":\"GIA-2\"},"
             "{\"serialNumber\":\"GIA-3\",\"status\":0,\"branchId\":61201},"
             "{\"serialNumber\":\"GIA-3\",\"status\":1,\"branchId\":61202},"
             "{\"serialNumber\":\"  IGI 5 \",\"status\":1},"
             "{\"status\":1}]}]",
             &o, &p);
    assert_int_equal(p.nrows, 1);
    const char *row = p.rows.data;
    assert_contains(row, "\"inv\":[{\"b\":61201,\"q\":2,\"r\":1},{\"b\":61202,\"q\":1.5}]");
    assert_contains(row, "\"ser\":[{\"n\":\"GIA-1\",\"i\":false,\"b\":61201,"
                         "\"m\":\"2025-06-16T09:41:27.527+07:00\"},{\"n\":\"GIA-2\",\"i\":true},"
                         "{\"n\":\"GIA-3\",\"i\":true,\"b\":61202},{\"n\":\"IGI 5\",\"i\":true}]");
    map_page_free(&p);

    /* A branch id of 0 or below names no branch: that entry is no figure (it aborted the
     * mapping before: kvs_idset_add holds positive ids only). */
    map_text("[{\"id\":6,\"name\":\"A\",\"inventories\":[{\"branchId\":0,\"onHand\":2},"
             "{\"branchId\":-4,\"onHand\":1},{\"branchId\":3,\"onHand\":5}]}]",
             &o, &p);
    assert_int_equal(p.nrows, 1);
    assert_contains(p.rows.data, "\"inv\":[{\"b\":3,\"q\":5}]");
    map_page_free(&p);

    /* No lists sent: nothing known, no keys (the stored rows stay as they are). An empty
     * productSerials says none is in stock any more. */
    map_text("[{\"id\":8,\"name\":\"A\"},{\"id\":9,\"name\":\"B\",\"inventories\":null,"
             "\"productSerials\":[]}]",
             &o, &p);
    assert_int_equal(p.nrows, 2);
    assert_null(strstr(p.rows.data, "\"inv\""));
    assert_contains(p.rows.data, "\"kid\":9");
    assert_contains(p.rows.data, "\"ser\":[]");
    map_page_free(&p);

    /* A reserved that is not a number, or a productSerials that is not a list, fails the
     * record (as a bad onHand does). */
    map_text("[{\"id\":10,\"name\":\"A\",\"inventories\":[{\"branchId\":1,\"onHand\":1,"
             "\"reserved\":\"x\"}]},{\"id\":11,\"name\":\"B\",\"productSerials\":{}}]",
             &o, &p);
    assert_int_equal(p.nrows, 0);
    assert_int_equal(p.nfailed, 2);
    assert_contains(p.failures.data, "field inventories: bad onHand or reserved");
    assert_contains(p.failures.data, "field productSerials: expected an array");
    map_page_free(&p);
}

static void test_branches(void **state)
{
    (void)state;
    kvjson_doc doc = {0};
    parse_text("[{\"id\":61201,\"branchName\":\"Chi nhánh trung tâm\",\"branchCode\":\"CN01\","
               "\"address\":\"12 Hàng Bạc\",\"createdDate\":\"2023-01-02T08:00:00.0000000\"},"
               "{\"id\":61202,\"branchName\":\"Hà Đông\",\"address\":7,"
               "\"modifiedDate\":\"2025-03-23T16:20:57.6524797\","
               "\"createdDate\":\"2023-01-02T08:00:00.0000000\"},"
               "{\"id\":61201,\"branchName\":\"again\"},{\"branchName\":\"no id\"}]",
               &doc);
    map_page p;
    map_page_init(&p);
    map_branches(doc.root, &p);
    assert_int_equal(p.nrecords, 4);
    assert_int_equal(p.nrows, 2);
    assert_int_equal(p.nfailed, 1);
    assert_string_equal(p.rows.data,
                        "[{\"kid\":61201,\"name\":\"Chi nhánh trung tâm\",\"code\":\"CN01\","
                        "\"address\":\"12 Hàng Bạc\",\"modified\":\"2023-01-02T08:00:00+07:00\"},"
                        "{\"kid\":61202,\"name\":\"Hà Đông\","
                        "\"modified\":\"2025-03-23T16:20:57.652479+07:00\"}]");
    assert_int_equal(p.row[1].id, 61202);
    assert_true(p.max_modified_us > 0);
    map_page_free(&p);
    kvjson_doc_free(&doc);
}

/* A product with entries in three books: 1 open-ended, 2 dated 2020..2099, 3 ended in 2024,
 * 4 inactive. */
static const char priced[] =
    "{\"id\":5,\"name\":\"R\",\"basePrice\":1000000.0000,\"priceBooks\":["
    "{\"priceBookId\":1,\"priceBookName\":\"Bảng giá online\",\"isActive\":true,"
    "\"startDate\":null,\"endDate\":null,\"price\":950000},"
    "{\"priceBookId\":2,\"priceBookName\":\"Giá VIP\",\"isActive\":true,"
    "\"startDate\":\"2020-01-01T00:00:00.0000000\",\"endDate\":\"2099-12-31T23:59:59.0000000\","
    "\"price\":900000.0},"
    "{\"priceBookId\":3,\"priceBookName\":\"Tết\",\"isActive\":true,"
    "\"startDate\":\"2024-01-20T00:00:00\",\"endDate\":\"2024-02-20T23:59:59\",\"price\":800000},"
    "{\"priceBookId\":4,\"priceBookName\":\"Cũ\",\"isActive\":false,\"price\":700000}]}";

static void check_price(int64_t book, const char *name, int64_t now_us, const char *want,
                        const char *why_part)
{
    kvjson_doc doc = {0};
    parse_text(priced, &doc);
    map_opts o = {0};
    o.book_id = book;
    o.book_name = name;
    o.now_us = now_us;
    char why[240];
    const char *got = map_price(doc.root, &o, why, sizeof why);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_contains(why, why_part);
    kvjson_doc_free(&doc);
}

static void test_price_book(void **state)
{
    (void)state;
    int64_t now; /* 2025-06-16 12:00 Vietnam time */
    assert_int_equal(kvtime_parse("2025-06-16T12:00:00", &now), 0);
    int64_t in_tet; /* during the Tết promotion */
    assert_int_equal(kvtime_parse("2024-02-01T09:00:00", &in_tet), 0);
    check_price(0, NULL, now, "1000000.0000", "basePrice: no [mapping] price_book");
    check_price(1, NULL, now, "950000", "price book 1 (active, no start .. no end)");
    check_price(2, NULL, now, "900000.0", "price book 2 (active, 2020-01-01T00:00:00.0000000 ..");
    check_price(0, "giá vip", now, "900000.0", "price book 'giá vip' (active");
    check_price(3, NULL, now, "1000000.0000", "basePrice: price book 3 ended 2024-02-20T23:59:59");
    check_price(3, NULL, in_tet, "800000", "price book 3 (active");
    int64_t before; /* before the VIP book starts */
    assert_int_equal(kvtime_parse("2019-12-31T23:59:59", &before), 0);
    check_price(2, NULL, before, "1000000.0000", "basePrice: price book 2 starts 2020-01-01");
    check_price(4, NULL, now, "1000000.0000", "basePrice: price book 4 is not active");
    check_price(99, NULL, now, "1000000.0000", "basePrice: the product has no entry in price book 99");

    /* In a page: the row's price is the book's. */
    map_opts o = {0};
    o.book_id = 2;
    o.now_us = now;
    map_page p;
    char data[sizeof priced + 2];
    snprintf(data, sizeof data, "[%s]", priced);
    map_text(data, &o, &p);
    assert_int_equal(p.nrows, 1);
    assert_contains(p.rows.data, "\"price\":900000,");
    map_page_free(&p);
}

static void test_product_types(void **state)
{
    (void)state;
    map_opts o = {0};
    o.types = 1u << 2; /* product_types = 2 */
    map_page p;
    map_text("[{\"id\":1,\"name\":\"ring\",\"type\":2},{\"id\":2,\"name\":\"engraving\",\"type\":3},"
             "{\"id\":3,\"name\":\"set\",\"type\":1},{\"id\":4,\"name\":\"no type\"}]",
             &o, &p);
    assert_int_equal(p.nrows, 2);
    assert_int_equal(p.row[0].id, 1);
    assert_int_equal(p.row[1].id, 4);
    assert_int_equal(p.nskipped, 2);
    assert_int_equal(p.nout, 2);
    assert_int_equal(p.out_of_scope[0], 2);
    assert_int_equal(p.out_of_scope[1], 3);
    map_page_free(&p);
    o.types = 0; /* unset: every type */
    map_text("[{\"id\":2,\"name\":\"engraving\",\"type\":3}]", &o, &p);
    assert_int_equal(p.nrows, 1);
    assert_int_equal(p.nout, 0);
    map_page_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stock_and_serials),
        cmocka_unit_test(test_branches),
        cmocka_unit_test(test_price_book),
        cmocka_unit_test(test_product_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
