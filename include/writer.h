/* writer: pages of mapped rows into the shop's database, under a lease.
 *
 * One writer serves one run of one integration (sync.c makes it after the claim and frees it at
 * the end). It knows pages, connections and a lease, not runs: it never reads or writes
 * sync_logs, counts nothing across pages, and reports each piece of work it was given exactly
 * once, through one callback, with a typed outcome (never text to parse).
 *
 * What it owns:
 *   - its connections: up to WRITER_MAX_CONNECTIONS ([sync] store_connections). The first may
 *     be borrowed (the run's own connection, so a small run opens no other); the others it
 *     opens and closes. One PostgreSQL backend is one core, and a page upsert costs the server
 *     more CPU than the daemon spends fetching and mapping it: pages go to the least busy
 *     connection (the first on a tie); removals, relinks and the reconciliation stay on the
 *     first connection, in order. Each connection sends its work first in, first out (db.c).
 *   - the per-page transaction: every page is one db batch (one transaction) whose statement
 *     also checks the lease (store.c's page SQL: $2 integration, $3 owner, $4 lease seconds);
 *     a page whose lease was taken over writes nothing and reports lease_lost.
 *   - the retry of transient database errors (connection lost, server restarting, serialisation
 *     failure, too many connections): the page is sent again, in a new transaction, after a
 *     capped backoff, for up to one lease period; then it reports db_down.
 *   - the split of a failing page: a data or constraint error (SQLSTATE classes 21, 22, 23)
 *     sends the page's rows one by one; the rows the database refuses are reported as failed
 *     (id, modification time, message), the others are stored.
 *   - the choice between the upsert with and without its prefilter: after a page whose rows
 *     were all new (a first sync), the next pages skip the prefilter until one finds a row
 *     that exists.
 *
 * Callback contract (as pgbouncer's sbuf: one state machine, one callback):
 *   - cb is called exactly once per writer_put_* call, on the loop thread, never from inside
 *     writer_put_* itself (db.c sends on a later loop turn), except from writer_stop, which
 *     reports the pages it gives up before it returns.
 *   - the outcome and everything it points to are valid until cb returns.
 *   - cb may call writer_put_*, writer_stop and writer_pending; it must not free the writer
 *     (free it once writer_pending() is 0, from outside the callback or after it returns).
 */
#ifndef KVS_WRITER_H
#define KVS_WRITER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "db.h"
#include "log.h"
#include "mapping.h"
#include "store.h"

#define WRITER_MAX_CONNECTIONS 4

typedef struct writer writer;

/* WRITER_BRANCHES: kiotviet_branches (migration 005); pages and WRITER_REMOVE only. A products
 * page also writes its kiotviet_product_stock and kiotviet_product_serials rows.
 * WRITER_STOCK: pages of stock records (map_stock: GET /productOnHands, or a webhook's
 * stock.update filled into the same record shape) that update the named products' stock
 * columns (store_stock_update_sql); only WRITER_PAGE, never removals or reconciliation. */
enum writer_entity {
    WRITER_CATEGORIES,
    WRITER_PRODUCTS,
    WRITER_BRANCHES,
    WRITER_STOCK,
    WRITER__ENTITIES
};

enum writer_kind {
    WRITER_PAGE,      /* upsert of a page of mapped rows */
    WRITER_REMOVE,    /* mark removed ids deleted (removedIds) */
    WRITER_RELINK,    /* re-link parents / categories from the kiotviet_* ids */
    WRITER_RECONCILE, /* a full read: mark the entity's synced rows not among the ids deleted */
};

/* A row the database refused. */
typedef struct writer_failure {
    int64_t id;           /* the row's KiotViet id */
    int64_t modified_us;  /* its modification time, 0 when the record had none */
    char message[400];    /* the server's message and detail, redacted */
} writer_failure;

typedef struct writer_outcome {
    enum writer_kind kind;
    enum writer_entity ent;
    int rows;             /* rows (WRITER_PAGE) or ids handed in */
    /* WRITER_PAGE: rows stored, by effect; inserted + updated + unchanged + nfailed + unsent
     * == rows (WRITER_STOCK: never inserted; unchanged also counts ids the shop lacks) */
    int inserted, updated, unchanged;
    const writer_failure *failed; /* rows refused by the database (nfailed entries) */
    int nfailed;
    /* WRITER_REMOVE, WRITER_RECONCILE: rows marked deleted */
    int marked;
    /* WRITER_RECONCILE: how many rows it marks, or would have marked when the guard held
     * (marked 0, would_mark > max_delete_ratio x live), of how many live rows; others: another
     * integration has run, so rows without an owner were left alone */
    long would_mark, live;
    bool others;
    /* Given up: rows neither stored nor refused (the whole page when it could not be sent). */
    int unsent;
    bool lease_lost;      /* the lease was taken over: nothing of it was written */
    bool db_down;         /* the database stayed unreachable for a lease period */
    const char *error;    /* why it was given up (db_down or another database error), redacted;
                             NULL when it was not, or on lease_lost and writer_stop */
} writer_outcome;

typedef void (*writer_cb)(const writer_outcome *o, void *arg);

typedef struct writer_opts {
    uv_loop_t *loop;
    const store *store;       /* borrowed; outlives the writer */
    const db_opts *db;        /* for the connections the writer opens (copied by db.c) */
    db_conn *shared;          /* borrowed first connection, or NULL to open every one */
    int connections;          /* 1 .. WRITER_MAX_CONNECTIONS (clamped) */
    const char *integration;  /* lease: integration id, owner, seconds (strings copied) */
    const char *owner;
    int lease_seconds;
    double max_delete_ratio;  /* the reconciliation's guard */
    bool force_deletes;       /* no guard */
    const log_ctx *lctx;      /* borrowed; outlives the writer */
    writer_cb cb;
    void *arg;
} writer_opts;

writer *writer_new(const writer_opts *o);
/* Closes the connections the writer opened and frees it. Call when writer_pending() is 0. */
void writer_free(writer *w);

/* Stores a page of at least one row: takes p's rows (text and records; p keeps the rest, the
 * caller still frees it). */
void writer_put_page(writer *w, enum writer_entity ent, map_page *p);
/* WRITER_REMOVE or WRITER_RECONCILE over ids (copied). */
void writer_put_ids(writer *w, enum writer_kind kind, enum writer_entity ent, const int64_t *ids,
                    int n);
/* WRITER_RELINK of ent. store.c's relink SQL must exist for it. */
void writer_put_relink(writer *w, enum writer_entity ent);

/* Stops retrying: pages waiting to be sent again are given up (reported with unsent, before
 * this returns), and later transient errors are not retried. Work in flight finishes. */
void writer_stop(writer *w);
/* Work handed in and not yet reported. */
int writer_pending(const writer *w);

/* Database errors worth waiting out: the server went away, restarts, refuses connections for a
 * moment, or rolled back a transaction that a retry can commit. */
bool writer_db_transient(const db_result *res);
/* Delay before retry number attempt (0-based) of a database write: capped exponential with
 * jitter, the cap a quarter of the lease (1 to 30 s) so that several tries fit in a lease. */
uint64_t writer_retry_delay_ms(int lease_seconds, unsigned attempt);

#endif
