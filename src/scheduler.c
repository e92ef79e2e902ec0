/* The daemon's schedule: integrations, timers, runs, reload and stop (see scheduler.h). */
#include "scheduler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "db.h"
#include "log.h"
#include "mapping.h"
#include "notify.h"
#include "store.h"
#include "sync.h"

#define JITTER_MS 3000         /* spread of start times of integrations due together */
#define NO_DB_RETRY_MS 30000   /* a run that could not reach the database is retried this soon
                                  (or at the next poll interval, when that is shorter) */
#define LEASE_MARGIN_MS 250    /* after another daemon's lease expires, try this much later */
#define ONCE_WAIT_MS 1000      /* --once --wait: claim again this often while the lease lasts
                                  (its holder may finish early, or die) */
#define PRUNE_EVERY_MS (3600u * 1000u)
/* A refused database login (wrong password, unknown user) is not retried for this long,
 * doubling per refusal up to the cap: Supabase bans an address after a few failed password
 * attempts, and retrying cannot fix a password anyway. A reload tries again at once. */
#define AUTH_WAIT_BASE_MS (2u * 60u * 1000u)
#define AUTH_WAIT_CAP_MS (60u * 60u * 1000u)
/* integ.armed_due_ms for timers not set from a last sync (no computed due time equals them). */
#define DUE_REQUEST INT64_MIN        /* run-now request: at once */
#define DUE_NEVER (INT64_MIN + 1)    /* never synced: after its jitter */
#define DUE_RETRY (INT64_MIN + 2)    /* retry after the database was unreachable */

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
                                  or DUE_* (see integ_arm) */
    uint64_t armed_not_before_ms;
    sync_run *run;
    gen *run_gen;
    int64_t run_request_us;    /* the request this run serves (0 = none) */
    uint64_t run_started_ms;
    kv_budget budget;
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
    sched_done_cb done;
    void *arg;
    int handles_open;
};

static void ctl_list(sched *s);
static void ctl_discover(sched *s, kvs_config *cfg);
static void integ_arm(integ *it);
static void integ_fire(uv_timer_t *t);
static void once_wait_cb(uv_timer_t *t);
static void integ_start(integ *it);
static void runs_start_queued(sched *s);
static void sched_maybe_finish(sched *s);

static const kvs_config *cfg_of(const sched *s)
{
    return s->cur ? s->cur->cfg : s->reload_cfg ? s->reload_cfg : s->boot_cfg;
}

static const log_ctx *ictx(const integ *it, log_ctx *buf)
{
    buf->integration = it->name;
    buf->run = NULL;
    return buf;
}

/* ---- generations -------------------------------------------------------------------------- */

static void gen_unref(gen *g)
{
    if (!g || --g->refs > 0) return;
    map_opts_free(&g->mopts);
    store_free(g->store);
    config_free(g->cfg);
    free(g);
}


/* ---- status -------------------------------------------------------------------------------- */

static void status_update(sched *s)
{
    if (s->o.once || s->finishing) return;
    if (s->stopping) {
        notify_status("stopping: %d run(s) finishing", s->running);
        return;
    }
    if (s->auth_waiting) {
        notify_status("database login refused (%u in a row): next attempt in %" PRIu64
                      " min, or at a reload",
                      s->auth_refused, (uv_timer_get_due_in(&s->auth_timer) + 59999) / 60000);
        return;
    }
    const integ *next = NULL;
    uint64_t next_due = UINT64_MAX;
    for (const integ *it = s->integs; it; it = it->next) {
        if (it->run || !it->enabled || !uv_is_active((const uv_handle_t *)&it->timer)) continue;
        uint64_t due = uv_timer_get_due_in(&it->timer);
        if (due < next_due) {
            next_due = due;
            next = it;
        }
    }
    /* Whole minutes (seconds only in the last one), so the text does not change on every
     * poll: notify_status sends only changes. */
    if (next && next_due >= 60000)
        notify_status("%d running, next %s in %" PRIu64 "m", s->running, next->name,
                      (next_due + 59999) / 60000);
    else if (next)
        notify_status("%d running, next %s in %" PRIu64 "s", s->running, next->name,
                      (next_due + 999) / 1000);
    else
        notify_status("%d running, nothing scheduled", s->running);
}

/* ---- control-connection writes whose outcome only matters for logging --------------------- */

typedef struct ctl_write {
    sched *s;
    const char *what;          /* static */
} ctl_write;

static void ctl_write_cb(db_result *res, void *arg)
{
    ctl_write *w = arg;
    sched *s = w->s;
    if (res->status != DB_OK && res->status != DB_E_CANCELLED)
        log_warn("could not %s: %s", w->what, res->message ? res->message : "?");
    free(w);
    s->ctl_writes--;
    sched_maybe_finish(s);
}

static void ctl_write_submit(sched *s, const char *what, const char *sql, int n,
                             const char *const *p)
{
    if (!s->ctl) return;
    ctl_write *w = kvs_xcalloc(1, sizeof *w);
    w->s = s;
    w->what = what;
    s->ctl_writes++;
    db_exec(s->ctl, sql, n, p, ctl_write_cb, w);
}

/* Gives back a lease this daemon took but did not use, so others need not wait for it. */
static void lease_release(integ *it)
{
    sched *s = it->s;
    const char *p[2] = {it->id, s->daemon_id};
    ctl_write_submit(s, "release a lease", store_sql(s->cur->store, ST_RELEASE), 2, p);
}

/* ---- schedule bookkeeping ------------------------------------------------------------------- */

/* Takes last_sync_at (db_last_us, 0 = never) from an answer that also carried the database's
 * now() (db_now_us), received at mono_now: the sync happened (db_now - db_last) before that
 * on the monotonic clock. Both times are the database's, so this host's wall clock plays no
 * part. */
static void integ_set_last_sync(integ *it, int64_t db_last_us, int64_t db_now_us, uint64_t mono_now)
{
    it->last_sync_us = db_last_us;
    if (!db_last_us) {
        it->synced_mono_valid = false;
        return;
    }
    it->synced_mono_ms = (int64_t)mono_now - (db_now_us - db_last_us) / 1000;
    it->synced_mono_valid = true;
}

/* Our own run ended just now: it set last_sync_at to the database's now(). */
static void integ_synced_now(integ *it)
{
    it->synced_mono_ms = (int64_t)kvs_now_mono_ms();
    it->synced_mono_valid = true;
}

/* The database could not be reached for this integration: try again soon, without backoff
 * (not the integration's fault). The timer is marked DUE_RETRY so the next successful list
 * re-arms it from the schedule instead of taking it for the due timer. Returns the delay. */
static uint64_t integ_retry_soon(integ *it)
{
    uint64_t wait = NO_DB_RETRY_MS;
    const kvs_config *cfg = cfg_of(it->s);
    if (cfg && (uint64_t)cfg->poll_interval_s * 1000 < wait)
        wait = (uint64_t)cfg->poll_interval_s * 1000;
    it->armed_due_ms = DUE_RETRY;
    it->armed_not_before_ms = it->not_before_ms;
    uv_timer_start(&it->timer, integ_fire, wait, 0);
    return wait;
}

/* ---- refused logins -------------------------------------------------------------------------- */

static void auth_timer_cb(uv_timer_t *t);

/* After a failed database operation (res, or NULL for a run's): was a login refused, by this
 * result or by any connection since we last looked? Then no database work for a while (minutes,
 * doubling per refusal, capped): returns true, and the caller must not retry by itself. */
static bool auth_refused_wait(sched *s, const db_result *res, const char *msg)
{
    unsigned long n = db_auth_refusals();
    bool refused = db_result_auth_refused(res) || n != s->auth_seen;
    s->auth_seen = n;
    if (!refused || s->o.once) return false;
    if (s->auth_waiting) return true;
    s->auth_refused++;
    uint64_t wait = backoff_interval_ms(AUTH_WAIT_BASE_MS, (int)s->auth_refused - 1, AUTH_WAIT_CAP_MS);
    s->auth_waiting = true;
    uv_timer_start(&s->auth_timer, auth_timer_cb, wait, 0);
    log_err("database login refused (%u in a row): %s; check the user and password in [database] "
            "url (with Supabase's pooler the user is postgres.<project ref>; URL-encode special "
            "characters) and that the role may log in. Not trying again for %" PRIu64
            " min (the server may ban an address that keeps failing); a reload tries at once",
            s->auth_refused, msg && *msg ? msg : "password authentication failed", wait / 60000);
    status_update(s);
    return true;
}

/* The database answered: a refused login is over. */
static void auth_ok(sched *s)
{
    s->auth_seen = db_auth_refusals();
    if (!s->auth_refused) return;
    log_notice("database login accepted again");
    s->auth_refused = 0;
}

/* ---- runs ------------------------------------------------------------------------------------ */

/* --once: hands one outcome to the CLI's report callback (sched_opts.report). */
static void once_report(const sched *s, enum sched_report_kind kind, const char *name,
                        const sync_result *r, uint64_t ms)
{
    if (!s->o.report) return;
    sched_report rep = {.kind = kind, .name = name, .result = r, .ms = ms};
    s->o.report(&rep, s->arg);
}

static void integ_free_cb(uv_handle_t *h)
{
    integ *it = h->data;
    sched *s = it->s;
    kv_budget_free(&it->budget);
    free(it->id);
    free(it->name);
    free(it);
    s->handles_open--;
    sched_maybe_finish(s);
}

static void integ_unlink_close(integ *it)
{
    sched *s = it->s;
    for (integ **pp = &s->integs; *pp; pp = &(*pp)->next)
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    uv_timer_stop(&it->timer);
    uv_close((uv_handle_t *)&it->timer, integ_free_cb);
}

/* A run slot was given back (run over or claim failed): start what waits, maybe finish. */
static void slot_freed(sched *s)
{
    runs_start_queued(s);
    status_update(s);
    sched_maybe_finish(s);
}

static void run_done(const sync_result *res, void *arg)
{
    integ *it = arg;
    sched *s = it->s;
    log_ctx lc;
    uint64_t ms = kvs_now_mono_ms() - it->run_started_ms;
    it->run = NULL;
    s->running--;
    gen_unref(it->run_gen);
    it->run_gen = NULL;
    switch (res->status) {
    case SYNC_SUCCESS:
    case SYNC_PARTIAL:
        /* The run has just set last_sync_at to the database's now(). Its exact value comes
         * with the next list (until then a claim sees it as "synced since" and adopts it). */
        it->failures = 0;
        integ_synced_now(it);
        break;
    case SYNC_FAILED:
        it->failures++;
        integ_synced_now(it);
        if (it->failures > 1)
            rlog_warn(ictx(it, &lc), "%d failed runs in a row: next attempt in %" PRIu64 " min",
                      it->failures,
                      backoff_interval_ms((uint64_t)it->interval_min * 60000, it->failures,
                                          (uint64_t)cfg_of(s)->max_backoff_minutes * 60000) /
                          60000);
        break;
    case SYNC_SKIPPED:
    case SYNC_NO_DB:
        /* The run never used the lease the scheduler claimed for it. */
        if (!s->o.once && s->ctl) lease_release(it);
        break;
    default:
        break;
    }
    if (it->run_request_us && s->ctl && res->status != SYNC_NO_DB && res->status != SYNC_SKIPPED) {
        char seen[32];
        snprintf(seen, sizeof seen, "%" PRId64, it->run_request_us);
        const char *p[2] = {it->id, seen};
        it->handled_request_us = it->run_request_us;
        ctl_write_submit(s, "clear a run-now request", store_sql(s->cur->store, ST_REQUEST_CLEAR),
                         2, p);
    }
    it->run_request_us = 0;
    if (s->o.once && res->status == SYNC_SKIPPED && res->held_ms > 0 && s->o.wait &&
        !s->stopping) {
        /* --wait: try again soon; the integration stays pending. */
        if (!it->wait_said) {
            it->wait_said = true;
            once_report(s, SCHED_REPORT_WAITING, it->name, res, 0);
        }
        it->once_waiting = true;
        uv_timer_start(&it->timer, once_wait_cb,
                       (uint64_t)res->held_ms + LEASE_MARGIN_MS < ONCE_WAIT_MS
                           ? (uint64_t)res->held_ms + LEASE_MARGIN_MS
                           : ONCE_WAIT_MS,
                       0);
    } else if (s->o.once) {
        once_report(s, SCHED_REPORT_RESULT, it->name, res, ms);
        if (res->status == SYNC_FAILED || res->status == SYNC_NO_DB ||
            res->status == SYNC_CANCELLED || (res->status == SYNC_SKIPPED && !res->held_ms))
            s->exit_code = 1;
        else if (res->status == SYNC_SKIPPED)
            s->once_held++;
        s->once_pending--;
    }
    if (it->removed) {
        integ_unlink_close(it);
    } else if (!s->o.once && !s->stopping) {
        if (res->status == SYNC_NO_DB && auth_refused_wait(s, NULL, res->message))
            uv_timer_stop(&it->timer); /* re-armed by the list after the wait */
        else if (res->status == SYNC_NO_DB)
            integ_retry_soon(it);
        else
            integ_arm(it);
    }
    slot_freed(s);
}

/* Starts the sync run itself; the caller has taken the run slot (s->running). */
static void run_start(integ *it)
{
    sched *s = it->s;
    it->run_gen = s->cur;
    s->cur->refs++;
    sync_env env = {
        .loop = s->loop,
        .http = s->http,
        .cfg = s->cur->cfg,
        .store = s->cur->store,
        .mopts = &s->cur->mopts,
        .daemon_id = s->daemon_id,
        .metrics = s->o.metrics,
    };
    bool full = (s->o.once && s->o.full) || (it->run_request_us && it->request_full);
    env.force_deletes = s->o.once && s->o.full && s->o.force_deletes;
    it->run_started_ms = kvs_now_mono_ms();
    it->run = sync_run_start(&env, it->id, it->name, full, &it->budget, run_done, it);
}

static void claim_cb(db_result *res, void *arg)
{
    integ *it = arg;
    sched *s = it->s;
    log_ctx lc;
    it->claiming = false;
    PGresult *pr = res->status == DB_OK ? res->results[0] : NULL;
    bool found = pr && PQntuples(pr) == 1;
    bool claimed = found && atoi(PQgetvalue(pr, 0, 0)) == 1;
    if (s->stopping || it->removed || !s->cur || (claimed && !it->enabled)) {
        /* Nothing may start now: give the lease back at once. */
        if (claimed && s->ctl) lease_release(it);
        s->running--;
        if (it->removed) integ_unlink_close(it);
        slot_freed(s);
        return;
    }
    if (claimed) {
        run_start(it);
        status_update(s);
        return;
    }
    s->running--;
    uint64_t now = kvs_now_mono_ms();
    if (res->status != DB_OK) {
        if (res->status != DB_E_CANCELLED && auth_refused_wait(s, res, res->message)) {
            uv_timer_stop(&it->timer);
        } else if (res->status != DB_E_CANCELLED) {
            uint64_t wait = integ_retry_soon(it);
            rlog_warn(ictx(it, &lc), "cannot claim the integration: %s; retrying in %" PRIu64 " s",
                      res->message ? res->message : "?", (wait + 999) / 1000);
        }
    } else if (!found || !(PQgetvalue(pr, 0, 3)[0] == 't')) {
        rlog_notice(ictx(it, &lc), "no longer enabled: not syncing");
        it->enabled = false;
        it->queued = false;
        uv_timer_stop(&it->timer);
    } else {
        int64_t db_last = strtoll(PQgetvalue(pr, 0, 1), NULL, 10);
        int64_t lease_left = strtoll(PQgetvalue(pr, 0, 2), NULL, 10);
        int64_t db_now = strtoll(PQgetvalue(pr, 0, 4), NULL, 10);
        bool synced_since = db_last != it->last_sync_us;
        if (synced_since) {
            /* Synced since we looked (by another daemon, or our view predates our own last
             * run): the schedule follows the database's last_sync_at. */
            rlog_debug(ictx(it, &lc), "synced since we last looked; rescheduling");
            integ_set_last_sync(it, db_last, db_now, now);
        }
        if (lease_left > 0) {
            it->not_before_ms = now + (uint64_t)lease_left + LEASE_MARGIN_MS;
            it->not_before_set_ms = now;
            rlog_debug(ictx(it, &lc),
                       "leased by another daemon for %" PRId64 " ms more; trying again then",
                       lease_left);
        } else if (!synced_since) {
            /* Another daemon claimed it between our snapshot and our update: it holds a fresh
             * lease now, so look again when that lease would end. */
            it->not_before_ms =
                now + (uint64_t)s->cur->cfg->lease_seconds * 1000 + LEASE_MARGIN_MS;
            it->not_before_set_ms = now;
            rlog_debug(ictx(it, &lc), "claimed by another daemon just now; looking again in %d s",
                       s->cur->cfg->lease_seconds);
        }
        integ_arm(it);
    }
    slot_freed(s);
}

/* --once --wait: the other daemon's lease may be over (or its holder gone): claim again. */
static void once_wait_cb(uv_timer_t *t)
{
    integ *it = t->data;
    sched *s = it->s;
    it->once_waiting = false;
    if (s->stopping || s->finishing) return;
    if (s->running < s->cur->cfg->max_concurrent_runs)
        integ_start(it);
    else
        it->queued = true;
}

/* Takes a run slot and starts the integration: in the daemon, through the due-aware claim. */
static void integ_start(integ *it)
{
    sched *s = it->s;
    it->queued = false;
    s->running++;
    if (s->o.once) {
        run_start(it);
        return;
    }
    char secs[16], last[32], pid[16];
    snprintf(secs, sizeof secs, "%d", s->cur->cfg->lease_seconds);
    snprintf(last, sizeof last, "%" PRId64, it->last_sync_us);
    snprintf(pid, sizeof pid, "%d", db_conn_backend_pid(s->ctl));
    const char *p[5] = {it->id, s->daemon_id, secs, last, pid};
    it->claiming = true;
    db_exec(s->ctl, store_sql(s->cur->store, ST_CLAIM_DUE), 5, p, claim_cb, it);
}

static bool integ_busy(const integ *it) { return it->run || it->claiming; }

static void runs_start_queued(sched *s)
{
    if (s->stopping || s->finishing || !s->cur || s->auth_waiting) return;
    for (integ *it = s->integs; it && s->running < s->cur->cfg->max_concurrent_runs; it = it->next) {
        if (!it->queued) continue;
        if (!it->enabled || integ_busy(it)) {
            it->queued = false;
            continue;
        }
        integ_start(it);
    }
}

/* The integration's due timer fired. */
static void integ_fire(uv_timer_t *t)
{
    integ *it = t->data;
    sched *s = it->s;
    if (s->stopping || integ_busy(it) || !it->enabled || !s->cur) return;
    if (s->auth_waiting) return; /* the list after the wait re-arms it */
    if (it->requested_us > it->handled_request_us) it->run_request_us = it->requested_us;
    if (s->running >= s->cur->cfg->max_concurrent_runs) {
        it->queued = true;
        return;
    }
    integ_start(it);
    status_update(s);
}

/* Stable per-integration jitter, so re-arming on every poll does not keep postponing it. */
static uint64_t jitter_of(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h % JITTER_MS;
}

static void integ_arm(integ *it)
{
    sched *s = it->s;
    if (integ_busy(it)) return; /* re-armed when the run or claim is over */
    if (!it->enabled || s->stopping) {
        uv_timer_stop(&it->timer);
        it->queued = false;
        return;
    }
    const kvs_config *cfg = cfg_of(s);
    /* When it is due (monotonic ms, before jitter), or DUE_REQUEST / DUE_NEVER. */
    int64_t due_ms;
    if (it->requested_us > it->handled_request_us) {
        due_ms = DUE_REQUEST;
    } else if (!it->synced_mono_valid) {
        due_ms = DUE_NEVER;
    } else {
        uint64_t interval = backoff_interval_ms((uint64_t)it->interval_min * 60000, it->failures,
                                                (uint64_t)cfg->max_backoff_minutes * 60000);
        due_ms = it->synced_mono_ms + (int64_t)interval;
    }
    /* Every poll re-arms every integration: a timer already set for the same moment keeps
     * running, or a jitter longer than the poll interval would postpone it for ever. (The
     * moment is stable: synced_mono_ms changes only when last_sync_at does.) */
    if (uv_is_active((const uv_handle_t *)&it->timer) && it->armed_due_ms == due_ms &&
        it->armed_not_before_ms == it->not_before_ms)
        return;
    it->armed_due_ms = due_ms;
    it->armed_not_before_ms = it->not_before_ms;
    uint64_t now = kvs_now_mono_ms();
    uint64_t delay = 0;
    if (due_ms == DUE_NEVER)
        delay = jitter_of(it->id);
    else if (due_ms != DUE_REQUEST)
        delay = (due_ms > (int64_t)now ? (uint64_t)(due_ms - (int64_t)now) : 0) + jitter_of(it->id);
    if (it->not_before_ms > now && it->not_before_ms - now > delay) delay = it->not_before_ms - now;
    uv_timer_start(&it->timer, integ_fire, delay, 0);
}

/* ---- control connection --------------------------------------------------------------------- */

static void on_notify(const char *channel, const char *payload, void *arg)
{
    sched *s = arg;
    if (strcmp(channel, STORE_NOTIFY_CHANNEL) != 0 || s->stopping) return;
    log_debug("NOTIFY %s '%s': re-reading the integrations", channel, payload);
    ctl_list(s);
}

static void listen_cb(db_result *res, void *arg)
{
    sched *s = arg;
    s->listen_inflight = false;
    if (res->status == DB_OK && s->ctl) {
        db_conn_stats st;
        db_conn_get_stats(s->ctl, &st);
        s->listen_connects = st.connects;
    } else if (res->status != DB_OK && res->status != DB_E_CANCELLED) {
        log_warn("LISTEN %s failed (run-now requests wait for the next poll): %s", STORE_NOTIFY_CHANNEL,
                 res->message ? res->message : "?");
    }
}

/* LISTEN is lost with the connection: (re)issue it whenever ctl has connected anew. Polling
 * stays the mechanism of record (a pooler may not pass notifications on). */
static void ctl_listen_check(sched *s)
{
    if (s->o.once || !s->ctl || s->listen_inflight || s->finishing || s->stopping) return;
    /* Behind a transaction pooler a LISTEN would hold on to a server connection the pooler
     * lends to others, and notifications would reach whichever client has it: poll only. */
    if (db_conn_txn_mode(s->ctl)) return;
    db_conn_stats st;
    db_conn_get_stats(s->ctl, &st);
    if (st.connects == s->listen_connects) return;
    s->listen_inflight = true;
    db_exec(s->ctl, store_sql(s->cur->store, ST_LISTEN), 0, NULL, listen_cb, s);
}

/* A reload is over once the integrations were re-read after it: READY=1 then. */
static void reload_maybe_ready(sched *s)
{
    if (!s->reloading || s->discovering || s->listing || s->list_again || s->stopping) return;
    s->reloading = false;
    notify_ready();
    status_update(s);
}

static void list_cb(db_result *res, void *arg)
{
    sched *s = arg;
    log_ctx lc;
    s->listing = false;
    if (res->status != DB_OK) {
        if (res->status == DB_E_CANCELLED) return;
        if (auth_refused_wait(s, res, res->message)) goto next;
        log_warn("could not read the integrations: %s", res->message ? res->message : "?");
        if (s->o.once) {
            s->exit_code = 1;
            s->once_listed = true;
            sched_maybe_finish(s);
            return;
        }
        goto next;
    }
    auth_ok(s);
    if (!s->mode_logged) {
        /* Said once; a later switch (a pooler's symptom) is logged by db itself. */
        s->mode_logged = true;
        log_notice("database: %s%s", db_conn_path_text(s->ctl),
                   db_conn_txn_mode(s->ctl) ? "; run-now requests are seen at the next poll" : "");
    }
    PGresult *pr = res->results[0];
    /* The database's now() (the last column) and when we learnt it. */
    int64_t db_now = PQntuples(pr) ? strtoll(PQgetvalue(pr, 0, PQnfields(pr) - 1), NULL, 10) : 0;
    uint64_t now = kvs_now_mono_ms();
    for (integ *it = s->integs; it; it = it->next) it->present = false;
    int enabled = 0;
    for (int i = 0; i < PQntuples(pr); i++) {
        integ_row *row = integ_row_parse(pr, i);
        integ *it = s->integs;
        while (it && strcmp(it->id, row->id)) it = it->next;
        if (!it) {
            it = kvs_xcalloc(1, sizeof *it);
            it->s = s;
            it->id = kvs_strdup(row->id);
            it->name = kvs_strdup(row->name);
            kv_budget_init(&it->budget, cfg_of(s)->hourly_get_budget);
            uv_timer_init(s->loop, &it->timer);
            it->timer.data = it;
            s->handles_open++;
            it->next = s->integs;
            s->integs = it;
            it->failures = row->consecutive_failures;
        }
        it->present = true;
        bool was_enabled = it->enabled;
        int interval = row->interval_min > 0 ? row->interval_min : 60;
        it->enabled = row->is_active && row->sync_enabled &&
                      (!s->only || !strcmp(s->only, row->name));
        if (it->enabled != was_enabled && !s->o.once)
            rlog_notice(ictx(it, &lc), "%s (every %d min)",
                        it->enabled ? "scheduled" : "disabled: not syncing", interval);
        else if (it->enabled && it->interval_min && it->interval_min != interval)
            rlog_notice(ictx(it, &lc), "interval now %d min", interval);
        it->interval_min = interval;
        if (!integ_busy(it)) {
            if (row->last_sync_us != it->last_sync_us || !it->synced_mono_valid)
                integ_set_last_sync(it, row->last_sync_us, db_now, now);
            it->failures = row->consecutive_failures;
        }
        /* A lease that is over (or ours) no longer holds this daemon back, if this list was
         * read after we learnt of the lease (an older snapshot may predate the claim). */
        if ((!row->lease_live || kvs_streq(row->lease_owner, s->daemon_id)) &&
            it->not_before_set_ms < s->list_sent_ms)
            it->not_before_ms = 0;
        it->requested_us = row->requested_us;
        it->request_full = row->request_full;
        if (it->enabled) enabled++;
        integ_row_free(row);
    }
    for (integ *it = s->integs, *nx; it; it = nx) {
        nx = it->next;
        if (it->present) continue;
        rlog_notice(ictx(it, &lc), "removed from third_party_integrations");
        it->enabled = false;
        it->removed = true;
        if (!integ_busy(it)) integ_unlink_close(it);
    }
    if (s->o.once) {
        if (!s->once_listed) {
            s->once_listed = true;
            if (!enabled) {
                once_report(s, SCHED_REPORT_NONE, s->only, NULL, 0);
                if (s->only) s->exit_code = 1;
            }
            for (integ *it = s->integs; it; it = it->next) {
                if (!it->enabled) continue;
                s->once_pending++;
                if (s->running < s->cur->cfg->max_concurrent_runs)
                    integ_start(it);
                else
                    it->queued = true;
            }
            sched_maybe_finish(s);
        }
        return;
    }
    for (integ *it = s->integs; it; it = it->next) integ_arm(it);
    ctl_listen_check(s);
    if (!s->ready_sent) {
        /* The database answered and the integrations are loaded: now we are ready. */
        s->ready_sent = true;
        log_notice("ready: %d integration(s) enabled, re-read every %d s", enabled,
                   s->cur->cfg->poll_interval_s);
        notify_ready();
    }
    runs_start_queued(s);
    status_update(s);
    /* One line per read (debug only): tests wait for it as the sign that a poll has passed,
     * rather than sleeping through a window in which something must not happen. */
    log_debug("integrations read: %d enabled, %d running", enabled, s->running);
next:
    if (s->list_again) {
        s->list_again = false;
        ctl_list(s);
    }
    reload_maybe_ready(s);
}

static void ctl_list(sched *s)
{
    if (!s->cur || s->finishing || s->auth_waiting) return;
    if (s->listing) {
        s->list_again = true;
        return;
    }
    s->listing = true;
    s->list_sent_ms = kvs_now_mono_ms();
    db_exec(s->ctl, store_sql(s->cur->store, ST_LIST_NOW), 0, NULL, list_cb, s);
}

static void prune_cb(db_result *res, void *arg)
{
    (void)arg;
    if (res->status == DB_OK) {
        long n = atol(PQgetvalue(res->results[0], 0, 0));
        if (n) log_info("pruned %ld old sync_logs row(s)", n);
    } else if (res->status != DB_E_CANCELLED) {
        log_warn("pruning sync_logs failed: %s", res->message ? res->message : "?");
    }
}

static void exposed_cb(db_result *res, void *arg)
{
    (void)arg;
    if (res->status != DB_OK) return; /* advisory only: the run's own statements say more */
    PGresult *pr = res->results[0];
    for (int i = 0; i < PQntuples(pr); i++)
        log_warn("role %s can read products.%s: %s", PQgetvalue(pr, i, 0), PQgetvalue(pr, i, 1),
                 STORE_EXPOSED_HINT);
}

static void abandoned_cb(db_result *res, void *arg)
{
    sched *s = arg;
    s->abandoning = false;
    if (res->status == DB_OK) {
        long n = atol(PQgetvalue(res->results[0], 0, 0));
        if (n) log_notice("closed %ld abandoned sync_logs row(s) as failed", n);
    } else if (res->status != DB_E_CANCELLED) {
        log_warn("could not close abandoned sync_logs rows: %s", res->message ? res->message : "?");
    }
}

/* Closes 'running' sync_logs rows whose daemon is gone (its lease expired or was taken over):
 * at start, and now and then, so a row left by a daemon that died is closed even while this
 * one keeps running. */
static void ctl_close_abandoned(sched *s)
{
    if (!s->cur || s->abandoning || s->finishing) return;
    s->abandoning = true;
    s->last_abandoned_ms = kvs_now_mono_ms();
    db_exec(s->ctl, store_sql(s->cur->store, ST_LOG_ABANDONED), 0, NULL, abandoned_cb, s);
}

static void poll_cb(uv_timer_t *t)
{
    sched *s = t->data;
    if (!s->cur || s->auth_waiting) return;
    const kvs_config *cfg = s->cur->cfg;
    uint64_t now = kvs_now_mono_ms();
    if (cfg->log_retention_days > 0 && now - s->last_prune_ms >= PRUNE_EVERY_MS) {
        s->last_prune_ms = now;
        char days[16];
        snprintf(days, sizeof days, "%d", cfg->log_retention_days);
        const char *p[1] = {days};
        db_exec(s->ctl, store_sql(s->cur->store, ST_LOG_PRUNE), 1, p, prune_cb, NULL);
    }
    /* A dead daemon's lease is over lease_seconds after its last renewal; the statement is
     * cheap (partial index on running rows). */
    uint64_t every = (uint64_t)cfg->lease_seconds * 1000;
    if (every < (uint64_t)cfg->poll_interval_s * 1000) every = (uint64_t)cfg->poll_interval_s * 1000;
    if (now - s->last_abandoned_ms >= every) ctl_close_abandoned(s);
    ctl_list(s);
}

static void retry_cb(uv_timer_t *t)
{
    sched *s = t->data;
    kvs_config *cfg = s->boot_cfg;
    s->boot_cfg = NULL;
    ctl_discover(s, cfg);
}

/* The wait after a refused login is over: one attempt (a start's discovery or a list). */
static void auth_timer_cb(uv_timer_t *t)
{
    sched *s = t->data;
    s->auth_waiting = false;
    if (s->stopping || s->finishing) return;
    if (!s->cur && s->boot_cfg && !s->discovering)
        retry_cb(&s->retry_timer);
    else
        ctl_list(s);
}

/* Builds a generation from cfg (ownership passes to it on success) and a discovery result. */
static int gen_build(kvs_config *cfg, PGresult *pr, gen **out)
{
    kvs_err e;
    kvs_err_clear(&e);
    char *warnings = NULL;
    store *st = store_new(cfg->db_schema, pr, &warnings, &e);
    if (!st) {
        log_err("database schema: %s", e.msg);
        return -1;
    }
    if (warnings) {
        log_warn("columns the daemon would fill but the shop does not have (skipped): %s",
                 warnings);
        free(warnings);
    }
    gen *g = kvs_xcalloc(1, sizeof *g);
    if (map_opts_from_config(cfg, &g->mopts, &e)) {
        log_err("%s", e.msg);
        store_free(st);
        free(g);
        return -1;
    }
    g->mopts.stock_integer = store_products_stock_integer(st);
    log_info("mapping %s", store_describe(st));
    g->cfg = cfg;
    g->store = st;
    g->refs = 1;
    *out = g;
    return 0;
}

static void poll_timer_start(sched *s)
{
    uint64_t ms = (uint64_t)s->cur->cfg->poll_interval_s * 1000;
    uv_timer_start(&s->poll_timer, poll_cb, ms, ms);
}

static void discover_cb(db_result *res, void *arg)
{
    sched *s = arg;
    s->discovering = false;
    bool reload = s->cur != NULL;
    kvs_config *cfg = reload ? s->reload_cfg : s->boot_cfg;
    if (reload)
        s->reload_cfg = NULL;
    else
        s->boot_cfg = NULL;
    if (res->status == DB_E_CANCELLED) {
        config_free(cfg);
        return;
    }
    if (res->status != DB_OK) {
        if (reload) {
            log_err("reload failed: cannot read the schema (%s); keeping the old configuration",
                    res->message ? res->message : "?");
            (void)auth_refused_wait(s, res, res->message); /* then the list below waits too */
            config_free(cfg);
            ctl_list(s);
            reload_maybe_ready(s);
            return;
        }
        if (!s->o.once && auth_refused_wait(s, res, res->message)) {
            s->boot_cfg = cfg; /* auth_timer_cb tries again with it */
            return;
        }
        log_err("cannot reach the database: %s", res->message ? res->message : "?");
        if (s->o.once) {
            config_free(cfg);
            s->exit_code = 1;
            s->once_listed = true;
            sched_maybe_finish(s);
            return;
        }
        /* The daemon stays up and keeps trying; READY=1 waits for the database. */
        uint64_t wait = backoff_delay_ms(s->discover_failures++, 2000, 60000,
                                         (uint32_t)kvs_now_mono_ms());
        notify_status("waiting for the database (retry in %" PRIu64 " s)", wait / 1000);
        s->boot_cfg = cfg;
        uv_timer_start(&s->retry_timer, retry_cb, wait, 0);
        return;
    }
    gen *g = NULL;
    if (gen_build(cfg, res->results[0], &g)) {
        config_free(cfg);
        if (reload) {
            log_err("reload failed; keeping the old configuration");
            ctl_list(s);
            reload_maybe_ready(s);
            return;
        }
        s->exit_code = KVS_EX_CONFIG;
        s->once_listed = true;
        sched_stop(s);
        sched_stop(s);
        return;
    }
    s->discover_failures = 0;
    auth_ok(s);
    log_set_level(g->cfg->log_level);
    if (reload) {
        gen_unref(s->cur);
        s->cur = g;
        for (integ *it = s->integs; it; it = it->next)
            kv_budget_resize(&it->budget, g->cfg->hourly_get_budget);
        poll_timer_start(s);
        log_notice("configuration reloaded (log level %s, poll every %d s, at most %d run(s))",
                   log_level_name(g->cfg->log_level), g->cfg->poll_interval_s,
                   g->cfg->max_concurrent_runs);
        ctl_list(s);
        return;
    }
    s->cur = g;
    /* At start: say so if the shop's public API roles can read what costs and suppliers. */
    const char *ep[1] = {g->cfg->db_schema};
    db_exec(s->ctl, store_exposed_sql, 1, ep, exposed_cb, NULL);
    if (s->o.once) {
        ctl_list(s);
        return;
    }
    poll_timer_start(s);
    /* In order on the connection: abandoned rows are closed before the first list. */
    ctl_close_abandoned(s);
    ctl_list(s);
}

static void ctl_discover(sched *s, kvs_config *cfg)
{
    if (s->cur)
        s->reload_cfg = cfg;
    else
        s->boot_cfg = cfg;
    s->discovering = true;
    const char *p[1] = {cfg->db_schema};
    db_exec(s->ctl, store_discover_sql, 1, p, discover_cb, s);
}

/* ---- life ---------------------------------------------------------------------------------- */

sched *sched_new(uv_loop_t *loop, kvs_config *cfg, http_client *http, const sched_opts *o,
                 sched_done_cb done, void *arg)
{
    sched *s = kvs_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->http = http;
    s->o = *o;
    s->daemon_id = kvs_strdup(o->daemon_id);
    s->only = o->only ? kvs_strdup(o->only) : NULL;
    s->o.daemon_id = s->daemon_id;
    s->o.only = s->only;
    s->done = done;
    s->arg = arg;
    uv_timer_init(loop, &s->poll_timer);
    uv_timer_init(loop, &s->grace_timer);
    uv_timer_init(loop, &s->retry_timer);
    uv_timer_init(loop, &s->auth_timer);
    s->poll_timer.data = s->grace_timer.data = s->retry_timer.data = s->auth_timer.data = s;
    s->handles_open = 4;
    s->last_prune_ms = kvs_now_mono_ms() - PRUNE_EVERY_MS; /* prune at the first poll */
    s->last_abandoned_ms = kvs_now_mono_ms();
    db_opts d = {
        .conninfo = cfg->db_url,
        .connect_timeout_ms = (long)cfg->db_connect_timeout_s * 1000,
        .statement_timeout_ms = (long)cfg->db_statement_timeout_s * 1000,
        .application_name = "kiotviet-syncd control",
        .schema = cfg->db_schema,
    };
    (void)db_pooler_parse(cfg->db_pooler, &d.pooler); /* validated by config_load */
    s->ctl = db_conn_new(loop, &d);
    if (!o->once) db_conn_set_notify_cb(s->ctl, on_notify, s);
    ctl_discover(s, cfg);
    return s;
}

/* Keys that only take effect at start: the control connection is made once from [database],
 * and main creates the one HTTP client from [kiotviet]. A reload that changes them keeps the
 * old values (so the running state and the config agree) and says so. */
static void reload_keep_fixed(const kvs_config *old, kvs_config *cfg)
{
    char keys[512];
    int n = config_diff_noreload(old, cfg, keys, sizeof keys);
    size_t used = strlen(keys);
#define FIXED_INT(field, name)                                                                  \
    do {                                                                                        \
        if (old->field != cfg->field) {                                                         \
            used += (size_t)snprintf(keys + used, used < sizeof keys ? sizeof keys - used : 0,  \
                                     "%s%s", n++ ? ", " : "", name);                            \
            cfg->field = old->field;                                                            \
        }                                                                                       \
    } while (0)
    FIXED_INT(http_connect_timeout_s, "[kiotviet] connect_timeout");
    FIXED_INT(http_timeout_s, "[kiotviet] request_timeout");
    FIXED_INT(max_page_bytes, "[kiotviet] max_page_bytes");
#undef FIXED_INT
    if (!kvs_streq(old->ca_file, cfg->ca_file)) {
        used += (size_t)snprintf(keys + used, used < sizeof keys ? sizeof keys - used : 0, "%s%s",
                                 n++ ? ", " : "", "[kiotviet] ca_file");
        free(cfg->ca_file);
        cfg->ca_file = kvs_strdup(old->ca_file);
    }
    if (n == 0) return;
    log_warn("reload: %s cannot change while running (restart to apply); keeping the old "
             "value(s)",
             keys);
    free(cfg->db_url);
    cfg->db_url = kvs_strdup(old->db_url);
    free(cfg->db_schema);
    cfg->db_schema = kvs_strdup(old->db_schema);
}

void sched_reload(sched *s, kvs_config *cfg)
{
    if (s->stopping || s->finishing) {
        config_free(cfg);
        return;
    }
    /* A reload is how an operator says "fixed": a refused login is tried again at once. */
    s->auth_refused = 0;
    if (s->auth_waiting) {
        s->auth_waiting = false;
        uv_timer_stop(&s->auth_timer);
        log_notice("reload: trying the database login again now");
    }
    if (!s->cur) {
        /* Still starting: the newest config is the one to start with; READY=1 comes when
         * the start is complete. */
        if (cfg) {
            if (s->boot_cfg) reload_keep_fixed(s->boot_cfg, cfg);
            if (s->discovering) {
                config_free(s->boot_cfg);
                s->boot_cfg = cfg;
            } else {
                /* Waiting for the database: retry now with the new config. */
                config_free(s->boot_cfg);
                s->boot_cfg = NULL;
                uv_timer_stop(&s->retry_timer);
                ctl_discover(s, cfg);
            }
        }
        return;
    }
    s->reloading = true;
    if (!cfg) {
        /* The new file was invalid (main logged why): keep the config, re-read the list. */
        ctl_list(s);
        return;
    }
    reload_keep_fixed(s->cur->cfg, cfg);
    if (s->discovering) {
        /* A reload discovery is under way: the newest config wins; its list follows. */
        config_free(s->reload_cfg);
        s->reload_cfg = cfg;
        return;
    }
    ctl_discover(s, cfg);
}

void sched_poll_now(sched *s) { ctl_list(s); }

static void closed_cb(uv_handle_t *h)
{
    sched *s = h->data;
    s->handles_open--;
    sched_maybe_finish(s);
}

static void cancel_all(sched *s)
{
    for (integ *it = s->integs; it; it = it->next)
        if (it->run) sync_run_cancel(it->run);
}

static void grace_cb(uv_timer_t *t)
{
    sched *s = t->data;
    log_notice("grace period over: cancelling %d run(s)", s->running);
    cancel_all(s);
}

/* Once every run is over (and, in once mode, every run has been started), close everything;
 * done is called when the last handle is closed. */
static void sched_maybe_finish(sched *s)
{
    if (!s->finishing) {
        bool over = s->o.once ? (s->once_listed && s->once_pending == 0 && s->running == 0)
                              : (s->stopping && s->running == 0);
        if (!over || s->ctl_writes > 0) return;
        s->finishing = true;
        if (s->ctl) {
            db_conn_close(s->ctl);
            s->ctl = NULL;
        }
        for (integ *it = s->integs, *nx; it; it = nx) {
            nx = it->next;
            integ_unlink_close(it);
        }
        uv_timer_stop(&s->poll_timer);
        uv_timer_stop(&s->grace_timer);
        uv_timer_stop(&s->retry_timer);
        uv_timer_stop(&s->auth_timer);
        uv_close((uv_handle_t *)&s->auth_timer, closed_cb);
        uv_close((uv_handle_t *)&s->poll_timer, closed_cb);
        uv_close((uv_handle_t *)&s->grace_timer, closed_cb);
        uv_close((uv_handle_t *)&s->retry_timer, closed_cb);
        return;
    }
    if (s->handles_open > 0 || !s->done) return;
    if (s->o.once && s->exit_code == 0 && s->once_held > 0) s->exit_code = SCHED_EX_TEMPFAIL;
    sched_done_cb cb = s->done;
    s->done = NULL;
    cb(s->exit_code, s->arg);
}

void sched_stop(sched *s)
{
    if (s->stopping) {
        if (!s->hard_stop) {
            s->hard_stop = true;
            cancel_all(s);
        }
        return;
    }
    s->stopping = true;
    if (s->o.once) s->once_listed = true, s->once_pending = s->running;
    uv_timer_stop(&s->poll_timer);
    uv_timer_stop(&s->retry_timer);
    uv_timer_stop(&s->auth_timer);
    s->auth_waiting = false;
    for (integ *it = s->integs; it; it = it->next) {
        uv_timer_stop(&it->timer);
        it->queued = false;
        if (it->once_waiting) { /* --wait interrupted: still held by the other daemon */
            it->once_waiting = false;
            s->once_held++;
        }
    }
    if (s->running > 0) {
        int grace = cfg_of(s) ? cfg_of(s)->grace_period_s : 0;
        log_notice("stopping: %d run(s) in flight get %d s to finish", s->running, grace);
        uv_timer_start(&s->grace_timer, grace_cb, (uint64_t)grace * 1000, 0);
    }
    status_update(s);
    sched_maybe_finish(s);
}

void sched_free(sched *s)
{
    if (!s) return;
    gen_unref(s->cur);
    config_free(s->boot_cfg);
    config_free(s->reload_cfg);
    free(s->daemon_id);
    free(s->only);
    free(s);
}
