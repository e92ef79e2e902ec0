/* httpd: libmicrohttpd driven by the libuv loop (see httpd.h).
 *
 * MHD's epoll descriptor becomes readable whenever one of its sockets (the listener, the
 * connections, its inter-thread pipe) has an event: one uv_poll on it runs MHD_run, and one
 * uv_timer runs it when MHD_get_timeout says (connection timeouts, work MHD already knows is
 * ready). A request that is not answered inside the handler is suspended; httpd_req_answer
 * resumes it and arms the timer at 0 so that MHD_run sends the answer on the next loop turn.
 *
 * Stopping: MHD_quiesce_daemon closes the listener at once; MHD_stop_daemon waits until no
 * request is suspended (MHD must not be stopped with suspended connections), then the uv
 * handles are closed and the struct freed in the last close callback. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "log.h"

struct httpd {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd; /* owned; MHD_stop_daemon in server_close */
    uv_poll_t poll;         /* on MHD's epoll fd */
    uv_timer_t timer;       /* MHD_get_timeout, and "run soon" after a resume */
    int handles_open;
    httpd_handler handler;
    void *arg;
    size_t max_body;
    unsigned port;
    char name[48];
    int suspended;          /* requests waiting for their answer */
    bool stopping;
    bool in_run;            /* inside MHD_run: no re-entry */
};

struct httpd_req {
    httpd *h;
    struct MHD_Connection *conn; /* borrowed from MHD */
    char *method, *path;         /* owned */
    kvs_buf body;                /* owned */
    bool too_big, handled, suspended;
    struct MHD_Response *resp;   /* the answer, until queued */
    unsigned status;
};

static void server_run(httpd *h);
static void timer_cb(uv_timer_t *t);

int httpd_listen_parse(const char *text, struct sockaddr_storage *ss, char *why, size_t cap)
{
    char host[64];
    const char *port_s;
    memset(ss, 0, sizeof *ss);
    if (!text || !*text) {
        snprintf(why, cap, "empty");
        return -EINVAL;
    }
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof host) {
            snprintf(why, cap, "expected [IPv6]:PORT");
            return -EINVAL;
        }
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = '\0';
        port_s = end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof host || colon == text) {
            snprintf(why, cap, "expected HOST:PORT (e.g. 127.0.0.1:8089)");
            return -EINVAL;
        }
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port_s = colon + 1;
    }
    char *end;
    errno = 0;
    long port = strtol(port_s, &end, 10);
    if (!*port_s || *end || errno || port < 0 || port > 65535 || port_s[0] == '-' ||
        port_s[0] == '+') {
        snprintf(why, cap, "the port is not a number from 0 to 65535");
        return -EINVAL;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (!strcmp(host, "localhost")) snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else if (text[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
    } else {
        snprintf(why, cap, "the host is not an IP address (IPv6 in brackets) or localhost");
        return -EINVAL;
    }
    return 0;
}

/* ---- requests ------------------------------------------------------------------------------- */

static void req_free(httpd_req *rq)
{
    if (rq->resp) MHD_destroy_response(rq->resp);
    kvs_buf_free(&rq->body);
    free(rq->method);
    free(rq->path);
    free(rq);
}

/* MHD_OPTION_NOTIFY_COMPLETED: the request is over (answered and sent, or the client left). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    httpd_req *rq = *con_cls;
    if (!rq) return;
    REQUIRE(!rq->suspended); /* MHD never ends a suspended connection: we resume them all */
    req_free(rq);
    *con_cls = NULL;
}

const char *httpd_req_method(const httpd_req *rq) { return rq->method; }
const char *httpd_req_path(const httpd_req *rq) { return rq->path; }

const char *httpd_req_header(const httpd_req *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const char *httpd_req_query(const httpd_req *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *httpd_req_body(const httpd_req *rq, size_t *len)
{
    *len = rq->body.len;
    return rq->body.len ? rq->body.data : "";
}

void httpd_req_answer(httpd_req *rq, unsigned status, const char *content_type,
                      const char *body, size_t len, const char *extra_header)
{
    REQUIRE(!rq->resp);
    rq->resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    REQUIRE(rq->resp);
    rq->status = status;
    if (content_type) MHD_add_response_header(rq->resp, "Content-Type", content_type);
    if (extra_header) {
        char name[64];
        const char *colon = strchr(extra_header, ':');
        if (colon && (size_t)(colon - extra_header) < sizeof name) {
            memcpy(name, extra_header, (size_t)(colon - extra_header));
            name[colon - extra_header] = '\0';
            MHD_add_response_header(rq->resp, name, colon + 1 + strspn(colon + 1, " "));
        }
    }
    if (rq->suspended) {
        httpd *h = rq->h;
        rq->suspended = false;
        h->suspended--;
        MHD_resume_connection(rq->conn);
        /* MHD_run on the next loop turn (never from inside it): it calls access_cb again,
         * which queues the answer. */
        uv_timer_start(&h->timer, timer_cb, 0, 0);
    }
}

/* Queues rq's answer (made by httpd_req_answer). */
static enum MHD_Result answer_queue(httpd_req *rq)
{
    enum MHD_Result r = MHD_queue_response(rq->conn, rq->status, rq->resp);
    MHD_destroy_response(rq->resp); /* MHD keeps its own reference */
    rq->resp = NULL;
    return r;
}

static void answer_plain(httpd_req *rq, unsigned status, const char *text)
{
    httpd_req_answer(rq, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

/* MHD's request callback: first call (headers in), then once per body chunk, then once with
 * no data (body complete), then again after a resume. */
static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    httpd *h = cls;
    httpd_req *rq = *con_cls;
    (void)version;
    if (!rq) {
        rq = kvs_xcalloc(1, sizeof *rq);
        rq->h = h;
        rq->conn = conn;
        rq->method = kvs_strdup(method);
        rq->path = kvs_strdup(url);
        kvs_buf_init(&rq->body);
        *con_cls = rq;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > h->max_body) {
            /* Refused before reading it; MHD closes the connection after the answer. */
            answer_plain(rq, 413, "request body too large\n");
            return answer_queue(rq);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_big || rq->resp || rq->body.len + n > h->max_body) {
            rq->too_big = true; /* a chunked body past the cap: dropped as it comes */
            return MHD_YES;
        }
        if (kvs_buf_append(&rq->body, upload_data, n)) return MHD_NO;
        return MHD_YES;
    }
    if (rq->resp) return answer_queue(rq);
    if (rq->handled) return MHD_YES; /* resumed without an answer: cannot happen */
    rq->handled = true;
    if (rq->too_big) {
        answer_plain(rq, 413, "request body too large\n");
        return answer_queue(rq);
    }
    (void)kvs_buf_cstr(&rq->body);
    h->handler(rq, h->arg);
    if (rq->resp) return answer_queue(rq);
    rq->suspended = true;
    h->suspended++;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

/* MHD's own messages (malformed requests and the like): debug, since anyone can cause them. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    httpd *h = cls;
    char msg[300];
    if (KVS_LOG_DEBUG > log_max_level) return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_debug("%s: %s", h->name, msg);
}

/* ---- the loop glue --------------------------------------------------------------------------- */

static void handle_closed(uv_handle_t *hd)
{
    httpd *h = hd->data;
    if (--h->handles_open == 0) free(h);
}

static void server_close(httpd *h)
{
    uv_poll_stop(&h->poll); /* before MHD closes the descriptor it watches */
    uv_timer_stop(&h->timer);
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    uv_close((uv_handle_t *)&h->poll, handle_closed);
    uv_close((uv_handle_t *)&h->timer, handle_closed);
}

static unsigned server_connections(httpd *h)
{
    const union MHD_DaemonInfo *i =
        MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

static void server_run(httpd *h)
{
    if (!h->mhd || h->in_run) return;
    h->in_run = true;
    unsigned before = server_connections(h);
    MHD_run(h->mhd);
    h->in_run = false;
    if (h->stopping && h->suspended == 0) {
        server_close(h);
        return;
    }
    MHD_UNSIGNED_LONG_LONG ms;
    /* At the connection cap MHD takes the listening socket out of its epoll set, and puts it
     * back only at the start of a later MHD_run: after a run that closed connections, run
     * again at once, or a client waiting to be accepted waits for an event that never comes
     * (test_webhook's 65th connection did, for good, once the 64 idle ones were closed). */
    if (server_connections(h) < before)
        uv_timer_start(&h->timer, timer_cb, 0, 0);
    else if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
        uv_timer_start(&h->timer, timer_cb, ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    (void)events;
    httpd *h = p->data;
    if (status < 0) log_warn("%s: poll error: %s", h->name, uv_strerror(status));
    server_run(h);
}

static void timer_cb(uv_timer_t *t) { server_run(t->data); }

httpd *httpd_start(uv_loop_t *loop, const char *listen, const httpd_opts *o, httpd_handler hd,
                   void *arg, kvs_err *err)
{
    struct sockaddr_storage ss;
    char why[160];
    const char *name = o && o->name ? o->name : "listener";
    if (httpd_listen_parse(listen, &ss, why, sizeof why)) {
        kvs_err_set(err, -EINVAL, "%s: listen = %s: %s", name, listen ? listen : "", why);
        return NULL;
    }
    httpd *h = kvs_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->handler = hd;
    h->arg = arg;
    h->max_body = o && o->max_body ? o->max_body : 1024 * 1024;
    snprintf(h->name, sizeof h->name, "%s", name);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    uint16_t port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    h->mhd = MHD_start_daemon(
        flags, port, NULL, NULL, access_cb, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o && o->max_connections ? o->max_connections : 64),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(o && o->timeout_s ? o->timeout_s : 10),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_END);
    if (!h->mhd) {
        kvs_err_set(err, -EADDRNOTAVAIL, "%s: cannot listen on %s (in use, or not this host's "
                                         "address)", name, listen);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *ei = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : port;
    int rc = ei ? uv_poll_init(loop, &h->poll, ei->epoll_fd) : UV_EINVAL;
    if (rc) {
        kvs_err_set(err, rc, "%s: cannot watch the server's descriptor: %s", name,
                    uv_strerror(rc));
        MHD_stop_daemon(h->mhd);
        free(h);
        return NULL;
    }
    uv_timer_init(loop, &h->timer);
    h->poll.data = h->timer.data = h;
    h->handles_open = 2;
    uv_poll_start(&h->poll, UV_READABLE, poll_cb);
    uv_timer_start(&h->timer, timer_cb, 0, 0);
    return h;
}

unsigned httpd_port(const httpd *h) { return h->port; }

void httpd_stop(httpd *h)
{
    if (!h || h->stopping) return;
    h->stopping = true;
    MHD_socket ls = MHD_quiesce_daemon(h->mhd);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    if (h->suspended == 0 && !h->in_run)
        server_close(h);
    else
        uv_timer_start(&h->timer, timer_cb, 0, 0);
}
