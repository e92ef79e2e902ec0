/* libFuzzer target: the webhook's envelope parse and X-Hub-Signature check (webhook_parse.c),
 * and the inbox run's mapping of the same body (mapping_webhook.c).
 *
 * The whole input is a notification body. Properties checked, beyond sanitizers:
 *   envelope  event_id is 1..WEBHOOK_ID_MAX printable ASCII bytes (the inbox's key: text
 *             PostgreSQL takes, never empty); attempt is 1..1000000; types is a list of
 *             distinct "word.word" types (lower-case letters and '_'), ntypes of them, that
 *             fits its buffer; a body whose Id is absent gets the same id when parsed twice.
 *   signature the HMAC-SHA256 of the body (computed here) verifies under every accepted
 *             prefix and case; the same value with one digit changed, or under another key,
 *             does not; the first bytes of the input used as a header never crash it.
 *   mapping   the body as an inbox row maps into pages, and its stock.update records, with
 *             stored rows made from their own products and branches, into a stock page whose
 *             every row is a product wh_batch_stock_direct reports done. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "mapping_webhook.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_types(const webhook_envelope *e)
{
    size_t n = strlen(e->types);
    FUZZ_CHECK(n < sizeof e->types, "types not terminated");
    int count = 0;
    const char *p = e->types;
    while (*p) {
        size_t wl = strcspn(p, ",");
        int dots = 0;
        FUZZ_CHECK(wl > 0, "empty type in '%s'", e->types);
        for (size_t i = 0; i < wl; i++) {
            char c = p[i];
            FUZZ_CHECK((c >= 'a' && c <= 'z') || c == '_' || c == '.', "bad byte in '%s'", e->types);
            dots += c == '.';
        }
        FUZZ_CHECK(dots == 1 && p[0] != '.' && p[wl - 1] != '.', "bad type in '%s'", e->types);
        /* distinct: no earlier type equals this one */
        for (const char *q = e->types; q < p;) {
            size_t ql = strcspn(q, ",");
            FUZZ_CHECK(!(ql == wl && !memcmp(q, p, wl)), "type twice in '%s'", e->types);
            q += ql + 1;
        }
        count++;
        p += wl;
        if (*p == ',') {
            p++;
            FUZZ_CHECK(*p, "trailing comma in '%s'", e->types);
        }
    }
    FUZZ_CHECK(count == e->ntypes, "ntypes %d, counted %d", e->ntypes, count);
}

static void check_signature(const uint8_t *data, size_t size)
{
    static const char *key = "wh-Secret-9f3a7c1e";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), key, (int)strlen(key), data, size, md, &mdl) && mdl == 32, "hmac");
    char hex[65], h[80];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    static const char *const prefixes[] = {"", "sha1=", "sha256=", "SHA1=", "Sha256="};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        snprintf(h, sizeof h, "%s%s", prefixes[i], hex);
        FUZZ_CHECK(webhook_signature_ok(h, key, data, size), "good signature refused: %s", h);
    }
    char upper[65];
    for (int i = 0; i < 65; i++) upper[i] = (hex[i] >= 'a' && hex[i] <= 'f') ? (char)(hex[i] - 32) : hex[i];
    FUZZ_CHECK(webhook_signature_ok(upper, key, data, size), "upper-case hex refused");
    char bad[65];
    memcpy(bad, hex, sizeof bad);
    size_t at = size ? data[0] % 64 : 0;
    bad[at] = bad[at] == '0' ? '1' : '0';
    FUZZ_CHECK(!webhook_signature_ok(bad, key, data, size), "changed digit accepted");
    FUZZ_CHECK(!webhook_signature_ok(hex, "another key", data, size), "another key accepted");
    /* the input's first bytes as a header */
    char hdr[100];
    size_t hn = size < sizeof hdr - 1 ? size : sizeof hdr - 1;
    memcpy(hdr, data, hn);
    hdr[hn] = '\0';
    (void)webhook_signature_ok(hdr, key, data, size);
}

static void check_batch(const uint8_t *data, size_t size)
{
    wh_batch b;
    wh_batch_init(&b);
    wh_batch_add(&b, 1, (const char *)data, size);
    map_opts o = {0};
    map_page cats, prods, stock;
    map_page_init(&cats);
    map_page_init(&prods);
    map_page_init(&stock);
    wh_batch_pages(&b, &o, &cats, &prods);
    wh_stock_row *rows = calloc((size_t)b.stock_recs.n + 1, sizeof *rows);
    FUZZ_CHECK(rows != NULL, "calloc");
    int n = 0;
    for (int i = 0; i < b.stock_recs.n; i++) {
        int64_t br;
        if (kvjson_get_int64(b.stock_recs.v[i].rec, "BranchId", &br) == 0)
            rows[n++] = (wh_stock_row){b.stock_recs.v[i].id, br, "1", "0.5"};
    }
    kvs_idset done = {0};
    wh_batch_stock_direct(&b, &o, rows, n, &stock, &done);
    for (int i = 0; i < stock.nrows; i++)
        FUZZ_CHECK(kvs_idset_has(&done, stock.row[i].id), "row %lld not done",
                   (long long)stock.row[i].id);
    kvs_idset_free(&done);
    free(rows);
    map_page_free(&cats);
    map_page_free(&prods);
    map_page_free(&stock);
    wh_batch_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    webhook_envelope e, again;
    int rc = webhook_envelope_parse((const char *)data, size, &e);
    FUZZ_CHECK(rc == 0 || rc == -22, "rc %d", rc);
    size_t idl = strlen(e.event_id);
    FUZZ_CHECK(idl >= 1 && idl <= WEBHOOK_ID_MAX, "event id length %zu", idl);
    for (size_t i = 0; i < idl; i++)
        FUZZ_CHECK(e.event_id[i] >= 0x21 && e.event_id[i] <= 0x7e, "event id byte %d", e.event_id[i]);
    FUZZ_CHECK(e.attempt >= 1 && e.attempt <= 1000000, "attempt %d", e.attempt);
    check_types(&e);
    FUZZ_CHECK(webhook_envelope_parse((const char *)data, size, &again) == rc &&
                   !memcmp(&e, &again, sizeof e),
               "two parses differ");
    check_signature(data, size);
    check_batch(data, size);
    return 0;
}
