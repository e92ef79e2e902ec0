/* The scheduler's control connection reads: discovery, the integrations list, polls (prune,
 * abandoned rows), LISTEN, and the wait after a refused login (see sched_int.h). */
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

/* ---- refused logins -------------------------------------------------------------------------- */

static void auth_timer_cb(uv_timer_t *t);

/* After a failed database operation (res, or NULL for a run's): was a login refused, by this
 * result or by any connection since we last looked? Then no database work for a while (minutes,
 * doubling per refusal, capped): returns true, and the caller must not retry by itself. */
bool auth_refused_wait(sched *s, const db_result *res, const char *msg)
{
    unsigned long n = db_auth_refusals();
    bool refused = db_result_auth_refused(res) || n != s->auth_seen;
    s->auth_seen = n;
    if (!refused || s->o.once) return false;
    if (s->auth_waiting) return true;
    s->auth_refused++;
    uint64_t wait = sched_auth_wait_ms(s->auth_refused);
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

/* ---- control connection --------------------------------------------------------------------- */

void on_notify(const char *channel, const char *payload, void *arg)
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
        /* Only the schedule's fields are kept: the row's secrets are not held (nor registered). */
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
    inbox_pending_check(s);
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

void ctl_list(sched *s)
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

void ctl_discover(sched *s, kvs_config *cfg)
{
    if (s->cur)
        s->reload_cfg = cfg;
    else
        s->boot_cfg = cfg;
    s->discovering = true;
    const char *p[1] = {cfg->db_schema};
    db_exec(s->ctl, store_discover_sql, 1, p, discover_cb, s);
}
