/* --explain-product: one product fetched from KiotViet and explained (see explain.h).
 *
 * This is a CLI path that runs instead of the daemon, never inside it:
 * - the database is read with BLOCKING libpq (db_connect_blocking, PQexecParams): there is no
 *   daemon loop to stall here, and a few statements do not justify a state machine;
 * - HTTP goes through a kiotviet_cli session: the project's http client (curl multi on libuv)
 *   on a PRIVATE uv loop, so no blocking (easy-interface) transfer exists anywhere in src/,
 *   and TLS, timeouts and the body cap behave exactly as in a sync.
 * The requests are kiotviet.c's (kv_client, kv_get_raw: the daemon's token, headers and 401
 * refresh), without retries of transient failures: at most three requests (token, product, and
 * one retry with a fresh token when the stored one is refused), not counted in the daemon's
 * hourly budget. It writes nothing: a token it obtains is used once and dropped. */
#include "explain.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"
#include "http.h"
#include "kiotviet.h"
#include "kiotviet_cli.h"
#include "kvjson.h"
#include "log.h"
#include "mapping.h"
#include "store.h"

/* Fetches the product through a kiotviet_cli session (the daemon's token, headers and 401
 * refresh on a private loop; transient failures not retried, no budget, no token stored).
 * Returns 0 with *body (caller frees) and *len, or 1 with err. */
static int fetch_product(const kvs_config *cfg, const integ_row *row, const char *code,
                         char **body, size_t *len, char *err, size_t cap)
{
    kvs_err e;
    kvs_err_clear(&e);
    kv_cli c;
    if (kv_cli_open(&c, cfg, row, &e)) {
        snprintf(err, cap, "%s", e.msg);
        return 1;
    }
    char *enc = http_urlencode(code);
    kvs_buf path;
    kvs_buf_init(&path);
    /* priceBooks when [mapping] price_book is set: its choice is explained from them */
    REQUIRE(kvs_buf_printf(&path, "/products/code/%s?IncludeSerials=true&includeInventory=true%s",
                           enc, cfg->price_book ? "&includePricebook=true" : "") == 0);
    int rc = 1;
    if (kv_cli_call(&c, NULL, kvs_buf_cstr(&path), NULL) == KV_OK && c.body && c.len) {
        *body = c.body; /* taken from the session */
        *len = c.len;
        c.body = NULL;
        rc = 0;
    } else if (c.rc == KV_OK) {
        snprintf(err, cap, "KiotViet answered 200 with an empty body");
    } else if (c.status == 404) {
        snprintf(err, cap, "product code '%s' not found in KiotViet (retailer %s)", code,
                 row->retailer);
    } else {
        snprintf(err, cap, "%s", c.err[0] ? c.err : "KiotViet request failed");
    }
    kvs_buf_free(&path);
    free(enc);
    kv_cli_close(&c);
    return rc;
}

/* The product inside the answer: the object itself (the documented form), {"data": {...}}, or
 * a one-page list {"data": [...]} (the entry whose code matches). NULL if none. */
static const cJSON *find_product(const cJSON *root, const char *code)
{
    if (!cJSON_IsObject(root)) return NULL;
    const cJSON *data = kvjson_get(root, "data");
    if (cJSON_IsObject(data)) return data;
    if (cJSON_IsArray(data)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, data)
        {
            const char *c;
            if (kvjson_get_str(it, "code", &c) == 0 && strcasecmp(c, code) == 0) return it;
        }
        return NULL;
    }
    return kvjson_get(root, "id") ? root : NULL;
}

/* The integration to use: --only NAME, else the first active, sync-enabled one (ST_LIST orders
 * by name). Returns a new row (caller frees) or NULL with a message in err. */
static integ_row *pick_integration(PGconn *pg, const store *st, const char *only, char *err,
                                   size_t cap)
{
    PGresult *r = PQexecParams(pg, store_sql(st, ST_LIST), 0, NULL, NULL, NULL, NULL, 0);
    integ_row *pick = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, cap, "cannot read third_party_integrations: %s", PQresultErrorMessage(r));
        goto out;
    }
    for (int i = 0; i < PQntuples(r) && !pick; i++) {
        integ_row *x = integ_row_parse(r, i);
        bool ok = only ? (x->name && !strcmp(x->name, only)) : (x->is_active && x->sync_enabled);
        if (ok)
            pick = x;
        else
            integ_row_free(x);
    }
    if (!pick)
        snprintf(err, cap, only ? "no KiotViet integration named '%s'"
                                : "no active, sync-enabled KiotViet integration%s (name one with --only)",
                 only ? only : "");
out:
    PQclear(r);
    if (pick) integ_row_hold_secrets(pick); /* held, and logged about, until explain ends */
    return pick;
}

int explain_product_run(const kvs_config *cfg, const char *only, const char *code, FILE *out)
{
    int rc = 1;
    kvs_err e;
    kvs_err_clear(&e);
    map_opts mo;
    PGconn *pg = NULL;
    PGresult *disc = NULL;
    store *st = NULL;
    integ_row *row = NULL;
    char *warnings = NULL, err[700] = "";
    char *body = NULL;
    size_t body_len = 0;
    kvjson_doc doc = {0};
    kvs_buf text;
    kvs_buf_init(&text);

    if (map_opts_from_config(cfg, &mo, &e)) {
        fprintf(stderr, "kiotviet-syncd: configuration error: %s\n", e.msg);
        return KVS_EX_CONFIG;
    }
    if (!code || !*code) {
        snprintf(err, sizeof err, "--explain-product needs a product code");
        goto done;
    }
    pg = db_connect_blocking(cfg->db_url, &e);
    if (!pg) {
        snprintf(err, sizeof err, "%s", e.msg);
        goto done;
    }
    const char *params[1] = {cfg->db_schema};
    disc = PQexecParams(pg, store_discover_sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(disc) != PGRES_TUPLES_OK) {
        snprintf(err, sizeof err, "cannot read the schema: %s", PQresultErrorMessage(disc));
        goto done;
    }
    st = store_new(cfg->db_schema, disc, &warnings, &e);
    if (!st) {
        snprintf(err, sizeof err, "database schema: %s", e.msg);
        goto done;
    }
    row = pick_integration(pg, st, only, err, sizeof err);
    PQfinish(pg); /* nothing more to read: do not hold a connection while KiotViet answers */
    pg = NULL;
    if (!row) goto done;
    if (!row->client_id || !row->client_secret || !row->retailer) {
        snprintf(err, sizeof err, "integration %s has no client_id, client_secret or retailer",
                 row->name);
        goto done;
    }
    const char *allowed = cfg->allowed_hosts ? cfg->allowed_hosts : ""; /* empty: none */
    if (kv_url_check(row->api_url, "api_url", allowed, &e) ||
        kv_url_check(row->token_url, "token_url", allowed, &e)) {
        snprintf(err, sizeof err, "integration %s is not usable: %s", row->name, e.msg);
        goto done;
    }
    if (fetch_product(cfg, row, code, &body, &body_len, err, sizeof err)) goto done;
    if (kvjson_parse(body, body_len, &doc, &e)) {
        snprintf(err, sizeof err, "KiotViet's answer is not JSON: %s", e.msg);
        goto done;
    }
    const cJSON *prod = find_product(doc.root, code);
    if (!prod) {
        snprintf(err, sizeof err, "KiotViet's answer for code '%s' holds no product", code);
        goto done;
    }
    map_explain_product(prod, &mo, &text);
    fprintf(out, "Integration %s (retailer %s)\n", row->name, row->retailer);
    fprintf(out, "Shop columns: %s\n", store_describe(st));
    fprintf(out, "[mapping] name_scan = %s, branches = %s\n", mo.name_scan ? "true" : "false",
            cfg->branches ? cfg->branches : "(all)");
    fputs(kvs_buf_cstr(&text), out);
    fflush(out);
    rc = 0;
done:
    if (rc && err[0]) {
        log_redact(err, sizeof err);
        fprintf(stderr, "kiotviet-syncd: --explain-product %s: %s\n", code ? code : "", err);
    }
    kvs_buf_free(&text);
    kvjson_doc_free(&doc);
    free(body);
    integ_row_free(row);
    free(warnings);
    store_free(st);
    PQclear(disc);
    PQfinish(pg);
    map_opts_free(&mo);
    return rc;
}
