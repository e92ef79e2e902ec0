/* Unit tests for http.c against a tiny HTTP/1.1 server running on the same libuv loop.
 *
 * The server (uv_tcp on 127.0.0.1, port 0) answers by path:
 *   GET  /body/N       200 with N bytes of a known pattern (Content-Length)
 *   GET  /retry/N      503 with "Retry-After: N"
 *   GET  /retry-date   429 with Retry-After as an HTTP-date 30 s from now
 *   GET  /close        closes the connection without answering
 *   GET  /stall        200 announcing 1000 bytes, sends 10, then nothing
 *   GET  /huge         200 chunked, 64 KiB chunks until 64 MiB or the client hangs up
 *   GET  /redirect     302 to the second server (which must never see a connection)
 *   GET  /hdr          200 "yes" when "Retailer: x" arrived, else 400 "no"
 *   POST /echo         200 echoing the request body
 * Anything that does not start like an HTTP request gets a 400 and a close (so a TLS
 * ClientHello fails fast). Connections are kept alive; the server counts accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "http.h"
#include "util.h"

/* ---- the test server ------------------------------------------------------------------ */

typedef struct srv srv;
typedef struct sconn sconn;

struct srv {
    uv_tcp_t tcp;            /* listener; tcp.data = this */
    int port;
    int redirect_port;       /* where /redirect points */
    unsigned accepts;        /* TCP connections accepted */
    unsigned requests;       /* complete requests parsed */
    unsigned peer_closed;    /* connections the client dropped (EOF, reset, failed write) */
    sconn *conns;            /* open connections */
    char last_headers[8192]; /* request line + headers of the last request, NUL-terminated */
    char last_body[8192];
    size_t last_body_len;
    bool closed;
};

struct sconn {
    uv_tcp_t tcp; /* tcp.data = this; freed in conn_closed */
    srv *s;
    kvs_buf in;   /* bytes received and not yet parsed */
    bool closing;
    bool huge;    /* streaming /huge chunks */
    size_t huge_sent;
    sconn *prev, *next;
};

typedef struct wreq {
    uv_write_t req;
    sconn *c;
    char *owned;     /* freed after the write, NULL for static data */
    bool close_after;
} wreq;

#define HUGE_CHUNK 65536
#define HUGE_LIMIT (64u << 20)
static char huge_chunk[HUGE_CHUNK + 16];
static size_t huge_chunk_len;

static char pattern_byte(size_t i) { return (char)('a' + i % 26); }

static void conn_closed(uv_handle_t *h)
{
    sconn *c = h->data;
    if (c->prev) c->prev->next = c->next;
    else c->s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    kvs_buf_free(&c->in);
    free(c);
}

static void conn_close(sconn *c)
{
    if (c->closing) return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/* The client went away (EOF, reset, or a failed write). */
static void conn_lost(sconn *c)
{
    if (c->closing) return;
    c->s->peer_closed++;
    conn_close(c);
}

static void conn_write(sconn *c, char *owned, const char *data, size_t len, bool close_after);

static void huge_next(sconn *c)
{
    if (c->closing || c->huge_sent >= HUGE_LIMIT) return;
    c->huge_sent += HUGE_CHUNK;
    conn_write(c, NULL, huge_chunk, huge_chunk_len, false);
}

static void write_done(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    sconn *c = w->c;
    free(w->owned);
    bool close_after = w->close_after;
    free(w);
    /* On a closing connection libuv cancels pending writes before conn_closed runs. */
    if (status < 0) {
        conn_lost(c);
        return;
    }
    if (close_after) {
        conn_close(c);
        return;
    }
    if (c->huge) huge_next(c);
}

/* owned: malloc'd buffer freed after the write, or NULL when data is static. */
static void conn_write(sconn *c, char *owned, const char *data, size_t len, bool close_after)
{
    wreq *w = kvs_xcalloc(1, sizeof *w);
    w->c = c;
    w->owned = owned;
    w->close_after = close_after;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        free(owned);
        free(w);
        conn_close(c);
    }
}

/* Sends a complete response with Content-Length; extra: more header lines ending in CRLF. */
static void respond(sconn *c, int status, const char *reason, const char *extra, const char *body,
                    size_t body_len)
{
    kvs_buf b;
    kvs_buf_init(&b);
    assert_int_equal(kvs_buf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s\r\n", status,
                                    reason, body_len, extra ? extra : ""),
                     0);
    assert_int_equal(kvs_buf_append(&b, body, body_len), 0);
    size_t len = b.len;
    char *p = kvs_buf_steal(&b);
    conn_write(c, p, p, len, false);
}

static void handle_request(sconn *c, const char *head, const char *body, size_t body_len)
{
    srv *s = c->s;
    char method[16], path[256];
    s->requests++;
    snprintf(s->last_headers, sizeof s->last_headers, "%s", head);
    s->last_body_len = body_len < sizeof s->last_body ? body_len : sizeof s->last_body - 1;
    memcpy(s->last_body, body, s->last_body_len);
    s->last_body[s->last_body_len] = '\0';
    if (sscanf(head, "%15s %255s", method, path) != 2) {
        respond(c, 400, "Bad Request", NULL, "", 0);
        return;
    }

    unsigned long n;
    char extra[256];
    if (sscanf(path, "/body/%lu", &n) == 1) {
        char *p = kvs_xmalloc(n + 1);
        for (size_t i = 0; i < n; i++) p[i] = pattern_byte(i);
        respond(c, 200, "OK", NULL, p, n);
        free(p);
    } else if (sscanf(path, "/retry/%lu", &n) == 1) {
        snprintf(extra, sizeof extra, "Retry-After: %lu\r\n", n);
        respond(c, 503, "Service Unavailable", extra, "busy", 4);
    } else if (strcmp(path, "/retry-date") == 0) {
        time_t t = time(NULL) + 30;
        struct tm tm;
        char date[64];
        gmtime_r(&t, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        snprintf(extra, sizeof extra, "Retry-After: %s\r\n", date);
        respond(c, 429, "Too Many Requests", extra, "slow down", 9);
    } else if (strcmp(path, "/close") == 0) {
        conn_close(c);
    } else if (strcmp(path, "/stall") == 0) {
        static const char partial[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789";
        conn_write(c, NULL, partial, sizeof partial - 1, false);
    } else if (strcmp(path, "/huge") == 0) {
        static const char head200[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        c->huge = true;
        conn_write(c, NULL, head200, sizeof head200 - 1, false);
    } else if (strcmp(path, "/redirect") == 0) {
        snprintf(extra, sizeof extra, "Location: http://127.0.0.1:%d/body/10\r\n",
                 s->redirect_port);
        respond(c, 302, "Found", extra, "moved", 5);
    } else if (strcmp(path, "/hdr") == 0) {
        if (strstr(head, "\r\nRetailer: x\r\n")) respond(c, 200, "OK", NULL, "yes", 3);
        else respond(c, 400, "Bad Request", NULL, "no", 2);
    } else if (strcmp(method, "POST") == 0 && strcmp(path, "/echo") == 0) {
        respond(c, 200, "OK", NULL, body, body_len);
    } else {
        respond(c, 404, "Not Found", NULL, "", 0);
    }
}

/* Parses as many complete requests as the buffer holds. */
static void conn_process(sconn *c)
{
    while (!c->closing && c->in.len > 0) {
        if (c->in.data[0] < 'A' || c->in.data[0] > 'Z') {
            static const char bad[] =
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            c->in.len = 0;
            conn_write(c, NULL, bad, sizeof bad - 1, true);
            return;
        }
        char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
        if (!end) return;
        size_t head_len = (size_t)(end - c->in.data) + 4;
        char *head = kvs_xmalloc(head_len + 1);
        memcpy(head, c->in.data, head_len);
        head[head_len] = '\0';
        size_t cl = 0;
        const char *h = strcasestr(head, "\r\nContent-Length:");
        if (h) cl = strtoul(h + 17, NULL, 10);
        if (c->in.len < head_len + cl) {
            free(head);
            return;
        }
        handle_request(c, head, c->in.data + head_len, cl);
        free(head);
        if (c->closing) return; /* conn_closed frees the buffer */
        memmove(c->in.data, c->in.data + head_len + cl, c->in.len - head_len - cl);
        c->in.len -= head_len + cl;
    }
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = kvs_xmalloc(suggested);
    buf->len = suggested;
}

static void conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    sconn *c = st->data;
    if (nread < 0) {
        conn_lost(c);
    } else if (nread > 0 && !c->closing) {
        assert_int_equal(kvs_buf_append(&c->in, buf->base, (size_t)nread), 0);
        conn_process(c);
    }
    free(buf->base);
}

static void srv_on_conn(uv_stream_t *l, int status)
{
    srv *s = l->data;
    assert_int_equal(status, 0);
    sconn *c = kvs_xcalloc(1, sizeof *c);
    c->s = s;
    kvs_buf_init(&c->in);
    assert_int_equal(uv_tcp_init(l->loop, &c->tcp), 0);
    c->tcp.data = c;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    s->accepts++;
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read), 0);
}

static void srv_start(srv *s, uv_loop_t *loop)
{
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(s, 0, sizeof *s);
    assert_int_equal(uv_tcp_init(loop, &s->tcp), 0);
    s->tcp.data = s;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 128, srv_on_conn), 0);
    assert_int_equal(uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(srv *s)
{
    if (s->closed) return;
    s->closed = true;
    uv_close((uv_handle_t *)&s->tcp, NULL);
    for (sconn *c = s->conns; c; c = c->next) conn_close(c);
}

/* ---- fixture -------------------------------------------------------------------------- */

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t guard; /* bounds every wait so a bug fails the test instead of hanging it */
    bool guard_fired;
    srv s, s2;        /* s2 is the redirect target */
    http_client *c;   /* NULL once closed by the test */
    bool loop_closed; /* the test already ran the loop dry and closed it */
    char base[64];    /* "http://127.0.0.1:<s.port>" */
} fx;

static void guard_cb(uv_timer_t *t)
{
    fx *f = t->data;
    f->guard_fired = true;
}

static int setup(void **state)
{
    fx *f = kvs_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->guard), 0);
    f->guard.data = f;
    srv_start(&f->s, &f->loop);
    srv_start(&f->s2, &f->loop);
    f->s.redirect_port = f->s2.port;
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", f->s.port);
    *state = f;
    return 0;
}

/* Every test ends here: close the client, the servers and the guard, drain the loop, and
 * require that nothing was left open (uv_loop_close == 0). */
static int teardown(void **state)
{
    fx *f = *state;
    if (!f->loop_closed) {
        if (f->c) http_client_close(f->c);
        f->c = NULL;
        srv_stop(&f->s);
        srv_stop(&f->s2);
        uv_close((uv_handle_t *)&f->guard, NULL);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&f->loop), 0);
    }
    free(f);
    return 0;
}

static void client_new(fx *f, const http_opts *opts)
{
    kvs_err err = {0};
    http_opts o = {0};
    if (opts) o = *opts;
    if (!o.connect_timeout_ms) o.connect_timeout_ms = 1000;
    if (!o.total_timeout_ms) o.total_timeout_ms = 3000;
    assert_int_equal(http_client_init(&f->c, &f->loop, &o, &err), 0);
    assert_non_null(f->c);
}

/* Runs the loop until *count reaches want; fails after ms. */
static void run_until(fx *f, const unsigned *count, unsigned want, unsigned ms)
{
    f->guard_fired = false;
    assert_int_equal(uv_timer_start(&f->guard, guard_cb, ms, 0), 0);
    while (*count < want && !f->guard_fired) uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->guard);
    assert_true(*count >= want);
}

/* ---- result capture ------------------------------------------------------------------- */

typedef struct res {
    unsigned calls;
    enum http_result result;
    long status;
    char *body; /* stolen from the response; freed by res_free */
    size_t body_len;
    long retry_after_s;
    double elapsed_s;
    char error[512];
    bool had_error;
    /* optional follow-up, for callbacks that act on the client */
    fx *f;
    struct res *next_res;
    const char *next_path;
    http_req *to_cancel;
    bool close_client;
    bool try_get_in_cb;
    int get_in_cb_code;
    unsigned *counter;
} res;

static void res_free(res *r)
{
    free(r->body);
    r->body = NULL;
}

static void check_pattern(const char *body, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (body[i] != pattern_byte(i)) fail_msg("body byte %zu differs", i);
}

static void start_get(fx *f, const char *path, const char *const *headers, res *r);

/* Takes the body (exercises the ownership hand-off) and runs the optional follow-up. */
static void on_done(http_response *resp, void *arg)
{
    res *r = arg;
    r->calls++;
    r->result = resp->result;
    r->status = resp->status;
    r->body = resp->body;
    r->body_len = resp->body_len;
    resp->body = NULL;
    r->retry_after_s = resp->retry_after_s;
    r->elapsed_s = resp->elapsed_s;
    r->had_error = resp->error != NULL;
    snprintf(r->error, sizeof r->error, "%s", resp->error ? resp->error : "");
    if (r->counter) (*r->counter)++;
    if (r->to_cancel) http_req_cancel(r->to_cancel);
    if (r->next_path && r->f) start_get(r->f, r->next_path, NULL, r->next_res);
    if (r->try_get_in_cb) {
        kvs_err err = {0};
        char url[128];
        snprintf(url, sizeof url, "%s/body/1", r->f->base);
        http_req *q = http_get(r->f->c, url, NULL, on_done, r, &err);
        assert_null(q);
        r->get_in_cb_code = err.code;
    }
    if (r->close_client) {
        http_client_close(r->f->c);
        r->f->c = NULL;
    }
}

/* Leaves the body with the request: http.c must free it. */
static void on_done_nosteal(http_response *resp, void *arg)
{
    res *r = arg;
    r->calls++;
    r->result = resp->result;
    r->status = resp->status;
    r->body_len = resp->body_len;
    assert_non_null(resp->body);
    assert_int_equal(resp->body[resp->body_len], '\0');
    r->body = kvs_xmalloc(resp->body_len + 1);
    memcpy(r->body, resp->body, resp->body_len + 1);
    r->retry_after_s = resp->retry_after_s;
    r->had_error = resp->error != NULL;
}

static http_req *start_url(fx *f, const char *url, const char *const *headers, res *r)
{
    kvs_err err = {0};
    http_req *q = http_get(f->c, url, headers, on_done, r, &err);
    if (!q) fail_msg("http_get failed: %s", err.msg);
    return q;
}

static void start_get(fx *f, const char *path, const char *const *headers, res *r)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    (void)start_url(f, url, headers, r);
}

static http_req *start_get_req(fx *f, const char *path, res *r)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    return start_url(f, url, NULL, r);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_opts_defaults(void **state)
{
    (void)state;
    http_opts o = {0};
    http_opts_defaults(&o);
    assert_int_equal(o.connect_timeout_ms, 10000);
    assert_int_equal(o.total_timeout_ms, 60000);
    assert_int_equal(o.low_speed_limit, 100);
    assert_int_equal(o.low_speed_time_s, 20);
    assert_int_equal(o.max_body, 32u << 20);
    http_opts k = {.connect_timeout_ms = 5, .max_body = 7};
    http_opts_defaults(&k);
    assert_int_equal(k.connect_timeout_ms, 5);
    assert_int_equal(k.max_body, 7);
}

static void test_get_200_exact(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res a = {0}, z = {0};
    kvs_err err = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/body/100", f->base);
    assert_non_null(http_get(f->c, url, NULL, on_done_nosteal, &a, &err));
    snprintf(url, sizeof url, "%s/body/0", f->base);
    assert_non_null(http_get(f->c, url, NULL, on_done_nosteal, &z, &err));
    assert_int_equal(http_client_inflight(f->c), 2);
    run_until(f, &a.calls, 1, 2000);
    run_until(f, &z.calls, 1, 2000);
    assert_int_equal(a.result, HTTP_OK);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 100);
    check_pattern(a.body, 100);
    assert_int_equal(a.retry_after_s, -1);
    assert_false(a.had_error);
    assert_int_equal(z.result, HTTP_OK);
    assert_int_equal(z.body_len, 0);
    assert_string_equal(z.body, "");
    assert_int_equal(http_client_inflight(f->c), 0);
    assert_non_null(strstr(f->s.last_headers, "\r\nUser-Agent: kiotviet-syncd/"));
    assert_non_null(strcasestr(f->s.last_headers, "\r\nAccept-Encoding: "));
    res_free(&a);
    res_free(&z);
}

static void test_get_1mb(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res a = {0};
    start_get(f, "/body/1048576", NULL, &a);
    run_until(f, &a.calls, 1, 3000);
    assert_int_equal(a.result, HTTP_OK);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.body_len, 1048576);
    assert_int_equal(a.body[a.body_len], '\0');
    check_pattern(a.body, a.body_len);
    assert_true(a.elapsed_s > 0.0);
    res_free(&a);
}

static void test_too_big(void **state)
{
    fx *f = *state;
    http_opts o = {.max_body = 256 * 1024};
    client_new(f, &o);
    res exact = {0}, over = {0}, huge = {0};
    start_get(f, "/body/262144", NULL, &exact); /* exactly max_body: allowed */
    start_get(f, "/body/262145", NULL, &over);  /* Content-Length says too big */
    start_get(f, "/huge", NULL, &huge);         /* chunked, no length: cut while streaming */
    run_until(f, &exact.calls, 1, 3000);
    run_until(f, &over.calls, 1, 3000);
    run_until(f, &huge.calls, 1, 3000);
    assert_int_equal(exact.result, HTTP_OK);
    assert_int_equal(exact.body_len, 262144);
    check_pattern(exact.body, exact.body_len);
    assert_int_equal(over.result, HTTP_E_TOO_BIG);
    assert_int_equal(over.status, 0);
    assert_true(over.body_len <= o.max_body);
    assert_int_equal(huge.result, HTTP_E_TOO_BIG);
    assert_true(huge.body_len <= o.max_body);
    assert_non_null(strstr(huge.error, "larger than"));
    /* Both aborted transfers drop their connections, so the server stops sending. */
    run_until(f, &f->s.peer_closed, 2, 2000);
    res_free(&exact);
    res_free(&over);
    res_free(&huge);
}

static void test_connection_refused(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    /* A bound but not listening socket: connects are refused, and nobody can take the port. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", ntohs(sa.sin_port));
    res a = {0};
    start_url(f, url, NULL, &a);
    run_until(f, &a.calls, 1, 2000);
    close(fd);
    assert_int_equal(a.result, HTTP_E_TRANSPORT);
    assert_int_equal(a.status, 0);
    assert_non_null(strstr(a.error, "onnect"));
    res_free(&a);
}

static void test_server_closes(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    const char *hdrs[] = {"Authorization: Bearer SECRETTOKEN123", NULL};
    res a = {0};
    start_get(f, "/close", hdrs, &a);
    run_until(f, &a.calls, 1, 2000);
    assert_int_equal(a.result, HTTP_E_TRANSPORT);
    assert_true(a.had_error);
    assert_true(strlen(a.error) > 0);
    assert_null(strstr(a.error, "SECRETTOKEN123"));
    assert_null(strstr(a.error, "Authorization"));
    assert_int_equal(f->s.requests, 1); /* curl retries only reused connections */
    res_free(&a);
}

static void test_stall_timeout(void **state)
{
    fx *f = *state;
    http_opts o = {.total_timeout_ms = 300};
    client_new(f, &o);
    res a = {0};
    uint64_t t0 = kvs_now_mono_ms();
    start_get(f, "/stall", NULL, &a);
    run_until(f, &a.calls, 1, 2000);
    uint64_t took = kvs_now_mono_ms() - t0;
    assert_int_equal(a.result, HTTP_E_TIMEOUT);
    assert_int_equal(a.status, 0);
    assert_true(took >= 250 && took < 1500);
    assert_int_equal(a.body_len, 10); /* the partial body is still handed over */
    res_free(&a);
}

static void test_retry_after(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res d = {0}, none = {0}, date = {0};
    start_get(f, "/retry/7", NULL, &d);
    start_get(f, "/body/3", NULL, &none);
    start_get(f, "/retry-date", NULL, &date);
    run_until(f, &d.calls, 1, 2000);
    run_until(f, &none.calls, 1, 2000);
    run_until(f, &date.calls, 1, 2000);
    assert_int_equal(d.result, HTTP_OK);
    assert_int_equal(d.status, 503);
    assert_int_equal(d.retry_after_s, 7);
    assert_string_equal(d.body, "busy");
    assert_int_equal(none.retry_after_s, -1);
    assert_int_equal(date.status, 429);
    assert_true(date.retry_after_s >= 28 && date.retry_after_s <= 31);
    res_free(&d);
    res_free(&none);
    res_free(&date);
}

static void test_redirect_not_followed(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res a = {0};
    start_get(f, "/redirect", NULL, &a);
    run_until(f, &a.calls, 1, 2000);
    assert_int_equal(a.result, HTTP_OK);
    assert_int_equal(a.status, 302);
    assert_string_equal(a.body, "moved");
    assert_int_equal(f->s2.accepts, 0);
    res_free(&a);
}

static void test_post_form(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    char *enc = http_urlencode("x y&z/\xc3\xa9+=");
    assert_non_null(enc);
    assert_string_equal(enc, "x%20y%26z%2F%C3%A9%2B%3D");
    char form[256];
    snprintf(form, sizeof form, "scopes=PublicApi.Access&grant_type=client_credentials&v=%s", enc);
    free(enc);

    char url[128];
    snprintf(url, sizeof url, "%s/echo", f->base);
    const char *hdrs[] = {"Retailer: x", NULL};
    res a = {0};
    kvs_err err = {0};
    char copy[256];
    snprintf(copy, sizeof copy, "%s", form);
    assert_non_null(http_post_form(f->c, url, copy, hdrs, on_done, &a, &err));
    memset(copy, 'X', sizeof copy - 1); /* the body was copied at submit time */
    run_until(f, &a.calls, 1, 2000);
    assert_int_equal(a.result, HTTP_OK);
    assert_int_equal(a.status, 200);
    assert_string_equal(f->s.last_body, form);
    assert_string_equal(a.body, form);
    assert_true(strncmp(f->s.last_headers, "POST /echo HTTP/1.1\r\n", 21) == 0);
    assert_non_null(
        strstr(f->s.last_headers, "\r\nContent-Type: application/x-www-form-urlencoded\r\n"));
    assert_null(strcasestr(f->s.last_headers, "\r\nExpect:"));
    res_free(&a);
}

static void test_headers_sent(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    const char *hdrs[] = {"Retailer: x", "Authorization: Bearer t0k3n", NULL};
    res yes = {0}, no = {0};
    start_get(f, "/hdr", hdrs, &yes);
    run_until(f, &yes.calls, 1, 2000);
    assert_int_equal(yes.status, 200);
    assert_string_equal(yes.body, "yes");
    assert_non_null(strstr(f->s.last_headers, "\r\nAuthorization: Bearer t0k3n\r\n"));
    start_get(f, "/hdr", NULL, &no);
    run_until(f, &no.calls, 1, 2000);
    assert_int_equal(no.status, 400);
    assert_string_equal(no.body, "no");

    /* A header with a line break is refused before anything is sent. */
    const char *bad[] = {"Retailer: x\r\nX-Injected: 1", NULL};
    kvs_err err = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/hdr", f->base);
    assert_null(http_get(f->c, url, bad, on_done, &no, &err));
    assert_int_equal(err.code, -EINVAL);
    assert_int_equal(http_client_inflight(f->c), 0);
    res_free(&yes);
    res_free(&no);
}

static void test_bad_urls(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    kvs_err err = {0};
    res a = {0};
    assert_null(http_get(f->c, "ftp://127.0.0.1/x", NULL, on_done, &a, &err));
    assert_int_equal(err.code, -EPROTONOSUPPORT);
    kvs_err_clear(&err);
    assert_null(http_get(f->c, "http://[::1", NULL, on_done, &a, &err));
    assert_int_equal(err.code, -EINVAL);
    assert_null(http_get(f->c, NULL, NULL, on_done, &a, &err));
    assert_int_equal(http_client_inflight(f->c), 0);
    assert_int_equal(a.calls, 0);
}

#define NCONC 50
static void test_concurrent_50(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res r[NCONC];
    unsigned done = 0;
    memset(r, 0, sizeof r);
    for (int i = 0; i < NCONC; i++) {
        char path[64];
        r[i].counter = &done;
        snprintf(path, sizeof path, "/body/%d", 1000 + i);
        start_get(f, path, NULL, &r[i]);
    }
    assert_int_equal(http_client_inflight(f->c), NCONC);
    run_until(f, &done, NCONC, 4000);
    for (int i = 0; i < NCONC; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].result, HTTP_OK);
        assert_int_equal(r[i].body_len, (size_t)(1000 + i));
        check_pattern(r[i].body, r[i].body_len);
        res_free(&r[i]);
    }
    assert_int_equal(f->s.requests, NCONC);
    /* CURLMOPT_MAX_HOST_CONNECTIONS caps parallel connections to one host. */
    assert_true(f->s.accepts >= 1 && f->s.accepts <= 8);
    assert_int_equal(http_client_inflight(f->c), 0);
}

#define NSEQ 20
static void test_keepalive_sequential(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res r[NSEQ];
    unsigned done = 0;
    memset(r, 0, sizeof r);
    /* Each callback starts the next request, so they never overlap. */
    for (int i = 0; i < NSEQ; i++) {
        r[i].f = f;
        r[i].counter = &done;
        if (i + 1 < NSEQ) {
            r[i].next_path = "/body/500";
            r[i].next_res = &r[i + 1];
        }
    }
    start_get(f, "/body/500", NULL, &r[0]);
    run_until(f, &done, NSEQ, 4000);
    for (int i = 0; i < NSEQ; i++) {
        assert_int_equal(r[i].result, HTTP_OK);
        assert_int_equal(r[i].body_len, 500);
        res_free(&r[i]);
    }
    assert_int_equal(f->s.requests, NSEQ);
    assert_int_equal(f->s.accepts, 1);
}

static void test_cancel(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res a = {0}, b = {0}, c = {0};

    /* In flight, mid-body: no callback, and the connection is dropped. */
    http_req *qa = start_get_req(f, "/stall", &a);
    run_until(f, &f->s.requests, 1, 2000);
    http_req_cancel(qa);
    assert_int_equal(http_client_inflight(f->c), 0);
    run_until(f, &f->s.peer_closed, 1, 2000);

    /* Before the loop ever ran it. */
    http_req *qb = start_get_req(f, "/body/10", &b);
    http_req_cancel(qb);

    /* Cancelled from another request's callback. */
    res d = {0};
    http_req *qd = start_get_req(f, "/stall", &d);
    c.to_cancel = qd;
    start_get(f, "/body/10", NULL, &c);
    run_until(f, &c.calls, 1, 2000);
    assert_int_equal(c.result, HTTP_OK);

    /* Two that cancel each other: whichever finishes first wins, even when both are done
     * and the second one's completion is already queued inside curl. */
    res x = {0}, y = {0};
    unsigned xy = 0;
    x.counter = y.counter = &xy;
    x.to_cancel = start_get_req(f, "/body/10", &y);
    y.to_cancel = start_get_req(f, "/body/10", &x);
    run_until(f, &xy, 1, 2000);

    /* Let everything settle a little, then check nobody was called back. */
    res e = {0};
    start_get(f, "/body/1", NULL, &e);
    run_until(f, &e.calls, 1, 2000);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 0);
    assert_int_equal(d.calls, 0);
    assert_int_equal(x.calls + y.calls, 1);
    assert_int_equal(xy, 1);
    assert_int_equal(http_client_inflight(f->c), 0);
    res_free(&c);
    res_free(&e);
    res_free(&x);
    res_free(&y);
}

static void test_callback_starts_request(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res a = {0}, b = {0};
    a.f = f;
    a.next_path = "/body/20";
    a.next_res = &b;
    start_get(f, "/body/10", NULL, &a);
    run_until(f, &b.calls, 1, 2000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.body_len, 10);
    assert_int_equal(b.result, HTTP_OK);
    assert_int_equal(b.body_len, 20);
    check_pattern(b.body, 20);
    res_free(&a);
    res_free(&b);
}

static void test_close_inflight(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res r[3];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++) {
        r[i].f = f;
        r[i].try_get_in_cb = true;
        start_get(f, "/stall", NULL, &r[i]);
    }
    res early = {0}; /* never reached the loop */
    run_until(f, &f->s.requests, 3, 2000);
    start_get(f, "/body/5", NULL, &early);

    http_client_close(f->c);
    f->c = NULL;
    /* Callbacks ran before close returned, each exactly once, and refused new work. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].result, HTTP_E_CANCELLED);
        assert_int_equal(r[i].status, 0);
        assert_int_equal(r[i].get_in_cb_code, -ESHUTDOWN);
        res_free(&r[i]);
    }
    assert_int_equal(early.calls, 1);
    assert_int_equal(early.result, HTTP_E_CANCELLED);
    res_free(&early);

    /* With the servers gone too, the loop must run dry and close cleanly. */
    srv_stop(&f->s);
    srv_stop(&f->s2);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    f->loop_closed = true;
}

static void test_close_from_callback(void **state)
{
    fx *f = *state;
    client_new(f, NULL);
    res stalled = {0}, closer = {0};
    start_get(f, "/stall", NULL, &stalled);
    closer.f = f;
    closer.close_client = true;
    start_get(f, "/body/4", NULL, &closer);
    run_until(f, &closer.calls, 1, 2000);
    assert_null(f->c);
    assert_int_equal(closer.result, HTTP_OK);
    assert_int_equal(stalled.calls, 1);
    assert_int_equal(stalled.result, HTTP_E_CANCELLED);
    res_free(&stalled);
    res_free(&closer);
}

static void test_https_to_plain_server(void **state)
{
    fx *f = *state;
    /* Loading the system CA bundle is the slow part (~25 ms, seconds under valgrind)
     * and counts against the connect timeout. */
    http_opts o = {.connect_timeout_ms = 20000, .total_timeout_ms = 20000};
    client_new(f, &o);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/body/10", f->s.port);
    res a = {0};
    start_url(f, url, NULL, &a);
    run_until(f, &a.calls, 1, 20000);
    assert_int_equal(a.result, HTTP_E_TRANSPORT);
    assert_int_equal(a.status, 0);
    assert_non_null(strstr(a.error, "SSL"));
    res_free(&a);
}

static void test_client_init_errors(void **state)
{
    fx *f = *state;
    kvs_err err = {0};
    http_client *c = (http_client *)1;
    http_opts o = {.ca_file = "/nonexistent/ca.pem"};
    assert_int_equal(http_client_init(&c, &f->loop, &o, &err), -ENOENT);
    assert_null(c);
    assert_non_null(strstr(err.msg, "/nonexistent/ca.pem"));
    http_opts neg = {.total_timeout_ms = -1};
    assert_int_equal(http_client_init(&c, &f->loop, &neg, &err), -EINVAL);
    assert_null(c);
}

static void test_urlencode(void **state)
{
    (void)state;
    char *s = http_urlencode("");
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    s = http_urlencode("AZaz09-._~ !*'()");
    assert_string_equal(s, "AZaz09-._~%20%21%2A%27%28%29");
    free(s);
    assert_null(http_urlencode(NULL));
}

int main(void)
{
    /* Build the /huge chunk once: "10000\r\n" + 64 KiB + "\r\n". */
    int n = snprintf(huge_chunk, sizeof huge_chunk, "%x\r\n", HUGE_CHUNK);
    memset(huge_chunk + n, 'h', HUGE_CHUNK);
    memcpy(huge_chunk + n + HUGE_CHUNK, "\r\n", 2);
    huge_chunk_len = (size_t)n + HUGE_CHUNK + 2;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts_defaults),
        cmocka_unit_test(test_urlencode),
        cmocka_unit_test_setup_teardown(test_client_init_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_200_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_1mb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_50, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_sequential, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_starts_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_to_plain_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
