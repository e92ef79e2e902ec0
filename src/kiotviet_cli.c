/* kiotviet_cli: a blocking KiotViet session on a private loop, for CLI paths (see the header). */
#include "kiotviet_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_MARGIN_S 60 /* a stored token this close to expiry is not worth trying */

int kv_cli_open(kv_cli *c, const kvs_config *cfg, const integ_row *row, kvs_err *e)
{
    memset(c, 0, sizeof *c);
    if (uv_loop_init(&c->loop)) {
        kvs_err_set(e, -1, "cannot create an event loop");
        return -1;
    }
    http_opts ho;
    kv_http_opts_from_config(cfg, &ho);
    kvs_err he;
    kvs_err_clear(&he);
    if (http_client_init(&c->http, &c->loop, &ho, &he)) {
        kvs_err_set(e, -1, "cannot start the HTTP client: %s", he.msg);
        uv_loop_close(&c->loop);
        return -1;
    }
    c->lctx.integration = row->name;
    kv_client_opts o = {
        .loop = &c->loop,
        .http = c->http,
        .lctx = &c->lctx,
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
    c->kv = kv_client_new(&o, e);
    if (!c->kv) {
        kv_cli_close(c);
        return -1;
    }
    return 0;
}

static void call_cb(int rc, long status, char *body, size_t len, const char *error, void *arg)
{
    kv_cli *c = arg;
    c->done = true;
    c->rc = rc;
    c->status = status;
    free(c->body);
    c->body = body;
    c->len = body ? len : 0;
    snprintf(c->err, sizeof c->err, "%s", error ? error : "");
    log_redact(c->err, sizeof c->err);
}

int kv_cli_call(kv_cli *c, const char *method, const char *path, const char *json)
{
    c->done = false;
    if (method)
        kv_send_raw(c->kv, method, path, json, call_cb, c);
    else
        kv_get_raw(c->kv, path, call_cb, c);
    /* Blocking on purpose: a CLI path that runs instead of the daemon. */
    while (!c->done && uv_run(&c->loop, UV_RUN_ONCE)) {
    }
    if (!c->done) { /* the loop ran out of work without an answer */
        c->rc = KV_E_CANCELLED;
        snprintf(c->err, sizeof c->err, "no answer from KiotViet");
    }
    return c->rc;
}

void kv_cli_close(kv_cli *c)
{
    if (c->kv) kv_client_free(c->kv);
    c->kv = NULL;
    if (c->http) http_client_close(c->http);
    c->http = NULL;
    uv_run(&c->loop, UV_RUN_DEFAULT); /* lets the client's handles close */
    if (uv_loop_close(&c->loop)) log_warn("KiotViet session: event loop not empty at exit");
    free(c->body);
    c->body = NULL;
}
