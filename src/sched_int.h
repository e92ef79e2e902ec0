/* Inside the scheduler (scheduler.c, scheduler_runs.c, scheduler_poll.c, scheduler_inbox.c;
 * the arithmetic is include/sched_plan.h); other modules use scheduler.h. The sched owns its
 * control connection, its timers, the integ list and the current generation; each integ owns
 * its timer (freed in the timer's close callback, integ_unlink_close) and its budget; a run
 * holds a reference on the generation it started with (gen_unref). scheduler.c: generations,
 * status, control writes, start/reload/stop; scheduler_runs.c: claims, runs and due timers;
 * scheduler_poll.c: the control connection's reads (discovery, the integrations list, prune,
 * abandoned rows, LISTEN) and refused logins; scheduler_inbox.c: the runs that apply webhook
 * events. */
#ifndef KVS_SCHED_INT_H
#define KVS_SCHED_INT_H

#include "mapping.h"
#include "sched_plan.h"
#include "scheduler.h"
#include "sync.h"

#define PRUNE_EVERY_MS (3600u * 1000u)

/* Config + discovered schema + mapping options; refcounted by the runs that use it. */
typedef struct gen {
    kvs_config *cfg;  /* owned */
    store *store;     /* owned */
    map_opts mopts;   /* owned */
    int refs;         /* runs using it, plus one while it is current */
} gen;

typedef struct integ integ;
struct integ {
    sched *s;
    integ *next;
    char *id, *name;           /* owned */
    bool enabled, present, removed;
    int interval_min, failures;
    int64_t last_sync_us;      /* last_sync_at as the database last told us (0 = never) */
    int64_t requested_us, handled_request_us;
    /* When the last sync happened, on this host's monotonic clock: the database's age of
     * last_sync_at subtracted from when we learnt it, or the end of our own run. Schedules are
     * armed from it, so a jump of the host's wall clock moves nothing. */
    int64_t synced_mono_ms;
    bool synced_mono_valid;
    bool request_full;
    bool once_waiting;         /* --once --wait: waiting for another daemon's lease (timer) */
    bool wait_said;            /* --once --wait: the waiting line was printed */
    uv_timer_t timer;          /* due timer; integ freed in its close callback */
    bool queued;               /* due, waiting for a free run slot */
    bool claiming;             /* the scheduler's claim is in flight (holds a run slot) */
    uint64_t not_before_ms;    /* monotonic: another daemon holds the lease until about then */
    uint64_t not_before_set_ms; /* when not_before_ms was learnt (from a failed claim) */
    int64_t armed_due_ms;      /* what the running timer was set from: a monotonic due time
                                  or SCHED_DUE_* (see integ_arm) */
    uint64_t armed_not_before_ms;
    sync_run *run;
    gen *run_gen;
    int64_t run_request_us;    /* the request this run serves (0 = none) */
    uint64_t run_started_ms;
    kv_budget budget;
    sync_memo memo;            /* carried between its runs */
    bool inbox_pending;        /* webhook events wait: an inbox run starts when it is free */
    bool inbox_run;            /* run is an inbox run (sync_run_start_inbox) */
    bool inbox_gathering;      /* the listener's kicks are gathered before a run starts */
    uint64_t inbox_first_ms, inbox_last_ms; /* loop time of the first and the last such kick */
};

struct sched {
    uv_loop_t *loop;
    http_client *http;
    sched_opts o;
    char *daemon_id, *only;
    gen *cur;                  /* current generation, NULL until discovered */
    kvs_config *boot_cfg;      /* config waiting for its first discovery (owned) */
    kvs_config *reload_cfg;    /* config waiting for a reload discovery (owned) */
    db_conn *ctl;
    /* Control connection work in flight. Batches on one connection run in order, so a list
     * asked for while a discovery is in flight sees the outcome of that discovery. */
    bool discovering, listing, list_again, abandoning;
    int ctl_writes;            /* lease releases / request clears in flight: wait at stop */
    bool reloading;            /* RELOADING=1 sent: READY=1 once the integrations are re-read */
    unsigned discover_failures;
    uv_timer_t poll_timer, grace_timer, retry_timer;
    integ *integs;
    int running;               /* runs in flight plus claims in flight */
    bool stopping, hard_stop, finishing, ready_sent, once_listed;
    int once_pending;
    int once_held;             /* --once: integrations skipped because a live daemon held them */
    int exit_code;
    uint64_t last_prune_ms, last_abandoned_ms;
    uint64_t list_sent_ms;     /* when the list in flight (or the last one) was sent */
    uint64_t listen_connects;  /* connection count of ctl when LISTEN last succeeded */
    bool listen_inflight;
    bool mode_logged;          /* the pooler mode was logged */
    unsigned auth_refused;     /* refused logins in a row (0 = none or since a reload) */
    unsigned long auth_seen;   /* db_auth_refusals() when we last looked */
    bool auth_waiting;         /* auth_timer runs: no database work until it fires */
    uv_timer_t auth_timer;
    uv_timer_t inbox_timer;    /* the earliest end of an integration's gathering of kicks */
    sched_done_cb done;
    void *arg;
    int handles_open;
};

static inline const kvs_config *cfg_of(const sched *s)
{
    return s->cur ? s->cur->cfg : s->reload_cfg ? s->reload_cfg : s->boot_cfg;
}

static inline const log_ctx *ictx(const integ *it, log_ctx *buf)
{
    buf->integration = it->name;
    buf->run = NULL;
    return buf;
}

/* scheduler.c */
void gen_unref(gen *g);
void status_update(sched *s);
void ctl_write_submit(sched *s, const char *what, const char *sql, int n,
                      const char *const *p);
void sched_maybe_finish(sched *s);

/* scheduler_runs.c */
void integ_set_last_sync(integ *it, int64_t db_last_us, int64_t db_now_us, uint64_t mono_now);
void once_report(const sched *s, enum sched_report_kind kind, const char *name,
                 const sync_result *r, uint64_t ms);
void integ_unlink_close(integ *it);
void integ_arm(integ *it);
void integ_start(integ *it);
bool integ_busy(const integ *it);
void runs_start_queued(sched *s);
void integ_run_start(integ *it, bool inbox);

/* scheduler_inbox.c: inbox runs (webhook events) */
void inbox_maybe_start(integ *it);
void inbox_run_done(integ *it, const sync_result *res);
void inbox_pending_check(sched *s);

/* scheduler_poll.c */
bool auth_refused_wait(sched *s, const db_result *res, const char *msg);
void ctl_list(sched *s);
void on_notify(const char *channel, const char *payload, void *arg); /* db_conn notify_cb */
void ctl_discover(sched *s, kvs_config *cfg);

#endif
