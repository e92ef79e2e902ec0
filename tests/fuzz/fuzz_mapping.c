/* libFuzzer target: a KiotViet JSON page (untrusted network bytes) -> rows for the shop.
 *
 * The input is the HTTP body as kiotviet.c hands it to kvjson_parse: an exact-size heap copy
 * (ASan sees any read past len). Its "data" array (or the document itself when it is an
 * array) goes through map_products with two option sets (default config; a branch list
 * without name scan) and through map_categories; removedIds through map_removed_ids; the
 * first few records through map_explain_product.
 *
 * Oracles beyond sanitizers: every mapped row, the failures and the notes must be strict
 * JSON that PostgreSQL's jsonb accepts (UTF-8, no \u0000, paired surrogates, numbers within
 * numeric's range), counts must agree, ids must be unique within a page, and every number
 * item of the parsed document must carry its original token text. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"
#include "kvjson.h"
#include "mapping.h"

static map_opts opts_default, opts_branches;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    kvs_err err;
    kvs_err_clear(&err);
    /* Built-in defaults need only a database URL to validate. */
    setenv("DATABASE_URL", "postgresql://fuzz@127.0.0.1/fuzz", 1);
    kvs_config *cfg = config_load(NULL, &err);
    FUZZ_CHECK(cfg, "%s", err.msg);
    FUZZ_CHECK(map_opts_from_config(cfg, &opts_default, &err) == 0, "%s", err.msg);
    free(cfg->branches);
    cfg->branches = kvs_strdup("1, 2,30118850");
    free(cfg->mapping[9]); /* name_scan */
    cfg->mapping[9] = kvs_strdup("false");
    FUZZ_CHECK(map_opts_from_config(cfg, &opts_branches, &err) == 0, "%s", err.msg);
    config_free(cfg);
    return 0;
}

static void check_numbers(const cJSON *it)
{
    for (; it; it = it->next) {
        if (cJSON_IsNumber(it)) {
            FUZZ_CHECK(it->valuestring != NULL, "number item without its text");
            char c = it->valuestring[0];
            FUZZ_CHECK(c == '-' || (c >= '0' && c <= '9'), "number text '%s'", it->valuestring);
        } else if (cJSON_IsString(it)) {
            /* "\u0000" never survives as a cut string: it became U+FFFD. */
            FUZZ_CHECK(it->valuestring != NULL, "string item without text");
        }
        if (it->child) check_numbers(it->child);
    }
}

static void check_wrapped(const kvs_buf *b, const char *what)
{
    /* failures and notes are array bodies without the brackets. */
    size_t n = b->len;
    char *t = malloc(n + 3);
    FUZZ_CHECK(t, "oom");
    t[0] = '[';
    if (n) memcpy(t + 1, b->data, n);
    t[n + 1] = ']';
    t[n + 2] = '\0';
    const char *why = fz_json_check(t, n + 2);
    FUZZ_CHECK(!why, "%s not valid jsonb: %s: %.300s", what, why, t);
    free(t);
}

static void check_page(const map_page *p, const char *what)
{
    const char *why = fz_json_check(p->rows.data ? p->rows.data : "", p->rows.len);
    FUZZ_CHECK(!why, "%s rows not valid jsonb: %s: %.300s", what, why,
               p->rows.data ? p->rows.data : "");
    for (int i = 0; i < p->nrows; i++) {
        const map_row *r = &p->row[i];
        FUZZ_CHECK(r->start + r->len <= p->rows.len, "row span");
        why = fz_json_check(p->rows.data + r->start, r->len);
        FUZZ_CHECK(!why, "%s row %d not valid jsonb: %s", what, i, why);
        FUZZ_CHECK(p->rows.data[r->start] == '{', "row %d is not an object", i);
        for (int k = 0; k < i; k++)
            FUZZ_CHECK(p->row[k].id != r->id, "%s: id %lld twice in one page", what,
                       (long long)r->id);
    }
    check_wrapped(&p->failures, "failures");
    check_wrapped(&p->notes, "notes");
    FUZZ_CHECK(p->nrows >= 0 && p->nfailed >= 0 && p->nskipped >= 0, "negative count");
    FUZZ_CHECK(p->nrows + p->nskipped <= p->nrecords, "%s: %d rows + %d skipped > %d records",
               what, p->nrows, p->nskipped, p->nrecords);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1); /* exact size: ASan catches reads past the body */
    FUZZ_CHECK(buf, "oom");
    memcpy(buf, data, size);
    kvjson_doc doc;
    kvs_err err;
    int rc = kvjson_parse(buf, size, &doc, &err);
    if (rc != 0) {
        FUZZ_CHECK(rc == -EINVAL && err.msg[0], "parse failed without a reason");
        FUZZ_CHECK(doc.root == NULL && doc.arena == NULL, "failed parse left a document");
        free(buf);
        return 0;
    }
    check_numbers(doc.root);

    const cJSON *arr = cJSON_IsArray(doc.root) ? doc.root : kvjson_get(doc.root, "data");
    if (cJSON_IsArray(arr)) {
        map_page p;
        map_page_init(&p);
        map_products(arr, &opts_default, &p);
        check_page(&p, "products");
        map_page_free(&p);

        map_page_init(&p);
        map_products(arr, &opts_branches, &p);
        check_page(&p, "products(branches)");
        map_page_free(&p);

        map_page_init(&p);
        map_categories(arr, &p);
        check_page(&p, "categories");
        map_page_free(&p);

        int k = 0;
        const cJSON *rec;
        cJSON_ArrayForEach(rec, arr)
        {
            if (k++ == 3) break;
            kvs_buf out;
            kvs_buf_init(&out);
            map_explain_product(rec, &opts_default, &out);
            kvs_buf_free(&out);
        }
    }
    static const char *const removed_keys[] = {"removedIds", "removeIds", NULL};
    const cJSON *removed = kvjson_get_any(doc.root, removed_keys);
    int n = 0, nbad = 0;
    int64_t *ids = map_removed_ids(removed, &n, &nbad);
    if (cJSON_IsArray(removed))
        FUZZ_CHECK(n + nbad == cJSON_GetArraySize(removed), "removed ids miscounted");
    free(ids);

    kvjson_doc_free(&doc);
    free(buf);
    return 0;
}
