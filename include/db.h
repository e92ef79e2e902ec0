/* Asynchronous PostgreSQL on the libuv loop, through libpq's non-blocking API and pipeline mode.
 *
 * A db_conn is one server connection owned by one user (the scheduler's control connection, or a
 * sync run). Work is submitted as batches: a batch is a list of parameterised statements sent in
 * pipeline mode and closed with one Sync, so the server runs it as ONE implicit transaction —
 * either every statement commits or none does (do not put BEGIN/COMMIT in a batch). Batches run
 * in submission order; several can be in flight at once on one connection.
 *
 * A statement text used a second time on a connection is prepared under a name (in the same
 * pipeline) and executed by name from then on: a page upsert is then neither parsed nor planned
 * again (~0.8 ms of server CPU per page). Prepared statements are session state: they work
 * directly and through a session pooler.
 *
 * Transaction poolers (pgbouncer pool_mode = transaction, Supabase's port 6543) lend a server
 * connection per transaction, so nothing may be left in the session: in transaction mode a
 * connection uses unnamed statements only, sends one batch (one transaction) at a time, and
 * puts its settings (search_path, statement_timeout, timezone) in front of every batch with
 * set_config(..., true), which ends with the transaction. The mode comes from db_opts.pooler;
 * with DB_POOLER_AUTO every connection finds out at connect: the backend pid libpq was given
 * is the server's own only on a direct connection (a pooler hands out its own cancel key), and
 * any pooler is then treated as a transaction pooler. A prepared statement that vanishes
 * (26000) or already exists (42P05) also switches the connection to transaction mode: what was
 * in flight fails with DB_E_CONN (nothing of it committed) and callers retry.
 *
 * Connecting is asynchronous (PQconnectStart/PQconnectPoll with a uv_timer deadline, because
 * libpq ignores connect_timeout there). If the connection is lost, every batch in flight or
 * queued fails with DB_E_CONN; the next submit reconnects (a failed connect attempt also fails
 * the queued batches: retrying with backoff is the caller's job). Nothing blocks the loop, except
 * that libpq resolves host names synchronously: configure an address or a socket directory.
 * Every connection gets timezone UTC, application_name and
 * statement_timeout before the first batch, and search_path = the configured schema (unless
 * public) in front of the role's own: all our SQL schema-qualifies names, but a shop's trigger
 * may call the shop's functions unqualified. */
#ifndef KVS_DB_H
#define KVS_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <uv.h>

#include "util.h"

typedef struct db_conn db_conn;
typedef struct db_batch db_batch;

enum db_status {
    DB_OK = 0,
    DB_E_SQL,        /* a statement failed: sqlstate/message say which (index in failed_stmt) */
    DB_E_CONN,       /* connecting failed or the connection was lost; safe to retry later
                        (sqlstate: the server's code when it refused the login, e.g. 28P01) */
    DB_E_TIMEOUT,    /* connect deadline passed */
    DB_E_CANCELLED,  /* db_conn_close with work pending */
};

typedef struct db_result {
    enum db_status status;
    int nresults;            /* == number of statements in the batch */
    PGresult **results;      /* results[i] for statement i; NULL for statements not run;
                                owned by db, cleared after the callback returns */
    int failed_stmt;         /* index of the failing statement, -1 if none */
    char sqlstate[6];        /* "" unless DB_E_SQL, or DB_E_CONN refused by the server */
    const char *message;     /* human message (server's primary message, or libpq's); borrowed */
    const char *detail;      /* server DETAIL or NULL; borrowed */
} db_result;

/* Batch callback contract: called exactly once per batch, on the loop thread, never from inside
 * db_submit/db_exec themselves (work is sent on the next loop turn). res and everything it points
 * to are valid until the callback returns; PGresults are PQclear'ed then (the callback must not
 * PQclear them). The callback may submit new batches or call db_conn_close on its connection. */
typedef void (*db_batch_cb)(db_result *res, void *arg);
/* Called for each NOTIFY received on a connection that LISTENs. channel/payload borrowed. */
typedef void (*db_notify_cb)(const char *channel, const char *payload, void *arg);

/* Counters for tests and status lines. */
typedef struct db_conn_stats {
    uint64_t connects;       /* connections that reached READY */
    uint64_t batches_ok;     /* user batches completed with DB_OK */
    uint64_t batches_failed; /* user batches completed with any error */
    uint64_t flush_waits;    /* times PQflush left data unsent and we waited for UV_WRITABLE */
    uint64_t max_in_flight;  /* most batches sent and awaiting results at once (incl. setup) */
    uint64_t prepared;       /* statements prepared (Parse confirmed) */
} db_conn_stats;

/* [database] pooler: what sits between the daemon and the server. */
enum db_pooler {
    DB_POOLER_AUTO = 0,      /* find out at every connect (see above) */
    DB_POOLER_SESSION,       /* direct or a session pooler: session settings, prepared, LISTEN */
    DB_POOLER_TRANSACTION,   /* a transaction pooler: nothing in the session */
};
/* What a connection (or a probe) found. */
enum db_path { DB_PATH_UNKNOWN = 0, DB_PATH_DIRECT, DB_PATH_SESSION, DB_PATH_TRANSACTION };

typedef struct db_opts {
    const char *conninfo;          /* libpq conninfo or URI; copied */
    long connect_timeout_ms;       /* default 10000 */
    long statement_timeout_ms;     /* 0 = server (or role) default; set_config at connect */
    const char *application_name;  /* default "kiotviet-syncd" */
    bool no_prepare;               /* never use named prepared statements */
    const char *schema;            /* put before the role's search_path; NULL/"public": none */
    enum db_pooler pooler;         /* default DB_POOLER_AUTO */
} db_opts;

/* Creates the connection object; connecting starts on the first submit (or db_conn_connect). */
db_conn *db_conn_new(uv_loop_t *loop, const db_opts *opts);
/* Starts connecting (on the next loop turn) if not connected, e.g. for a LISTEN connection.
 * A failed attempt is only visible through db_conn_last_error / db_conn_is_ready. */
void db_conn_connect(db_conn *c);
/* Fails all pending batches with DB_E_CANCELLED (callbacks run before this returns), closes the
 * server connection, and frees c once libuv has closed its handles (run the loop to let it).
 * May be called from a db callback. A batch submitted from one of those final callbacks fails
 * at once with DB_E_CANCELLED. c must not be used after this returns. */
void db_conn_close(db_conn *c);
bool db_conn_is_ready(const db_conn *c);   /* connected and idle or busy, not connecting */
/* The backend pid the server announced at connect (PQbackendPID) while connected, else 0.
 * Behind a pooler it is the pooler's made-up key, not a server backend's pid: compare it with
 * pg_backend_pid() in SQL before trusting it. */
int db_conn_backend_pid(const db_conn *c);
/* Last connection-level error text (never contains the password; kept after a later successful
 * connect), or "" if there never was one. */
const char *db_conn_last_error(const db_conn *c);
/* LISTEN state is lost with the connection: a LISTEN user must LISTEN again after reconnecting. */
void db_conn_set_notify_cb(db_conn *c, db_notify_cb cb, void *arg);
void db_conn_get_stats(const db_conn *c, db_conn_stats *out);
/* True while the connection runs in transaction mode (no LISTEN possible: its users poll). */
bool db_conn_txn_mode(const db_conn *c);
/* A one-line description of what the last connect found (direct or which pooler mode), for
 * logs (static). */
const char *db_conn_path_text(const db_conn *c);
/* Connection attempts refused as login failures (28P01/28000, or a pooler's own words for
 * it), process-wide, since start: callers back off on a change. */
unsigned long db_auth_refusals(void);
/* res is a failed connect that the server refused as a login failure. */
bool db_result_auth_refused(const db_result *res);
/* One line for --check-config: the configured mode and what the URL's port suggests. */
void db_pooler_describe(const char *conninfo, enum db_pooler p, char *buf, size_t cap);
/* "auto" | "session" | "transaction" -> *out; -EINVAL otherwise. */
int db_pooler_parse(const char *text, enum db_pooler *out);

db_batch *db_batch_new(void);
/* Appends a statement; sql and params are copied. params[i] may be NULL (SQL NULL). All params
 * are sent as text with server-inferred types: write casts in the SQL ($1::bigint). */
void db_batch_add(db_batch *b, const char *sql, int nparams, const char *const *params);
int db_batch_count(const db_batch *b);
void db_batch_free(db_batch *b);

/* Queues the batch; takes ownership of b. cb is called exactly once on the loop thread (see
 * db_batch_cb); cb may be NULL to discard the outcome. An empty batch completes with DB_OK. */
void db_submit(db_conn *c, db_batch *b, db_batch_cb cb, void *arg);

/* Convenience: a batch of one statement. */
void db_exec(db_conn *c, const char *sql, int nparams, const char *const *params, db_batch_cb cb,
             void *arg);

/* Checks a [database] url the way libpq will read it, without ever quoting it (libpq's parse
 * errors quote the text, password included): 0, or -EINVAL with why naming the wrong part
 * (the password's bad escape, a host holding '@', a port that is not a number). */
int db_conninfo_check(const char *conninfo, char *why, size_t cap);

/* Blocking helpers for start-up and CLI paths only (never on the loop thread while it runs).
 * PQconnectdb, then the same session settings as the asynchronous path (search_path '',
 * application_name, timezone UTC). Returns the connection (caller PQfinish'es) or NULL with err
 * filled (the message never contains the password). */
PGconn *db_connect_blocking(const char *conninfo, kvs_err *err);
/* The same with o->application_name and o->statement_timeout_ms (other fields ignored). The
 * session settings are made only on a direct connection: through a pooler they could outlive
 * this client on the server connection. */
PGconn *db_connect_blocking_opts(const db_opts *o, kvs_err *err);
/* Blocking: direct connection, session pooler or transaction pooler? A pooler shows as a
 * backend pid that is not the server's; its mode as whether a second client (opened and
 * closed here) is lent the server connection pg just used. DB_PATH_UNKNOWN on errors. */
enum db_path db_path_probe_blocking(PGconn *pg, const char *conninfo);

/* Quotes an SQL identifier like PQescapeIdentifier, without a connection: always wrapped in
 * double quotes, embedded double quotes doubled. name must be valid in the database encoding
 * (UTF-8). Returns a new string (caller frees). */
char *db_quote_ident(const char *name);

#endif
