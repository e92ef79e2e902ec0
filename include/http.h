/* HTTP client: libcurl's multi-socket API driven by libuv (uv_poll per socket, one uv_timer).
 *
 * One http_client per process, created on the loop thread and used only from it. It owns the
 * curl multi handle, so connections (and TLS sessions) are reused across requests and
 * integrations. Requests never block the loop.
 *
 * Safety defaults on every transfer: only http/https, no redirects followed, TLS peer and host
 * verification always on (an optional CA file), connect / total / low-speed timeouts, and a cap
 * on the response body (a larger body fails the request with HTTP_E_TOO_BIG). */
#ifndef KVS_HTTP_H
#define KVS_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "util.h"

typedef struct http_client http_client;
typedef struct http_req http_req;

/* Transport-level outcome (independent of the HTTP status). */
enum http_result {
    HTTP_OK = 0,        /* a complete response arrived (any status) */
    HTTP_E_TRANSPORT,   /* connect/DNS/TLS/reset/protocol failure: see error */
    HTTP_E_TIMEOUT,     /* connect, total or low-speed timeout */
    HTTP_E_TOO_BIG,     /* body exceeded max_body */
    HTTP_E_CANCELLED,   /* http_req_cancel or http_client_close */
};

typedef struct http_opts {
    long connect_timeout_ms; /* default 10000 */
    long total_timeout_ms;   /* default 60000 */
    long low_speed_limit;    /* bytes/s; default 100 */
    long low_speed_time_s;   /* default 20: below low_speed_limit that long = timeout */
    size_t max_body;         /* default 32 MiB */
    const char *ca_file;     /* borrowed during init; NULL = system bundle */
    const char *user_agent;  /* borrowed during init; NULL = "kiotviet-syncd/<version>" */
} http_opts;

typedef struct http_response {
    enum http_result result;
    long status;          /* HTTP status, 0 when result != HTTP_OK */
    const char *error;    /* human message when result != HTTP_OK; borrowed, valid in callback */
    char *body;           /* NUL-terminated; owned by the request until the callback returns;
                             the callback may take it (set body = NULL) and free() it later */
    size_t body_len;
    long retry_after_s;   /* Retry-After in seconds (delta or HTTP date), -1 if absent */
    double elapsed_s;     /* total transfer time */
} http_response;

/* Called exactly once per request on the loop thread, unless the request was cancelled with
 * http_req_cancel (then never). After it returns the request is freed. */
typedef void (*http_done_cb)(http_response *resp, void *arg);

/* Fills defaults for unset (zero) fields. */
void http_opts_defaults(http_opts *o);

int http_client_init(http_client **out, uv_loop_t *loop, const http_opts *opts, kvs_err *err)
    KVS_MUSTCHECK;
/* Cancels every request in flight; their callbacks are called with HTTP_E_CANCELLED before
 * this returns. The client's libuv handles are closed asynchronously; the memory is freed
 * once the loop has run their close callbacks. */
void http_client_close(http_client *c);

/* Starts a GET. headers: NULL-terminated array of "Name: value" strings, copied. Returns NULL
 * (with err set) if the request could not be started; then cb is never called. */
http_req *http_get(http_client *c, const char *url, const char *const *headers, http_done_cb cb,
                   void *arg, kvs_err *err);
/* Starts a POST of an application/x-www-form-urlencoded body (copied). */
http_req *http_post_form(http_client *c, const char *url, const char *body,
                         const char *const *headers, http_done_cb cb, void *arg, kvs_err *err);
/* Starts a request of another method (the CLI's POST / DELETE of KiotViet's webhooks): body
 * (copied; NULL: none) is sent as it is, so headers name its Content-Type. */
http_req *http_send(http_client *c, const char *method, const char *url, const char *body,
                    const char *const *headers, http_done_cb cb, void *arg, kvs_err *err);
/* Stops a request in flight; its callback will not be called. */
void http_req_cancel(http_req *r);

/* URL-encodes s for a query string or a form body. Caller frees. */
char *http_urlencode(const char *s);

/* Number of requests in flight (for status and tests). */
size_t http_client_inflight(const http_client *c);

#endif
