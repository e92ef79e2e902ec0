/* KiotViet client: OAuth client-credentials tokens and GET requests with retries, on the loop.
 *
 * One kv_client per sync run (and one for --explain-product, on its private loop). It owns its
 * pending requests, its copies of the credentials and its token (registered with the log
 * redactor while it holds them); the http_client, budget, metrics and log context are borrowed
 * from the caller and must outlive it. The transport (the behaviour below) is shared by the
 * page requests (kv_get: the answer parsed into a kv_page) and kv_get_raw (the body as it came).
 *
 * Behaviour (see ../shared/kiotviet-api.md):
 * - tokens: POST token_url with scopes=PublicApi.Access; reused until token_margin_s before
 *   expiry; one token request at a time (callers wait on it); a 401 or TokenException answer
 *   gets one fresh token and one retry of that request;
 * - transient failures (transport errors, timeouts, 5xx, 429) are retried up to max_retries
 *   with capped exponential backoff and jitter; Retry-After is honoured;
 * - every GET takes a slot of the hourly budget first (waiting when the window is full);
 * - api_url/token_url must be https unless the host is loopback, and hold no userinfo
 *   (user:password@); error messages name a URL by scheme, host and port only. */
#ifndef KVS_KIOTVIET_H
#define KVS_KIOTVIET_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "backoff.h"
#include "config.h"
#include "http.h"
#include "kvjson.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

/* A page with more records than this (nested category children included) is refused with
 * KV_E_PARSE, not mapped: KiotViet pages hold at most 100, and every record costs mapping and
 * SQL work on the event loop. */
#define KV_PAGE_MAX_RECORDS 10000

typedef struct kv_client kv_client;
typedef struct kv_req kv_req;

enum kv_rc {
    KV_OK = 0,
    KV_E_AUTH = -1000,  /* the token endpoint refused the credentials */
    KV_E_HTTP,          /* a non-retryable HTTP answer (4xx other than 401/429) */
    KV_E_RETRIES,       /* transient failures past max_retries */
    KV_E_PARSE,         /* the answer is not the JSON we expect */
    KV_E_CANCELLED,
};

#define KV_TOKEN_MAX 4096              /* longest access token accepted (bytes) */
#define KV_TOKEN_TTL_MAX_S 31536000.0  /* expires_in beyond a year is taken as a year */

typedef struct kv_client_opts {
    uv_loop_t *loop;
    http_client *http;            /* borrowed */
    kv_budget *budget;            /* borrowed; NULL = no budget */
    const log_ctx *lctx;          /* borrowed */
    kvs_metrics *metrics;         /* borrowed; NULL = none (requests and budget counted
                                     under lctx->integration) */
    const char *api_url, *token_url, *client_id, *client_secret, *retailer; /* copied */
    const char *allowed_hosts;    /* [kiotviet] allowed_hosts (see kv_url_check); borrowed */
    const char *access_token;     /* token from the row, or NULL; copied */
    int64_t token_expires_wall_s; /* its expiry (Unix seconds), 0 = unknown */
    int token_margin_s;
    int max_retries;
    uint64_t retry_base_ms;       /* default 1000 */
    uint64_t retry_cap_ms;        /* default 60000 */
    /* Called when a new token was obtained (to store it in the row). Strings borrowed. */
    void (*on_token)(const char *token, int64_t expires_wall_s, void *arg);
    void *arg;
} kv_client_opts;

/* A parsed page. Free with kv_page_free. */
typedef struct kv_page {
    kvjson_doc doc;          /* owned */
    const cJSON *data;       /* borrowed from doc: the "data" array */
    const cJSON *removed;    /* borrowed: removedIds (any spelling) or NULL */
    int64_t total;           /* -1 when absent */
    int64_t timestamp_us;    /* the response "timestamp", 0 when absent */
    int effective_page_size; /* "pageSize" echoed, 0 when absent */
} kv_page;

void kv_page_free(kv_page *p);

/* rc is KV_OK with page (ownership passes to the callback), or an error with a message. */
typedef void (*kv_get_cb)(int rc, kv_page *page, const char *error, void *arg);

/* Validates the URLs and builds the client; NULL with err on bad configuration. */
kv_client *kv_client_new(const kv_client_opts *o, kvs_err *err);
/* Cancels every pending request without calling back, then frees. */
void kv_client_free(kv_client *c);

/* Starts GET api_url + path_query ("/products?pageSize=100&..."): a page. Returns the request
 * (owned by the client until it calls back or is cancelled); it may call back before this
 * returns. */
kv_req *kv_get(kv_client *c, const char *path_query, kv_get_cb cb, void *arg);

/* A raw answer: rc KV_OK with status 200 and its body (NUL-terminated, len bytes; ownership
 * passes: the callback free()s it; NULL when empty), or an error with the last answer's HTTP
 * status (0: none, e.g. a transport error) and a message. */
typedef void (*kv_raw_cb)(int rc, long status, char *body, size_t len, const char *error,
                          void *arg);
/* The same transport (token, headers, budget, retries, the 401 refresh) for a GET whose 200
 * answer is not a page (--explain-product's /products/code/{code}). */
kv_req *kv_get_raw(kv_client *c, const char *path_query, kv_raw_cb cb, void *arg);
/* The same transport for another method with a JSON body (NULL: none): the CLI's POST and
 * DELETE of /webhooks. Not counted by kv_client_gets. */
kv_req *kv_send_raw(kv_client *c, const char *method, const char *path, const char *json,
                    kv_raw_cb cb, void *arg);
/* Cancels one request (no callback). */
void kv_req_cancel(kv_req *r);

int kv_client_gets(const kv_client *c);            /* GET requests sent (incl. retries) */
int kv_client_token_requests(const kv_client *c);  /* token requests sent */

/* https, or http to a loopback host, without userinfo, to a host in allowed (a comma-separated
 * list of host names, "loopback" standing for every loopback address; NULL = any host); 0 or
 * -EINVAL with a reason in err (which names the URL by scheme://host[:port] only). */
int kv_url_check(const char *url, const char *what, const char *allowed, kvs_err *err);

/* The HTTP client's options for talking to KiotViet as cfg says ([kiotviet] timeouts, page
 * size cap, CA file; http_opts_defaults for the rest). The one builder: the daemon and
 * --explain-product both use it. o's strings are borrowed from cfg. */
void kv_http_opts_from_config(const kvs_config *cfg, http_opts *o);

#endif
