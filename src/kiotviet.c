/* KiotViet client (see kiotviet.h). Two layers: the transport (URL policy, tokens, headers,
 * the budget, retries, the 401 refresh) takes a GET to its final answer; what a 200 answer
 * means is the request's own: a page (page_accept: parsed into a kv_page, a garbled one retried
 * as a transient failure) or, for kv_get_raw, the body as it came. */
#include "kiotviet.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtime.h"

/* What a request does with a 200 answer: 0 when it called back (the request is finished),
 * -EAGAIN when the body is not what it expects (msg says why): retried like a transient
 * failure. */
typedef int (*req_accept_fn)(kv_req *r, http_response *resp, char *msg, size_t cap);

/* One pending GET. Owned by the client's list until it completes or is cancelled; its timer
 * (backoff and budget waits) is closed with uv_close, and the struct is freed in close_cb. */
struct kv_req {
    kv_client *c;               /* NULL once detached (cancelled or client freed) */
    kv_req *next, *prev;
    char *url;                  /* owned */
    req_accept_fn accept;       /* page_accept or raw_accept */
    kv_get_cb cb;               /* a page request's callback */
    kv_raw_cb raw_cb;           /* a raw request's callback */
    void *arg;
    long status;                /* HTTP status of the last answer (0 = none) */
    http_req *http;             /* in flight, or NULL */
    uv_timer_t timer;           /* backoff / budget wait */
    bool waiting_token;
    bool auth_retried;
    unsigned attempt;
    char *token_used;           /* owned copy of the token this attempt sent */
    char *method, *body;        /* owned: kv_send_raw's; NULL for a GET */
};

struct kv_client {
    uv_loop_t *loop;
    http_client *http;
    kv_budget *budget;
    kvs_metrics *metrics;       /* borrowed; may be NULL */
    const log_ctx *lctx;
    char *api_url, *token_url, *client_id, *client_secret, *retailer; /* owned */
    char *token;                /* owned; NULL = none */
    uint64_t token_deadline_ms; /* monotonic: when to stop using the token */
    http_req *token_http;       /* the token request in flight */
    uv_timer_t *token_timer;    /* retry timer of the token request, or NULL */
    unsigned token_attempt;
    int token_margin_s, max_retries;
    uint64_t base_ms, cap_ms;
    void (*on_token)(const char *, int64_t, void *);
    void *arg;
    kv_req *reqs;               /* pending requests */
    int gets, token_reqs;
};

static void req_send(kv_req *r);
static void token_request(kv_client *c);

/* Counts one answered (or failed: code 0) request in the metrics. */
static void api_counted(const kv_client *c, const http_response *resp)
{
    metrics_api_request(c->metrics, c->lctx ? c->lctx->integration : NULL,
                        resp->result == HTTP_OK ? (int)resp->status : 0);
}

/* ---- helpers ----------------------------------------------------------------------------- */

static uint32_t rnd32(void)
{
    static uint32_t x;
    if (!x) x = (uint32_t)kvs_now_mono_ms() * 2654435761u | 1u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

/* The human message of a KiotViet error body: responseStatus.message, error_description or
 * error; the first 200 bytes of the body otherwise. */
static void error_text(const http_response *resp, char *out, size_t cap, char *code, size_t ccap)
{
    out[0] = '\0';
    if (code && ccap) code[0] = '\0';
    if (!resp->body || !resp->body_len) return;
    cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (j) {
        const cJSON *rs = cJSON_GetObjectItem(j, "responseStatus");
        const cJSON *m = rs ? cJSON_GetObjectItem(rs, "message") : NULL;
        const cJSON *ec = rs ? cJSON_GetObjectItem(rs, "errorCode") : NULL;
        if (!cJSON_IsString(m)) m = cJSON_GetObjectItem(j, "error_description");
        if (!cJSON_IsString(m)) m = cJSON_GetObjectItem(j, "error");
        if (!cJSON_IsString(ec)) ec = cJSON_GetObjectItem(j, "error");
        if (cJSON_IsString(m)) snprintf(out, cap, "%s", m->valuestring);
        if (cJSON_IsString(ec) && code) snprintf(code, ccap, "%s", ec->valuestring);
        cJSON_Delete(j);
        if (out[0]) goto clean;
    }
    snprintf(out, cap, "%.*s", (int)(resp->body_len < 200 ? resp->body_len : 200), resp->body);
clean:
    log_redact(out, cap); /* first: a secret holding a tab would not match once it is a space */
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    kvs_utf8_clean(out); /* the body may be any bytes; this text reaches the log and sync_logs */
}

/* Whether s can be sent as "Authorization: Bearer s" whole: visible ASCII (what OAuth bearer
 * tokens are made of) and short enough for the header buffer of req_send. A longer one was cut
 * there, and every GET then came back 401, refreshed, and was cut again. */
static bool token_usable(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f) return false;
    return n > 0 && n <= KV_TOKEN_MAX;
}

/* expires_in as seconds we can compute with: a missing, negative or non-finite value (1e999
 * parses as inf) means the usual hour; more than a year is taken as a year (1e308 overflowed
 * the conversions to integer milliseconds). */
static double token_ttl_s(const cJSON *exp)
{
    if (!cJSON_IsNumber(exp) || !isfinite(exp->valuedouble) || exp->valuedouble <= 0) return 3600;
    return exp->valuedouble < KV_TOKEN_TTL_MAX_S ? exp->valuedouble : KV_TOKEN_TTL_MAX_S;
}

static bool token_valid(const kv_client *c)
{
    return c->token && kvs_now_mono_ms() < c->token_deadline_ms;
}


/* Frees an unregistered copy of a secret, wiping it first. */
static void secret_free(char *s)
{
    if (s) explicit_bzero(s, strlen(s));
    free(s);
}

/* ---- requests -------------------------------------------------------------------------- */

static void req_close_cb(uv_handle_t *h)
{
    kv_req *r = h->data;
    free(r->url);
    free(r->method);
    free(r->body);
    secret_free(r->token_used);
    free(r);
}

static void req_unlink(kv_req *r)
{
    kv_client *c = r->c;
    if (!c) return;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    r->next = r->prev = NULL;
    r->c = NULL;
}

/* Detaches and frees (asynchronously) a request without calling back. */
static void req_dispose(kv_req *r)
{
    req_unlink(r);
    if (r->http) {
        http_req_cancel(r->http);
        r->http = NULL;
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, req_close_cb);
}

/* Calls back once and disposes: a page request with page (or NULL), a raw one with body (or
 * NULL; ownership passes) and the last answer's status. */
static void req_finish_with(kv_req *r, int rc, kv_page *page, char *body, size_t len,
                            const char *msg)
{
    kv_get_cb cb = r->cb;
    kv_raw_cb raw_cb = r->raw_cb;
    long status = r->status;
    void *arg = r->arg;
    req_dispose(r);
    if (raw_cb)
        raw_cb(rc, status, body, len, msg, arg);
    else
        cb(rc, page, msg, arg);
}

static void req_finish(kv_req *r, int rc, kv_page *page, const char *msg)
{
    req_finish_with(r, rc, page, NULL, 0, msg);
}

static void req_timer_cb(uv_timer_t *t)
{
    kv_req *r = t->data;
    req_send(r);
}

static void req_retry_later(kv_req *r, uint64_t ms)
{
    uv_timer_start(&r->timer, req_timer_cb, ms, 0);
}

void kv_page_free(kv_page *p)
{
    if (!p) return;
    kvjson_doc_free(&p->doc);
    free(p);
}

static const char *const removed_keys[] = {"removedIds", "removeIds", "removedId", "removeId",
                                           NULL};

/* Records in a "data" array, nested "children" (hierarchical categories) included; counting
 * stops once past limit. Depth is bounded by kvjson's nesting limit. */
static long page_records(const cJSON *arr, long limit)
{
    long n = 0;
    for (const cJSON *it = arr->child; it && n <= limit; it = it->next) {
        n++;
        const cJSON *ch = cJSON_IsObject(it) ? kvjson_get(it, "children") : NULL;
        if (cJSON_IsArray(ch)) n += page_records(ch, limit - n);
    }
    return n;
}

/* 0 with *out; -EINVAL for an answer that is not a page (worth retrying: usually a cut
 * transfer), -E2BIG for a page over KV_PAGE_MAX_RECORDS (the same next time). */
static int page_parse(http_response *resp, kv_page **out, char *msg, size_t cap)
{
    int rc = -EINVAL;
    kv_page *p = kvs_xcalloc(1, sizeof *p);
    kvs_err e;
    kvs_err_clear(&e);
    if (!resp->body || kvjson_parse(resp->body, resp->body_len, &p->doc, &e)) {
        snprintf(msg, cap, "invalid JSON from KiotViet: %s", resp->body ? e.msg : "empty body");
        goto fail;
    }
    const cJSON *root = p->doc.root;
    if (!cJSON_IsObject(root)) {
        snprintf(msg, cap, "invalid answer from KiotViet: not a JSON object");
        goto fail;
    }
    p->data = kvjson_get(root, "data");
    if (!p->data || cJSON_IsNull(p->data)) {
        p->data = NULL;
    } else if (!cJSON_IsArray(p->data)) {
        snprintf(msg, cap, "invalid answer from KiotViet: \"data\" is not an array");
        goto fail;
    }
    if (p->data && page_records(p->data, KV_PAGE_MAX_RECORDS) > KV_PAGE_MAX_RECORDS) {
        snprintf(msg, cap,
                 "KiotViet page refused: more than %d records (a page holds at most 100)",
                 KV_PAGE_MAX_RECORDS);
        rc = -E2BIG;
        goto fail;
    }
    p->removed = kvjson_get_any(root, removed_keys);
    if (p->removed && !cJSON_IsArray(p->removed)) p->removed = NULL;
    if (kvjson_get_int64(root, "total", &p->total)) p->total = -1;
    int64_t ps = 0;
    if (kvjson_get_int64(root, "pageSize", &ps) == 0 && ps > 0 && ps <= 100000)
        p->effective_page_size = (int)ps;
    const char *ts;
    if (kvjson_get_str(root, "timestamp", &ts) == 0 && kvtime_parse(ts, &p->timestamp_us))
        p->timestamp_us = 0;
    *out = p;
    return 0;
fail:
    kv_page_free(p);
    return rc;
}

/* ---- what a 200 answer means ------------------------------------------------------------ */

/* A page: parsed; garbled (usually a cut transfer) is retried, too many records is final. */
static int page_accept(kv_req *r, http_response *resp, char *msg, size_t cap)
{
    kv_page *page = NULL;
    int prc = page_parse(resp, &page, msg, cap);
    if (prc == -E2BIG) {
        req_finish(r, KV_E_PARSE, NULL, msg);
        return 0;
    }
    if (prc) return -EAGAIN;
    req_finish(r, KV_OK, page, NULL);
    return 0;
}

/* A raw answer: the body as it came (taken from resp, which would free it). */
static int raw_accept(kv_req *r, http_response *resp, char *msg, size_t cap)
{
    (void)msg;
    (void)cap;
    char *body = resp->body;
    size_t len = resp->body ? resp->body_len : 0;
    resp->body = NULL;
    req_finish_with(r, KV_OK, NULL, body, len, NULL);
    return 0;
}

/* ---- the transport ------------------------------------------------------------------------ */

static void req_http_cb(http_response *resp, void *arg)
{
    kv_req *r = arg;
    kv_client *c = r->c;
    char msg[512], code[64];
    r->http = NULL;
    if (!c) return; /* detached meanwhile; cannot happen as dispose cancels, kept defensive */

    if (resp->result == HTTP_E_CANCELLED) return;
    api_counted(c, resp);
    r->status = resp->result == HTTP_OK ? resp->status : 0;
    bool transient = false, parse_failed = false;
    uint64_t wait_ms = 0;
    char text[400] = "";
    if (resp->result == HTTP_OK && resp->status != 200)
        error_text(resp, text, sizeof text, code, sizeof code);
    else
        code[0] = '\0';
    if (resp->result == HTTP_E_TOO_BIG) {
        /* The same page will be as big next time: retrying cannot help. */
        snprintf(msg, sizeof msg, "%s (raise [kiotviet] max_page_bytes)",
                 resp->error ? resp->error : "response too big");
        req_finish(r, KV_E_HTTP, NULL, msg);
        return;
    } else if (resp->result != HTTP_OK) {
        snprintf(msg, sizeof msg, "%s", resp->error ? resp->error : "transport error");
        transient = true;
    } else if (resp->status == 200) {
        if (r->accept(r, resp, msg, sizeof msg) == 0) return;
        /* A truncated or garbled body is usually a transport hiccup: retry it. */
        transient = true;
        parse_failed = true;
    } else if (resp->status == 401 || !strcmp(code, "TokenException")) {
        if (r->auth_retried) {
            snprintf(msg, sizeof msg, "KiotViet refused a fresh token (HTTP %ld): %s",
                     resp->status, text);
            req_finish(r, KV_E_HTTP, NULL, msg);
            return;
        }
        r->auth_retried = true;
        /* Only the first 401 for a given token triggers a refresh; others wait for it. */
        if (c->token && r->token_used && !strcmp(c->token, r->token_used))
            log_secret_hold(&c->token, NULL);
        rlog_info(c->lctx, "token refused (HTTP %ld), getting a new one", resp->status);
        req_send(r);
        return;
    } else if (resp->status == 429 || resp->status >= 500) {
        snprintf(msg, sizeof msg, "HTTP %ld%s%s", resp->status, text[0] ? ": " : "", text);
        transient = true;
        if (resp->retry_after_s >= 0) wait_ms = backoff_retry_after_ms(resp->retry_after_s, 300000);
    } else {
        snprintf(msg, sizeof msg, "KiotViet answered HTTP %ld: %s", resp->status,
                 text[0] ? text : "(no message)");
        req_finish(r, KV_E_HTTP, NULL, msg);
        return;
    }
    if (transient) {
        if (r->attempt >= (unsigned)c->max_retries) {
            char m2[700];
            snprintf(m2, sizeof m2, "giving up after %u attempts: %s", r->attempt + 1, msg);
            req_finish(r, parse_failed ? KV_E_PARSE : KV_E_RETRIES, NULL, m2);
            return;
        }
        if (!wait_ms) wait_ms = backoff_delay_ms(r->attempt, c->base_ms, c->cap_ms, rnd32());
        r->attempt++;
        rlog_info(c->lctx, "request failed (%s); retry %u in %llu ms", msg, r->attempt,
                  (unsigned long long)wait_ms);
        req_retry_later(r, wait_ms);
    }
}

static void req_send(kv_req *r)
{
    kv_client *c = r->c;
    if (!c) return;
    if (!token_valid(c)) {
        r->waiting_token = true;
        token_request(c);
        return;
    }
    r->waiting_token = false;
    if (c->budget) {
        uint64_t wait = kv_budget_take(c->budget, kvs_now_mono_ms());
        if (wait) {
            rlog_notice(c->lctx, "hourly GET budget used up; waiting %llu s",
                        (unsigned long long)(wait + 999) / 1000);
            req_retry_later(r, wait);
            return;
        }
        metrics_budget_left(c->metrics, c->lctx ? c->lctx->integration : NULL,
                            c->budget->limit - kv_budget_used(c->budget, kvs_now_mono_ms()));
    }
    char auth[sizeof "Authorization: Bearer " + KV_TOKEN_MAX], retailer[512];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
    snprintf(retailer, sizeof retailer, "Retailer: %s", c->retailer);
    const char *headers[] = {auth, retailer, "Accept: application/json", NULL};
    secret_free(r->token_used);
    r->token_used = kvs_strdup(c->token);
    kvs_err e;
    kvs_err_clear(&e);
    if (r->method) {
        const char *jh[] = {auth, retailer, "Accept: application/json",
                            "Content-Type: application/json", NULL};
        r->http = http_send(c->http, r->method, r->url, r->body, jh, req_http_cb, r, &e);
    } else {
        c->gets++;
        r->http = http_get(c->http, r->url, headers, req_http_cb, r, &e);
    }
    memset(auth, 0, sizeof auth);
    if (!r->http) req_finish(r, KV_E_HTTP, NULL, e.msg);
}

static kv_req *req_start_deferred(kv_client *c, const char *path_query, req_accept_fn accept,
                                  kv_get_cb cb, kv_raw_cb raw_cb, void *arg)
{
    kv_req *r = kvs_xcalloc(1, sizeof *r);
    size_t n = strlen(c->api_url) + strlen(path_query) + 2;
    r->url = kvs_xmalloc(n);
    const char *base = c->api_url;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') bl--;
    snprintf(r->url, n, "%.*s%s%s", (int)bl, base, path_query[0] == '/' ? "" : "/", path_query);
    r->c = c;
    r->accept = accept;
    r->cb = cb;
    r->raw_cb = raw_cb;
    r->arg = arg;
    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    r->next = c->reqs;
    if (c->reqs) c->reqs->prev = r;
    c->reqs = r;
    return r;
}

static kv_req *req_start(kv_client *c, const char *path_query, req_accept_fn accept,
                         kv_get_cb cb, kv_raw_cb raw_cb, void *arg)
{
    kv_req *r = req_start_deferred(c, path_query, accept, cb, raw_cb, arg);
    req_send(r);
    return r;
}

kv_req *kv_get(kv_client *c, const char *path_query, kv_get_cb cb, void *arg)
{
    return req_start(c, path_query, page_accept, cb, NULL, arg);
}

kv_req *kv_get_raw(kv_client *c, const char *path_query, kv_raw_cb cb, void *arg)
{
    return req_start(c, path_query, raw_accept, NULL, cb, arg);
}

kv_req *kv_send_raw(kv_client *c, const char *method, const char *path, const char *json,
                    kv_raw_cb cb, void *arg)
{
    /* Set before the first send: req_start sends at once (or waits for a token). */
    kv_req *r = req_start_deferred(c, path, raw_accept, NULL, cb, arg);
    r->method = kvs_strdup(method);
    r->body = json ? kvs_strdup(json) : NULL;
    req_send(r);
    return r;
}

void kv_req_cancel(kv_req *r)
{
    if (r && r->c) req_dispose(r);
}

/* ---- tokens ----------------------------------------------------------------------------- */

static void token_waiters_resume(kv_client *c)
{
    /* Requests may complete (and unlink) synchronously while we walk: restart after each. */
    bool again = true;
    while (again) {
        again = false;
        for (kv_req *r = c->reqs; r; r = r->next) {
            if (r->waiting_token) {
                r->waiting_token = false;
                req_send(r);
                again = true;
                break;
            }
        }
    }
}

static void token_waiters_fail(kv_client *c, int rc, const char *msg)
{
    bool again = true;
    while (again) {
        again = false;
        for (kv_req *r = c->reqs; r; r = r->next) {
            if (r->waiting_token) {
                req_finish(r, rc, NULL, msg);
                again = true;
                break;
            }
        }
    }
}

static void token_timer_close_cb(uv_handle_t *h) { free(h); }

static void token_timer_cb(uv_timer_t *t)
{
    kv_client *c = t->data;
    uv_close((uv_handle_t *)t, token_timer_close_cb);
    c->token_timer = NULL;
    token_request(c);
}

static void token_http_cb(http_response *resp, void *arg)
{
    kv_client *c = arg;
    char msg[512], code[64];
    c->token_http = NULL;
    if (resp->result == HTTP_E_CANCELLED) return;
    api_counted(c, resp);
    if (resp->result == HTTP_OK && resp->status == 200) {
        cJSON *j = resp->body ? cJSON_ParseWithLength(resp->body, resp->body_len) : NULL;
        const cJSON *tok = j ? cJSON_GetObjectItem(j, "access_token") : NULL;
        const cJSON *exp = j ? cJSON_GetObjectItem(j, "expires_in") : NULL;
        if (cJSON_IsString(tok) && tok->valuestring[0] && !token_usable(tok->valuestring)) {
            /* Not the credentials' fault, and the same answer would come again: no retry. */
            snprintf(msg, sizeof msg,
                     "token endpoint answered an access_token of %zu bytes that cannot be sent "
                     "(at most %d visible ASCII characters are accepted)",
                     strlen(tok->valuestring), KV_TOKEN_MAX);
            cJSON_Delete(j);
            token_waiters_fail(c, KV_E_PARSE, msg);
            return;
        }
        if (cJSON_IsString(tok) && tok->valuestring[0]) {
            double ttl = token_ttl_s(exp);
            log_secret_hold(&c->token, tok->valuestring);
            double use_s = ttl - c->token_margin_s;
            if (use_s < ttl / 2) use_s = ttl / 2; /* a margin longer than the token: use half */
            c->token_deadline_ms = kvs_now_mono_ms() + (uint64_t)(use_s * 1000);
            c->token_attempt = 0;
            int64_t expires_wall = kvs_now_wall_ms() / 1000 + (int64_t)ttl;
            cJSON_Delete(j);
            rlog_info(c->lctx, "got a new access token (valid %.0f s)", ttl);
            if (c->on_token) c->on_token(c->token, expires_wall, c->arg);
            token_waiters_resume(c);
            return;
        }
        bool garbled = j == NULL; /* truncated or not JSON: a hiccup, retried below */
        cJSON_Delete(j);
        if (!garbled) {
            snprintf(msg, sizeof msg, "token endpoint answered 200 without access_token");
            token_waiters_fail(c, KV_E_AUTH, msg);
            return;
        }
    }
    bool ok200 = resp->result == HTTP_OK && resp->status == 200;
    bool transient = resp->result != HTTP_OK || resp->status >= 500 || resp->status == 429 ||
                     ok200;
    if (resp->result != HTTP_OK)
        snprintf(msg, sizeof msg, "%s", resp->error ? resp->error : "transport error");
    else if (ok200)
        snprintf(msg, sizeof msg, "token endpoint answered 200 with a body that is not JSON");
    else {
        char t[400];
        error_text(resp, t, sizeof t, code, sizeof code);
        snprintf(msg, sizeof msg, "HTTP %ld%s%s", resp->status, t[0] ? ": " : "", t);
    }
    if (!transient) {
        char m2[640];
        snprintf(m2, sizeof m2,
                 "KiotViet token endpoint refused the credentials (%s): check client_id and "
                 "client_secret",
                 msg);
        token_waiters_fail(c, KV_E_AUTH, m2);
        return;
    }
    if (c->token_attempt >= (unsigned)c->max_retries) {
        char m2[640];
        snprintf(m2, sizeof m2, "token request failed after %u attempts: %s", c->token_attempt + 1,
                 msg);
        c->token_attempt = 0;
        token_waiters_fail(c, KV_E_RETRIES, m2);
        return;
    }
    uint64_t wait = resp->retry_after_s >= 0 ? backoff_retry_after_ms(resp->retry_after_s, 300000)
                                             : backoff_delay_ms(c->token_attempt, c->base_ms,
                                                                c->cap_ms, rnd32());
    c->token_attempt++;
    rlog_info(c->lctx, "token request failed (%s); retry %u in %llu ms", msg, c->token_attempt,
              (unsigned long long)wait);
    c->token_timer = kvs_xmalloc(sizeof *c->token_timer);
    uv_timer_init(c->loop, c->token_timer);
    c->token_timer->data = c;
    uv_timer_start(c->token_timer, token_timer_cb, wait, 0);
}

/* Starts a token request unless one is in flight or scheduled (single flight). */
static void token_request(kv_client *c)
{
    if (c->token_http || c->token_timer) return;
    char *id = http_urlencode(c->client_id), *secret = http_urlencode(c->client_secret);
    kvs_buf body;
    kvs_buf_init(&body);
    REQUIRE(kvs_buf_printf(&body,
                           "scopes=PublicApi.Access&grant_type=client_credentials&client_id=%s"
                           "&client_secret=%s",
                           id, secret) == 0);
    free(id);
    free(secret);
    kvs_err e;
    kvs_err_clear(&e);
    c->token_reqs++;
    c->token_http = http_post_form(c->http, c->token_url, body.data, NULL, token_http_cb, c, &e);
    memset(body.data, 0, body.len);
    kvs_buf_free(&body);
    if (!c->token_http) token_waiters_fail(c, KV_E_HTTP, e.msg);
}

/* ---- client -------------------------------------------------------------------------------- */

kv_client *kv_client_new(const kv_client_opts *o, kvs_err *err)
{
    if (kv_url_check(o->api_url, "api_url", o->allowed_hosts, err) ||
        kv_url_check(o->token_url, "token_url", o->allowed_hosts, err))
        return NULL;
    if (!o->client_id || !*o->client_id || !o->client_secret || !*o->client_secret) {
        kvs_err_set(err, -EINVAL, "client_id and client_secret must be filled in");
        return NULL;
    }
    if (!o->retailer || !*o->retailer) {
        kvs_err_set(err, -EINVAL, "retailer (the shop name used in the Retailer header) is empty");
        return NULL;
    }
    kv_client *c = kvs_xcalloc(1, sizeof *c);
    c->loop = o->loop;
    c->http = o->http;
    c->budget = o->budget;
    c->lctx = o->lctx;
    c->metrics = o->metrics;
    c->api_url = kvs_strdup(o->api_url);
    c->token_url = kvs_strdup(o->token_url);
    c->client_id = kvs_strdup(o->client_id);
    log_secret_hold(&c->client_secret, o->client_secret);
    c->retailer = kvs_strdup(o->retailer);
    c->token_margin_s = o->token_margin_s;
    c->max_retries = o->max_retries;
    c->base_ms = o->retry_base_ms ? o->retry_base_ms : 1000;
    c->cap_ms = o->retry_cap_ms ? o->retry_cap_ms : 60000;
    c->on_token = o->on_token;
    c->arg = o->arg;
    if (o->access_token && token_usable(o->access_token) && o->token_expires_wall_s) {
        int64_t left_s = o->token_expires_wall_s - kvs_now_wall_ms() / 1000 - o->token_margin_s;
        if (left_s > 0) {
            log_secret_hold(&c->token, o->access_token);
            c->token_deadline_ms = kvs_now_mono_ms() + (uint64_t)left_s * 1000;
        }
    }
    return c;
}

void kv_client_free(kv_client *c)
{
    if (!c) return;
    while (c->reqs) req_dispose(c->reqs);
    if (c->token_http) http_req_cancel(c->token_http);
    if (c->token_timer) {
        uv_timer_stop(c->token_timer);
        uv_close((uv_handle_t *)c->token_timer, token_timer_close_cb);
    }
    free(c->api_url);
    free(c->token_url);
    free(c->client_id);
    log_secret_hold(&c->client_secret, NULL);
    free(c->retailer);
    log_secret_hold(&c->token, NULL);
    free(c);
}

int kv_client_gets(const kv_client *c) { return c->gets; }
int kv_client_token_requests(const kv_client *c) { return c->token_reqs; }

void kv_http_opts_from_config(const kvs_config *cfg, http_opts *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = (long)cfg->http_connect_timeout_s * 1000;
    o->total_timeout_ms = (long)cfg->http_timeout_s * 1000;
    o->max_body = (size_t)cfg->max_page_bytes;
    o->ca_file = cfg->ca_file;
    http_opts_defaults(o);
}
