/* The inside of a sync run, shared by its files (not a public interface: see sync.h): sync.c
 * (the phases, the run's connection, the lease and token, the end of the run), sync_pager.c
 * (the pager: which pages to fetch, gap checks, handing mapped pages to the writer),
 * sync_written.c (what the writer reports: counts, failures, progress) and inbox.c (a run whose
 * input is the webhook inbox). One run is one sync_run, owned by itself from sync_run_start to
 * its done callback. */
#ifndef KVS_SYNC_INT_H
#define KVS_SYNC_INT_H

#include "kiotviet.h"
#include "log.h"
#include "sync.h"
#include "writer.h"

#define MAX_REFETCH 12      /* gap repairs per entity before the run gives up */
#define MAX_LISTED 100      /* failures / notes listed in error_details (all are counted) */
/* More records than any shop's catalogue holds (KiotViet shops hold thousands, the largest
 * about 100,000 products): a larger "total" is not trusted, and without a total it bounds the
 * pages one entity may take. A lying total ({"total": 1e12, "data": []}) drove endless GETs. */
#define MAX_CATALOGUE 2000000
#define PROGRESS_MS 200 /* the least time between two progress updates of a run's sync_logs row */

/* PH_STOCK: incremental runs only (sync.c, sync_phase_next, says why). PH_INBOX: inbox runs
 * only (src/inbox.c). */
enum phase { PH_CLAIM, PH_START, PH_BRANCHES, PH_CATEGORIES, PH_RELINK, PH_PRODUCTS, PH_STOCK,
             PH_RECONCILE, PH_INBOX, PH_FINISH, PH_CLOSING };

typedef struct inbox inbox;

/* An incremental run reads /branches when the integration's last read is older than this. */
#define SYNC_BRANCHES_EVERY_MIN 60

/* The branches phase's state (sync_branches.c). */
typedef struct branches_read {
    int64_t since_us;       /* newest branch change stored, 0 none: no lastModifiedFrom */
    int offset, pages;
    bool read;              /* this run reads /branches */
    bool done;              /* every page handed to the writer (or none to read) */
    bool incomplete;        /* a record or row was refused: the read is not recorded */
    int book_offset;        /* GET /pricebooks paging, when [mapping] price_book is a name */
} branches_read;

typedef struct slot {
    int64_t offset;
    int64_t first, last;    /* ids served first and last (valid when n > 0) */
    int n;                  /* records served */
    bool fetched, inflight;
    uint64_t seq;           /* fetch order, to know which of two neighbours is newer */
    int64_t total;          /* total reported with it */
} slot;

typedef struct fetch fetch;

typedef struct pager {
    enum writer_entity ent;
    slot *slots;
    int nslots;
    int next;               /* next slot to issue in order */
    int inflight;
    int64_t total;          /* latest reported total, -1 unknown */
    int64_t end;            /* offset of the first empty page seen: no page at or after it */
    int64_t first_total;    /* total of the first page, -1 unknown: bounds the pages issued */
    int issued;             /* pages requested for this entity, refetches included */
    uint64_t seq;
    int refetches;
    bool unordered;         /* the server ignored orderBy=id: gap checks are off */
    bool done;
    int64_t server_ts;      /* "timestamp" of the first page, 0 if none */
} pager;

/* A page being fetched; owned by the run's fetch list. */
struct fetch {
    sync_run *run;
    fetch *next, *prev;
    kv_req *req;
    int slot;
    enum writer_entity ent;
};

struct sync_run {
    sync_env env;
    char *id, *name;
    bool force_full;
    kv_budget *budget;
    sync_memo *memo;        /* the integration's, borrowed; NULL: none */
    sync_done_cb cb;
    void *cb_arg;

    enum phase phase;
    bool cancelled, failing;
    db_conn *db;            /* the run's connection: claim, log, lease, progress; lent to
                               the writer as its first connection */
    writer *w;              /* the run's page writer (owned) */
    uint64_t progress_ms;   /* monotonic time of the last progress update sent */
    bool had_products;      /* a product row had a kiotviet_id when the run claimed */
    kv_client *kv;
    integ_row *row;
    char log_id[32];
    log_ctx lctx;
    uv_timer_t lease_timer;
    bool lease_timer_on;
    int handles_open;

    int psize;              /* pageSize asked for: [sync] page_size, or less once KiotViet
                               echoed a smaller one (it serves no more than that) */
    bool full;              /* no lastModifiedFrom */
    bool stock_read;        /* the run reads /productOnHands (PH_STOCK) */
    bool reconcile_ok;      /* full read whose every record had an id */
    pager pg;
    branches_read br;
    map_opts mopts;         /* env's, with the run's clock and price book id (sync_branches.c) */
    fetch *fetches;
    int jobs;               /* database work not yet done: writer work, token, lease, progress */
    kvs_idset seen[WRITER__ENTITIES]; /* ids stored per entity */
    /* new cursors, set when an entity completes; the stock's is kept in the products cursor
     * (cursor_param in sync.c) */
    int64_t cursor_us[WRITER__ENTITIES];
    int64_t floor_us[WRITER__ENTITIES]; /* oldest modification time of a row the database
                                           refused, 0 none */
    bool floor_unknown[WRITER__ENTITIES]; /* a refused row had no modification time: keep
                                             the old cursor */
    int64_t db_start_us;    /* the database's clock when the run claimed the integration */
    uint64_t claim_mono_ms; /* our monotonic clock at the same moment */
    int64_t kv_ts_us;       /* KiotViet's "timestamp" from the run's first page, 0 if none */
    bool db_down;           /* the run failed because the database was unreachable */
    enum phase fail_phase;  /* where sync_fail was first called */
    uint64_t finish_first_ms;
    int finish_attempt;
    bool finish_waiting;    /* the lease timer is waiting to resend the end of the run */
    int64_t *removed[WRITER__ENTITIES];
    int nremoved[WRITER__ENTITIES];
    /* The reconciliation would have marked held_would of held_live live products deleted,
     * beyond [sync] max_delete_ratio: not applied, the run is partial. */
    bool deletes_held;
    long held_would, held_live;

    inbox *inbox;           /* owned: an inbox run's state (src/inbox.c); NULL for a poll */

    sync_counts counts;
    int failures_listed, notes_listed;
    kvs_buf failures, notes;
    sync_result res;
};

/* Fails the run (first reason wins) and stops fetching; pending writes drain, then it
 * finishes. */
void sync_fail(sync_run *r, const char *fmt, ...) KVS_PRINTF(2, 3);
static inline bool sync_stopping(const sync_run *r) { return r->failing || r->cancelled; }
/* After categories were created or changed: hands the writer the re-link of parents and
 * categories from the kiotviet_* ids (each counted in jobs). */
void sync_relink_changed(sync_run *r);
/* Moves the run to its next phase (or to its end, when stopping and nothing is pending). */
void sync_phase_next(sync_run *r);

/* sync.c: the run's counts as the sync_logs count columns' JSON object (appended to b). */
void counts_json(const sync_run *r, kvs_buf *b);
/* sync.c: the end of the run: records it (sync_logs, cursors, lease) once pending jobs drain. */
void run_finish(sync_run *r);

/* sync_written.c: writes the run's counts to its sync_logs row, unless it did less than
 * PROGRESS_MS ago. */
void sync_progress_send(sync_run *r);
/* sync_written.c: every asynchronous database job of a run ends here: it moves the run on. */
void jobs_dec(sync_run *r);
/* sync_written.c: the writer's report of one piece of work (writer_opts.cb; arg the run). */
void written_cb(const writer_outcome *o, void *arg);

/* Pages of ent write product rows (products, or their stock): their counts and failures are
 * the products'. */
static inline bool sync_ent_products(enum writer_entity ent)
{
    return ent == WRITER_PRODUCTS || ent == WRITER_STOCK;
}
/* "products", "categories", "stock": for messages. */
const char *sync_entity_name(enum writer_entity ent);
/* inbox.c: the inbox run's stages (a run started by sync_run_start_inbox). */
inbox *inbox_new(void);
void inbox_free(inbox *ib);
/* Hands out the next stage's work; true when the run is over (nothing pending, all done). */
bool inbox_next(sync_run *r);
/* The writer's report, for the events whose rows the database refused. */
void inbox_written(sync_run *r, const writer_outcome *o);
/* Appends ,"webhook_events":n,"webhook_results":{...} to the run's error_details. */
void inbox_details(const sync_run *r, kvs_buf *out);
/* The run read a full batch: more events may wait. */
bool inbox_more(const inbox *ib);


/* sync_branches.c: the branches phase, which also resolves a [mapping] price_book given by
 * name (GET /pricebooks, once per run). begin reads the cursor and, when due, the pages; end
 * (at the phase's end, nothing pending) records the read when it was complete and returns
 * whether it sent that; written takes the writer's reports about branches. */
void sync_branches_begin(sync_run *r);
bool sync_branches_end(sync_run *r);
void sync_branches_written(sync_run *r, const writer_outcome *o);

/* sync_pager.c: starts paging ent from offset 0 (the phase's first page). */
void sync_pager_begin(sync_run *r, enum writer_entity ent);
/* Issues pages while there is room, and decides when the entity is complete. */
void sync_pager_pump(sync_run *r);

#endif
