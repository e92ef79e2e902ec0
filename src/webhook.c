/* webhook: routing, verification and the inbox insert of the HTTP side (see webhook.h).
 *
 * One POST /webhooks/<name>, as a chain of callbacks on the listener's own connection:
 *   find (ST_WEBHOOK_FIND: id and secret) -> verify (HMAC, constant time) -> parse the envelope
 *   -> store (ST_WEBHOOK_STORE, its own implicit transaction) -> answer -> on_event
 * The httpd request stays suspended meanwhile; every path answers it exactly once. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

#include "db.h"
#include "httpd.h"
#include "log.h"
#include "store.h"
#include "webhook.h"

#define WH_MAX_BODY (1024 * 1024)
#define WH_MAX_CONNECTIONS 64
#define WH_TIMEOUT_S 10          /* idle, header and body time per connection */
#define WH_DB_TIMEOUT_MS 3000    /* connect and statement: an answer well within KiotViet's 5 s */
#define WH_CHECK_RETRY_MS 5000   /* the start-up check, while the database is unreachable */
#define WH_LOG_EVERY_MS 10000    /* at most one line about rejected requests this often */
#define WH_NAME_MAX 100

/* One listener and what it serves. */
typedef struct wh_listener {
    struct webhook *w;
    httpd *srv;   /* owned; NULL when not configured */
    char *addr;   /* owned: the configured text it was bound with */
    bool hooks;   /* serves /webhooks/ */
    bool metrics; /* serves /metrics and /healthz */
} wh_listener;

enum { L_HOOK, L_METRICS };

struct webhook {
    uv_loop_t *loop;
    kvs_metrics *metrics;     /* borrowed */
    webhook_event_cb on_event;
    void *on_event_arg;
    webhook_fatal_cb fatal;
    void *fatal_arg;
    db_conn *db;              /* owned; closed in webhook_stop */
    char *sql[4];             /* owned, schema-qualified: find, store, check, health */
    char *schema;             /* owned, unquoted (the check's parameter) */
    wh_listener l[2];
    uv_timer_t check_timer;   /* retries the start-up check; w is freed in its close callback */
    bool stopping;
    uint64_t log_at_ms;       /* rate limit of lines about rejected requests */
    unsigned log_skipped;
};

enum { SQL_FIND, SQL_STORE, SQL_CHECK, SQL_HEALTH };

/* One request waiting for the database. */
typedef struct wh_req {
    webhook *w;
    httpd_req *rq;            /* answered exactly once, then forgotten */
    char name[WH_NAME_MAX + 1];
    char id[64];              /* the integration's id, once found */
    webhook_envelope env;
} wh_req;

/* ---- helpers ------------------------------------------------------------------------------- */

static void answer_text(httpd_req *rq, unsigned status, const char *text)
{
    httpd_req_answer(rq, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

/* Lines about requests anyone can send are rate-limited: a flood of forgeries must not flood
 * the journal. */
static void KVS_PRINTF(2, 3) warn_limited(webhook *w, const char *fmt, ...)
{
    uint64_t now = kvs_now_mono_ms();
    if (w->log_at_ms && now - w->log_at_ms < WH_LOG_EVERY_MS) {
        w->log_skipped++;
        return;
    }
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (w->log_skipped)
        log_warn("%s (and %u similar lines not logged)", msg, w->log_skipped);
    else
        log_warn("%s", msg);
    w->log_at_ms = now;
    w->log_skipped = 0;
}

/* A name safe to put in a log line: the URL's, shown only when it looks like one. */
static const char *name_shown(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_.-") != n)
        return "(not shown)";
    return name;
}

/* One count per type of a stored (or refused) verified envelope. */
static void count_types(const wh_req *r, const char *result)
{
    if (!r->env.ntypes) {
        metrics_webhook(r->w->metrics, r->name, "", result);
        return;
    }
    char types[WEBHOOK_TYPES_MAX];
    snprintf(types, sizeof types, "%s", r->env.types);
    for (char *save = NULL, *t = strtok_r(types, ",", &save); t; t = strtok_r(NULL, ",", &save))
        metrics_webhook(r->w->metrics, r->name, t, result);
}

/* Answers r and forgets it. */
static void req_end(wh_req *r, unsigned status, const char *text)
{
    answer_text(r->rq, status, text);
    free(r);
}

/* The database could not look the integration up or store the notification: 503, so that
 * KiotViet sends it again. A missing migration is named (at error level, every time). */
static void req_db_failed(wh_req *r, const db_result *res)
{
    if (!strcmp(res->sqlstate, "42P01") || !strcmp(res->sqlstate, "42703"))
        log_err("webhook: %s: apply db/migrations/004_webhooks.sql", res->message);
    warn_limited(r->w, "webhook for %s not stored, answered 503 so that KiotViet retries: %s",
                 r->id[0] ? r->name : name_shown(r->name),
                 res->message ? res->message : "database error");
    if (r->id[0])
        count_types(r, "error");
    else /* not looked up: the name is unverified */
        metrics_webhook(r->w->metrics, "", "", "error");
    req_end(r, 503, "not stored: database unavailable, retry later\n");
}

/* ---- POST /webhooks/<name> ------------------------------------------------------------------ */

static void store_cb(db_result *res, void *arg)
{
    wh_req *r = arg;
    webhook *w = r->w;
    if (res->status != DB_OK) {
        req_db_failed(r, res);
        return;
    }
    bool stored = PQntuples(res->results[0]) == 1;
    answer_text(r->rq, 200, stored ? "stored\n" : "stored already\n");
    count_types(r, stored ? "stored" : "duplicate");
    log_debug("webhook for %s: event %s attempt %d (%s) %s", r->name, r->env.event_id,
              r->env.attempt, r->env.types, stored ? "stored" : "already stored");
    if (stored && w->on_event && !w->stopping) w->on_event(w->on_event_arg, r->id);
    free(r);
}

static void find_cb(db_result *res, void *arg)
{
    wh_req *r = arg;
    webhook *w = r->w;
    if (res->status != DB_OK) {
        req_db_failed(r, res);
        return;
    }
    PGresult *pr = res->results[0];
    const char *secret = PQntuples(pr) == 1 ? PQgetvalue(pr, 0, 1) : "";
    if (!*secret) {
        warn_limited(w, "webhook for %s not stored: no active, sync-enabled kiotviet* integration "
                        "of that name has a webhook_secret (answered 202)",
                     name_shown(r->name));
        metrics_webhook(w->metrics, "", "", "unknown_integration");
        req_end(r, 202, "not stored: unknown integration\n");
        return;
    }
    snprintf(r->id, sizeof r->id, "%s", PQgetvalue(pr, 0, 0));
    size_t len;
    const char *body = httpd_req_body(r->rq, &len);
    log_secret_add(secret);
    bool ok = webhook_signature_ok(httpd_req_header(r->rq, "X-Hub-Signature"), secret, body, len);
    log_secret_remove(secret);
    if (!ok) {
        warn_limited(w, "webhook for %s not stored: X-Hub-Signature %s (answered 202)", r->name,
                     httpd_req_header(r->rq, "X-Hub-Signature") ? "does not match" : "missing");
        metrics_webhook(w->metrics, r->name, "", "bad_signature");
        req_end(r, 202, "not stored: signature does not match\n");
        return;
    }
    if (webhook_envelope_parse(body, len, &r->env))
        warn_limited(w, "webhook for %s: signed body is not a KiotViet envelope; stored as it is",
                     r->name);
    if (memchr(body, '\0', len) || u8_check((const uint8_t *)body, len)) {
        /* PostgreSQL text cannot hold it; KiotViet sends JSON, so a retry would not help. */
        warn_limited(w, "webhook for %s not stored: the signed body is not UTF-8 text", r->name);
        count_types(r, "error");
        req_end(r, 202, "not stored: body is not UTF-8 text\n");
        return;
    }
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", r->env.attempt);
    const char *p[5] = {r->id, r->env.event_id, attempt, r->env.types, body};
    db_exec(w->db, w->sql[SQL_STORE], 5, p, store_cb, r);
}

static void webhook_post(webhook *w, httpd_req *rq, const char *name)
{
    wh_req *r = kvs_xcalloc(1, sizeof *r);
    r->w = w;
    r->rq = rq;
    if (!*name || strlen(name) > WH_NAME_MAX || strchr(name, '/')) {
        warn_limited(w, "webhook for a malformed integration name not stored (answered 202)");
        metrics_webhook(w->metrics, "", "", "unknown_integration");
        req_end(r, 202, "not stored: unknown integration\n");
        return;
    }
    snprintf(r->name, sizeof r->name, "%s", name);
    const char *p[1] = {r->name};
    db_exec(w->db, w->sql[SQL_FIND], 1, p, find_cb, r);
}

/* The ASP.NET WebHooks echo check (a GET without ?noecho): 200 with the echo value. */
static void webhook_get(httpd_req *rq)
{
    const char *echo = httpd_req_query(rq, "echo");
    if (echo && *echo && strlen(echo) <= 128 &&
        strspn(echo, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") ==
            strlen(echo))
        answer_text(rq, 200, echo);
    else
        answer_text(rq, 200, "ok\n");
}

/* ---- /metrics, /healthz --------------------------------------------------------------------- */

static void health_cb(db_result *res, void *arg)
{
    httpd_req *rq = arg;
    if (res->status == DB_OK)
        answer_text(rq, 200, "ok\n");
    else
        answer_text(rq, 503, "database unreachable\n");
}

static void metrics_get(webhook *w, httpd_req *rq)
{
    kvs_buf b;
    kvs_buf_init(&b);
    if (metrics_render(w->metrics, &b)) {
        answer_text(rq, 500, "out of memory\n");
    } else {
        (void)kvs_buf_cstr(&b);
        httpd_req_answer(rq, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "",
                         b.len, NULL);
    }
    kvs_buf_free(&b);
}

/* ---- routing -------------------------------------------------------------------------------- */

static void on_request(httpd_req *rq, void *arg)
{
    wh_listener *l = arg;
    webhook *w = l->w;
    const char *path = httpd_req_path(rq), *method = httpd_req_method(rq);
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (l->hooks && !strncmp(path, "/webhooks/", 10)) {
        /* Never 400/401/403/404/405 to KiotViet's methods (it would stop delivering). */
        if (w->stopping)
            answer_text(rq, 503, "stopping, retry later\n");
        else if (!strcmp(method, "POST"))
            webhook_post(w, rq, path + 10);
        else if (get)
            webhook_get(rq);
        else
            httpd_req_answer(rq, 405, "text/plain; charset=utf-8", "POST only\n", 10,
                             "Allow: POST, GET");
    } else if (l->metrics && (!strcmp(path, "/metrics") || !strcmp(path, "/healthz"))) {
        if (!get)
            httpd_req_answer(rq, 405, "text/plain; charset=utf-8", "GET only\n", 9, "Allow: GET");
        else if (path[1] == 'm')
            metrics_get(w, rq);
        else if (w->stopping)
            answer_text(rq, 503, "stopping\n");
        else
            db_exec(w->db, w->sql[SQL_HEALTH], 0, NULL, health_cb, rq);
    } else {
        answer_text(rq, 404, "not found\n");
    }
}

/* ---- the start-up check ----------------------------------------------------------------------- */

static void check_timer_cb(uv_timer_t *t);

static void check_cb(db_result *res, void *arg)
{
    webhook *w = arg;
    if (w->stopping) return;
    if (res->status != DB_OK) {
        log_info("webhook: cannot check for migration 004 yet (%s); trying again in %d s",
                 res->message ? res->message : "database error", WH_CHECK_RETRY_MS / 1000);
        uv_timer_start(&w->check_timer, check_timer_cb, WH_CHECK_RETRY_MS, 0);
        return;
    }
    PGresult *pr = res->results[0];
    bool table = PQgetvalue(pr, 0, 0)[0] == 't', column = PQgetvalue(pr, 0, 1)[0] == 't';
    if (table && column) return;
    char msg[300];
    snprintf(msg, sizeof msg,
             "[webhook] listen is set but %s is missing in schema %s: apply "
             "db/migrations/004_webhooks.sql",
             !table ? "the table kiotviet_webhook_events" : "third_party_integrations.webhook_secret",
             w->schema);
    if (w->fatal)
        w->fatal(msg, w->fatal_arg);
    else
        log_err("%s", msg);
}

static void check_submit(webhook *w)
{
    const char *p[1] = {w->schema};
    db_exec(w->db, w->sql[SQL_CHECK], 1, p, check_cb, w);
}

static void check_timer_cb(uv_timer_t *t) { check_submit(t->data); }

/* ---- listeners ------------------------------------------------------------------------------ */

/* Brings listener i to addr (NULL: none) with these roles; on a bind failure the old one keeps
 * running and err says why. */
static int listener_set(webhook *w, int i, const char *addr, bool hooks, bool metrics,
                        kvs_err *err)
{
    wh_listener *l = &w->l[i];
    l->hooks = hooks;
    l->metrics = metrics;
    if (kvs_streq(addr, l->addr)) return 0;
    httpd *srv = NULL;
    if (addr) {
        httpd_opts o = {.max_body = WH_MAX_BODY, .max_connections = WH_MAX_CONNECTIONS,
                        .timeout_s = WH_TIMEOUT_S,
                        .name = i == L_HOOK ? "webhook listener" : "metrics listener"};
        srv = httpd_start(w->loop, addr, &o, on_request, l, err);
        if (!srv) return err ? err->code : -EADDRNOTAVAIL;
        log_notice("%s listening on %s (port %u)", o.name, addr, httpd_port(srv));
    }
    httpd_stop(l->srv);
    l->srv = srv;
    free(l->addr);
    l->addr = kvs_strdup(addr);
    return 0;
}

static int listeners_apply(webhook *w, const kvs_config *cfg, kvs_err *err)
{
    const char *hook = cfg->webhook_listen, *met = cfg->metrics_listen;
    int rc = listener_set(w, L_HOOK, hook, true, !met, err);
    if (rc) return rc;
    return listener_set(w, L_METRICS, met, false, true, err);
}

int webhook_start(webhook **out, const webhook_opts *o, const kvs_config *cfg, kvs_err *err)
{
    webhook *w = kvs_xcalloc(1, sizeof *w);
    w->loop = o->loop;
    w->metrics = o->metrics;
    w->on_event = o->on_event;
    w->on_event_arg = o->on_event_arg;
    w->fatal = o->fatal;
    w->fatal_arg = o->fatal_arg;
    w->l[0].w = w->l[1].w = w;
    w->schema = kvs_strdup(cfg->db_schema ? cfg->db_schema : "public");
    char *schema_q = db_quote_ident(w->schema);
    const enum store_stmt st[4] = {ST_WEBHOOK_FIND, ST_WEBHOOK_STORE, ST_WEBHOOK_CHECK, ST_HEALTH};
    for (int i = 0; i < 4; i++) w->sql[i] = store_sql_build(schema_q, st[i]);
    free(schema_q);
    db_opts d = {
        .conninfo = cfg->db_url,
        .connect_timeout_ms = WH_DB_TIMEOUT_MS,
        .statement_timeout_ms = WH_DB_TIMEOUT_MS,
        .application_name = "kiotviet-syncd webhook",
        .schema = cfg->db_schema,
    };
    (void)db_pooler_parse(cfg->db_pooler, &d.pooler); /* validated by config_load */
    w->db = db_conn_new(w->loop, &d);
    uv_timer_init(w->loop, &w->check_timer);
    w->check_timer.data = w;
    int rc = listeners_apply(w, cfg, err);
    if (rc) {
        webhook_stop(w);
        return rc;
    }
    if (cfg->webhook_listen) check_submit(w);
    *out = w;
    return 0;
}

int webhook_reload(webhook *w, const kvs_config *cfg, kvs_err *err)
{
    bool had_hooks = w->l[L_HOOK].srv != NULL;
    int rc = listeners_apply(w, cfg, err);
    if (!had_hooks && w->l[L_HOOK].srv) {
        w->fatal = NULL; /* not at start: a missing migration is logged, the daemon goes on */
        check_submit(w);
    }
    return rc;
}

static void check_timer_closed(uv_handle_t *h)
{
    webhook *w = h->data;
    for (int i = 0; i < 4; i++) free(w->sql[i]);
    free(w->schema);
    free(w);
}

void webhook_stop(webhook *w)
{
    if (!w || w->stopping) return;
    w->stopping = true;
    /* Requests waiting for the database are answered 503 from their callbacks, now. */
    db_conn_close(w->db);
    w->db = NULL;
    for (int i = 0; i < 2; i++) {
        httpd_stop(w->l[i].srv);
        w->l[i].srv = NULL;
        free(w->l[i].addr);
        w->l[i].addr = NULL;
    }
    uv_timer_stop(&w->check_timer);
    uv_close((uv_handle_t *)&w->check_timer, check_timer_closed);
}
