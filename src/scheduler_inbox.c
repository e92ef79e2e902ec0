/* The scheduler's inbox runs: when webhook events wait, a short run of the integration applies
 * them (sync_run_start_inbox, src/inbox.c). Started by the listener's kick, after every read of
 * the integrations when events wait (a crash after the answer, another daemon's listener, a run
 * that failed), and at the end of a run of the same integration. */
#include "log.h"
#include "sched_int.h"

#include <string.h>

#include "store.h"

/* An inbox run of it, when events wait and nothing of it runs or is being claimed (the end of
 * that run or claim calls this again). It claims the lease as a poll does, without the due-aware
 * claim: events are applied whenever they come, and the schedule of the polls is not moved. */
void inbox_maybe_start(integ *it)
{
    sched *s = it->s;
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
