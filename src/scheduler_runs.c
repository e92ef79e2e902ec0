/* The scheduler's runs: due timers, claims, starting a run and its outcome (see sched_int.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "db.h"
#include "log.h"
#include "notify.h"
#include "sched_int.h"
#include "store.h"

static void integ_fire(uv_timer_t *t);
static void once_wait_cb(uv_timer_t *t);

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
void integ_set_last_sync(integ *it, int64_t db_last_us, int64_t db_now_us, uint64_t mono_now)
{
    it->last_sync_us = db_last_us;
    if (!db_last_us) {
        it->synced_mono_valid = false;
        return;
    }
    it->synced_mono_ms = sched_synced_mono_ms(db_last_us, db_now_us, mono_now);
    it->synced_mono_valid = true;
}

/* Our own run ended just now: it set last_sync_at to the database's now(). */
static void integ_synced_now(integ *it)
{
    it->synced_mono_ms = (int64_t)kvs_now_mono_ms();
    it->synced_mono_valid = true;
}

/* The database could not be reached for this integration: try again soon, without backoff
 * (not the integration's fault). The timer is marked SCHED_DUE_RETRY so the next successful
 * list re-arms it from the schedule instead of taking it for the due timer. Returns the delay. */
static uint64_t integ_retry_soon(integ *it)
{
    const kvs_config *cfg = cfg_of(it->s);
    uint64_t wait = sched_no_db_retry_ms(cfg ? cfg->poll_interval_s : 0);
    it->armed_due_ms = SCHED_DUE_RETRY;
    it->armed_not_before_ms = it->not_before_ms;
    uv_timer_start(&it->timer, integ_fire, wait, 0);
    return wait;
}

/* ---- runs ------------------------------------------------------------------------------------ */

/* --once: hands one outcome to the CLI's report callback (sched_opts.report). */
void once_report(const sched *s, enum sched_report_kind kind, const char *name,
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

void integ_unlink_close(integ *it)
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
    if (it->inbox_run) {
        inbox_run_done(it, res);
        if (it->removed) integ_unlink_close(it);
        slot_freed(s);
        return;
    }
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
                      sched_interval_ms(it->interval_min, it->failures,
                                        cfg_of(s)->max_backoff_minutes) /
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
        uv_timer_start(&it->timer, once_wait_cb, sched_once_wait_ms(res->held_ms), 0);
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
        inbox_maybe_start(it);
    }
    slot_freed(s);
}

/* Starts the sync run itself, or an inbox run (scheduler_inbox.c); the caller has taken the
 * run slot (s->running). */
void integ_run_start(integ *it, bool inbox)
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
    it->inbox_run = inbox;
    it->run = inbox ? sync_run_start_inbox(&env, it->id, it->name, &it->budget, &it->memo,
                                           run_done, it)
                    : sync_run_start(&env, it->id, it->name, full, &it->budget, &it->memo,
                                     run_done, it);
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
        integ_run_start(it, false);
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
            it->not_before_ms = sched_not_before_ms(now, (uint64_t)lease_left);
            it->not_before_set_ms = now;
            rlog_debug(ictx(it, &lc),
                       "leased by another daemon for %" PRId64 " ms more; trying again then",
                       lease_left);
        } else if (!synced_since) {
            /* Another daemon claimed it between our snapshot and our update: it holds a fresh
             * lease now, so look again when that lease would end. */
            it->not_before_ms =
                sched_not_before_ms(now, (uint64_t)s->cur->cfg->lease_seconds * 1000);
            it->not_before_set_ms = now;
            rlog_debug(ictx(it, &lc), "claimed by another daemon just now; looking again in %d s",
                       s->cur->cfg->lease_seconds);
        }
        integ_arm(it);
        inbox_maybe_start(it);
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
void integ_start(integ *it)
{
    sched *s = it->s;
    it->queued = false;
    s->running++;
    if (s->o.once) {
        integ_run_start(it, false);
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

bool integ_busy(const integ *it) { return it->run || it->claiming; }

void runs_start_queued(sched *s)
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
        log_ctx lc;
        rlog_debug(ictx(it, &lc), "due: waiting for a free run slot");
        it->queued = true;
        return;
    }
    integ_start(it);
    status_update(s);
}

void integ_arm(integ *it)
{
    sched *s = it->s;
    if (integ_busy(it)) return; /* re-armed when the run or claim is over */
    if (!it->enabled || s->stopping) {
        uv_timer_stop(&it->timer);
        it->queued = false;
        return;
    }
    const kvs_config *cfg = cfg_of(s);
    /* When it is due (monotonic ms, before jitter), or SCHED_DUE_REQUEST / SCHED_DUE_NEVER. */
    int64_t due_ms = sched_due_ms(it->requested_us > it->handled_request_us, it->synced_mono_valid,
                                  it->synced_mono_ms, it->interval_min, it->failures,
                                  cfg->max_backoff_minutes);
    uint64_t now = kvs_now_mono_ms();
    if (it->queued) {
        /* Waiting for a run slot: it stays in the queue while it is still due. A list that
         * shows it synced meanwhile (by another daemon) takes it out, or the claim that takes
         * the next slot would succeed against the newer last_sync_at and run it again. */
        if (sched_is_due(due_ms, it->not_before_ms, now)) return;
        it->queued = false;
    }
    /* Every poll re-arms every integration: a timer already set for the same moment keeps
     * running, or a jitter longer than the poll interval would postpone it for ever. (The
     * moment is stable: synced_mono_ms changes only when last_sync_at does.) */
    if (uv_is_active((const uv_handle_t *)&it->timer) && it->armed_due_ms == due_ms &&
        it->armed_not_before_ms == it->not_before_ms)
        return;
    it->armed_due_ms = due_ms;
    it->armed_not_before_ms = it->not_before_ms;
    uint64_t delay = sched_delay_ms(due_ms, sched_jitter_ms(it->id), it->not_before_ms, now);
    uv_timer_start(&it->timer, integ_fire, delay, 0);
}
