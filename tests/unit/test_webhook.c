/* Unit tests: the webhook's X-Hub-Signature check and envelope parse (webhook_parse.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "webhook.h"

static const char body[] =
    "{\"Id\":\"6f0f4d2e-3b1a-4c55-9e0a-0d1c2b3a4f5e\",\"Attempt\":1,\"Notifications\":[{\"Action\":"
    "\"stock.update.500712345\",\"Data\":[{\"__type\":\"KiotViet.OmniChannelCore.Api.Shared."
    "Model.WebhookProductStockRes, KiotViet.OmniChannelCore.Api.Shared\",\"ProductId\":30118801,"
    "\"OnHand\":1,\"isActive\":true}]}]}";

/* RFC 4231 test case 2 (HMAC-SHA-256, key "Jefe"): a known answer, in every accepted form. */
static void rfc4231_case2(void **state)
{
    (void)state;
    const char *data = "what do ya want for nothing?";
    const char *mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    assert_true(webhook_signature_ok(mac, "Jefe", data, strlen(data)));
    char h[80];
    snprintf(h, sizeof h, "sha1=%s", mac);
    assert_true(webhook_signature_ok(h, "Jefe", data, strlen(data)));
    snprintf(h, sizeof h, "sha256=%s", mac);
    assert_true(webhook_signature_ok(h, "Jefe", data, strlen(data)));
    snprintf(h, sizeof h, "SHA256=%s", mac);
    assert_true(webhook_signature_ok(h, "Jefe", data, strlen(data)));
    /* upper-case hex, blanks around */
    char up[80];
    snprintf(up, sizeof up, "  sha1=%s \t", mac);
    for (char *p = up + 7; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
    assert_true(webhook_signature_ok(up, "Jefe", data, strlen(data)));
    /* the same digest, a different key or body: refused */
    assert_false(webhook_signature_ok(mac, "jefe", data, strlen(data)));
    assert_false(webhook_signature_ok(mac, "Jefe", data, strlen(data) - 1));
}

static void test_signature_refusals(void **state)
{
    (void)state;
    const char *mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const char *data = "what do ya want for nothing?";
    size_t n = strlen(data);
    char h[140];
    assert_false(webhook_signature_ok(NULL, "Jefe", data, n));
    assert_false(webhook_signature_ok("", "Jefe", data, n));
    assert_false(webhook_signature_ok(mac, "", data, n)); /* no secret: nothing verifies */
    assert_false(webhook_signature_ok(mac, NULL, data, n));
    /* wrong length: one digit short, one too many, a SHA-1-sized value */
    snprintf(h, sizeof h, "%.63s", mac);
    assert_false(webhook_signature_ok(h, "Jefe", data, n));
    snprintf(h, sizeof h, "%s0", mac);
    assert_false(webhook_signature_ok(h, "Jefe", data, n));
    assert_false(webhook_signature_ok("sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", "Jefe", data, n));
    /* not hex, unknown prefix, prefix twice, inner blank */
    snprintf(h, sizeof h, "%.63sg", mac);
    assert_false(webhook_signature_ok(h, "Jefe", data, n));
    snprintf(h, sizeof h, "md5=%s", mac);
    assert_false(webhook_signature_ok(h, "Jefe", data, n));
    snprintf(h, sizeof h, "sha1=sha1=%s", mac);
    assert_false(webhook_signature_ok(h, "Jefe", data, n));
    snprintf(h, sizeof h, "%.32s %s", mac, mac + 32);
    assert_false(webhook_signature_ok(h, "Jefe", data, n));
    snprintf(h, sizeof h, "%s x", mac);
    assert_false(webhook_signature_ok(h, "Jefe", data, n));
    /* a value that is all zeros is no wildcard */
    assert_false(webhook_signature_ok("0000000000000000000000000000000000000000000000000000000000000000",
                                      "Jefe", data, n));
}

static void test_envelope_fields(void **state)
{
    (void)state;
    webhook_envelope e;
    assert_int_equal(webhook_envelope_parse(body, strlen(body), &e), 0);
    assert_string_equal(e.event_id, "6f0f4d2e-3b1a-4c55-9e0a-0d1c2b3a4f5e");
    assert_int_equal(e.attempt, 1);
    assert_string_equal(e.types, "stock.update");
    assert_int_equal(e.ntypes, 1);
    /* keys in any case; several notifications; types distinct, in order; Attempt kept */
    const char *two = "{\"id\":\"a1\",\"attempt\":3,\"notifications\":["
                      "{\"action\":\"product.update.1\"},{\"Action\":\"stock.update.1\"},"
                      "{\"Action\":\"product.update.2\"},{\"Action\":\"Category.Delete\"}]}";
    assert_int_equal(webhook_envelope_parse(two, strlen(two), &e), 0);
    assert_string_equal(e.event_id, "a1");
    assert_int_equal(e.attempt, 3);
    assert_string_equal(e.types, "product.update,stock.update,category.delete");
    assert_int_equal(e.ntypes, 3);
}

static void test_envelope_fallbacks(void **state)
{
    (void)state;
    webhook_envelope e;
    /* no Id: the body's SHA-256 (sha256("") is well known); Attempt out of range: 1 */
    const char *noid = "{\"Attempt\":0,\"Notifications\":[]}";
    assert_int_equal(webhook_envelope_parse(noid, strlen(noid), &e), 0);
    assert_int_equal(strlen(e.event_id), 64);
    assert_int_equal(e.attempt, 1);
    assert_string_equal(e.types, "");
    assert_int_equal(webhook_envelope_parse("", 0, &e), -EINVAL);
    assert_string_equal(e.event_id, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* an Id that is no short printable string is not used */
    const char *badid = "{\"Id\":\"a b\",\"Attempt\":2.9,\"Notifications\":[{\"Action\":5},"
                        "{\"Action\":\"product..update\"},{\"Action\":\"x.y.z\"},"
                        "{\"Action\":\"product.update.12a\"},{\"Action\":\"ok.done.123\"}]}";
    assert_int_equal(webhook_envelope_parse(badid, strlen(badid), &e), 0);
    assert_int_equal(strlen(e.event_id), 64);
    assert_int_equal(e.attempt, 2);
    assert_string_equal(e.types, "ok.done");
    /* not an envelope: the fields still have their fallbacks */
    assert_int_equal(webhook_envelope_parse("[1,2]", 5, &e), -EINVAL);
    assert_int_equal(e.attempt, 1);
    assert_int_equal(webhook_envelope_parse("{\"Id\":\"z\"}", 10, &e), -EINVAL);
    assert_string_equal(e.event_id, "z");
    /* not NUL-terminated: only len bytes are read */
    char buf[64];
    memcpy(buf, "{\"Id\":\"q\",\"Notifications\":[]}XXXXXXXX", 37);
    assert_int_equal(webhook_envelope_parse(buf, 29, &e), 0);
    assert_string_equal(e.event_id, "q");
}

static void test_envelope_types_capped(void **state)
{
    (void)state;
    /* many distinct long types: the list stays within its buffer, whole types only */
    char big[20000];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"Notifications\":[");
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s{\"Action\":\"type%c%c.update_something_long.1\"}",
                              i ? "," : "", 'a' + i / 26, 'a' + i % 26);
    n += (size_t)snprintf(big + n, sizeof big - n, "]}");
    webhook_envelope e;
    assert_int_equal(webhook_envelope_parse(big, n, &e), 0);
    assert_true(strlen(e.types) < sizeof e.types);
    assert_true(e.ntypes > 3 && e.ntypes < 60);
    assert_true(e.types[strlen(e.types) - 1] == 'g'); /* ends with a whole "..._long" type */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc4231_case2),
        cmocka_unit_test(test_signature_refusals),
        cmocka_unit_test(test_envelope_fields),
        cmocka_unit_test(test_envelope_fallbacks),
        cmocka_unit_test(test_envelope_types_capped),
    };
    return cmocka_run_group_tests_name("webhook", tests, NULL, NULL);
}
