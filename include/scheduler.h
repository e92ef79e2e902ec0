/* scheduler: the daemon's life between start and stop.
 *
 * Owns the control database connection (schema discovery, the integration list, closing
 * abandoned sync_logs rows, pruning old ones), one timer per integration, and the runs.
 *
 * - An integration is due sync_interval_minutes after its last_sync_at (doubling while it keeps
 *   failing, up to [sync] max_backoff_minutes); one that never synced is due at once; a few
 *   seconds of jitter spread simultaneous starts. A run never overlaps another of the same
 *   integration, and at most [sync] max_concurrent_runs run at once.
 * - The integration list is re-read every [sync] poll_interval seconds (default 30) and on
 *   reload, so added, removed, disabled and re-timed integrations apply without a restart,
 *   within one poll interval (at once with SIGHUP); a run-now request (sync_requested_at) is
 *   picked up the same way, and at once when `kiotviet-syncd sync` sends NOTIFY kiotviet_sync
 *   (the control connection LISTENs). Polling is the mechanism of record: it needs no trigger
 *   in the shop's database and works through poolers.
 * - Several daemons may share one database. A due integration is claimed on the control
 *   connection with a lease that is only granted if nobody synced it since the last_sync_at
 *   this daemon saw, so each due run happens once; a daemon that loses the claim waits until
 *   the other's lease would end (or until its next poll shows the new last_sync_at). A dead
 *   daemon's integrations are taken over when its lease expires ([sync] lease_seconds), and
 *   its 'running' sync_logs rows are closed as failed (at start, then every lease_seconds).
 * - In --once mode every active, sync-enabled integration runs once, now, and the scheduler
 *   reports when all are done, each outcome through sched_opts.report (the CLI prints them;
 *   the scheduler writes nothing to stdout). One held by another live daemon is skipped
 *   (exit 75), or with --wait claimed again every second until that lease ends or its
 *   holder's session is gone.
 *
 * Config, discovered schema and mapping form a "generation": runs keep the generation they
 * started with, and a reload swaps in a new one only when it was built completely.
 * The scheduler holds no SQL: its statements are store.h's (ST_LIST_NOW, ST_CLAIM_DUE,
 * ST_LISTEN, ...). Rooms (src/sched_int.h): scheduler.c (generations, status, start, reload,
 * stop), scheduler_runs.c (claims, runs, due timers), scheduler_poll.c (the control
 * connection's reads, refused logins); the arithmetic of due times and waits is sched_plan.c
 * (include/sched_plan.h), pure and unit-tested. The sched owns its integrations, timers and
 * generations; sched_free frees it after the done callback. */
#ifndef KVS_SCHEDULER_H
#define KVS_SCHEDULER_H

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "sync.h"

typedef struct sched sched;

/* --once outcomes, handed to the CLI, which prints them: the scheduler writes nothing to
 * stdout. Fields are borrowed for the call. */
enum sched_report_kind {
    SCHED_REPORT_RESULT,  /* a run of `name` is over: result, ms it took */
    SCHED_REPORT_WAITING, /* --wait: `name` waits for another daemon's lease; result->message */
    SCHED_REPORT_NONE,    /* nothing to sync; name: --only's name, or NULL */
};
typedef struct sched_report {
    enum sched_report_kind kind;
    const char *name;
    const sync_result *result; /* RESULT, WAITING; NULL for NONE */
    uint64_t ms;
} sched_report;
/* Called with the `arg` given to sched_new. */
typedef void (*sched_report_cb)(const sched_report *rep, void *arg);

typedef struct sched_opts {
    bool once;          /* run every enabled integration once, then finish */
    bool full;          /* with once: ignore cursors */
    const char *only;   /* with once: only this integration name (NULL = all) */
    bool wait;          /* with once: wait for another daemon's lease instead of skipping */
    bool force_deletes; /* with once + full: apply a reconciliation beyond max_delete_ratio */
    const char *daemon_id;
    sched_report_cb report; /* with once: where outcomes go (NULL: nowhere) */
    kvs_metrics *metrics;   /* borrowed, outlives the scheduler; lent to every run; NULL: none */
} sched_opts;

/* Called when the scheduler has finished (once mode: all runs done; daemon: after stop).
 * exit_code: 0 all good, 1 a run failed or the database was unusable, 78 bad schema; in once
 * mode SCHED_EX_TEMPFAIL when none failed but another live daemon's lease made it skip some. */
#define SCHED_EX_TEMPFAIL 75 /* sysexits.h EX_TEMPFAIL */
typedef void (*sched_done_cb)(int exit_code, void *arg);

/* Takes ownership of cfg. Starts connecting at once. */
sched *sched_new(uv_loop_t *loop, kvs_config *cfg, http_client *http, const sched_opts *o,
                 sched_done_cb done, void *arg);
/* Reload (SIGHUP, after RELOADING=1): takes ownership of cfg (already validated), or NULL when
 * the new file was invalid (the caller logged why). Builds a new generation and swaps it in
 * when complete; on failure keeps the old one and logs why. Keys that only apply at start
 * ([database] url and schema, [kiotviet] timeouts, page cap and CA file) keep their old values
 * and are named in a warning. Either way the integration list is re-read, then READY=1 is
 * sent. Runs in flight keep the generation they started with. */
void sched_reload(sched *s, kvs_config *cfg);
/* Webhook events of integration_id were stored (the listener's on_event): an inbox run of it
 * starts now, or when its run in flight ends (see sync_run_start_inbox). Events are also looked
 * for after every read of the integrations, so a lost kick delays them by a poll at most. */
void scheduler_inbox_kick(sched *s, const char *integration_id);
/* Re-reads the integration list now (SIGHUP without a config change, NOTIFY). */
void sched_poll_now(sched *s);
/* Graceful stop: no new runs; in-flight runs get grace_s, then are cancelled. done is called
 * when everything is closed. A second call stops at once (runs cancelled now). */
void sched_stop(sched *s);
/* Frees the scheduler after done was called. */
void sched_free(sched *s);

#endif
