/* Asynchronous PostgreSQL on the libuv loop: libpq non-blocking connect, pipeline mode, a FIFO
 * of batches in flight. See include/db.h for the contract.
 *
 * State machine of a db_conn (events in brackets):
 *
 *   IDLE --[kick timer, queued work or db_conn_connect]--> CONNECTING
 *   CONNECTING --[PQconnectPoll OK]--> SETUP        (session settings sent as the first batch)
 *   SETUP --[its Sync arrives, no error]--> READY   (queued batches are sent)
 *   CONNECTING/SETUP --[poll failure]--> IDLE       (all work fails with DB_E_CONN)
 *   CONNECTING/SETUP --[deadline timer]--> IDLE     (all work fails with DB_E_TIMEOUT)
 *   READY --[read/write/send failure, CONNECTION_BAD]--> IDLE (all work fails with DB_E_CONN)
 *   any --[db_conn_close]--> closed                 (all work fails with DB_E_CANCELLED)
 *
 * One uv_timer serves two purposes that never overlap: the connect deadline while CONNECTING or
 * SETUP, and a zero-delay "kick" in IDLE/READY that starts connecting or sends queued batches on
 * the next loop turn. The kick is why db_submit never calls a callback itself.
 *
 * Re-entrancy: user callbacks may submit (that only queues and kicks) or close the connection.
 * Every loop that calls a callback re-checks c->closing and c->gen (bumped whenever the server
 * connection is torn down) afterwards, and never touches a batch that a callback could have
 * freed: a batch is unlinked from every list before its callback runs and freed by the code that
 * called it. The db_conn itself is freed only when its last libuv handle has closed, which is
 * never inside one of our own callbacks. */
#include "db.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DB_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DB_DEFAULT_APP_NAME "kiotviet-syncd"
#define DB_MAX_PARAMS 65535 /* the protocol's limit (16-bit parameter count) */
#define DB_PREP_MAX 32      /* statements tracked for preparing, per connection */

/* Sent first on every new connection. It tells a direct connection from one through a pooler
 * (the backend pid libpq got at connect, $3, is the server's own only when nothing sits in
 * between: a pooler hands out its own cancel key) and sets the session settings only when they
 * stay ours: on a direct connection, or when [database] pooler = session ($4 is the configured
 * mode). Through a transaction pooler a session setting would stay on the server connection and
 * reach the pooler's next client, so there every batch sets them for its own transaction
 * instead (local_sql). $1 is the configured schema (NULL for public), put in front of the
 * role's own search_path: every statement of ours is schema-qualified, but a shop's trigger on
 * products may call its own functions unqualified (slugify(), unaccent() from extensions), and
 * those must resolve as they do for the shop. $2 NULL resets statement_timeout to the server's
 * (or role's) default. $5 is application_name: never a connection parameter, which pgbouncer
 * leaves on the server connection for a next client that sends none. plan_cache_mode stays automatic on purpose: after five custom plans PostgreSQL
 * switches a prepared page upsert to its generic plan (~30% less server CPU per page), by then
 * made while products already holds those pages; forcing generic plans from the first
 * execution cached a plan made on a near-empty table that seq-scanned it for every page row (a
 * first sync of 100,000 rows: 24 s of server CPU instead of 3.5). jit is off (where the server
 * has it): a page statement runs in milliseconds, and when its estimate passed jit_above_cost
 * (json_to_recordset counts 100 rows per nested stock list) compiling it cost 60-110 ms. */
static const char setup_sql[] =
    "SELECT s.direct, s.sess,"
    " CASE WHEN s.sess THEN pg_catalog.set_config('search_path',"
    "  pg_catalog.concat_ws(', ', $1::text, pg_catalog.current_setting('search_path')), false) END,"
    " CASE WHEN s.sess THEN pg_catalog.set_config('statement_timeout', $2, false) END,"
    " CASE WHEN s.sess THEN pg_catalog.set_config('timezone', 'UTC', false) END,"
    " CASE WHEN s.sess THEN pg_catalog.set_config('application_name', $5, false) END,"
    " CASE WHEN s.sess AND pg_catalog.current_setting('jit', true) IS NOT NULL THEN"
    "  pg_catalog.set_config('jit', 'off', false) END"
    " FROM (SELECT d.direct, ($4::text = 'session' OR ($4::text = 'auto' AND d.direct)) AS sess"
    "  FROM (SELECT pg_catalog.pg_backend_pid() = $3::int AS direct) d) s";

/* The same settings for one transaction, first in every batch behind a transaction pooler. */
static const char local_sql[] =
    "SELECT pg_catalog.set_config('search_path',"
    "  pg_catalog.concat_ws(', ', $1::text, pg_catalog.current_setting('search_path')), true),"
    " pg_catalog.set_config('statement_timeout', $2, true),"
    " pg_catalog.set_config('timezone', 'UTC', true),"
    " pg_catalog.set_config('application_name', $3, true),"
    " CASE WHEN pg_catalog.current_setting('jit', true) IS NOT NULL THEN"
    "  pg_catalog.set_config('jit', 'off', true) END";

/* Connection attempts the server (or a pooler) refused as a login failure, process-wide: the
 * scheduler backs off for minutes on them (see db_auth_refusals). Loop thread only. */
static unsigned long auth_refusals;

enum db_state {
    DB_ST_IDLE,       /* no server connection */
    DB_ST_CONNECTING, /* PQconnectPoll in progress */
    DB_ST_SETUP,      /* connected, pipeline on, session settings in flight */
    DB_ST_READY,      /* user batches may be sent */
};

typedef struct db_stmt {
    char *sql;      /* owned */
    int nparams;
    char **params;  /* owned array of owned strings (or NULL = SQL NULL) */
} db_stmt;

/* One protocol command sent for a batch: the execution of user statement `stmt`, or (prep >=
 * 0) the Parse of prepared statement slot `prep` that precedes that execution. */
typedef struct db_op {
    int stmt;       /* -1: the per-transaction settings (local_sql) */
    int prep;       /* -1 for an execution */
    bool named;     /* execution of a prepared statement */
    unsigned seq;   /* prep: the slot's name sequence when sent (stale after a reset) */
} db_op;

struct db_batch {
    db_stmt *stmts; /* owned array */
    int n, cap;
    db_batch_cb cb;
    void *arg;
    db_batch *next; /* link in the conn's queue or sent FIFO */

    /* Result bookkeeping, valid once sent. */
    PGresult **results;    /* owned array of n; entries owned until after the callback */
    db_op *ops;            /* owned: commands sent, in order (n executions + prepares) */
    int nops;
    int cur;               /* op whose results PQgetResult is delivering */
    bool cur_started;      /* a result for `cur` arrived; the next NULL moves to cur + 1 */
    enum db_status status;
    int failed_stmt;
    char sqlstate[6];
    const char *message;   /* borrowed from results[failed_stmt] */
    const char *detail;    /* borrowed from results[failed_stmt] or local_res */
    PGresult *local_res;   /* owned: a failed local_sql, kept for message/detail */
};

typedef struct db_list {
    db_batch *head, *tail;
} db_list;

/* A statement text seen on this connection. Its second use sends a Parse under a name; from
 * the confirmation on it is executed by name (no parse, no plan per page). */
enum prep_state { PREP_NONE, PREP_PENDING, PREP_READY };
typedef struct db_prep {
    char *sql;              /* owned */
    uint64_t hash;
    unsigned uses;
    enum prep_state state;
    unsigned seq;           /* names the server-side statement: "kvs_<seq>" */
} db_prep;

struct db_conn {
    uv_loop_t *loop;           /* borrowed */
    char *conninfo;            /* owned; never logged or shown (it may hold the password) */
    char *password;            /* owned copy from conninfo, for scrubbing messages; may be NULL */
    char bad_url[256];         /* why libpq would refuse conninfo ("" = fine): never connect then */
    char *app_name;            /* owned */
    char stmt_timeout[24];     /* statement_timeout in ms as text; "" = server default */
    long connect_timeout_ms;

    enum db_state state;
    PGconn *pg;                /* owned; NULL in IDLE */
    uv_poll_t *poll;           /* owned; freed in poll_close_cb; NULL when not watching */
    int poll_fd;               /* fd c->poll was initialised with */
    int poll_events;           /* events c->poll is started with; 0 = stopped */
    uv_timer_t timer;          /* connect deadline or kick; closed by db_conn_close */
    int open_handles;          /* handles not yet through their close callback */
    unsigned gen;              /* bumped on every teardown of the server connection */
    bool want_connect;         /* db_conn_connect asked for a connection without work queued */
    bool closing;              /* db_conn_close called; no new work, free when handles close */

    db_list queue;             /* submitted, not yet sent */
    db_list sent;              /* sent, awaiting results, in order */
    int in_flight;             /* length of sent */

    db_prep preps[DB_PREP_MAX];
    int npreps;
    unsigned prep_seq;         /* last name sequence handed out */
    bool prep_off;             /* never prepare (option, or a pooler lost our statements) */
    char *schema_path;         /* owned: quoted schema put before the role's search_path, or
                                  NULL (public: the role's own path) */
    enum db_pooler pooler;     /* configured mode */
    enum db_path path;         /* what the last setup found (DB_PATH_UNKNOWN before) */
    bool txn_mode;             /* behave as behind a transaction pooler: no session state */
    bool symptom_seen;         /* a prepared statement went missing or clashed (42P05/26000) */
    char conn_sqlstate[6];     /* SQLSTATE of the last refused connection attempt, or "" */

    db_notify_cb notify_cb;
    void *notify_arg;
    char last_error[512];
    db_conn_stats stats;
};

static void conn_fail(db_conn *c, enum db_status st, const char *msg);
static void flush_and_arm(db_conn *c);
static void on_setup_done(db_result *res, void *arg);

/* ---- small helpers ------------------------------------------------------------------------ */

static void list_push(db_list *l, db_batch *b)
{
    b->next = NULL;
    if (l->tail) l->tail->next = b;
    else l->head = b;
    l->tail = b;
}

static db_batch *list_pop(db_list *l)
{
    db_batch *b = l->head;
    if (!b) return NULL;
    l->head = b->next;
    if (!l->head) l->tail = NULL;
    b->next = NULL;
    return b;
}

/* Replaces every occurrence of secret in buf by "***" (only shrinks: secrets are >= 4 bytes). */
static void scrub_secret(char *buf, const char *secret)
{
    if (!secret) return;
    size_t sl = strlen(secret);
    if (sl < 4) return;
    char *p;
    while ((p = strstr(buf, secret)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + sl, strlen(p + sl) + 1);
    }
}

/* Copies a libpq message into dst as one line without the password. */
static void copy_message(const db_conn *c, char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src && *src ? src : "unknown error");
    /* Secrets first: one holding a tab or newline would not match once those are spaces. */
    if (c) scrub_secret(dst, c->password);
    log_redact(dst, cap);
    for (char *p = dst; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    size_t n = strlen(dst);
    while (n > 0 && dst[n - 1] == ' ') dst[--n] = '\0';
}

/* The password from a conninfo string or URI, or NULL (caller frees). */
static char *conninfo_password(const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    PQfreemem(err); /* the parse error can quote the conninfo; PQconnectStart reports it anyway */
    if (!opts) return NULL;
    char *pw = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val) pw = kvs_strdup(o->val);
    PQconninfoFree(opts);
    return pw;
}

/* ---- checking a conninfo without quoting it ----------------------------------------------- */

/* Whether every '%' in s[0..n) starts a %XX escape libpq accepts (two hex digits, not %00). */
static bool pct_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') continue;
        if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
            return false;
        if (s[i + 1] == '0' && s[i + 2] == '0') return false;
        i += 2;
    }
    return true;
}

#define DB_URI_ENCODE_HINT                                                                       \
    "; in a user name or password, write '%' as %25, '@' as %40, '/' as %2F and ':' as %3A"

/* Why libpq refused to parse a URI, named by the part, mirroring libpq's own split of
 * "postgresql://user:password@hosts/dbname?params" (credentials end at the first '@' before any
 * '/'). Never quotes any of it: libpq's own message does, password included. */
static const char *uri_bad_part(const char *uri)
{
    const char *p = strstr(uri, "://") + 3;
    const char *q = p + strcspn(p, "@/");
    if (*q == '@') {
        const char *colon = memchr(p, ':', (size_t)(q - p));
        if (!pct_ok(p, (size_t)((colon ? colon : q) - p)))
            return "the user name has a '%' that is not a %XX escape" DB_URI_ENCODE_HINT;
        if (colon && !pct_ok(colon + 1, (size_t)(q - colon - 1)))
            return "the password has a '%' that is not a %XX escape" DB_URI_ENCODE_HINT;
        p = q + 1;
    }
    size_t hl = strcspn(p, "/?");
    if (!pct_ok(p, hl)) return "the host or port has a '%' that is not a %XX escape";
    p += hl;
    if (*p == '/') {
        size_t dl = strcspn(++p, "?");
        if (!pct_ok(p, dl)) return "the database name has a '%' that is not a %XX escape";
        p += dl;
    }
    if (*p == '?' && !pct_ok(p, strlen(p)))
        return "a query parameter has a '%' that is not a %XX escape";
    return "libpq cannot parse it as a URI (check the host list, the brackets around an IPv6 "
           "address, and the query parameter names)" DB_URI_ENCODE_HINT;
}

/* Whether every comma-separated element of a port list is empty or decimal digits. */
static bool ports_ok(const char *v)
{
    for (; *v; v++)
        if (!isdigit((unsigned char)*v) && *v != ',') return false;
    return true;
}

int db_conninfo_check(const char *conninfo, char *why, size_t cap)
{
    bool uri = !strncmp(conninfo, "postgresql://", 13) || !strncmp(conninfo, "postgres://", 11);
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (err) {
        explicit_bzero(err, strlen(err)); /* it quotes the text, password included: never shown */
        PQfreemem(err);
    }
    if (!opts) {
        snprintf(why, cap, "%s",
                 uri ? uri_bad_part(conninfo)
                     : "libpq cannot parse it as key=value settings (a value holding spaces or "
                       "quotes must be in single quotes; every keyword must be one libpq knows)");
        return -EINVAL;
    }
    /* The likeliest cause first: "user:pa/ss@h" parses as host "user", port "pa". */
    bool port_bad = false, host_at = false, db_at = false;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        if (!strcmp(o->keyword, "port")) port_bad = !ports_ok(o->val);
        if (!strcmp(o->keyword, "host") || !strcmp(o->keyword, "hostaddr"))
            host_at = host_at || strchr(o->val, '@');
        if (!strcmp(o->keyword, "dbname")) db_at = uri && strchr(o->val, '@');
    }
    const char *bad = port_bad  ? "the port is not a number (an unencoded '/' or ':' in the password?)"
                      : host_at ? "the host holds an '@' (an unencoded '@' in the password?)"
                      : db_at   ? "the database name holds an '@' (an unencoded '/' in the password?)"
                                : NULL;
    PQconninfoFree(opts);
    if (!bad) return 0;
    snprintf(why, cap, "%s%s", bad, uri ? DB_URI_ENCODE_HINT : "");
    return -EINVAL;
}

static void batch_clear_results(db_batch *b)
{
    PQclear(b->local_res);
    b->local_res = NULL;
    if (!b->results) return;
    for (int i = 0; i < b->n; i++) {
        PQclear(b->results[i]);
        b->results[i] = NULL;
    }
}

static void notice_processor(void *arg, const char *message)
{
    db_conn *c = arg;
    char buf[512];
    copy_message(c, buf, sizeof buf, message);
    log_info("db: server notice: %s", buf);
}

/* ---- batches ------------------------------------------------------------------------------- */

db_batch *db_batch_new(void)
{
    db_batch *b = kvs_xcalloc(1, sizeof *b);
    b->failed_stmt = -1;
    return b;
}

void db_batch_add(db_batch *b, const char *sql, int nparams, const char *const *params)
{
    REQUIRE(b && sql);
    REQUIRE(nparams >= 0 && nparams <= DB_MAX_PARAMS);
    REQUIRE(nparams == 0 || params);
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4;
        b->stmts = kvs_xrealloc(b->stmts, (size_t)b->cap * sizeof *b->stmts);
    }
    db_stmt *s = &b->stmts[b->n++];
    s->sql = kvs_strdup(sql);
    s->nparams = nparams;
    s->params = nparams ? kvs_xcalloc((size_t)nparams, sizeof *s->params) : NULL;
    for (int i = 0; i < nparams; i++) s->params[i] = kvs_strdup(params[i]);
}

int db_batch_count(const db_batch *b) { return b ? b->n : 0; }

void db_batch_free(db_batch *b)
{
    if (!b) return;
    for (int i = 0; i < b->n; i++) {
        for (int j = 0; j < b->stmts[i].nparams; j++) free(b->stmts[i].params[j]);
        free(b->stmts[i].params);
        free(b->stmts[i].sql);
    }
    free(b->stmts);
    batch_clear_results(b);
    free(b->results);
    free(b->ops);
    free(b);
}

/* Delivers the batch's outcome and frees it. b must already be unlinked from every list. The
 * callback may submit or close; nothing here touches the conn afterwards. */
static void batch_complete(db_batch *b)
{
    if (!b->results) b->results = kvs_xcalloc((size_t)b->n, sizeof *b->results);
    db_result res = {
        .status = b->status,
        .nresults = b->n,
        .results = b->results,
        .failed_stmt = b->status == DB_E_SQL ? b->failed_stmt : -1,
        .message = b->message ? b->message : "",
        .detail = b->detail,
    };
    if (b->status == DB_E_SQL || b->status == DB_E_CONN)
        memcpy(res.sqlstate, b->sqlstate, sizeof res.sqlstate);
    if (b->cb) b->cb(&res, b->arg);
    db_batch_free(b);
}

/* Fails one unlinked batch: no statement results are handed out. sqlstate: why the server
 * refused the connection (DB_E_CONN), or "". */
static void batch_fail(db_batch *b, enum db_status st, const char *msg, const char *sqlstate)
{
    batch_clear_results(b);
    b->status = st;
    b->message = msg;
    b->detail = NULL;
    snprintf(b->sqlstate, sizeof b->sqlstate, "%s", sqlstate);
    batch_complete(b);
}

/* ---- libuv handles ------------------------------------------------------------------------ */

static void conn_handle_closed(db_conn *c)
{
    REQUIRE(c->open_handles > 0);
    if (--c->open_handles > 0 || !c->closing) return;
    for (int i = 0; i < c->npreps; i++) free(c->preps[i].sql);
    free(c->conninfo);
    log_secret_hold(&c->password, NULL);
    free(c->app_name);
    free(c->schema_path);
    free(c);
}

static void poll_close_cb(uv_handle_t *h)
{
    db_conn *c = h->data;
    free(h);
    conn_handle_closed(c);
}

static void timer_close_cb(uv_handle_t *h) { conn_handle_closed(h->data); }

/* Closes the uv_poll now (before libpq closes the fd, or after it already has: libuv ignores the
 * failed epoll removal). Its memory goes in poll_close_cb. */
static void poll_drop(db_conn *c)
{
    if (!c->poll) return;
    uv_close((uv_handle_t *)c->poll, poll_close_cb);
    c->poll = NULL;
    c->poll_fd = -1;
    c->poll_events = 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches PQsocket for events. A changed fd gets a new uv_poll (never two on one fd). With
 * rearm, an unchanged fd is stopped and started again: libpq may have closed the socket and
 * opened a new one that got the same number (next host, SSL/GSS fallback), and only a fresh
 * epoll registration watches the new socket. Returns 0 or a negative errno-style code. */
static int poll_watch(db_conn *c, int events, bool rearm)
{
    int fd = PQsocket(c->pg);
    if (fd < 0) return -EBADF;
    if (c->poll && c->poll_fd != fd) poll_drop(c);
    if (!c->poll) {
        uv_poll_t *p = kvs_xmalloc(sizeof *p);
        int rc = uv_poll_init(c->loop, p, fd);
        if (rc < 0) {
            free(p);
            return rc;
        }
        p->data = c;
        c->open_handles++;
        c->poll = p;
        c->poll_fd = fd;
        c->poll_events = 0;
    } else if (rearm && c->poll_events) {
        uv_poll_stop(c->poll);
        c->poll_events = 0;
    }
    if (events == c->poll_events) return 0;
    int rc = uv_poll_start(c->poll, events, on_poll);
    if (rc < 0) return rc;
    c->poll_events = events;
    return 0;
}

static void on_timer(uv_timer_t *t);

/* Runs on_timer on the next loop turn (IDLE/READY only: otherwise the timer is the deadline). */
static void conn_kick(db_conn *c)
{
    if (c->state != DB_ST_IDLE && c->state != DB_ST_READY) return;
    if (!uv_is_active((uv_handle_t *)&c->timer)) uv_timer_start(&c->timer, on_timer, 0, 0);
}

/* ---- connection lifecycle ----------------------------------------------------------------- */

/* Drops the server connection (uv_poll first, then PQfinish) and returns to IDLE. */
static void conn_teardown(db_conn *c)
{
    c->gen++;
    /* Prepared statements live and die with the server session. */
    for (int i = 0; i < c->npreps; i++) c->preps[i].state = PREP_NONE;
    poll_drop(c);
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    c->state = DB_ST_IDLE;
    uv_timer_stop(&c->timer);
}

/* Tears the connection down and fails every batch in flight, then every queued one, with st.
 * Callbacks run here; batches they submit are queued for a later connect (kick). */
static void conn_fail(db_conn *c, enum db_status st, const char *msg)
{
    char text[512];
    snprintf(text, sizeof text, "%s", msg);
    if (st != DB_E_CANCELLED) {
        snprintf(c->last_error, sizeof c->last_error, "%s", text);
        log_info("db: %s", text);
    }
    conn_teardown(c);

    /* Detach everything first: callbacks may submit, and those batches belong to the next
     * connection, not to this failure. */
    db_list fail = c->sent;
    db_list queued = c->queue;
    c->sent = (db_list){0};
    c->queue = (db_list){0};
    c->in_flight = 0;
    if (fail.tail) fail.tail->next = queued.head;
    else fail.head = queued.head;

    db_batch *b;
    while ((b = fail.head) != NULL) {
        fail.head = b->next;
        b->next = NULL;
        if (b->cb != on_setup_done) c->stats.batches_failed++;
        batch_fail(b, st, text, st == DB_E_CONN ? c->conn_sqlstate : "");
    }
    if (c->queue.head && !c->closing) conn_kick(c);
}

/* libpq's error text without what verbose mode adds while connecting (see conn_start): the
 * "XXXXX: " after the severity is moved to sqlstate (the first one; "" if none) and LOCATION
 * lines are dropped. */
static void pq_error_clean(const char *src, char *dst, size_t cap, char sqlstate[6])
{
    sqlstate[0] = '\0';
    size_t o = 0;
    while (src && *src && o + 1 < cap) {
        size_t len = strcspn(src, "\n");
        bool skip = strncmp(src, "LOCATION:", 9) == 0;
        for (size_t i = 0; !skip && i < len && o + 1 < cap; i++) {
            /* "FATAL:  28P01: text" -> "FATAL:  text" */
            const char *p = src + i;
            if (i >= 3 && !strncmp(p - 3, ":  ", 3) && i + 7 <= len &&
                strspn(p, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5 && !strncmp(p + 5, ": ", 2)) {
                if (!sqlstate[0]) {
                    memcpy(sqlstate, p, 5);
                    sqlstate[5] = '\0';
                }
                i += 6;
                continue;
            }
            dst[o++] = src[i];
        }
        if (!skip && o + 1 < cap) dst[o++] = ' ';
        src += len;
        if (*src == '\n') src++;
    }
    dst[o] = '\0';
}

/* conn_fail with libpq's current error text (scrubbed), prefixed by what we were doing. */
static void conn_fail_pq(db_conn *c, enum db_status st, const char *what)
{
    char raw[400], msg[400], text[512], state[6];
    pq_error_clean(c->pg ? PQerrorMessage(c->pg) : NULL, raw, sizeof raw, state);
    copy_message(c, msg, sizeof msg, raw);
    snprintf(text, sizeof text, "%s: %s", what, msg);
    if (c->state == DB_ST_CONNECTING) {
        /* A refused login: retrying soon cannot help and may get this address banned
         * (Supabase bans after a few failed password attempts); Supavisor says "Tenant or
         * user not found" for an unknown user, pgbouncer uses its own codes. */
        bool refused = !strncmp(state, "28", 2) || strstr(msg, "password authentication failed") ||
                       strstr(msg, "Tenant or user not found");
        snprintf(c->conn_sqlstate, sizeof c->conn_sqlstate, "%s",
                 refused && strncmp(state, "28", 2) ? "28000" : state);
        if (refused) auth_refusals++;
    }
    conn_fail(c, st, text);
}

static uint64_t sql_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The prepared-statement slot of sql, counting this use; -1 when not tracked (table full). */
static int prep_slot(db_conn *c, const char *sql)
{
    uint64_t h = sql_hash(sql);
    for (int i = 0; i < c->npreps; i++)
        if (c->preps[i].hash == h && strcmp(c->preps[i].sql, sql) == 0) {
            c->preps[i].uses++;
            return i;
        }
    if (c->npreps == DB_PREP_MAX) return -1;
    db_prep *p = &c->preps[c->npreps];
    p->sql = kvs_strdup(sql);
    p->hash = h;
    p->uses = 1;
    p->state = PREP_NONE;
    p->seq = 0;
    return c->npreps++;
}

static void prep_name(const db_prep *p, char *buf, size_t cap)
{
    snprintf(buf, cap, "kvs_%u", p->seq);
}

/* Sends b's statements and Sync. b must already be on c->sent (so a failure fails it too).
 * A statement seen before on this connection is prepared (Parse with a name, in the same
 * pipeline, right before its execution) and executed by name from then on; while a Parse is
 * unconfirmed, other batches still send the text. Returns 0, or -EIO when libpq refused
 * (connection broken or out of memory). */
static int batch_send(db_conn *c, db_batch *b)
{
    b->results = kvs_xcalloc((size_t)b->n, sizeof *b->results);
    b->ops = kvs_xcalloc((size_t)b->n * 2 + 1, sizeof *b->ops);
    b->nops = 0;
    b->cur = 0;
    b->cur_started = false;
    if (c->txn_mode && b->n > 0 && b->cb != on_setup_done) {
        /* The batch is one transaction: its settings live exactly as long. */
        const char *params[3] = {c->schema_path, c->stmt_timeout[0] ? c->stmt_timeout : NULL,
                                 c->app_name};
        if (!PQsendQueryParams(c->pg, local_sql, 3, NULL, params, NULL, NULL, 0)) return -EIO;
        b->ops[b->nops++] = (db_op){.stmt = -1, .prep = -1};
    }
    for (int i = 0; i < b->n; i++) {
        const db_stmt *s = &b->stmts[i];
        const char *const *params = (const char *const *)s->params;
        /* The session settings run once per connection: never worth a name. Behind a
         * transaction pooler, a name would live on whichever server connection the pooler
         * lent for this transaction: only unnamed statements there. */
        int slot = c->prep_off || c->txn_mode || b->cb == on_setup_done ? -1 : prep_slot(c, s->sql);
        db_prep *p = slot >= 0 ? &c->preps[slot] : NULL;
        char name[32];
        if (p && p->state == PREP_NONE && p->uses >= 2) {
            p->seq = ++c->prep_seq;
            prep_name(p, name, sizeof name);
            if (!PQsendPrepare(c->pg, name, s->sql, s->nparams, NULL)) return -EIO;
            p->state = PREP_PENDING;
            b->ops[b->nops++] = (db_op){.stmt = i, .prep = slot, .seq = p->seq};
            /* Executed by name right away: if the Parse fails, so would the text. */
            if (!PQsendQueryPrepared(c->pg, name, s->nparams, params, NULL, NULL, 0)) return -EIO;
            b->ops[b->nops++] = (db_op){.stmt = i, .prep = -1, .named = true};
        } else if (p && p->state == PREP_READY) {
            prep_name(p, name, sizeof name);
            if (!PQsendQueryPrepared(c->pg, name, s->nparams, params, NULL, NULL, 0)) return -EIO;
            b->ops[b->nops++] = (db_op){.stmt = i, .prep = -1, .named = true};
        } else {
            /* Unnamed statement, text parameters and results. */
            if (!PQsendQueryParams(c->pg, s->sql, s->nparams, NULL, params, NULL, NULL, 0))
                return -EIO;
            b->ops[b->nops++] = (db_op){.stmt = i, .prep = -1};
        }
    }
    if (!PQpipelineSync(c->pg)) return -EIO;
    /* libpq holds its own copy now: a page's rows (or a reconcile's id list) need not wait in
     * memory twice until the answer comes. */
    for (int i = 0; i < b->n; i++) {
        db_stmt *s = &b->stmts[i];
        for (int j = 0; j < s->nparams; j++) free(s->params[j]);
        free(s->params);
        free(s->sql);
        s->params = NULL;
        s->nparams = 0;
        s->sql = NULL;
    }
    return 0;
}

static void conn_send_queued(db_conn *c)
{
    db_batch *b;
    /* Behind a transaction pooler one batch (one transaction) at a time: the pooler may lend
     * the next transaction another server connection, and older poolers mishandle pipelined
     * transactions. The next one goes when this one's Sync is back (conn_read_results). */
    while ((!c->txn_mode || c->in_flight == 0) && (b = list_pop(&c->queue)) != NULL) {
        list_push(&c->sent, b);
        c->in_flight++;
        if ((uint64_t)c->in_flight > c->stats.max_in_flight) c->stats.max_in_flight = c->in_flight;
        if (batch_send(c, b) < 0) {
            conn_fail_pq(c, DB_E_CONN, "sending failed");
            return;
        }
    }
    flush_and_arm(c);
}

static void conn_on_connected(db_conn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_fail_pq(c, DB_E_CONN, "PQsetnonblocking failed");
        return;
    }
    if (!PQenterPipelineMode(c->pg)) {
        conn_fail_pq(c, DB_E_CONN, "entering pipeline mode failed");
        return;
    }
    PQsetErrorVerbosity(c->pg, PQERRORS_DEFAULT); /* verbose only while connecting */
    c->state = DB_ST_SETUP;
    /* The settings go through the same pipeline machinery as user work, as the first batch. */
    db_batch *b = db_batch_new();
    char pid[16];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(c->pg));
    const char *params[5] = {c->schema_path, c->stmt_timeout[0] ? c->stmt_timeout : NULL, pid,
                             c->pooler == DB_POOLER_SESSION       ? "session"
                             : c->pooler == DB_POOLER_TRANSACTION ? "transaction"
                                                                  : "auto",
                             c->app_name};
    db_batch_add(b, setup_sql, 5, params);
    b->cb = on_setup_done;
    b->arg = c;
    list_push(&c->sent, b);
    c->in_flight++;
    if (batch_send(c, b) < 0) {
        conn_fail_pq(c, DB_E_CONN, "sending session settings failed");
        return;
    }
    flush_and_arm(c);
}

/* Completion of the settings batch. Connection-level outcomes (DB_E_CONN, TIMEOUT, CANCELLED)
 * come from conn_fail, which is already failing everything: nothing to do then. */
static void on_setup_done(db_result *res, void *arg)
{
    db_conn *c = arg;
    if (res->status == DB_E_SQL) {
        char text[512];
        snprintf(text, sizeof text, "session setup failed: %s (SQLSTATE %s)", res->message,
                 res->sqlstate);
        conn_fail(c, DB_E_CONN, text);
        return;
    }
    if (res->status != DB_OK) return;
    bool direct = PQgetvalue(res->results[0], 0, 0)[0] == 't';
    bool sess = PQgetvalue(res->results[0], 0, 1)[0] == 't';
    c->path = direct ? DB_PATH_DIRECT : sess ? DB_PATH_SESSION : DB_PATH_TRANSACTION;
    c->txn_mode = !sess || c->symptom_seen;
    c->state = DB_ST_READY;
    uv_timer_stop(&c->timer);
    c->stats.connects++;
    log_debug("db: connected, server %d, %s", PQserverVersion(c->pg), db_conn_path_text(c));
    /* Not conn_send_queued() here: we are inside result processing; it kicks instead. */
    if (c->queue.head) conn_kick(c);
}

static void connect_step(db_conn *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    int events;
    switch (st) {
    case PGRES_POLLING_OK:
        conn_on_connected(c);
        return;
    case PGRES_POLLING_FAILED:
        conn_fail_pq(c, DB_E_CONN, "connecting failed");
        return;
    case PGRES_POLLING_READING: events = UV_READABLE; break;
    case PGRES_POLLING_WRITING: events = UV_WRITABLE; break;
    default: /* PGRES_POLLING_ACTIVE is unused since PostgreSQL 8 */ events = UV_READABLE; break;
    }
    int rc = poll_watch(c, events, true);
    if (rc < 0) {
        char text[256];
        snprintf(text, sizeof text, "connecting failed: cannot watch socket: %s", uv_strerror(rc));
        conn_fail(c, DB_E_CONN, text);
    }
}

static void conn_start(db_conn *c)
{
    REQUIRE(c->state == DB_ST_IDLE && !c->pg);
    c->want_connect = false;
    c->conn_sqlstate[0] = '\0';
    /* Note: libpq resolves host names synchronously here and in PQconnectPoll; use addresses or
     * a unix socket directory where a DNS stall must not block the loop. */
    if (c->bad_url[0]) { /* libpq's own error would quote the URL, password included */
        char text[400];
        snprintf(text, sizeof text, "connecting failed: [database] url: %s", c->bad_url);
        conn_fail(c, DB_E_CONN, text);
        return;
    }
    c->pg = PQconnectStart(c->conninfo);
    if (!c->pg) {
        conn_fail(c, DB_E_CONN, "connecting failed: out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail_pq(c, DB_E_CONN, "connecting failed");
        return;
    }
    PQsetNoticeProcessor(c->pg, notice_processor, c);
    /* Verbose while connecting: the server's refusal then carries its SQLSTATE (28P01 ...),
     * which pq_error_clean takes out of the text again. */
    PQsetErrorVerbosity(c->pg, PQERRORS_VERBOSE);
    c->state = DB_ST_CONNECTING;
    uv_timer_start(&c->timer, on_timer, (uint64_t)c->connect_timeout_ms, 0);
    /* libpq: after PQconnectStart, behave as if PQconnectPoll had said PGRES_POLLING_WRITING. */
    int rc = poll_watch(c, UV_WRITABLE, true);
    if (rc < 0) {
        char text[256];
        snprintf(text, sizeof text, "connecting failed: cannot watch socket: %s", uv_strerror(rc));
        conn_fail(c, DB_E_CONN, text);
    }
}

static void on_timer(uv_timer_t *t)
{
    db_conn *c = t->data;
    if (c->closing) return;
    switch (c->state) {
    case DB_ST_IDLE:
        if (c->queue.head || c->want_connect) conn_start(c);
        break;
    case DB_ST_CONNECTING:
    case DB_ST_SETUP: {
        char text[128];
        snprintf(text, sizeof text, "connect timed out after %ld ms", c->connect_timeout_ms);
        conn_fail(c, DB_E_TIMEOUT, text);
        break;
    }
    case DB_ST_READY:
        conn_send_queued(c);
        break;
    }
}

/* ---- I/O while connected ------------------------------------------------------------------ */

/* PQflush, then watch for readable always (results, notifications, EOF) and writable while
 * libpq still holds unsent data. */
static void flush_and_arm(db_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_fail_pq(c, DB_E_CONN, "sending failed");
        return;
    }
    if (r == 1) c->stats.flush_waits++;
    int rc = poll_watch(c, UV_READABLE | (r == 1 ? UV_WRITABLE : 0), false);
    if (rc < 0) {
        char text[256];
        snprintf(text, sizeof text, "cannot watch socket: %s", uv_strerror(rc));
        conn_fail(c, DB_E_CONN, text);
    }
}

enum take { TAKE_OK, TAKE_PROTOCOL, TAKE_PREP_LOST };

/* Stores one result for the head batch's current op (an execution: in results[stmt]; a Parse:
 * moves its slot on, and a failed Parse is the failure of the statement it precedes). */
static enum take batch_take_result(db_conn *c, db_batch *b, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (b->cur >= b->nops) {
        PQclear(r);
        return TAKE_PROTOCOL;
    }
    const db_op *op = &b->ops[b->cur];
    b->cur_started = true;
    if (op->stmt < 0) {
        /* The per-transaction settings: a failure fails the batch (the rest is aborted). */
        if (st == PGRES_FATAL_ERROR && b->status == DB_OK && !b->local_res) {
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            b->local_res = r;
            b->status = DB_E_SQL;
            b->failed_stmt = 0;
            snprintf(b->sqlstate, sizeof b->sqlstate, "%s", state ? state : "");
            b->message = primary ? primary : PQresultErrorMessage(r);
            b->detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
            return TAKE_OK;
        }
        PQclear(r);
        return TAKE_OK;
    }
    if (op->prep >= 0) {
        /* Our Parse met a statement of that name already there: this server connection was
         * used by another client (or another of our connections) before: a transaction
         * pooler between us and the server. */
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st == PGRES_FATAL_ERROR && state && strcmp(state, "42P05") == 0) {
            PQclear(r);
            return TAKE_PREP_LOST;
        }
        db_prep *p = &c->preps[op->prep];
        if (p->state == PREP_PENDING && p->seq == op->seq) {
            p->state = st == PGRES_COMMAND_OK ? PREP_READY : PREP_NONE;
            if (p->state == PREP_READY) c->stats.prepared++;
        }
        if (st != PGRES_FATAL_ERROR) {
            PQclear(r);
            return TAKE_OK;
        }
    }
    switch (st) {
    case PGRES_PIPELINE_ABORTED: /* skipped after an earlier error: results[stmt] stays NULL */
        PQclear(r);
        return TAKE_OK;
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
        PQclear(r);
        return TAKE_PROTOCOL;
    default:
        break;
    }
    if (st == PGRES_FATAL_ERROR && op->named) {
        /* Our statement is gone although the session is not: something between us and the
         * server (a transaction pooler) switched sessions. */
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "26000") == 0) {
            PQclear(r);
            return TAKE_PREP_LOST;
        }
    }
    if (b->results[op->stmt]) { /* one result per statement is all we keep */
        PQclear(r);
        return TAKE_OK;
    }
    b->results[op->stmt] = r;
    if (st == PGRES_FATAL_ERROR && b->status == DB_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        b->status = DB_E_SQL;
        b->failed_stmt = op->stmt;
        snprintf(b->sqlstate, sizeof b->sqlstate, "%s", state ? state : "");
        b->message = primary ? primary : PQresultErrorMessage(r);
        b->detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    }
    return TAKE_OK;
}

/* Reads every result that is complete, batch by batch. Returns after a callback tore the
 * connection down or closed it (the caller re-checks). */
static void conn_read_results(db_conn *c)
{
    unsigned gen = c->gen;
    bool prev_null = false;
    while (c->gen == gen && !c->closing) {
        if (PQisBusy(c->pg)) break;
        PGresult *r = PQgetResult(c->pg);
        db_batch *b = c->sent.head;
        if (!r) {
            /* In pipeline mode a NULL ends each statement's results. A NULL with no statement in
             * progress means nothing more is available now; two in a row must stop the loop
             * because an idle connection returns NULL forever. */
            if (b && b->cur_started) {
                b->cur_started = false;
                b->cur++;
                prev_null = false;
                continue;
            }
            if (prev_null || !b) break;
            prev_null = true;
            continue;
        }
        prev_null = false;
        if (!b) {
            PQclear(r);
            conn_fail(c, DB_E_CONN, "protocol error: result without a batch in flight");
            return;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            list_pop(&c->sent);
            c->in_flight--;
            if (b->cb != on_setup_done) {
                if (b->status == DB_OK) c->stats.batches_ok++;
                else c->stats.batches_failed++;
            }
            batch_complete(b); /* may close or (setup failure) tear down: loop re-checks */
            if (c->txn_mode && c->gen == gen && !c->closing && c->queue.head) conn_kick(c);
            continue;
        }
        enum take t = batch_take_result(c, b, r);
        if (t == TAKE_PREP_LOST) {
            /* Everything in flight fails as a lost connection (nothing of it committed: the
             * pipeline aborted), so callers retry; the next connection runs in transaction
             * mode: unnamed statements, settings per transaction. */
            static bool said; /* once per process: every connection meets the same pooler */
            bool first = !said;
            said = true;
            c->symptom_seen = true;
            c->prep_off = true;
            c->txn_mode = true;
            if (first)
                log_warn("db: a prepared statement of ours vanished or already existed on the "
                         "server (SQLSTATE 26000/42P05): a transaction pooler is between us and "
                         "the server%s; switching to transaction mode (unnamed statements, "
                         "settings per transaction)",
                         c->pooler == DB_POOLER_SESSION ? " ([database] pooler = session is "
                                                          "wrong for it)"
                                                        : "");
            conn_fail(c, DB_E_CONN, "a transaction pooler lent this transaction another server "
                                    "connection (SQLSTATE 26000/42P05); retrying in transaction "
                                    "mode");
            return;
        }
        if (t != TAKE_OK) {
            conn_fail(c, DB_E_CONN, "protocol error: unexpected result (COPY is not supported)");
            return;
        }
    }
}

static void conn_drain_notifies(db_conn *c)
{
    unsigned gen = c->gen;
    PGnotify *n;
    while (c->gen == gen && !c->closing && (n = PQnotifies(c->pg)) != NULL) {
        if (c->notify_cb) c->notify_cb(n->relname, n->extra ? n->extra : "", c->notify_arg);
        PQfreemem(n);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    db_conn *c = h->data;
    if (c->closing || h != c->poll) return;
    if (status < 0) {
        /* POLLERR: libuv has stopped the handle. Let libpq find the socket error itself (while
         * connecting it may move on to the next host). */
        c->poll_events = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    if (c->state == DB_ST_CONNECTING) {
        connect_step(c);
        return;
    }
    unsigned gen = c->gen;
    if (events & UV_READABLE) {
        if (!PQconsumeInput(c->pg)) {
            conn_fail_pq(c, DB_E_CONN, "connection lost");
            return;
        }
        conn_read_results(c);
        if (c->gen != gen || c->closing) return;
        conn_drain_notifies(c);
        if (c->gen != gen || c->closing) return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail_pq(c, DB_E_CONN, "connection lost");
        return;
    }
    flush_and_arm(c);
}

/* ---- public API --------------------------------------------------------------------------- */

db_conn *db_conn_new(uv_loop_t *loop, const db_opts *opts)
{
    REQUIRE(loop && opts && opts->conninfo);
    db_conn *c = kvs_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->conninfo = kvs_strdup(opts->conninfo);
    c->password = conninfo_password(opts->conninfo);
    db_conninfo_check(opts->conninfo, c->bad_url, sizeof c->bad_url); /* config_load refuses */
    if (c->password) log_secret_add(c->password); /* defence in depth for every log line */
    c->app_name = kvs_strdup(opts->application_name && *opts->application_name
                                 ? opts->application_name
                                 : DB_DEFAULT_APP_NAME);
    c->connect_timeout_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DB_DEFAULT_CONNECT_TIMEOUT_MS;
    c->prep_off = opts->no_prepare;
    c->pooler = opts->pooler;
    c->txn_mode = opts->pooler == DB_POOLER_TRANSACTION;
    if (opts->schema && *opts->schema && strcmp(opts->schema, "public") != 0)
        c->schema_path = db_quote_ident(opts->schema);
    if (opts->statement_timeout_ms > 0)
        snprintf(c->stmt_timeout, sizeof c->stmt_timeout, "%ld", opts->statement_timeout_ms);
    c->state = DB_ST_IDLE;
    c->poll_fd = -1;
    uv_timer_init(loop, &c->timer); /* cannot fail on Unix */
    c->timer.data = c;
    c->open_handles = 1;
    return c;
}

void db_conn_connect(db_conn *c)
{
    if (c->closing || c->state != DB_ST_IDLE) return;
    c->want_connect = true;
    conn_kick(c);
}

void db_conn_close(db_conn *c)
{
    if (!c || c->closing) return;
    c->closing = true;
    conn_fail(c, DB_E_CANCELLED, "connection closed");
    uv_close((uv_handle_t *)&c->timer, timer_close_cb);
}

bool db_conn_is_ready(const db_conn *c) { return c && !c->closing && c->state == DB_ST_READY; }

int db_conn_backend_pid(const db_conn *c)
{
    return db_conn_is_ready(c) && c->pg ? PQbackendPID(c->pg) : 0;
}

const char *db_conn_last_error(const db_conn *c) { return c ? c->last_error : ""; }

bool db_conn_txn_mode(const db_conn *c) { return c && c->txn_mode; }


const char *db_conn_path_text(const db_conn *c)
{
    if (!c || c->path == DB_PATH_UNKNOWN) return "not connected yet";
    if (c->symptom_seen)
        return "behind a transaction pooler (a prepared statement vanished or clashed: SQLSTATE "
               "26000/42P05): unnamed statements, settings per transaction, no LISTEN";
    if (c->txn_mode && c->pooler == DB_POOLER_TRANSACTION)
        return "transaction-pooler mode ([database] pooler = transaction): unnamed statements, "
               "settings per transaction, no LISTEN";
    if (c->txn_mode)
        return "through a pooler (the connection's backend pid is not the server's): run as "
               "behind a transaction pooler: unnamed statements, settings per transaction, no "
               "LISTEN (set [database] pooler = session for a session pooler)";
    if (c->path == DB_PATH_DIRECT)
        return c->pooler == DB_POOLER_SESSION ? "direct connection ([database] pooler = session)"
                                              : "direct connection (no pooler)";
    return "through a session pooler ([database] pooler = session): prepared statements, "
           "session settings, LISTEN";
}

unsigned long db_auth_refusals(void) { return auth_refusals; }

bool db_result_auth_refused(const db_result *res)
{
    return res && res->status == DB_E_CONN && !strncmp(res->sqlstate, "28", 2);
}

void db_pooler_describe(const char *conninfo, enum db_pooler p, char *buf, size_t cap)
{
    /* Supabase's transaction pooler listens on 6543 (its session pooler and Postgres on 5432). */
    bool tx_port = false;
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (!strcmp(o->keyword, "port") && o->val && strstr(o->val, "6543")) tx_port = true;
    PQconninfoFree(opts);
    const char *mode =
        p == DB_POOLER_SESSION       ? "session: settings per connection, prepared statements, LISTEN"
        : p == DB_POOLER_TRANSACTION ? "transaction: unnamed statements, settings per transaction, "
                                       "no LISTEN"
                                     : "auto: decided at every connect (through any pooler the "
                                       "daemon runs in transaction mode)";
    snprintf(buf, cap, "database pooler: %s%s", mode,
             !tx_port                     ? ""
             : p == DB_POOLER_SESSION     ? "; WARNING: port 6543 is Supabase's transaction pooler, "
                                            "for which session is wrong (set auto or transaction)"
                                          : "; port 6543 is Supabase's transaction pooler");
}

int db_pooler_parse(const char *text, enum db_pooler *out)
{
    static const char *const names[] = {"auto", "session", "transaction"};
    for (int i = 0; i < 3; i++)
        if (text && !strcmp(text, names[i])) {
            *out = (enum db_pooler)i;
            return 0;
        }
    return -EINVAL;
}

void db_conn_set_notify_cb(db_conn *c, db_notify_cb cb, void *arg)
{
    c->notify_cb = cb;
    c->notify_arg = arg;
}

void db_conn_get_stats(const db_conn *c, db_conn_stats *out) { *out = c->stats; }

void db_submit(db_conn *c, db_batch *b, db_batch_cb cb, void *arg)
{
    REQUIRE(c && b);
    b->cb = cb;
    b->arg = arg;
    b->status = DB_OK;
    b->failed_stmt = -1;
    if (c->closing) {
        /* Only reachable from a callback run by db_conn_close itself. */
        batch_fail(b, DB_E_CANCELLED, "connection closed", "");
        return;
    }
    list_push(&c->queue, b);
    conn_kick(c);
}

void db_exec(db_conn *c, const char *sql, int nparams, const char *const *params, db_batch_cb cb,
             void *arg)
{
    db_batch *b = db_batch_new();
    db_batch_add(b, sql, nparams, params);
    db_submit(c, b, cb, arg);
}


/* The server's pid of pg's current transaction, or -1. Blocking: CLI paths only. */
static int pq_server_pid(PGconn *pg)
{
    PGresult *r = PQexec(pg, "SELECT pg_catalog.pg_backend_pid()");
    int pid = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0))
                                                                        : -1;
    PQclear(r);
    return pid;
}

PGconn *db_connect_blocking_opts(const db_opts *o, kvs_err *err)
{
    char *pw = conninfo_password(o->conninfo);
    char msg[400], state[6];
    PGconn *pg = NULL;
    char why[300];
    if (db_conninfo_check(o->conninfo, why, sizeof why)) { /* never libpq's text: it quotes the URL */
        snprintf(msg, sizeof msg, "[database] url: %s", why);
        goto fail;
    }
    pg = PQconnectdb(o->conninfo);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        pq_error_clean(pg ? PQerrorMessage(pg) : "out of memory", msg, sizeof msg, state);
        goto fail;
    }
    /* Session settings like the asynchronous path's, but search_path '' (all our CLI SQL is
     * schema-qualified and runs no shop trigger), and only on a direct connection: through a
     * pooler they could stay behind for its next client. Blocking on purpose:
     * db_connect_blocking serves CLI paths (explain, status), never the daemon's loop. */
    char pid[16], timeout[24];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(pg));
    snprintf(timeout, sizeof timeout, "%ld", o->statement_timeout_ms);
    const char *params[3] = {pid, o->statement_timeout_ms > 0 ? timeout : NULL,
                             o->application_name && *o->application_name ? o->application_name
                                                                         : DB_DEFAULT_APP_NAME};
    PGresult *r = PQexecParams(pg,
                               "SELECT CASE WHEN pg_catalog.pg_backend_pid() = $1::int THEN"
                               " pg_catalog.set_config('search_path', '', false) ||"
                               " pg_catalog.set_config('timezone', 'UTC', false) ||"
                               " pg_catalog.set_config('application_name', $3, false) ||"
                               " coalesce(pg_catalog.set_config('statement_timeout', $2, false), '')"
                               " END",
                               3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(msg, sizeof msg, "session setup failed: %s", PQresultErrorMessage(r));
        PQclear(r);
        goto fail;
    }
    PQclear(r);
    free(pw);
    kvs_err_clear(err);
    return pg;

fail:
    scrub_secret(msg, pw); /* before the control characters become spaces (see copy_message) */
    log_redact(msg, sizeof msg);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    for (size_t n = strlen(msg); n > 0 && msg[n - 1] == ' '; n--) msg[n - 1] = '\0';
    kvs_err_set(err, -ECONNREFUSED, "database connection failed: %s", msg);
    free(pw);
    PQfinish(pg); /* PQfinish(NULL) is a no-op */
    return NULL;
}

PGconn *db_connect_blocking(const char *conninfo, kvs_err *err)
{
    db_opts o = {.conninfo = conninfo};
    return db_connect_blocking_opts(&o, err);
}

enum db_path db_path_probe_blocking(PGconn *pg, const char *conninfo)
{
    int server = pq_server_pid(pg);
    if (server < 0) return DB_PATH_UNKNOWN;
    if (server == PQbackendPID(pg)) return DB_PATH_DIRECT;
    /* A pooler. In transaction mode pg's server connection went back to the pool when that
     * query's transaction ended, and a second client is lent the most recently released one
     * (pgbouncer's default): the same server pid. A session pooler keeps it pg's: another. */
    PGconn *other = PQconnectdb(conninfo);
    int second = other && PQstatus(other) == CONNECTION_OK ? pq_server_pid(other) : -1;
    PQfinish(other);
    if (second < 0) return DB_PATH_UNKNOWN;
    return second == server ? DB_PATH_TRANSACTION : DB_PATH_SESSION;
}

char *db_quote_ident(const char *name)
{
    REQUIRE(name);
    size_t n = 2;
    for (const char *p = name; *p; p++) n += *p == '"' ? 2 : 1;
    char *out = kvs_xmalloc(n + 1);
    char *o = out;
    *o++ = '"';
    for (const char *p = name; *p; p++) {
        if (*p == '"') *o++ = '"';
        *o++ = *p;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}
