/* --explain-product: one product fetched from KiotViet and explained (see explain.h).
 *
 * This is a CLI path that runs instead of the daemon, never inside it:
 * - the database is read with BLOCKING libpq (db_connect_blocking, PQexecParams): there is no
 *   daemon loop to stall here, and a few statements do not justify a state machine;
 * - HTTP goes through the project's http client (curl multi on libuv) on a PRIVATE uv loop
 *   created and closed here, so no blocking (easy-interface) transfer exists anywhere in src/,
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
#include <uv.h>

#include "db.h"
#include "http.h"
#include "kiotviet.h"
#include "kvjson.h"
#include "log.h"
#include "mapping.h"
#include "store.h"

#define TOKEN_MARGIN_S 60 /* a stored token this close to expiry is not worth trying */

/* One product request, on a private loop. */
typedef struct ex {
    uv_loop_t loop;
    http_client *http;        /* owned; closed before the loop */
    const integ_row *row;     /* borrowed */
    const char *code;         /* borrowed */
    bool done;
    int rc;                   /* 0 found, 1 not found / error */
    char *body;               /* owned: the product answer */
    size_t body_len;
    char err[700];
} ex;

static void product_cb(int rc, long status, char *body, size_t len, const char *error, void *arg)
{
    ex *x = arg;
    x->done = true;
    if (rc == KV_OK && body && len) {
        x->body = body;
        x->body_len = len;
        x->rc = 0;
        return;
    }
    free(body);
    if (rc == KV_OK)
        snprintf(x->err, sizeof x->err, "KiotViet answered 200 with an empty body");
    else if (status == 404)
        snprintf(x->err, sizeof x->err, "product code '%s' not found in KiotViet (retailer %s)",
                 x->code, x->row->retailer);
    else
        snprintf(x->err, sizeof x->err, "%s", error ? error : "KiotViet request failed");
    log_redact(x->err, sizeof x->err);
}

/* Runs the private loop until the one request has called back. Blocking on purpose: a CLI
 * path that runs instead of the daemon (see the top of this file). */
static void ex_wait(ex *x)
{
    while (!x->done && uv_run(&x->loop, UV_RUN_ONCE)) {
    }
}

/* Fetches the product with kiotviet.c's client (token, headers, the 401 refresh) on a private
 * loop; 0 with x->body set, or 1 with x->err. Transient failures are not retried (max_retries
 * 0), no budget is taken and a new token is not stored (no on_token). */
static int fetch_product(const kvs_config *cfg, const integ_row *row, const char *code, ex *x)
{
    kvs_err e;
    kvs_err_clear(&e);
    x->row = row;
    x->code = code;
    x->rc = 1;
    snprintf(x->err, sizeof x->err, "no answer from KiotViet");
    if (uv_loop_init(&x->loop)) {
        snprintf(x->err, sizeof x->err, "cannot create an event loop");
        return 1;
    }
    http_opts ho;
    kv_http_opts_from_config(cfg, &ho);
    if (http_client_init(&x->http, &x->loop, &ho, &e)) {
        snprintf(x->err, sizeof x->err, "cannot start the HTTP client: %s", e.msg);
        uv_loop_close(&x->loop);
        return 1;
    }
    log_ctx lc = {.integration = row->name};
    kv_client_opts o = {
        .loop = &x->loop,
        .http = x->http,
        .lctx = &lc,
        .api_url = row->api_url,
        .token_url = row->token_url,
        .client_id = row->client_id,
        .client_secret = row->client_secret,
        .retailer = row->retailer,
        .allowed_hosts = cfg->allowed_hosts ? cfg->allowed_hosts : "",
        .access_token = row->access_token,
        .token_expires_wall_s = row->token_expires_us / 1000000,
        .token_margin_s = TOKEN_MARGIN_S,
        .max_retries = 0,
    };
    kv_client *kv = kv_client_new(&o, &e);
    if (!kv) {
        snprintf(x->err, sizeof x->err, "%s", e.msg);
    } else {
        char *enc = http_urlencode(code);
        kvs_buf path;
        kvs_buf_init(&path);
        /* priceBooks when [mapping] price_book is set: its choice is explained from them */
        REQUIRE(kvs_buf_printf(&path, "/products/code/%s?IncludeSerials=true&includeInventory=true%s",
                               enc, cfg->price_book ? "&includePricebook=true" : "") == 0);
        kv_get_raw(kv, kvs_buf_cstr(&path), product_cb, x);
        kvs_buf_free(&path);
        free(enc);
        ex_wait(x);
        kv_client_free(kv);
    }
    http_client_close(x->http);
    x->http = NULL;
    uv_run(&x->loop, UV_RUN_DEFAULT); /* lets the client's handles close */
    if (uv_loop_close(&x->loop)) log_warn("explain: event loop not empty at exit");
    return x->rc;
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
    ex *x = kvs_xcalloc(1, sizeof *x);
    kvjson_doc doc = {0};
    kvs_buf text;
    kvs_buf_init(&text);

    if (map_opts_from_config(cfg, &mo, &e)) {
        fprintf(stderr, "kiotviet-syncd: configuration error: %s\n", e.msg);
        free(x);
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
    if (fetch_product(cfg, row, code, x)) {
        snprintf(err, sizeof err, "%s", x->err);
        goto done;
    }
    if (kvjson_parse(x->body, x->body_len, &doc, &e)) {
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
    free(x->body);
    free(x);
    integ_row_free(row);
    free(warnings);
    store_free(st);
    PQclear(disc);
    PQfinish(pg);
    map_opts_free(&mo);
    return rc;
}
