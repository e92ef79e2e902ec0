/* sync: one run of one integration, as a state machine on the loop: the phases, the pager and
 * the counts. Writing pages is the writer's job (writer.h); sync owns the run's connection
 * (claim, sync_logs row and its progress, lease renewal, token saving, the end of the run) and
 * lends it to the writer as its first.
 *
 *   claim lease -> sync_logs 'running' -> token -> categories pages -> relink -> products pages
 *   -> removals -> (full runs: reconcile) -> finish sync_logs + cursors + release lease
 *
 * The run lives in three files sharing src/sync_int.h: sync.c (phases, the run's connection,
 * the lease and token, the end of the run), sync_pager.c (the pager) and sync_written.c (what
 * the writer reports). One page of products, top-down: sync_pager.c asks kiotviet.c for it
 * (kv_page), mapping.c turns its records into typed rows (map_page), map_page_keep_unseen
 * (mapping_page.c) drops the rows this run already stored, writer.c stores the rest in one
 * transaction carrying the lease check (store_gen.c's SQL over db.c), and its outcome
 * (written_cb in sync_written.c) lands in the run's counts, failures and cursor floor, which
 * the run writes to sync_logs (progress at most every 200 ms, and at the end: sync.c).
 *
 * Pages are fetched pages_in_flight at a time, ordered by id, with an overlap of a few rows
 * between neighbours so that a catalogue that shrinks while we page is noticed (a neighbour
 * whose first id lies beyond our last id) and the gap is fetched again. A run whose lease was
 * taken over stops writing: every write checks the lease.
 * The cursor advances only when the run succeeded (success or partial), to a time before its
 * first read (KiotViet's "timestamp", else the database's now() at the claim: never this
 * host's clock), and never past a row the database refused.
 *
 * Faults: a page that loses the database is sent again by the writer (one transaction each,
 * idempotent) for up to lease_seconds, then the run fails as SYNC_NO_DB; the end of a run
 * (sync_logs row, cursors, lease) is retried until the database is back (at most 10 lease
 * periods, or until cancelled). A claim also closes 'running' sync_logs rows whose daemon lost
 * its lease. The lease records the backend pid of the run's connection (renewed with the lease,
 * so a reconnect is followed): a claimant that finds that session gone takes the lease over. */
#ifndef KVS_SYNC_H
#define KVS_SYNC_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "backoff.h"
#include "config.h"
#include "http.h"
#include "mapping.h"
#include "metrics.h"
#include "store.h"

typedef struct sync_run sync_run;

/* Shared services a run borrows; all must outlive the run. */
typedef struct sync_env {
    uv_loop_t *loop;
    http_client *http;
    const kvs_config *cfg;
    const store *store;
    const map_opts *mopts;
    const char *daemon_id;   /* lease owner and sync_logs.daemon_id */
    bool force_deletes;      /* a full run applies its reconciliation beyond max_delete_ratio */
    kvs_metrics *metrics;    /* runs, rows, API requests and budget are counted here; NULL: none */
} sync_env;

enum sync_status {
    SYNC_SUCCESS,
    SYNC_PARTIAL,    /* stored, but some records failed */
    SYNC_FAILED,
    SYNC_CANCELLED,
    SYNC_SKIPPED,    /* leased by another live daemon, or not claimable */
    SYNC_NO_DB,      /* could not reach the database to claim it, or lost it mid-run (the
                        sync_logs row then says 'failed'); not the integration's fault */
};

typedef struct sync_counts {
    int products_synced, products_created, products_updated, products_failed,
        products_deactivated;
    int categories_synced, categories_created, categories_updated, categories_failed,
        categories_deactivated;
    int requests, token_requests, attribute_notes, skipped;
    /* incremental runs: stock records read from /productOnHands, and products whose stock
     * they changed (also counted in products_updated) */
    int stock_synced, stock_updated;
} sync_counts;

typedef struct sync_result {
    enum sync_status status;
    char log_id[32];         /* sync_logs.id, "" when none was written */
    char message[512];       /* why it failed / was skipped */
    sync_counts counts;
    bool full;               /* a full (non-incremental) read */
    int64_t held_ms;         /* SYNC_SKIPPED: another live daemon's lease lasts this much
                                longer (at least 1); 0: not held (the integration is gone) */
    bool inbox_more;         /* an inbox run read a full batch: more events may wait */
} sync_result;

/* Called once when the run is over; the run is freed right after it returns. */
typedef void (*sync_done_cb)(const sync_result *res, void *arg);

/* What an integration's runs carry from one to the next (the caller keeps one per
 * integration, zeroed at first; a run borrows it). */
#define SYNC_MEMO_BOOK_MAX 256
typedef struct sync_memo {
    /* KiotViet's "timestamp" of the last complete /productOnHands read of an inbox run whose
     * stock pages were all written (0: none yet): stock changed before it is stored. */
    int64_t stock_read_kv_us;
    /* A [mapping] price_book given by name, as GET /pricebooks last resolved it (book_id 0:
     * not yet). Runs that do not read /branches reuse it, so an unchanged incremental run
     * stays at 3 GETs; every run that reads /branches (full runs, else hourly) resolves the
     * name again. */
    char book_name[SYNC_MEMO_BOOK_MAX];
    int64_t book_id;
} sync_memo;

/* Starts a run of integration `id` (name for logs). force_full ignores cursors. budget is the
 * integration's hourly GET budget, memo what its runs carry over (both borrowed; memo may be
 * NULL: nothing carried over). */
sync_run *sync_run_start(const sync_env *env, const char *id, const char *name, bool force_full,
                         kv_budget *budget, sync_memo *memo, sync_done_cb cb, void *arg);
/* Starts an inbox run of integration `id`: claims it as a poll does (a live holder makes it
 * SYNC_SKIPPED with held_ms), writes a sync_logs row of sync_type 'webhook', applies the
 * unprocessed kiotviet_webhook_events through the writer and marks them processed, then
 * releases the lease without touching the schedule (last_sync_at, cursors, failures). See
 * src/inbox.c. budget: for the refetches of stock changes; memo as for sync_run_start. */
sync_run *sync_run_start_inbox(const sync_env *env, const char *id, const char *name,
                               kv_budget *budget, sync_memo *memo, sync_done_cb cb, void *arg);
/* Asks the run to stop: in-flight page transactions finish, nothing new starts, the log row
 * says 'cancelled', the lease is released; cb is still called. */
void sync_run_cancel(sync_run *r);
/* One line of progress for STATUS= and the demo ("products 3400/10000"). */
void sync_run_progress(const sync_run *r, char *buf, size_t cap);

const char *sync_status_name(enum sync_status st);

#endif
