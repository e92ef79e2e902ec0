/* kiotviet_cli: one KiotViet session for a CLI path (--explain-product, `webhooks`), never for
 * the daemon. It owns a PRIVATE uv loop, the http client on it and a kv_client built from an
 * integration row (the daemon's token, headers and 401 refresh; no retries, no budget, no token
 * stored), and BLOCKS in kv_cli_call until the request has answered: there is no daemon loop
 * to stall on these paths. kv_cli_open and kv_cli_close pair up; the row and the config are
 * borrowed and must outlive the session. */
#ifndef KVS_KIOTVIET_CLI_H
#define KVS_KIOTVIET_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "kiotviet.h"
#include "log.h"
#include "store.h"

typedef struct kv_cli {
    uv_loop_t loop;
    http_client *http;  /* owned; closed before the loop */
    kv_client *kv;      /* owned */
    log_ctx lctx;       /* names the integration in the client's log lines */
    bool done;
    int rc;             /* KV_OK or the client's error of the last call */
    long status;        /* the last answer's HTTP status, 0 none */
    char *body;         /* owned: the last answer's body (NULL when empty) */
    size_t len;
    char err[700];      /* why the last call failed, redacted */
} kv_cli;

/* 0, or -1 with e set (nothing to close then). */
int kv_cli_open(kv_cli *c, const kvs_config *cfg, const integ_row *row, kvs_err *e);
/* Sends one request (method NULL: GET; json NULL: no body) and runs the private loop until it
 * answers. Returns c->rc; c->status, c->body and c->err describe the answer. */
int kv_cli_call(kv_cli *c, const char *method, const char *path, const char *json);
void kv_cli_close(kv_cli *c);

#endif
