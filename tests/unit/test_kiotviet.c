/* Unit tests for kiotviet.c: the URL policy (and that its messages never repeat userinfo,
 * path, query or fragment), the cap on records per page, and that the redaction registry holds
 * only the live token over many refreshes.
 *
 * The KiotViet side is a small blocking HTTP/1.1 server on 127.0.0.1 in its own thread:
 *   POST /token       issues "tok-<generation>-..." (generation counts from 1)
 *   GET  /rotate/N    the first GET for a given N revokes every token issued so far and
 *                     answers 401 TokenException; a later one with a live token gets an empty
 *                     page (so each N costs exactly one token refresh)
 *   GET  /page/N      a flat page of N category records
 *   GET  /nested/N    a page of one root category whose children are N categories
 * Everything else is 404. token_body, when set, is the token endpoint's whole answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "kiotviet.h"
#include "log.h"

#define TOKEN_TAIL "-5f2c9a71e0d84b36"

/* ---- the fake KiotViet ------------------------------------------------------------------- */

typedef struct fake {
    int lfd, port;
    pthread_t th;
    atomic_int generation;  /* tokens issued */
    atomic_int valid_from;  /* tokens of an older generation are refused */
    atomic_int last_rotate; /* N of the last /rotate/N that revoked */
    atomic_int gets, posts;
    atomic_int conns;       /* connection threads still running */
    atomic_bool stop;
} fake;

static const char *token_body; /* NULL: the answer described above */

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

/* Head and body in one write: two small writes would wait out the client's delayed ACK. */
static void reply(int fd, int status, const char *body, size_t len)
{
    kvs_buf b;
    kvs_buf_init(&b);
    REQUIRE(kvs_buf_printf(&b,
                           "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n\r\n",
                           status, len) == 0);
    REQUIRE(kvs_buf_append(&b, body, len) == 0);
    send_all(fd, b.data, b.len);
    kvs_buf_free(&b);
}

/* The body of a page of n categories, nested under one root or flat (caller frees). */
static char *page_body(int n, bool nested, size_t *len)
{
    kvs_buf b;
    kvs_buf_init(&b);
    REQUIRE(kvs_buf_puts(&b, "{\"total\":1,\"pageSize\":100,\"data\":[") == 0);
    if (nested) REQUIRE(kvs_buf_puts(&b, "{\"categoryId\":1,\"categoryName\":\"r\",\"children\":[") == 0);
    for (int i = 0; i < n; i++)
        REQUIRE(kvs_buf_printf(&b, "%s{\"categoryId\":%d,\"categoryName\":\"c\"}", i ? "," : "",
                               i + 2) == 0);
    if (nested) REQUIRE(kvs_buf_puts(&b, "]}") == 0);
    REQUIRE(kvs_buf_puts(&b, "]}") == 0);
    *len = b.len;
    return kvs_buf_steal(&b);
}

static void handle(fake *f, int fd, const char *head)
{
    char method[8] = "", path[256] = "";
    sscanf(head, "%7s %255s", method, path);
    int n = 0;
    if (!strcmp(method, "POST") && !strcmp(path, "/token")) {
        f->posts++;
        if (token_body) {
            reply(fd, 200, token_body, strlen(token_body));
            return;
        }
        char body[128];
        int g = ++f->generation;
        int len = snprintf(body, sizeof body,
                           "{\"access_token\":\"tok-%d" TOKEN_TAIL "\",\"expires_in\":3600}", g);
        reply(fd, 200, body, (size_t)len);
        return;
    }
    if (strcmp(method, "GET")) goto notfound;
    f->gets++;
    if (sscanf(path, "/rotate/%d", &n) == 1) {
        const char *a = strstr(head, "Authorization: Bearer tok-");
        int g = a ? atoi(a + strlen("Authorization: Bearer tok-")) : 0;
        if (n != f->last_rotate) {
            f->last_rotate = n;
            f->valid_from = f->generation + 1;
        }
        if (g < f->valid_from) {
            static const char refused[] =
                "{\"responseStatus\":{\"errorCode\":\"TokenException\",\"message\":\"expired\"}}";
            reply(fd, 401, refused, sizeof refused - 1);
        } else {
            static const char empty[] = "{\"total\":0,\"pageSize\":100,\"data\":[]}";
            reply(fd, 200, empty, sizeof empty - 1);
        }
        return;
    }
    bool nested = sscanf(path, "/nested/%d", &n) == 1;
    if (nested || sscanf(path, "/page/%d", &n) == 1) {
        size_t len;
        char *body = page_body(n, nested, &len);
        reply(fd, 200, body, len);
        free(body);
        return;
    }
notfound:
    reply(fd, 404, "{}", 2);
}

/* One connection: requests until the client closes (keep-alive). */
static void serve_conn(fake *f, int fd)
{
    char *buf = kvs_xmalloc(65536);
    size_t have = 0;
    for (;;) {
        char *end;
        while (!(buf[have] = '\0', end = strstr(buf, "\r\n\r\n"))) {
            if (have >= 65535) goto out;
            ssize_t r = read(fd, buf + have, 65535 - have);
            if (r <= 0) goto out;
            have += (size_t)r;
        }
        size_t hlen = (size_t)(end - buf) + 4, blen = 0;
        const char *cl = strcasestr(buf, "Content-Length:");
        if (cl && cl < end) blen = strtoul(cl + 15, NULL, 10);
        while (have < hlen + blen) { /* the form body: read and ignored */
            ssize_t r = read(fd, buf + have, 65535 - have);
            if (r <= 0) goto out;
            have += (size_t)r;
        }
        *end = '\0';
        handle(f, fd, buf);
        memmove(buf, buf + hlen + blen, have - hlen - blen);
        have -= hlen + blen;
    }
out:
    free(buf);
    close(fd);
}

typedef struct conn_arg {
    fake *f;
    int fd;
} conn_arg;

static void *conn_main(void *arg)
{
    conn_arg *c = arg;
    serve_conn(c->f, c->fd);
    c->f->conns--;
    free(c);
    return NULL;
}

/* Accepts connections, each served by its own thread: curl may open a second connection while
 * the first sits idle in its pool. */
static void *fake_main(void *arg)
{
    fake *f = arg;
    while (!f->stop) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) continue;
        if (f->stop) {
            close(fd);
            break;
        }
        conn_arg *c = kvs_xmalloc(sizeof *c);
        c->f = f;
        c->fd = fd;
        f->conns++;
        pthread_t th;
        if (pthread_create(&th, NULL, conn_main, c)) {
            f->conns--;
            close(fd);
            free(c);
            continue;
        }
        pthread_detach(th);
    }
    return NULL;
}

static void fake_start(fake *f)
{
    memset(f, 0, sizeof *f);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &al), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f)
{
    f->stop = true;
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* wakes accept() */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    connect(fd, (struct sockaddr *)&a, sizeof a);
    close(fd);
    pthread_join(f->th, NULL);
    close(f->lfd);
    /* The client closed its connections: their threads end at their next read. */
    for (int i = 0; f->conns > 0 && i < 5000; i++) usleep(1000);
    assert_int_equal(f->conns, 0);
}

/* ---- client fixture ----------------------------------------------------------------------- */

typedef struct fx {
    fake srv;
    uv_loop_t loop;
    http_client *http;
    kv_client *kv;
    char api[64], token_url[64];
    int64_t expires_wall_s; /* from the last on_token */
} fx;

typedef struct got {
    bool done;
    int rc;
    char msg[512];
    int records; /* size of data, -1 without a page */
} got;

static void on_page(int rc, kv_page *page, const char *error, void *arg)
{
    got *g = arg;
    g->done = true;
    g->rc = rc;
    snprintf(g->msg, sizeof g->msg, "%s", error ? error : "");
    g->records = page && page->data ? cJSON_GetArraySize(page->data) : -1;
    kv_page_free(page);
}

static void on_token(const char *token, int64_t expires_wall_s, void *arg)
{
    fx *f = arg;
    (void)token;
    f->expires_wall_s = expires_wall_s;
}

static void fx_start(fx *f)
{
    fake_start(&f->srv);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    http_opts ho;
    memset(&ho, 0, sizeof ho);
    ho.total_timeout_ms = 20000;
    http_opts_defaults(&ho);
    kvs_err e;
    kvs_err_clear(&e);
    assert_int_equal(http_client_init(&f->http, &f->loop, &ho, &e), 0);
    snprintf(f->api, sizeof f->api, "http://127.0.0.1:%d", f->srv.port);
    snprintf(f->token_url, sizeof f->token_url, "http://127.0.0.1:%d/token", f->srv.port);
    kv_client_opts o = {.loop = &f->loop, .http = f->http, .api_url = f->api,
                        .token_url = f->token_url, .client_id = "cid",
                        .client_secret = "client-secret-7d1e55", .retailer = "shop",
                        .max_retries = 3, .retry_base_ms = 5, .retry_cap_ms = 20,
                        .on_token = on_token, .arg = f};
    f->kv = kv_client_new(&o, &e);
    assert_non_null(f->kv);
}

static void fx_get(fx *f, const char *path, got *g)
{
    memset(g, 0, sizeof *g);
    kv_get(f->kv, path, on_page, g);
    while (!g->done) uv_run(&f->loop, UV_RUN_ONCE);
}

static void fx_stop(fx *f)
{
    kv_client_free(f->kv);
    http_client_close(f->http);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    fake_stop(&f->srv);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Every refresh replaces the token: the registry keeps the client secret and the live token,
 * not every token of the run (it grew by one per refresh before), and still redacts them. */
static void test_registry_holds_only_live_token(void **state)
{
    (void)state;
    size_t base = log_secret_count();
    fx f;
    fx_start(&f);
    assert_int_equal(log_secret_count(), base + 1); /* the client secret */
    got g;
    for (int i = 1; i <= 20; i++) {
        char path[32];
        snprintf(path, sizeof path, "/rotate/%d", i);
        fx_get(&f, path, &g);
        assert_int_equal(g.rc, KV_OK);
        assert_int_equal(g.records, 0);
        assert_int_equal(log_secret_count(), base + 2); /* + the live token */
    }
    /* The first request fetched a token and had it revoked at once; then one refresh each. */
    assert_int_equal(kv_client_token_requests(f.kv), 21);
    assert_int_equal(f.srv.posts, 21);
    char text[128];
    snprintf(text, sizeof text, "live tok-21" TOKEN_TAIL " and client-secret-7d1e55");
    log_redact(text, sizeof text);
    assert_string_equal(text, "live *** and ***");
    fx_stop(&f);
    assert_int_equal(log_secret_count(), base);
}

/* A token longer than the Authorization header holds (it was cut there: 401, refresh, cut
 * again), or holding bytes no bearer token has, is refused once with a reason; an absurd
 * expires_in (1e308, 1e999 = inf) is taken as at most a year (the conversions to integer
 * milliseconds and seconds were undefined). */
static void test_token_answers_refused_or_bounded(void **state)
{
    (void)state;
    static const struct {
        const char *token;
        int len;
        const char *expires;
        int rc;
    } cases[] = {
        {"x", KV_TOKEN_MAX + 1, "3600", KV_E_PARSE},
        {"tok\\u00ffzz-0123456789", 0, "3600", KV_E_PARSE},
        {"tok\\n0123456789", 0, "3600", KV_E_PARSE},
        {"x", KV_TOKEN_MAX, "3600", KV_OK},
        {"tok-0123456789", 0, "1e308", KV_OK},
        {"tok-0123456789", 0, "1e999", KV_OK},
        {"tok-0123456789", 0, "-5", KV_OK},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        kvs_buf b;
        kvs_buf_init(&b);
        REQUIRE(kvs_buf_puts(&b, "{\"access_token\":\"") == 0);
        if (cases[i].len)
            for (int k = 0; k < cases[i].len; k++) REQUIRE(kvs_buf_puts(&b, cases[i].token) == 0);
        else
            REQUIRE(kvs_buf_puts(&b, cases[i].token) == 0);
        REQUIRE(kvs_buf_printf(&b, "\",\"expires_in\":%s}", cases[i].expires) == 0);
        token_body = kvs_buf_cstr(&b);
        fx f;
        fx_start(&f);
        got g;
        fx_get(&f, "/page/1", &g);
        if (g.rc != cases[i].rc) fail_msg("case %zu: rc %d (%s)", i, g.rc, g.msg);
        assert_int_equal(f.srv.posts, 1); /* refused once, not retried */
        if (g.rc == KV_E_PARSE) {
            assert_non_null(strstr(g.msg, "access_token of"));
            assert_non_null(strstr(g.msg, "cannot be sent"));
        } else {
            int64_t now = (int64_t)time(NULL);
            assert_true(f.expires_wall_s > now && f.expires_wall_s <= now + 31536000 + 5);
        }
        fx_stop(&f);
        token_body = NULL;
        kvs_buf_free(&b);
    }
}

/* More than KV_PAGE_MAX_RECORDS records, flat or as nested children, is refused once (the same
 * page would come again: no retry); exactly the cap is a page. */
static void test_page_record_cap(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    got g;
    char path[32];

    snprintf(path, sizeof path, "/page/%d", KV_PAGE_MAX_RECORDS);
    fx_get(&f, path, &g);
    assert_int_equal(g.rc, KV_OK);
    assert_int_equal(g.records, KV_PAGE_MAX_RECORDS);

    static const struct {
        const char *fmt;
        int n;
    } refused[] = {{"/page/%d", KV_PAGE_MAX_RECORDS + 1},
                   {"/nested/%d", KV_PAGE_MAX_RECORDS}, /* + the root */
                   {"/page/%d", 4 * KV_PAGE_MAX_RECORDS}};
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
        int before = f.srv.gets;
        snprintf(path, sizeof path, refused[i].fmt, refused[i].n);
        fx_get(&f, path, &g);
        assert_int_equal(g.rc, KV_E_PARSE);
        assert_int_equal(g.records, -1);
        if (!strstr(g.msg, "KiotViet page refused: more than 10000 records"))
            fail_msg("%s: %s", path, g.msg);
        assert_int_equal(f.srv.gets - before, 1);
    }

    snprintf(path, sizeof path, "/nested/%d", KV_PAGE_MAX_RECORDS - 1);
    fx_get(&f, path, &g);
    assert_int_equal(g.rc, KV_OK);
    assert_int_equal(g.records, 1); /* the root; its children are walked by mapping */
    fx_stop(&f);
}

typedef struct got_raw {
    bool done;
    int rc;
    long status;
    char *body;
    size_t len;
} got_raw;

static void on_raw(int rc, long status, char *body, size_t len, const char *error, void *arg)
{
    got_raw *g = arg;
    (void)error;
    g->done = true;
    g->rc = rc;
    g->status = status;
    g->body = body;
    g->len = len;
}

static void fx_get_raw(fx *f, const char *path, got_raw *g)
{
    memset(g, 0, sizeof *g);
    kv_get_raw(f->kv, path, on_raw, g);
    while (!g->done) uv_run(&f->loop, UV_RUN_ONCE);
}

/* kv_get_raw goes through the same transport as pages (token, 401 refresh, no retry of a
 * 404) and hands over the 200 body as it came, unparsed, with the answer's status. */
static void test_raw_get(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    got_raw g;
    fx_get_raw(&f, "/page/2", &g);
    assert_int_equal(g.rc, KV_OK);
    assert_int_equal(g.status, 200);
    assert_non_null(g.body);
    assert_int_equal(g.len, strlen(g.body));
    assert_non_null(strstr(g.body, "{\"categoryId\":3,\"categoryName\":\"c\"}]}"));
    free(g.body);
    assert_int_equal(f.srv.posts, 1);

    int gets = f.srv.gets;
    fx_get_raw(&f, "/missing", &g);
    assert_int_equal(g.rc, KV_E_HTTP);
    assert_int_equal(g.status, 404);
    assert_null(g.body);
    assert_int_equal(f.srv.gets - gets, 1); /* a 404 is final */

    /* A refused token: one fresh token, one retry, then the body. */
    gets = f.srv.gets;
    fx_get_raw(&f, "/rotate/1", &g);
    assert_int_equal(g.rc, KV_OK);
    assert_int_equal(g.status, 200);
    assert_non_null(strstr(g.body, "\"data\":[]"));
    free(g.body);
    assert_int_equal(f.srv.gets - gets, 2);
    assert_int_equal(f.srv.posts, 2);
    assert_int_equal(kv_client_token_requests(f.kv), 2);
    fx_stop(&f);
}

/* The URL policy, and what its messages may name: scheme://host[:port], nothing else. */
static void test_url_check(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *want; /* NULL = accepted, else a substring of the message */
    } cases[] = {
        {"https://public.kiotapi.com", NULL},
        {"https://id.kiotviet.vn/connect/token", NULL},
        {"http://127.0.0.1:8080/x", NULL},
        {"http://localhost/", NULL},
        {"http://[::1]:9/", NULL},
        {"https://kvuser:S3CRET-pw@public.kiotapi.com/",
         "api_url (https://public.kiotapi.com) must not contain a user name or password "
         "(user:password@): credentials belong in client_id and client_secret"},
        {"http://kvuser:S3CRET-pw@127.0.0.1:8080/", "api_url (http://127.0.0.1:8080) must not"},
        {"https://S3CRET-user@public.kiotapi.com:8443/", "(https://public.kiotapi.com:8443) must not"},
        {"https://:S3CRET-pw@public.kiotapi.com/", "must not contain a user name or password"},
        {"http://public.kiotapi.com:8080/S3CRET?k=S3CRET#S3CRET",
         "api_url must use https (plain http is only allowed to loopback hosts): "
         "http://public.kiotapi.com:8080"},
        {"http://10.0.0.1/", "loopback hosts): http://10.0.0.1"},
        {"ftp://127.0.0.1/S3CRET", "loopback hosts): ftp://127.0.0.1"},
        /* Not addresses to inet_pton, so curl would resolve them by DNS: not loopback. */
        {"http://127.0.0.-4294967295/", "loopback hosts): http://127.0.0.-4294967295"},
        {"http://127.0.0.4294967297/", "loopback hosts): http://127.0.0.4294967297"},
        {"http://127.0.0.1.evil.example/", "loopback hosts)"},
        {"http://127.1/", NULL}, /* curl itself makes it 127.0.0.1 */
        {"http://[::ffff:127.0.0.1]/", "loopback hosts)"},
        /* An https host not in allowed_hosts: named, with the key that allows it. */
        {"https://id.kiotviet.vn.evil.example/connect/token",
         "api_url host id.kiotviet.vn.evil.example is not in [kiotviet] allowed_hosts"},
        {"https://pub1ic.kiotapi.com/", "api_url host pub1ic.kiotapi.com is not in"},
        {"https://PUBLIC.KiotApi.com/", NULL},
        {"file:///etc/passwd", "api_url is not a valid URL"},
        {"not a url S3CRET", "api_url is not a valid URL"},
        {"", "api_url is empty"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        kvs_err e;
        kvs_err_clear(&e);
        int rc = kv_url_check(cases[i].url, "api_url",
                              "id.kiotviet.vn, public.kiotapi.com,loopback", &e);
        if (!cases[i].want) {
            if (rc) fail_msg("%s refused: %s", cases[i].url, e.msg);
            continue;
        }
        if (rc != -EINVAL || !strstr(e.msg, cases[i].want))
            fail_msg("%s: rc %d, message '%s'; want '%s'", cases[i].url, rc, e.msg, cases[i].want);
        if (strstr(e.msg, "S3CRET")) fail_msg("%s: the message repeats it: %s", cases[i].url, e.msg);
        if (strstr(e.msg, "kvuser")) fail_msg("%s: userinfo in the message: %s", cases[i].url, e.msg);
    }
    /* A client is not built from such a URL. */
    kv_client_opts o = {.api_url = "https://u:S3CRET@public.kiotapi.com",
                        .token_url = "https://id.kiotviet.vn/connect/token", .client_id = "c",
                        .client_secret = "secret-1234", .retailer = "r"};
    kvs_err e;
    kvs_err_clear(&e);
    assert_null(kv_client_new(&o, &e));
    assert_non_null(strstr(e.msg, "must not contain a user name or password"));
    o.api_url = "https://public.kiotapi.com";
    o.token_url = "https://u:S3CRET@id.kiotviet.vn/connect/token";
    assert_null(kv_client_new(&o, &e));
    assert_non_null(strstr(e.msg, "token_url (https://id.kiotviet.vn) must not contain"));
}

int main(void)
{
    log_init();
    log_set_level(KVS_LOG_ERR); /* the refresh notices are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_check),
        cmocka_unit_test(test_page_record_cap),
        cmocka_unit_test(test_raw_get),
        cmocka_unit_test(test_registry_holds_only_live_token),
        cmocka_unit_test(test_token_answers_refused_or_bounded),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    log_deinit();
    return rc;
}
