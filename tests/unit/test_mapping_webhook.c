/* Unit tests for mapping_webhook.c: webhook bodies (the shapes captured from KiotViet, fact
 * sheet §7 and §10: PascalCase, "__type", lower-case "isActive", RemoveId or a bare id list,
 * nested rows naming another product) into the writer's inputs, and the coalescing rules.
 * Expected values are written out by hand from the bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jewel.h"
#include "kvjson.h"
#include "kvtime.h"
#include "mapping_webhook.h"

#define TYPE_P "\"__type\":\"KiotViet.OmniChannelCore.Api.Shared.Model.WebhookProductUpdateRes, " \
               "KiotViet.OmniChannelCore.Api.Shared\","

/* A product.update as captured: PascalCase, __type, lower-case isActive, and Inventories whose
 * ProductId/ProductCode name another product (the variant captured in the wild). */
static const char product_update[] =
    "{\"Id\":\"7b6c0e52-1d3a-4a0e-9a57-3f1c1b2d4e5f\",\"Attempt\":1,\"Notifications\":[{"
    "\"Action\":\"product.update.500712345\",\"Data\":[{" TYPE_P
    "\"Id\":30118801,\"RetailerId\":500712345,\"Code\":\"NC18K-012\","
    "\"Name\":\"Nhẫn cưới vàng 18K trơn\",\"FullName\":\"Nhẫn cưới vàng 18K trơn\","
    "\"CategoryId\":1001,\"CategoryName\":\"Nhẫn\",\"AllowsSale\":true,\"Type\":2,"
    "\"HasVariants\":false,\"BasePrice\":8450000.0000,\"Unit\":\"chiếc\",\"ConversionValue\":1,"
    "\"ModifiedDate\":\"2025-06-16T11:02:44.9000000\",\"isActive\":true,"
    "\"Attributes\":[{\"ProductId\":30118799,\"AttributeName\":\"TUỔI VÀNG\","
    "\"AttributeValue\":\"18K\"}],"
    "\"Inventories\":[{\"ProductId\":30118799,\"ProductCode\":\"NC18K-010\",\"BranchId\":61202,"
    "\"Cost\":7120000,\"OnHand\":2,\"Reserved\":0,\"isActive\":true}],"
    "\"Images\":[{\"Image\":\"https://cdn.example/a.jpg\"}]}]}]}";

static const char stock_update[] =
    "{\"Id\":\"6f0f4d2e-3b1a-4c55-9e0a-0d1c2b3a4f5e\",\"Attempt\":1,\"Notifications\":[{"
    "\"Action\":\"stock.update.500712345\",\"Data\":[{\"__type\":\"KiotViet.OmniChannelCore.Api."
    "Shared.Model.WebhookProductStockRes, KiotViet.OmniChannelCore.Api.Shared\","
    "\"ProductId\":30118801,\"ProductCode\":\"NC18K-012\",\"ProductName\":\"Nhẫn cưới vàng 18K "
    "trơn\",\"BranchId\":61202,\"BranchName\":\"Chi nhánh Hà Đông\",\"Cost\":7120000,"
    "\"OnHand\":1,\"Reserved\":0,\"MinQuantity\":1,\"MaxQuantity\":999999999,"
    "\"isActive\":true}]}]}";

static const char delete_bare[] =
    "{\"Id\":\"a1b2c3d4-0000-4000-8000-1234567890ab\",\"Attempt\":1,\"Notifications\":[{"
    "\"Action\":\"product.delete.500712345\",\"Data\":[30118790,30118791]}]}";

static const char delete_removeid[] =
    "{\"Id\":\"a1b2c3d4-0000-4000-8000-1234567890ac\",\"Attempt\":2,\"Notifications\":[{"
    "\"Action\":\"product.delete.500712345\",\"Data\":[{\"RemoveId\":[30118792,30118790]}]}]}";

static const char category_update[] =
    "{\"Id\":\"c0000000-0000-4000-8000-000000000001\",\"Attempt\":1,\"Notifications\":[{"
    "\"Action\":\"category.update.500712345\",\"Data\":[{\"__type\":\"X, Y\",\"Id\":1002,"
    "\"Name\":\"Bông tai\",\"ParentId\":1000,\"IsDeleted\":false,"
    "\"CreatedDate\":\"2024-01-02T08:00:00.0000000\",\"ModifiedDate\":\"2025-06-01T09:00:00.0000000\","
    "\"RetailerId\":500712345,\"Rank\":2,\"HasChild\":false},{\"Id\":1003,\"Name\":\"Cũ\","
    "\"IsDeleted\":true,\"RetailerId\":500712345}]}]}";

static const char category_delete[] =
    "{\"Id\":\"c0000000-0000-4000-8000-000000000002\",\"Attempt\":1,\"Notifications\":[{"
    "\"Action\":\"category.delete.500712345\",\"Data\":{\"RemoveId\":[1004]}}]}";

/* The version of product 30118801 with another ModifiedDate and name. */
static char *product_version(char *buf, size_t cap, const char *guid, const char *modified,
                             const char *name)
{
    snprintf(buf, cap,
             "{\"Id\":\"%s\",\"Attempt\":1,\"Notifications\":[{\"Action\":"
             "\"product.update.500712345\",\"Data\":[{\"Id\":30118801,\"Code\":\"NC18K-012\","
             "\"Name\":\"%s\",\"BasePrice\":1,\"ModifiedDate\":\"%s\",\"isActive\":true}]}]}",
             guid, name, modified);
    return buf;
}

static int64_t vn_us(const char *s)
{
    int64_t us = 0;
    assert_int_equal(kvtime_parse(s, &us), 0);
    return us;
}

static int add(wh_batch *b, int64_t row, const char *body)
{
    return wh_batch_add(b, row, body, strlen(body));
}

/* The row's key as a string / number text, parsed back from the page. */
static const char *row_get(kvjson_doc *doc, const map_page *p, int i, const char *key)
{
    static char copy[4096];
    size_t n = p->row[i].len;
    assert_true(n < sizeof copy);
    memcpy(copy, p->rows.data + p->row[i].start, n);
    copy[n] = '\0';
    kvs_err e;
    assert_int_equal(kvjson_parse(copy, n, doc, &e), 0);
    const cJSON *v = kvjson_get(doc->root, key);
    if (!v) return NULL;
    const char *s = NULL;
    if (kvjson_get_str(doc->root, key, &s) && kvjson_num_text(v, &s)) return cJSON_IsTrue(v) ? "true" : "?";
    return s;
}

static void test_types(void **state)
{
    (void)state;
    assert_int_equal(wh_type_of_action("product.update.500712345"), WH_PRODUCT_UPDATE);
    assert_int_equal(wh_type_of_action("Product.Delete.1"), WH_PRODUCT_DELETE);
    assert_int_equal(wh_type_of_action("stock.update"), WH_STOCK_UPDATE);
    assert_int_equal(wh_type_of_action("category.delete.9"), WH_CATEGORY_DELETE);
    assert_int_equal(wh_type_of_action("customer.update.9"), -1);
    assert_int_equal(wh_type_of_action("product.updated.9"), -1);
    assert_int_equal(wh_type_of_action("product"), -1);
    assert_int_equal(wh_type_of_action(NULL), -1);
}

/* PascalCase, __type and isActive map as the REST camelCase does; nested rows count for the
 * record that holds them (stock 2 and the 18K purity for 30118801, not 30118799). */
static void test_product_update(void **state)
{
    (void)state;
    wh_batch b;
    wh_batch_init(&b);
    add(&b, 7, product_update);
    assert_int_equal(b.products.n, 1);
    assert_int_equal(b.products.v[0].id, 30118801);
    assert_int_equal(b.products.v[0].modified_us, vn_us("2025-06-16T11:02:44.9"));
    jewel_map *jm = jewel_map_new_defaults();
    map_opts o = {.jewel = jm};
    map_page cats, prods;
    map_page_init(&cats);
    map_page_init(&prods);
    wh_batch_pages(&b, &o, &cats, &prods);
    assert_int_equal(cats.nrows, 0);
    assert_int_equal(prods.nrows, 1);
    assert_int_equal(prods.nfailed, 0);
    assert_int_equal(prods.row[0].id, 30118801);
    kvjson_doc d;
    assert_string_equal(row_get(&d, &prods, 0, "name"), "Nhẫn cưới vàng 18K trơn");
    kvjson_doc_free(&d);
    assert_string_equal(row_get(&d, &prods, 0, "code"), "NC18K-012");
    kvjson_doc_free(&d);
    assert_string_equal(row_get(&d, &prods, 0, "price"), "8450000");
    kvjson_doc_free(&d);
    assert_string_equal(row_get(&d, &prods, 0, "cat_kid"), "1001");
    kvjson_doc_free(&d);
    assert_string_equal(row_get(&d, &prods, 0, "stock"), "2");
    kvjson_doc_free(&d);
    assert_string_equal(row_get(&d, &prods, 0, "status"), "active");
    kvjson_doc_free(&d);
    assert_string_equal(row_get(&d, &prods, 0, "purity"), "18K");
    kvjson_doc_free(&d);
    assert_int_equal(wh_event_result(&b.ev[0]), WH_APPLIED);
    map_page_free(&cats);
    map_page_free(&prods);
    wh_batch_free(&b);
    jewel_map_free(jm);
}

static void test_inactive(void **state)
{
    (void)state;
    static const char body[] =
        "{\"Id\":\"x\",\"Notifications\":[{\"Action\":\"product.update.1\",\"Data\":[{"
        "\"Id\":5,\"Code\":\"A\",\"Name\":\"A\",\"isActive\":false}]}]}";
    wh_batch b;
    wh_batch_init(&b);
    add(&b, 1, body);
    map_opts o = {0};
    map_page cats, prods;
    map_page_init(&cats);
    map_page_init(&prods);
    wh_batch_pages(&b, &o, &cats, &prods);
    assert_int_equal(prods.nrows, 1);
    kvjson_doc d;
    assert_string_equal(row_get(&d, &prods, 0, "status"), "inactive");
    kvjson_doc_free(&d);
    map_page_free(&cats);
    map_page_free(&prods);
    wh_batch_free(&b);
}

static void test_removals(void **state)
{
    (void)state;
    wh_batch b;
    wh_batch_init(&b);
    add(&b, 1, delete_bare);
    add(&b, 2, delete_removeid);
    add(&b, 3, category_delete);
    assert_int_equal(b.removed[1].n, 3);
    assert_int_equal(b.removed[1].v[0].id, 30118790);
    assert_int_equal(b.removed[1].v[1].id, 30118791);
    assert_int_equal(b.removed[1].v[2].id, 30118792);
    assert_int_equal(b.removed[0].n, 1);
    assert_int_equal(b.removed[0].v[0].id, 1004);
    for (int i = 0; i < 3; i++) assert_int_equal(wh_event_result(&b.ev[i]), WH_APPLIED);
    wh_batch_free(&b);
}

static void test_stock_and_categories(void **state)
{
    (void)state;
    wh_batch b;
    wh_batch_init(&b);
    add(&b, 1, stock_update);
    add(&b, 2, category_update);
    assert_int_equal(b.stock.n, 1);
    assert_int_equal(b.stock.v[0].id, 30118801);
    assert_int_equal(b.categories.n, 1);
    assert_int_equal(b.removed[0].n, 1); /* IsDeleted: true */
    assert_int_equal(b.removed[0].v[0].id, 1003);
    map_opts o = {0};
    map_page cats, prods;
    map_page_init(&cats);
    map_page_init(&prods);
    wh_batch_pages(&b, &o, &cats, &prods);
    assert_int_equal(cats.nrows, 1);
    assert_int_equal(cats.nfailed, 0);
    kvjson_doc d;
    assert_string_equal(row_get(&d, &cats, 0, "name"), "Bông tai");
    kvjson_doc_free(&d);
    assert_string_equal(row_get(&d, &cats, 0, "parent_kid"), "1000");
    kvjson_doc_free(&d);
    assert_int_equal(cats.row[0].modified_us, vn_us("2025-06-01T09:00:00"));
    assert_int_equal(wh_event_result(&b.ev[1]), WH_APPLIED);
    map_page_free(&cats);
    map_page_free(&prods);
    wh_batch_free(&b);
}

/* stock.update from the notification's own figures: the other branches from the stored rows,
 * the total over the counted branches; not when the order is unsure or a branch is unknown. */
static void stock_direct_case(const char *const *bodies, int nbodies, const wh_stock_row *rows,
                              int nrows, const map_opts *o, const char *want_stock)
{
    wh_batch b;
    wh_batch_init(&b);
    for (int i = 0; i < nbodies; i++) add(&b, i + 1, bodies[i]);
    map_page p;
    map_page_init(&p);
    kvs_idset done = {0};
    wh_batch_stock_direct(&b, o, rows, nrows, &p, &done);
    if (!want_stock) {
        assert_int_equal(p.nrows, 0);
        assert_false(kvs_idset_has(&done, 30118801));
    } else {
        assert_int_equal(p.nrows, 1);
        assert_int_equal(p.nfailed, 0);
        assert_true(kvs_idset_has(&done, 30118801));
        kvjson_doc d;
        assert_string_equal(row_get(&d, &p, 0, "stock"), want_stock);
        kvjson_doc_free(&d);
    }
    kvs_idset_free(&done);
    map_page_free(&p);
    wh_batch_free(&b);
}

static void test_stock_direct(void **state)
{
    (void)state;
    /* Branch 61202 from the notification (OnHand 1), 61203 as stored (2.5). */
    const wh_stock_row two[] = {{30118801, 61202, "3", "0"}, {30118801, 61203, "2.5", "1"}};
    const char *one_body[] = {stock_update};
    map_opts all = {0};
    stock_direct_case(one_body, 1, two, 2, &all, "3.5");
    /* Only 61203 counts ([mapping] branches): the notified branch adds nothing. */
    int64_t counted[] = {61203};
    map_opts some = {.branches = counted, .nbranches = 1};
    stock_direct_case(one_body, 1, two, 2, &some, "2.5");
    /* The notified branch is not stored: the other branches are not known. */
    stock_direct_case(one_body, 1, two + 1, 1, &all, NULL);
    stock_direct_case(one_body, 1, NULL, 0, &all, NULL);
    /* A redelivery may be older than what is stored. */
    char again[sizeof stock_update + 8];
    snprintf(again, sizeof again, "%s", stock_update);
    char *a = strstr(again, "\"Attempt\":1");
    assert_non_null(a);
    a[10] = '2';
    const char *redelivered[] = {again};
    stock_direct_case(redelivered, 1, two, 2, &all, NULL);
    /* Two notifications of the same branch: which is newer is unknown. */
    const char *twice[] = {stock_update, stock_update};
    stock_direct_case(twice, 2, two, 2, &all, NULL);
}

/* A burst: the newest version wins whatever the order of arrival; the older is stale, the same
 * version again a duplicate; a stored newer version makes the payload stale. */
static void test_coalesce(void **state)
{
    (void)state;
    char b1[512], b2[512], b3[512];
    wh_batch b;
    wh_batch_init(&b);
    add(&b, 1, product_version(b1, sizeof b1, "g1", "2025-06-16T12:00:00.0000000", "new"));
    add(&b, 2, product_version(b2, sizeof b2, "g2", "2025-06-16T11:00:00.0000000", "old"));
    add(&b, 3, product_version(b3, sizeof b3, "g3", "2025-06-16T12:00:00.0000000", "new"));
    assert_int_equal(b.products.n, 1);
    assert_int_equal(b.products.v[0].ev, 2); /* the tie goes to the later event */
    map_opts o = {0};
    map_page cats, prods;
    map_page_init(&cats);
    map_page_init(&prods);
    wh_batch_pages(&b, &o, &cats, &prods);
    kvjson_doc d;
    assert_string_equal(row_get(&d, &prods, 0, "name"), "new");
    kvjson_doc_free(&d);
    assert_int_equal(wh_event_result(&b.ev[0]), WH_DUPLICATE);
    assert_int_equal(wh_event_result(&b.ev[1]), WH_STALE);
    assert_int_equal(wh_event_result(&b.ev[2]), WH_APPLIED);
    map_page_free(&cats);
    map_page_free(&prods);
    wh_batch_free(&b);

    /* Against stored versions. */
    wh_batch_init(&b);
    add(&b, 1, product_version(b1, sizeof b1, "g1", "2025-06-16T11:00:00.0000000", "old"));
    int64_t id = 30118801, newer = vn_us("2025-06-16T12:00:00");
    wh_batch_versions(&b, &id, &newer, 1);
    assert_int_equal(b.products.n, 0);
    assert_int_equal(wh_event_result(&b.ev[0]), WH_STALE);
    wh_batch_free(&b);

    wh_batch_init(&b);
    add(&b, 1, product_version(b1, sizeof b1, "g1", "2025-06-16T12:00:00.0000000", "same"));
    wh_batch_versions(&b, &id, &newer, 1);
    assert_int_equal(b.products.n, 0);
    assert_int_equal(wh_event_result(&b.ev[0]), WH_DUPLICATE);
    wh_batch_free(&b);

    wh_batch_init(&b);
    add(&b, 1, product_version(b1, sizeof b1, "g1", "2025-06-16T13:00:00.0000000", "newer"));
    wh_batch_versions(&b, &id, &newer, 1);
    assert_int_equal(b.products.n, 1);
    wh_batch_free(&b);
}

static void test_bad_bodies(void **state)
{
    (void)state;
    wh_batch b;
    char buf[200];
    wh_batch_init(&b);
    add(&b, 1, "{not json");
    add(&b, 2, "{\"Id\":\"x\"}");
    add(&b, 3, "{\"Id\":\"y\",\"Notifications\":[{\"Action\":\"order.update.1\",\"Data\":[{}]}]}");
    add(&b, 4, "{\"Id\":\"z\",\"Notifications\":[{\"Action\":\"product.update.1\",\"Data\":[{\"Code\":\"A\"}]}]}");
    add(&b, 5, "{\"Id\":\"w\",\"Notifications\":[{\"Action\":\"product.delete.1\",\"Data\":[\"x\"]}]}");
    assert_int_equal(wh_event_result(&b.ev[0]), WH_ERROR);
    assert_non_null(strstr(wh_event_result_text(&b.ev[0], buf, sizeof buf), "error: invalid JSON"));
    assert_int_equal(wh_event_result(&b.ev[1]), WH_ERROR);
    assert_string_equal(wh_event_result_text(&b.ev[2], buf, sizeof buf), "ignored");
    assert_int_equal(wh_event_result(&b.ev[3]), WH_ERROR);
    assert_int_equal(wh_event_result(&b.ev[4]), WH_ERROR);
    assert_int_equal(b.products.n + b.removed[1].n, 0);
    wh_batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),          cmocka_unit_test(test_product_update),
        cmocka_unit_test(test_inactive),       cmocka_unit_test(test_removals),
        cmocka_unit_test(test_stock_and_categories), cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_bad_bodies),     cmocka_unit_test(test_stock_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
