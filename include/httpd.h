/* httpd: a small HTTP server on the libuv loop, libmicrohttpd underneath (no hand-written
 * parser). MHD runs without threads (MHD_USE_EPOLL): its epoll descriptor is watched by one
 * uv_poll, MHD_get_timeout drives one uv_timer, and MHD_run runs on readiness, so every
 * callback below runs on the loop thread.
 *
 * A request is handed to the handler once its whole body is read (bodies beyond max_body are
 * answered 413 without calling it). The handler answers with httpd_req_answer, at once or
 * later: until it answers, the connection is suspended (MHD_suspend_connection), so a handler
 * may wait for the database without blocking anything. The handler MUST answer every request
 * exactly once; the request (and everything its accessors return) stays valid until then.
 *
 * Safety caps: max_body, max_connections (MHD_OPTION_CONNECTION_LIMIT; beyond it connections
 * are refused) and timeout_s (MHD_OPTION_CONNECTION_TIMEOUT: a connection idle that long,
 * headers or body unfinished included, is closed; a suspended one waits for its answer). */
#ifndef KVS_HTTPD_H
#define KVS_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "util.h"

typedef struct httpd httpd;
typedef struct httpd_req httpd_req;

typedef struct httpd_opts {
    size_t max_body;          /* larger request bodies: 413 (default 1 MB) */
    unsigned max_connections; /* default 64 */
    unsigned timeout_s;       /* idle/header/body timeout per connection (default 10) */
    const char *name;         /* for log lines, e.g. "webhook listener"; borrowed for the call */
} httpd_opts;

/* Called once per request, on the loop thread; arg is httpd_start's. */
typedef void (*httpd_handler)(httpd_req *rq, void *arg);

/* Parses a listen address: "HOST:PORT" with HOST an IPv4 address, "[IPv6]" or "localhost"
 * (127.0.0.1), PORT 0..65535 (0: any free port; the log line names the one bound). No name
 * resolution. 0, or -EINVAL with why (never quoting more than the text given). */
int httpd_listen_parse(const char *text, struct sockaddr_storage *ss, char *why, size_t cap);

/* Binds listen (httpd_listen_parse) and starts serving. Returns the server (stop it with
 * httpd_stop), or NULL with err. */
httpd *httpd_start(uv_loop_t *loop, const char *listen, const httpd_opts *o, httpd_handler h,
                   void *arg, kvs_err *err);
/* The port bound (useful with port 0). */
unsigned httpd_port(const httpd *h);
/* Stops accepting at once; requests waiting for their answer still get it, then connections
 * are closed and h is freed (after its handles close). h must not be used after this. */
void httpd_stop(httpd *h);

/* Request accessors; strings borrowed from the request (valid until it is answered). */
const char *httpd_req_method(const httpd_req *rq);
const char *httpd_req_path(const httpd_req *rq); /* percent-decoded, without the query */
/* A header (case-insensitive name) or a query argument, NULL when absent. */
const char *httpd_req_header(const httpd_req *rq, const char *name);
const char *httpd_req_query(const httpd_req *rq, const char *name);
const char *httpd_req_body(const httpd_req *rq, size_t *len); /* NUL-terminated copy */

/* Answers rq with status, a Content-Type and body (copied); rq is gone afterwards (it is
 * freed once MHD has sent the answer or the client left). extra_header: one "Name: value"
 * line without CRLF, or NULL. */
void httpd_req_answer(httpd_req *rq, unsigned status, const char *content_type,
                      const char *body, size_t len, const char *extra_header);

#endif
