/* The scheduler's inbox runs: when webhook events wait, a short run of the integration applies
 * them (sync_run_start_inbox, src/inbox.c). Started by the listener's kick, after every read of
 * the integrations when events wait (a crash after the answer, another daemon's listener, a run
 * that failed), and at the end of a run of the same integration.
 *
 * The listener's kicks are gathered first (sched_inbox_gather_due_ms): KiotViet sends one
 * notification per change, so a counter sale or a price list edit arrives as a burst, and one
 * run then applies it with one GET /productOnHands for its stock changes, where a run started
 * at the first notification left the rest of the burst to another run and another GET. */
#include "log.h"
#include "sched_int.h"

#include <string.h>

#include "store.h"

static void inbox_timer_cb(uv_timer_t *t);

static uint64_t gather_due(const integ *it)
{
    return sched_inbox_gather_due_ms(it->inbox_first_ms, it->inbox_last_ms);
}

/* The inbox timer at the earliest end of a gathering (stopped when none gathers). */
static void inbox_timer_arm(sched *s)
{
    bool any = false;
    uint64_t due = 0, now = uv_now(s->loop);
    for (integ *it = s->integs; it; it = it->next)
        if (it->inbox_gathering && (!any || gather_due(it) < due)) {
            due = gather_due(it);
            any = true;
        }
    if (!any || s->stopping)
        uv_timer_stop(&s->inbox_timer);
    else
        uv_timer_start(&s->inbox_timer, inbox_timer_cb, due > now ? due - now : 0, 0);
}

/* Gatherings that are over start their runs (or leave the events pending for whatever keeps
 * the integration from a run now: the end of its run, its lease, the database). */
static void inbox_timer_cb(uv_timer_t *t)
{
    sched *s = t->data;
    uint64_t now = uv_now(s->loop);
    for (integ *it = s->integs; it; it = it->next)
        if (it->inbox_gathering && gather_due(it) <= now) {
            it->inbox_gathering = false;
            inbox_maybe_start(it);
        }
    inbox_timer_arm(s);
}

/* An inbox run of it, when events wait and nothing of it runs or is being claimed (the end of
 * that run or claim calls this again). It claims the lease as a poll does, without the due-aware
 * claim: events are applied whenever they come, and the schedule of the polls is not moved. */
void inbox_maybe_start(integ *it)
{
    sched *s = it->s;
    if (it->inbox_gathering) {
        if (gather_due(it) > uv_now(s->loop)) {
            inbox_timer_arm(s);
            return;
        }
        it->inbox_gathering = false;
    }
    if (!it->inbox_pending || integ_busy(it) || !it->enabled || it->removed || s->stopping ||
        s->o.once || !s->cur || s->auth_waiting || !store_has_inbox(s->cur->store))
        return;
    it->inbox_pending = false;
    s->running++;
    integ_run_start(it, true);
    status_update(s);
}

/* Events it could not reach (another daemon's lease, no database, a full batch read) wait for
 * the next kick, the next run's end or the next read of the integrations; after a failed run
 * only for the latter, so a failing database is not hammered. */
void inbox_run_done(integ *it, const sync_result *res)
{
    it->inbox_run = false;
    if (res->inbox_more || res->status == SYNC_SKIPPED || res->status == SYNC_NO_DB)
        it->inbox_pending = true;
    if (it->removed) return;
    integ_arm(it);
    inbox_maybe_start(it);
}

void scheduler_inbox_kick(sched *s, const char *integration_id)
{
    if (!integration_id || s->stopping) return;
    integ *it = s->integs;
    while (it && strcmp(it->id, integration_id)) it = it->next;
    if (!it) { /* not listed yet: the read of the integrations looks for its events */
        ctl_list(s);
        return;
    }
    uint64_t now = uv_now(s->loop);
    if (!it->inbox_gathering) {
        it->inbox_gathering = true;
        it->inbox_first_ms = now;
    }
    it->inbox_last_ms = now;
    it->inbox_pending = true;
    inbox_maybe_start(it);
}

static void pending_cb(db_result *res, void *arg)
{
    sched *s = arg;
    if (res->status != DB_OK) {
        if (res->status != DB_E_CANCELLED)
            log_warn("could not look for webhook events: %s", res->message ? res->message : "?");
        return;
    }
    PGresult *pr = res->results[0];
    for (int i = 0; i < PQntuples(pr); i++)
        for (integ *it = s->integs; it; it = it->next)
            if (!strcmp(it->id, PQgetvalue(pr, i, 0))) {
                it->inbox_pending = true;
                inbox_maybe_start(it);
            }
}

void inbox_pending_check(sched *s)
{
    if (s->o.once || !s->ctl || !s->cur || !store_has_inbox(s->cur->store)) return;
    db_exec(s->ctl, store_sql(s->cur->store, ST_INBOX_PENDING), 0, NULL, pending_cb, s);
}
