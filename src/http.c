/* HTTP client: libcurl's multi-socket API on libuv.
 *
 * Shape (curl's docs/examples/multi-uv.c, with the gaps a daemon must close):
 *  - one CURLM per client; curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and we
 *    keep exactly one uv_poll_t per watched socket, found again through curl_multi_assign;
 *  - one uv_timer_t follows CURLMOPT_TIMERFUNCTION; curl is only ever called back from the
 *    loop (poll or timer callbacks), never from inside its own callbacks;
 *  - after every curl_multi_socket_action the message queue is drained and finished transfers
 *    are delivered, in a loop that tolerates the user callback starting, cancelling or closing;
 *  - memory that embeds a libuv handle is freed only in that handle's close callback.
 *
 * Per-transfer state lives in http_req (CURLOPT_PRIVATE). Nothing here blocks the loop. */
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

_Static_assert(sizeof(curl_off_t) == sizeof(int64_t), "curl_off_t is 64-bit");

#ifndef KVS_VERSION
#define KVS_VERSION "0.1.0"
#endif

#define HTTP_DEFAULT_CONNECT_MS 10000L
#define HTTP_DEFAULT_TOTAL_MS 60000L
#define HTTP_DEFAULT_LOW_SPEED 100L           /* bytes/s */
#define HTTP_DEFAULT_LOW_SPEED_S 20L
#define HTTP_DEFAULT_MAX_BODY (32u << 20)     /* 32 MiB */
#define HTTP_MAX_HOST_CONNECTIONS 8L
/* The CA store is parsed once and kept in the multi handle for this long (curl >= 7.87); a
 * new TLS connection then costs a handshake, not a re-read of the whole system bundle. */
#define HTTP_CA_CACHE_S 86400L
/* A page is ~230 KB: read it in a few large recv calls instead of 16 KB ones. */
#define HTTP_RECV_BUFFER (256L * 1024)

typedef struct sock_ctx sock_ctx;

/* One watched socket. Lives from curl's first interest in the fd until the uv_close callback
 * of its poll handle; stays on the client's list until then so close can find it. */
struct sock_ctx {
    uv_poll_t poll;      /* poll.data = this */
    curl_socket_t fd;
    http_client *c;      /* borrowed; outlives every sock_ctx */
    bool closing;        /* uv_close called; the fd is no longer watched by this ctx */
    sock_ctx *prev, *next;
};

struct http_req {
    http_client *c;                 /* borrowed */
    CURL *easy;                     /* owned; curl_easy_cleanup in req_free */
    struct curl_slist *headers;     /* owned; must outlive easy's use of it */
    kvs_buf body;                   /* owned; handed to the callback, then freed */
    size_t max_body;
    long retry_after_s;             /* -1 until a Retry-After header is seen */
    bool too_big;                   /* write callback refused data over max_body */
    bool oom;                       /* write callback could not grow the buffer */
    bool in_cb;                     /* user callback running: cancel is a no-op */
    http_done_cb cb;
    void *arg;                      /* borrowed, user's */
    http_req *prev, *next;          /* client's in-flight list */
    char curl_err[CURL_ERROR_SIZE]; /* CURLOPT_ERRORBUFFER */
    char msg[CURL_ERROR_SIZE + 256]; /* text for http_response.error */
};

struct http_client {
    uv_loop_t *loop;    /* borrowed */
    CURLM *multi;       /* owned; NULL once http_client_close has cleaned it up */
    CURLSH *share;      /* owned; TLS session cache across easy handles; freed in client_free */
    uv_timer_t timer;   /* curl's single timeout; timer.data = this */
    http_opts opts;     /* ca_file / user_agent point at the owned copies below */
    char *ca_file;      /* owned */
    char *user_agent;   /* owned */
    http_req *reqs;     /* in flight (added to multi, not yet delivered) */
    size_t inflight;
    sock_ctx *socks;    /* every sock_ctx not yet freed, closing ones included */
    unsigned handles;   /* libuv handles whose close callback has not run (timer + socks) */
    bool closing;       /* http_client_close called: no new requests */
};

/* ---- global init ---------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static int curl_ready(void)
{
    pthread_once(&curl_once, curl_init_once);
    return curl_init_rc == CURLE_OK ? 0 : -EIO;
}

/* ---- lists ---------------------------------------------------------------------------- */

static void req_link(http_client *c, http_req *r)
{
    r->prev = NULL;
    r->next = c->reqs;
    if (c->reqs) c->reqs->prev = r;
    c->reqs = r;
    c->inflight++;
}

static void req_unlink(http_req *r)
{
    http_client *c = r->c;
    if (r->prev) r->prev->next = r->next;
    else c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->inflight--;
}

/* ---- client teardown ------------------------------------------------------------------ */

static void client_free(http_client *c)
{
    /* Every easy handle is gone by now (they are cleaned up before control returns to the
     * loop), so the share is no longer in use. */
    if (c->share) curl_share_cleanup(c->share);
    free(c->ca_file);
    free(c->user_agent);
    free(c);
}

/* Called from each close callback: the last one of a closing client frees it. */
static void client_handle_closed(http_client *c)
{
    REQUIRE(c->handles > 0);
    if (--c->handles == 0 && c->closing) client_free(c);
}

static void on_timer_closed(uv_handle_t *h) { client_handle_closed(h->data); }

/* ---- sockets -------------------------------------------------------------------------- */

static void on_sock_closed(uv_handle_t *h)
{
    sock_ctx *s = h->data;
    http_client *c = s->c;
    if (s->prev) s->prev->next = s->next;
    else c->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s);
    client_handle_closed(c);
}

/* Stops watching at once (uv_close removes the fd from epoll now); the memory goes in
 * on_sock_closed. After this a new uv_poll may be opened on the same fd number. */
static void sock_close(sock_ctx *s)
{
    if (s->closing) return;
    s->closing = true;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void drain(http_client *c);

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *s = h->data;
    http_client *c = s->c;
    int flags = 0, running = 0;
    if (!c->multi || s->closing) return;
    if (status < 0) {
        /* libuv has stopped the poll (POLLERR, e.g. a refused connect). curl checks the
         * socket itself while connecting and fails an established transfer on
         * CURL_CSELECT_ERR, so the poll is not restarted (it would spin on the error). */
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    /* s stays valid even if curl asks us to stop watching it: freed only in on_sock_closed. */
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    drain(c);
}

static sock_ctx *sock_find_open(http_client *c, curl_socket_t fd)
{
    for (sock_ctx *s = c->socks; s; s = s->next)
        if (s->fd == fd && !s->closing) return s;
    return NULL;
}

static sock_ctx *sock_open(http_client *c, curl_socket_t fd)
{
    /* curl has no context for this fd; if we still watch the number, that poll belongs to an
     * fd curl closed without telling us. Drop it so there is never two polls on one fd. */
    sock_ctx *stale = sock_find_open(c, fd);
    if (stale) sock_close(stale);

    sock_ctx *s = kvs_xcalloc(1, sizeof *s);
    if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
        free(s); /* never initialised as a handle: plain free is right */
        return NULL;
    }
    s->poll.data = s;
    s->fd = fd;
    s->c = c;
    s->next = c->socks;
    if (c->socks) c->socks->prev = s;
    c->socks = s;
    c->handles++;
    return s;
}

/* CURLMOPT_SOCKETFUNCTION. Runs inside curl: only bookkeeping here, never a curl_multi call
 * that drives transfers. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    http_client *c = userp;
    sock_ctx *s = socketp;

    if (what == CURL_POLL_REMOVE) {
        /* curl forgets its entry (and our pointer) right after this returns. */
        if (s) sock_close(s);
        return 0;
    }
    if (!s) {
        s = sock_open(c, fd);
        if (!s) return -1;
        if (curl_multi_assign(c->multi, fd, s) != CURLM_OK) {
            sock_close(s);
            return -1;
        }
    }
    int ev = 0;
    if (what & CURL_POLL_IN) ev |= UV_READABLE;
    if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
    if (ev == 0) return uv_poll_stop(&s->poll) ? -1 : 0;
    return uv_poll_start(&s->poll, ev, on_poll) ? -1 : 0;
}

/* ---- timer ---------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    http_client *c = t->data;
    int running = 0;
    if (!c->multi) return;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(c);
}

/* CURLMOPT_TIMERFUNCTION. A 0 timeout becomes a 0 ms uv_timer: curl is then driven from the
 * loop, as curl requires (no socket_action from inside this callback). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    http_client *c = userp;
    if (timeout_ms < 0) return uv_timer_stop(&c->timer) ? -1 : 0;
    return uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0) ? -1 : 0;
}

/* ---- transfer callbacks --------------------------------------------------------------- */

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    http_req *r = userp;
    size_t n = size * nmemb;
    /* Checked on the decoded bytes, so a small gzip body cannot inflate past the cap. */
    if (n > r->max_body - r->body.len) {
        r->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (r->body.cap == 0) {
        /* First chunk: size the buffer once from Content-Length when it is plausible. */
        curl_off_t cl = -1;
        if (curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
            cl > 0 && (curl_off_t)r->max_body >= cl && (size_t)cl > n &&
            kvs_buf_reserve(&r->body, (size_t)cl) != 0) {
            r->oom = true;
            return 0;
        }
    }
    if (kvs_buf_append(&r->body, data, n) != 0) {
        r->oom = true;
        return 0;
    }
    return n;
}

/* Retry-After: delta-seconds or an HTTP-date; -1 when it is neither. */
static long retry_after_parse(const char *v, time_t now)
{
    if (*v >= '0' && *v <= '9') {
        long long secs = 0;
        for (const char *p = v; *p; p++) {
            if (*p < '0' || *p > '9') return -1;
            if (secs < LONG_MAX) secs = secs * 10 + (*p - '0');
            if (secs > LONG_MAX) secs = LONG_MAX;
        }
        return (long)secs;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1) return -1;
    if (t <= now) return 0;
    return (t - now) > LONG_MAX ? LONG_MAX : (long)(t - now);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    http_req *r = userp;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    const size_t nl = sizeof name - 1;

    /* A new status line (e.g. after 100 Continue) starts a new header set. */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        r->retry_after_s = -1;
        return n;
    }
    if (n <= nl || strncasecmp(data, name, nl) != 0) return n;

    size_t b = nl, e = n;
    while (b < e && (data[b] == ' ' || data[b] == '\t')) b++;
    while (e > b && (data[e - 1] == '\r' || data[e - 1] == '\n' || data[e - 1] == ' ' ||
                     data[e - 1] == '\t'))
        e--;
    char v[128];
    if (e == b || e - b >= sizeof v) return n; /* empty or absurd: treat as absent */
    memcpy(v, data + b, e - b);
    v[e - b] = '\0';
    r->retry_after_s = retry_after_parse(v, time(NULL));
    return n;
}

/* ---- delivery ------------------------------------------------------------------------- */

static void req_free(http_req *r)
{
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    kvs_buf_free(&r->body);
    free(r);
}

/* Calls the user callback once and frees r. r must already be off the list and the multi. */
static void req_deliver(http_req *r, enum http_result result, long status, const char *error)
{
    http_response resp = {
        .result = result,
        .status = result == HTTP_OK ? status : 0,
        .error = error,
        .body_len = r->body.len,
        .retry_after_s = r->retry_after_s,
        .elapsed_s = 0.0,
    };
    double t = 0.0;
    if (r->easy && curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME, &t) == CURLE_OK)
        resp.elapsed_s = t;
    if (r->body.data) r->body.data[r->body.len] = '\0'; /* also after a bare reserve */
    resp.body = kvs_buf_steal(&r->body); /* "" when nothing arrived; NUL-terminated */

    r->in_cb = true;
    r->cb(&resp, r->arg);
    free(resp.body); /* NULL when the callback took it */
    req_free(r);
}

/* "2 s" for whole seconds, else "300 ms". */
static void ms_text(long ms, char *buf, size_t cap)
{
    if (ms % 1000 == 0)
        snprintf(buf, cap, "%ld s", ms / 1000);
    else
        snprintf(buf, cap, "%ld ms", ms);
}

/* Removes what a URL inside s may carry that is nobody's business in a log: the userinfo
 * ("user:password@") and the query string (shown as "?..."). curl's messages name hosts and
 * ports, not URLs, but a future version or a proxy error might; this is the second line of
 * defence behind log_redact. In place: the text only shrinks. */
static void url_secrets_strip(char *s)
{
    for (char *p = strstr(s, "://"); p; p = strstr(p, "://")) {
        char *auth = p + 3;
        size_t alen = strcspn(auth, "/?# \t\"'<>");
        char *at = NULL;
        for (char *q = auth; q < auth + alen; q++)
            if (*q == '@') at = q;
        if (at) {
            memmove(auth, at + 1, strlen(at + 1) + 1);
            alen -= (size_t)(at + 1 - auth);
        }
        char *rest = auth + alen;
        size_t plen = strcspn(rest, "?# \t\"'<>");
        char *query = rest[plen] == '?' ? rest + plen : NULL;
        p = rest + plen;
        if (query) {
            /* Dropped whatever its length; "..." says something was there when it fits. */
            char *qend = query + 1 + strcspn(query + 1, "# \t\"'<>");
            size_t keep = qend - query > 3 ? 3 : 0;
            memcpy(query + 1, "...", keep);
            memmove(query + 1 + keep, qend, strlen(qend) + 1);
            p = query + 1;
        }
    }
}

/* The error text of a failed transfer: curl's name for the error code, the phase it failed
 * in and, for a timeout, which limit was hit, then curl's own detail (host, port, bytes),
 * e.g. "Timeout was reached, total timeout of 60 s: Operation timed out after 60000
 * milliseconds with 512 out of 2048 bytes received (curl 28)". The phase comes from curl's
 * timings and counters: no connection (TCP, and TLS for https) yet, no request bytes sent,
 * no response header received, or in the body. */
static void error_text(http_req *r, CURLcode rc, char *out, size_t cap)
{
    const http_opts *o = &r->c->opts;
    long sent = 0, hdr = 0;
    curl_off_t total_us = 0, conn_us = 0, tls_us = 0;
    const char *scheme = NULL;
    curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &sent);
    curl_easy_getinfo(r->easy, CURLINFO_HEADER_SIZE, &hdr);
    curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &conn_us);
    curl_easy_getinfo(r->easy, CURLINFO_APPCONNECT_TIME_T, &tls_us);
    curl_easy_getinfo(r->easy, CURLINFO_SCHEME, &scheme);
    /* A reused connection reports no connect time (and no new connection) but request bytes
     * sent; a new one reports its connect time, and for https its TLS handshake time. */
    bool connected = sent > 0 || hdr > 0 ||
                     (conn_us > 0 && (tls_us > 0 || !scheme || strcasecmp(scheme, "https") != 0));
    bool total_hit = total_us / 1000 + 50 >= o->total_timeout_ms;
    char phase[160], t[32];
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        if (!connected && !(total_hit && o->total_timeout_ms < o->connect_timeout_ms)) {
            ms_text(o->connect_timeout_ms, t, sizeof t);
            snprintf(phase, sizeof phase, "connect timeout of %s", t);
        } else if (total_hit) {
            ms_text(o->total_timeout_ms, t, sizeof t);
            snprintf(phase, sizeof phase, "total timeout of %s", t);
        } else {
            snprintf(phase, sizeof phase, "low-speed limit: under %ld bytes/s for %ld s",
                     o->low_speed_limit, o->low_speed_time_s);
        }
    } else {
        snprintf(phase, sizeof phase, "while %s",
                 !connected  ? "connecting"
                 : sent <= 0 ? "sending the request"
                 : hdr <= 0  ? "waiting for the answer"
                             : "receiving the answer");
    }
    const char *name = curl_easy_strerror(rc);
    /* The detail may be a copy of the name when curl had nothing more to say. */
    size_t dl = strlen(r->curl_err);
    while (dl && (r->curl_err[dl - 1] == '\n' || r->curl_err[dl - 1] == ' '))
        r->curl_err[--dl] = '\0';
    bool detail = dl && strcmp(r->curl_err, name) != 0;
    snprintf(out, cap, "%s, %s%s%s (curl %d)", name, phase, detail ? ": " : "",
             detail ? r->curl_err : "", (int)rc);
    url_secrets_strip(out);
    log_redact(out, cap);
}

/* Builds the outcome of a finished transfer. Error texts come from curl's error buffer, which
 * holds host/port/TLS details but never request headers or bodies; URL userinfo and queries
 * are stripped and registered secrets redacted anyway. */
static void req_complete(http_req *r, CURLcode rc)
{
    http_client *c = r->c;
    long status = 0;
    enum http_result res;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    req_unlink(r);
    curl_multi_remove_handle(c->multi, r->easy);

    if (rc == CURLE_OK) {
        res = HTTP_OK;
        r->msg[0] = '\0';
    } else if ((rc == CURLE_WRITE_ERROR && r->too_big) || rc == CURLE_FILESIZE_EXCEEDED) {
        res = HTTP_E_TOO_BIG;
        snprintf(r->msg, sizeof r->msg, "response body larger than %zu bytes", r->max_body);
    } else if (rc == CURLE_WRITE_ERROR && r->oom) {
        res = HTTP_E_TRANSPORT;
        snprintf(r->msg, sizeof r->msg, "out of memory storing the response body");
    } else {
        res = rc == CURLE_OPERATION_TIMEDOUT ? HTTP_E_TIMEOUT : HTTP_E_TRANSPORT;
        error_text(r, rc, r->msg, sizeof r->msg);
    }
    req_deliver(r, res, status, res == HTTP_OK ? NULL : r->msg);
}

/* Delivers every finished transfer. Each user callback may add, cancel or close; the queue is
 * re-read from curl each time (CURLMsg is invalid after the next curl call), and removing a
 * handle drops its queued message, so nothing stale is seen. */
static void drain(http_client *c)
{
    CURLMsg *m;
    int left;
    while (c->multi && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        REQUIRE(priv != NULL);
        req_complete((http_req *)(void *)priv, rc);
    }
}

/* ---- public API ----------------------------------------------------------------------- */

void http_opts_defaults(http_opts *o)
{
    if (!o->connect_timeout_ms) o->connect_timeout_ms = HTTP_DEFAULT_CONNECT_MS;
    if (!o->total_timeout_ms) o->total_timeout_ms = HTTP_DEFAULT_TOTAL_MS;
    if (!o->low_speed_limit) o->low_speed_limit = HTTP_DEFAULT_LOW_SPEED;
    if (!o->low_speed_time_s) o->low_speed_time_s = HTTP_DEFAULT_LOW_SPEED_S;
    if (!o->max_body) o->max_body = HTTP_DEFAULT_MAX_BODY;
}

int http_client_init(http_client **out, uv_loop_t *loop, const http_opts *opts, kvs_err *err)
{
    http_client *c = NULL;
    int rc = 0;

    if (!out || !loop) {
        kvs_err_set(err, -EINVAL, "http: client needs an output pointer and a loop");
        return -EINVAL;
    }
    *out = NULL;
    if ((rc = curl_ready()) != 0) {
        kvs_err_set(err, rc, "http: curl_global_init failed");
        return rc;
    }

    c = kvs_xcalloc(1, sizeof *c);
    c->loop = loop;
    if (opts) c->opts = *opts;
    http_opts_defaults(&c->opts);
    if (c->opts.connect_timeout_ms < 0 || c->opts.total_timeout_ms < 0 ||
        c->opts.low_speed_limit < 0 || c->opts.low_speed_time_s < 0) {
        kvs_err_set(err, -EINVAL, "http: timeouts and speed limits must not be negative");
        rc = -EINVAL;
        goto cleanup;
    }
    if (c->opts.ca_file) {
        /* Caught here, at startup, instead of as a TLS failure on every request. */
        if (access(c->opts.ca_file, R_OK) != 0) {
            rc = -errno;
            kvs_err_set(err, rc, "http: CA file %s: %s", c->opts.ca_file, strerror(errno));
            goto cleanup;
        }
        c->ca_file = kvs_strdup(c->opts.ca_file);
    }
    c->user_agent = kvs_strdup(c->opts.user_agent ? c->opts.user_agent
                                                  : "kiotviet-syncd/" KVS_VERSION);
    c->opts.ca_file = c->ca_file;
    c->opts.user_agent = c->user_agent;

    c->share = curl_share_init();
    c->multi = curl_multi_init();
    if (!c->share || !c->multi) {
        kvs_err_set(err, -ENOMEM, "http: cannot create curl handles");
        rc = -ENOMEM;
        goto cleanup;
    }
    /* Loop-thread only: no lock callbacks needed. */
    if (curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, HTTP_MAX_HOST_CONNECTIONS) !=
            CURLM_OK) {
        kvs_err_set(err, -EINVAL, "http: cannot configure curl multi handle");
        rc = -EINVAL;
        goto cleanup;
    }
    if ((rc = uv_timer_init(loop, &c->timer)) != 0) {
        kvs_err_set(err, rc, "http: uv_timer_init: %s", uv_strerror(rc));
        goto cleanup;
    }
    /* From here on the timer handle exists: the client is freed only through close. */
    c->timer.data = c;
    c->handles = 1;
    *out = c;
    return 0;

cleanup:
    if (c->multi) curl_multi_cleanup(c->multi);
    c->multi = NULL;
    client_free(c);
    return rc;
}

void http_client_close(http_client *c)
{
    if (!c || c->closing) return;
    c->closing = true; /* from here http_get/http_post_form refuse, even from callbacks */

    /* Pop one at a time: a callback may cancel other requests on the list. */
    http_req *r;
    while ((r = c->reqs) != NULL) {
        req_unlink(r);
        curl_multi_remove_handle(c->multi, r->easy);
        snprintf(r->msg, sizeof r->msg, "request cancelled: client closing");
        req_deliver(r, HTTP_E_CANCELLED, 0, r->msg);
    }

    /* multi_cleanup closes pooled connections and may call the socket/timer callbacks, so the
     * timer and polls must still be open while it runs. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;

    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    for (sock_ctx *s = c->socks; s; s = s->next) sock_close(s);
}

static http_req *req_start(http_client *c, const char *method, const char *url, const char *form,
                           const char *const *headers, http_done_cb cb, void *arg, kvs_err *err)
{
    http_req *r = NULL;
    CURLU *u = NULL;
    char *scheme = NULL;
    int rc = 0;

    if (!c || !url || !cb) {
        kvs_err_set(err, -EINVAL, "http: request needs a client, a URL and a callback");
        return NULL;
    }
    if (c->closing) {
        kvs_err_set(err, -ESHUTDOWN, "http: client is closing");
        return NULL;
    }
    /* Reject what cannot work before anything is queued; the URL itself is not echoed, as
     * its query string is the caller's business. */
    u = curl_url();
    if (!u) {
        rc = -ENOMEM;
        kvs_err_set(err, rc, "http: out of memory");
        goto cleanup;
    }
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        rc = -EINVAL;
        kvs_err_set(err, rc, "http: invalid URL: %s", curl_url_strerror(uc));
        goto cleanup;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        rc = -EPROTONOSUPPORT;
        kvs_err_set(err, rc, "http: only http and https URLs are allowed");
        goto cleanup;
    }

    r = kvs_xcalloc(1, sizeof *r);
    r->c = c;
    r->cb = cb;
    r->arg = arg;
    r->max_body = c->opts.max_body;
    r->retry_after_s = -1;
    kvs_buf_init(&r->body);

    for (const char *const *h = headers; h && *h; h++) {
        /* A CR or LF would let a value smuggle extra header lines. */
        if (strpbrk(*h, "\r\n")) {
            rc = -EINVAL;
            kvs_err_set(err, rc, "http: header %zu contains a line break",
                        (size_t)(h - headers));
            goto cleanup;
        }
        struct curl_slist *l = curl_slist_append(r->headers, *h);
        if (!l) goto oom;
        r->headers = l;
    }
    if (form) {
        /* Small form posts should not wait for a 100-continue round trip. */
        struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
        if (!l) goto oom;
        r->headers = l;
    }

    r->easy = curl_easy_init();
    if (!r->easy) goto oom;

    CURL *e = r->easy;
    const http_opts *o = &c->opts;
    bool ok =
        curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)r) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, HTTP_CA_CACHE_S) == CURLE_OK &&
        (!c->ca_file || curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file) == CURLE_OK) &&
        curl_easy_setopt(e, CURLOPT_SHARE, c->share) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->total_timeout_ms) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_limit) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->low_speed_time_s) == CURLE_OK &&
        ((uintmax_t)o->max_body > (uintmax_t)INT64_MAX ||
         curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body) == CURLE_OK) &&
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, HTTP_RECV_BUFFER) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r) == CURLE_OK;
    if (ok && form) {
        /* COPYPOSTFIELDS copies, so the caller's buffer is free to go; curl sends the
         * x-www-form-urlencoded content type for it. */
        ok = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(form)) ==
                 CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, form) == CURLE_OK;
    }
    if (ok && method) ok = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK;
    if (!ok) {
        rc = -EINVAL;
        kvs_err_set(err, rc, "http: cannot configure the transfer");
        goto cleanup;
    }
    /* Adding arms a 0 ms curl timeout; the transfer starts on the next loop iteration. */
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        rc = -EIO;
        kvs_err_set(err, rc, "http: cannot add the transfer");
        goto cleanup;
    }
    req_link(c, r);
    curl_free(scheme);
    curl_url_cleanup(u);
    return r;

oom:
    rc = -ENOMEM;
    kvs_err_set(err, rc, "http: out of memory");
cleanup:
    if (r) req_free(r);
    curl_free(scheme);
    curl_url_cleanup(u);
    return NULL;
}

http_req *http_get(http_client *c, const char *url, const char *const *headers, http_done_cb cb,
                   void *arg, kvs_err *err)
{
    return req_start(c, NULL, url, NULL, headers, cb, arg, err);
}

http_req *http_post_form(http_client *c, const char *url, const char *body,
                         const char *const *headers, http_done_cb cb, void *arg, kvs_err *err)
{
    return req_start(c, NULL, url, body ? body : "", headers, cb, arg, err);
}

http_req *http_send(http_client *c, const char *method, const char *url, const char *body,
                    const char *const *headers, http_done_cb cb, void *arg, kvs_err *err)
{
    return req_start(c, method, url, body, headers, cb, arg, err);
}

void http_req_cancel(http_req *r)
{
    /* Inside its own callback the request is already finished; it is freed on return. */
    if (!r || r->in_cb) return;
    req_unlink(r);
    if (r->c->multi) curl_multi_remove_handle(r->c->multi, r->easy);
    req_free(r);
}

char *http_urlencode(const char *s)
{
    if (!s || curl_ready() != 0) return NULL;
    size_t n = strlen(s);
    if (n > INT_MAX / 3) return NULL;
    char *esc = curl_easy_escape(NULL, s, (int)n);
    if (!esc) return NULL;
    char *out = kvs_strdup(esc); /* caller frees with free(), not curl_free() */
    curl_free(esc);
    return out;
}

size_t http_client_inflight(const http_client *c) { return c ? c->inflight : 0; }
